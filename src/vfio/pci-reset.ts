/**
 * vfio-pci's resets (drivers/vfio/pci/vfio_pci_core.c): VFIO_DEVICE_RESET, which works when the
 * PCI core finds a reset method for the function alone, and the hot reset of a whole bus,
 * GET_PCI_HOT_RESET_INFO and PCI_HOT_RESET, proven owned by group fds (group path) or by the
 * caller's iommufd (cdev path, zero-length array). A device's reset methods come from the
 * platform file; the bus reset is a secondary bus reset, so never on the root bus, and reaches
 * every device of the bus.
 */
import { shouldFail } from '../fault/fault.ts';
import type { File } from '../host/file.ts';
import type { Task } from '../host/task.ts';
import { copyFromUser, copyStructMinsz, copyToUser } from '../host/uaccess.ts';
import type { IommufdCtx } from '../iommufd/context.ts';
import type { IommufdDevice } from '../iommufd/device.ts';
import type { PciDevice } from '../platform/pci.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { encodeStruct } from '../uapi/struct.ts';
import * as v from '../uapi/vfio.ts';
import type { VfioGroup } from './group.ts';
import type { VfioDevice, VfioDeviceSet } from './vfio-main.ts';

/** struct vfio_pci_dependent_device: group_id or devid, segment, bus, devfn. */
const DEPENDENT_DEVICE_SIZE = 8;
const HOT_RESET_HEADER_SIZE = 12;
/** The devid of a device the caller's iommufd owns but has not bound (0), or does not own (-1). */
const VFIO_PCI_DEVID_OWNED = 0;
const VFIO_PCI_DEVID_NOT_OWNED = -1;

/**
 * pci_probe_reset_bus(): a secondary bus reset is possible for the device's bus. The devices of
 * a bus share their bridge, and the platform file's validation makes them all agree.
 */
function canResetBus(pci: PciDevice): boolean {
  return pci.resetMethods.includes('bus');
}

/**
 * Whether pci_try_reset_function() would reset the function now: FLR or PM reset, or a bus reset
 * when the function is alone on its bus (pci_parent_bus_reset), among the methods sysfs's
 * reset_method leaves enabled.
 */
export function functionResetPossible(device: VfioDevice): boolean {
  const methods = device.pci.enabledResetMethods;
  if (methods.includes('flr') || methods.includes('pm')) return true;
  return methods.includes('bus') && device.devSet.busDevices().length === 1;
}

/**
 * VFIO_DEVICE_RESET: EINVAL unless the reset at the first open worked (vdev->reset_works, kept
 * while open); ENOTTY from the PCI core when no method resets the function now (reset_method was
 * changed meanwhile); else the function's registers back to power-on.
 */
export function deviceReset(device: VfioDevice): SyscallResult {
  if (!device.resetWorks) return -Errno.EINVAL;
  if (!functionResetPossible(device)) return -Errno.ENOTTY;
  resetKeepingState(device.pci);
  return 0;
}

/**
 * The PCI core saves config space before a reset and restores it after (pci_dev_save_and_disable,
 * pci_dev_restore), so an open device keeps its BARs, decode and bus mastering.
 */
function resetKeepingState(pci: PciDevice): void {
  const saved = pci.saveState();
  pci.reset();
  pci.restoreState(saved);
}

/** vfio_iommufd_device_ictx(). */
function ictxOf(device: VfioDevice): IommufdCtx | undefined {
  return device.iommufdDevice?.ictx;
}

/**
 * vfio_iommufd_get_dev_id(): the device's id when bound to ictx, OWNED when ictx has bound another
 * device of its IOMMU group (it cannot belong to anyone else), NOT_OWNED otherwise.
 */
function devIdIn(device: VfioDevice, ictx: IommufdCtx | undefined): number {
  if (ictx === undefined) return VFIO_PCI_DEVID_NOT_OWNED;
  if (ictxOf(device) === ictx) return device.iommufdDevice!.id;
  const group = device.dev.group;
  if (group === undefined) return VFIO_PCI_DEVID_NOT_OWNED;
  const hasGroup = ictx
    .publishedObjects()
    .some((o) => o.type === 'device' && (o as IommufdDevice).igroup?.group === group);
  return hasGroup ? VFIO_PCI_DEVID_OWNED : VFIO_PCI_DEVID_NOT_OWNED;
}

/** vfio_find_device_in_devset(). */
function inSet(set: VfioDeviceSet, pci: PciDevice): VfioDevice | undefined {
  return set.devices.find((d) => d.pci === pci);
}

/**
 * VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: the devices a hot reset reaches, each with its IOMMU group
 * (group path) or its devid in the caller's iommufd (cdev path, with the DEV_ID flags). ENOSPC
 * with the count when the array does not fit.
 */
