/**
 * vfio-pci's match() (drivers/vfio/pci/vfio_pci_core.c): how VFIO_GROUP_GET_DEVICE_FD's name
 * picks a device. Its own module so that group.ts does not import pci-core.ts at run time.
 */
import { Errno } from '../uapi/errno.ts';
import type { VfioDevice } from './vfio-main.ts';

const VF_TOKEN_ARG = 'vf_token=';
/** UUID_STRING_LEN: "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx". */
const UUID_STRING_LEN = 36;
const UUID_FORMAT = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/**
 * vfio_pci_core_match(): whether GET_DEVICE_FD's `buf` names this device: its PCI name, then
 * nothing or a space and options separated by spaces, of which only one `vf_token=<uuid>` is
 * known. 1 for a match, 0 for none, a negative errno for a malformed option (EINVAL). A VF token
 * is refused (EINVAL) as vfio_pci_core_match_token_uuid() refuses it for a device that is neither
 * an SR-IOV PF nor a VF, which every emulated device is.
 */
export function pciCoreMatch(device: VfioDevice, buf: string): number {
  const name = device.pci.bdf;
  if (!buf.startsWith(name)) return 0;
  let vfToken = false;
  if (buf.length > name.length) {
    let at = name.length;
    if (buf[at] !== ' ') return 0;
    while (at < buf.length) {
      if (buf[at] === ' ') {
        at++;
        continue;
      }
      if (vfToken || !buf.startsWith(VF_TOKEN_ARG, at)) return -Errno.EINVAL;
      at += VF_TOKEN_ARG.length;
      if (buf.length - at < UUID_STRING_LEN) return -Errno.EINVAL;
      if (!UUID_FORMAT.test(buf.slice(at, at + UUID_STRING_LEN))) return -Errno.EINVAL;
      vfToken = true;
      at += UUID_STRING_LEN;
    }
  }
  return vfToken ? -Errno.EINVAL : 1;
}
