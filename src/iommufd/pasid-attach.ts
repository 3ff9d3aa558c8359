/**
 * Attaching a PASID of a device (not its requests without one, the RID) to a HWPT: the part of
 * drivers/iommu/iommufd/device.c that keys an igroup's attachments by PASID. Each attached PASID
 * of an igroup has one HWPT and the devices that asked for it; the first device attaches the
 * group in the iommu core, the last one's detach blocks the PASID again.
 *
 * A HWPT serves a PASID only if it was allocated with IOMMU_HWPT_ALLOC_PASID, and while any PASID
 * is attached the RID may only use such HWPTs too (iommufd_hwpt_pasid_compat, EINVAL).
 */
import { shouldFail } from '../fault/fault.ts';
import {
  IOMMU_NO_PASID,
  iommuAttachDevicePasid,
  iommuDetachDevicePasid,
  iommuReplaceDevicePasid,
} from '../iommu/iommu.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import type { IommufdDevice, IommufdGroup } from './device.ts';
import type { AttachHandle, HwPagetable } from './hw-pagetable.ts';

/** struct iommufd_attach of one PASID: its HWPT and the devices attached through it. */
export interface PasidAttach {
  hwpt: HwPagetable;
  /** The attach handle the first device made (none for a no-IOMMU device). */
  handle: AttachHandle | undefined;
  readonly devices: IommufdDevice[];
}

/** iommufd_hwpt_pasid_compat(). */
export function hwptPasidCompat(hwpt: HwPagetable, igroup: IommufdGroup, pasid: number): boolean {
  if (pasid === IOMMU_NO_PASID) return hwpt.pasidCompat || igroup.pasidAttach.size === 0;
  if (!hwpt.pasidCompat) return false;
  return igroup.hwpt === undefined || igroup.hwpt.pasidCompat;
}

/** iommufd_hwpt_attach_device() for a PASID: the handle, then the iommu core. */
function hwptAttachDevicePasid(
  hwpt: HwPagetable,
  idev: IommufdDevice,
  pasid: number,
): SyscallResult {
  if (!hwptPasidCompat(hwpt, idev.igroup!, pasid)) return -Errno.EINVAL;
  if (idev.isNoiommu) return 0;
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  return iommuAttachDevicePasid(hwpt.domain!, idev.dev, pasid);
}

/** iommufd_hw_pagetable_attach() for a PASID. */
export function pasidHwPagetableAttach(
  hwpt: HwPagetable,
  idev: IommufdDevice,
  pasid: number,
): SyscallResult {
  const igroup = idev.igroup!;
  let attach = igroup.pasidAttach.get(pasid);
  const first = attach === undefined;
  if (attach === undefined) {
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    attach = { hwpt, handle: undefined, devices: [] };
  }
  // The device is already there: xa_insert() into the device array says EBUSY.
  if (attach.devices.includes(idev)) return -Errno.EBUSY;
  if (attach.hwpt !== hwpt) return -Errno.EINVAL;
  if (first) {
    const rc = hwptAttachDevicePasid(hwpt, idev, pasid);
    if (rc) return rc;
    if (!idev.isNoiommu) attach.handle = { idev, hwpt };
    igroup.pasidAttach.set(pasid, attach);
  }
  hwpt.users.inc();
  attach.devices.push(idev);
  return 0;
}

/** iommufd_hw_pagetable_detach() for a PASID: the HWPT to put, undefined if none was attached. */
export function pasidHwPagetableDetach(
  idev: IommufdDevice,
  pasid: number,
): HwPagetable | undefined {
  const igroup = idev.igroup!;
  const attach = igroup.pasidAttach.get(pasid);
  if (attach === undefined) return undefined;
  const at = attach.devices.indexOf(idev);
  if (at >= 0) attach.devices.splice(at, 1);
  if (attach.devices.length === 0) {
    if (!idev.isNoiommu) iommuDetachDevicePasid(attach.hwpt.domain!, idev.dev, pasid);
    if (attach.handle !== undefined) attach.hwpt.fault?.autoResponse(attach.handle);
    igroup.pasidAttach.delete(pasid);
  }
  return attach.hwpt;
}

/**
 * iommufd_device_do_replace() for a PASID: EINVAL when the device has nothing attached there;
 * the old HWPT (to put) on success, undefined when it already was `hwpt`.
 */
export function pasidDoReplace(
  idev: IommufdDevice,
  hwpt: HwPagetable,
  pasid: number,
): HwPagetable | undefined | number {
  const attach = idev.igroup!.pasidAttach.get(pasid);
  if (attach === undefined || !attach.devices.includes(idev)) return -Errno.EINVAL;
  if (hwpt === attach.hwpt) return undefined;
  if (!hwptPasidCompat(hwpt, idev.igroup!, pasid)) return -Errno.EINVAL;
  if (!idev.isNoiommu) {
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    const rc = iommuReplaceDevicePasid(hwpt.domain!, idev.dev, pasid);
    if (rc) return rc;
    if (attach.handle !== undefined) attach.hwpt.fault?.autoResponse(attach.handle);
    attach.handle = { idev, hwpt };
  }
  const old = attach.hwpt;
  attach.hwpt = hwpt;
  // The device array's references move to the new HWPT; one stays on the old for the caller.
  const n = attach.devices.length;
  hwpt.users.add(n);
  if (old.users.subAndTest(n - 1))
    throw new Error(`pasid replace dropped the last reference of ${old.describe()}`);
  return old;
}