export function getHotResetInfo(device: VfioDevice, task: Task, arg: bigint): SyscallResult {
  const spec = v.vfioPciHotResetInfo;
  const hdr = copyStructMinsz(task, arg, spec);
  if (hdr === undefined) return -Errno.EFAULT;
  if (hdr.argsz < spec.minSize) return -Errno.EINVAL;
  if (!canResetBus(device.pci)) return -Errno.ENODEV;
  const reached = device.devSet.busDevices();
  const header = (flags: number, count: number): boolean =>
    copyToUser(task, arg, encodeStruct(spec, { argsz: hdr.argsz, flags, count }));
  if (reached.length > Math.floor((hdr.argsz - HOT_RESET_HEADER_SIZE) / DEPENDENT_DEVICE_SIZE)) {
    return header(0, reached.length) ? -Errno.ENOSPC : -Errno.EFAULT;
  }
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  let flags = device.cdevOpened
    ? v.VFIO_PCI_HOT_RESET_FLAG_DEV_ID | v.VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED
    : 0;
  const out = new Uint8Array(reached.length * DEPENDENT_DEVICE_SIZE);
  const view = new DataView(out.buffer);
  for (const [i, pci] of reached.entries()) {
    let id: number;
    if (device.cdevOpened) {
      const member = inSet(device.devSet, pci);
      id = member === undefined ? VFIO_PCI_DEVID_NOT_OWNED : devIdIn(member, ictxOf(device));
      if (id === VFIO_PCI_DEVID_NOT_OWNED) flags &= ~v.VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
    } else {
      // Without an IOMMU group a device cannot be isolated, so cannot be reset by a user.
      const group = groupIdOf(device.devSet, pci);
      if (group === undefined) return -Errno.EPERM;
      id = group;
    }
    const [segment, bus, devfn] = address(pci);
    view.setInt32(i * DEPENDENT_DEVICE_SIZE, id, true);
    view.setUint16(i * DEPENDENT_DEVICE_SIZE + 4, segment, true);
    view.setUint8(i * DEPENDENT_DEVICE_SIZE + 6, bus);
    view.setUint8(i * DEPENDENT_DEVICE_SIZE + 7, devfn);
  }
  if (!copyToUser(task, arg + BigInt(HOT_RESET_HEADER_SIZE), out)) return -Errno.EFAULT;
  return header(flags, reached.length) ? 0 : -Errno.EFAULT;
}

/** vfio_file_is_group() and the group behind it (by name: group.ts imports this module's users). */
function vfioGroupOfFile(file: File): VfioGroup | undefined {
  return file.fops.name === 'vfio-group' ? (file.privateData as VfioGroup) : undefined;
}

/** iommu_group_get(): the machine's group, or the placeholder vfio gives a no-IOMMU device. */
function groupIdOf(set: VfioDeviceSet, pci: PciDevice): number | undefined {
  return pci.group?.id ?? inSet(set, pci)?.group.id;
}

/** Segment, bus and devfn of "SSSS:BB:DD.F". */
function address(pci: PciDevice): [number, number, number] {
  const [segment, bus, devFn] = pci.bdf.split(':') as [string, string, string];
  const [dev, fn] = devFn.split('.') as [string, string];
  return [
    Number.parseInt(segment, 16),
    Number.parseInt(bus, 16),
    (Number.parseInt(dev, 16) << 3) | Number(fn),
  ];
}

/**
 * VFIO_DEVICE_PCI_HOT_RESET: a group-opened device names the groups of every device the reset
 * reaches by their fds; a cdev-opened one passes none and its iommufd must own them all.
 */
export function hotReset(device: VfioDevice, task: Task, arg: bigint): SyscallResult {
  const spec = v.vfioPciHotReset;
  const hdr = copyStructMinsz(task, arg, spec);
  if (hdr === undefined) return -Errno.EFAULT;
  if (hdr.argsz < spec.minSize || hdr.flags !== 0) return -Errno.EINVAL;
  // A zero-length array is for cdev-opened devices only, and only they may pass one.
  if ((hdr.count !== 0) === device.cdevOpened) return -Errno.EINVAL;
  if (!canResetBus(device.pci)) return -Errno.ENODEV;
  if (hdr.count === 0) return devSetHotReset(device.devSet, { ictx: ictxOf(device) });

  // One group per device at most.
  if (hdr.count > device.devSet.busDevices().length) return -Errno.EINVAL;
  // Two arrays, both allocated before either is checked: the group fds and their files.
  const fdsFailed = shouldFail('kmalloc');
  const filesFailed = shouldFail('kmalloc');
  if (fdsFailed || filesFailed) return -Errno.ENOMEM;
  const fds = copyFromUser(task, arg + BigInt(HOT_RESET_HEADER_SIZE), hdr.count * 4);
  if (fds === undefined) return -Errno.EFAULT;
  const view = new DataView(fds.buffer, fds.byteOffset, fds.byteLength);
  const groups: VfioGroup[] = [];
  for (let i = 0; i < hdr.count; i++) {
    const file = task.fds.fileOf(view.getInt32(i * 4, true));
    if (file === undefined) return -Errno.EBADF;
    const group = vfioGroupOfFile(file);
    if (group === undefined) return -Errno.EINVAL;
    groups.push(group);
  }
  return devSetHotReset(device.devSet, { groups });
}

/**
 * vfio_pci_dev_set_hot_reset(): every device the bus reset reaches must be vfio-pci's (in the
 * set) and owned by the caller, else EINVAL with nothing reset; then the bus resets.
 */
function devSetHotReset(
  set: VfioDeviceSet,
  proof: { ictx: IommufdCtx | undefined } | { groups: readonly VfioGroup[] },
): SyscallResult {
  const reached = set.busDevices();
  if (reached.some((pci) => inSet(set, pci) === undefined)) return -Errno.EINVAL;
  for (const member of set.devices) {
    const owned =
      'ictx' in proof
        ? devIdIn(member, proof.ictx) !== VFIO_PCI_DEVID_NOT_OWNED
        : proof.groups.some((g) => g === member.group);
    if (!owned) return -Errno.EINVAL;
  }
  for (const pci of reached) resetKeepingState(pci);
  return 0;
}
