/**
 * The iommufd DEVICE object: a physical device bound to an iommufd by its driver (VFIO), its
 * igroup, and attach / replace / detach to a HWPT or an IOAS (auto domain). Mirrors
 * drivers/iommu/iommufd/device.c, including the no-IOMMU path of "iommufd: Allow binding to a
 * noiommu device": a device with no IOMMU gets a private placeholder igroup with no iommu_group,
 * claims no DMA ownership, skips the coherency and MSI checks, touches no hardware on attach and
 * reserves no IOVA.
 */
import { shouldFail } from '../fault/fault.ts';
import { mutant } from '../fault/mutant.ts';
import type { MaybeBlocked } from '../host/file.ts';
import type { LongWalk } from '../host/resched.ts';
import { clearUserThen, copyToUser } from '../host/uaccess.ts';
import {
  type Device,
  deviceIommuCapable,
  IOMMU_NO_PASID,
  type IommuGroup,
  iommuDeviceClaimDmaOwner,
  iommuDeviceReleaseDmaOwner,
  iommuGetResvRegions,
  iommuGroupHasIsolatedMsi,
  iommuReplaceGroupHandle,
} from '../iommu/iommu.ts';
import { isMockDevice } from '../iommu/mock-driver.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED,
  IOMMU_HW_INFO_FLAG_INPUT_TYPE,
  IOMMU_HW_INFO_TYPE_NONE,
  type iommuHwInfo,
} from '../uapi/iommufd.ts';
import type { IommufdCtx } from './context.ts';
import {
  type AttachHandle,
  findHwptPaging,
  type HwPagetable,
  iommufdHwPagetableAttach,
  iommufdHwPagetableDetach,
  iommufdHwPagetablePut,
  iommufdHwptPagingAllocWalk,
} from './hw-pagetable.ts';
import type { Ref } from './io-pagetable.ts';
import type { Ioas } from './ioas.ts';
import { IommufdObject } from './object.ts';
import { hwptPasidCompat, type PasidAttach, pasidDoReplace } from './pasid-attach.ts';
import type { Ucmd } from './ucmd.ts';
import { type IommufdVdevice, iommufdDeviceRemoveVdev } from './viommu.ts';

/** struct iommufd_group: per iommu_group state in one context (a private one for no-IOMMU). */
export class IommufdGroup {
  readonly ictx: IommufdCtx;
  /** undefined: the placeholder of a no-IOMMU device, never shared and not in ictx.groups. */
  readonly group: IommuGroup | undefined;
  refs = 1;
  hwpt: HwPagetable | undefined;
  /** The RID's attach handle (none for a no-IOMMU device, which the core never sees). */
  handle: AttachHandle | undefined;
  readonly devices: IommufdDevice[] = [];
  /** pasid_attach for every PASID but IOMMU_NO_PASID (the RID's is `hwpt` and `devices`). */
  readonly pasidAttach = new Map<number, PasidAttach>();

  constructor(ictx: IommufdCtx, group: IommuGroup | undefined) {
    this.ictx = ictx;
    this.group = group;
  }

  put(): void {
    this.refs--;
    if (this.refs > 0) return;
    if (this.hwpt !== undefined || this.devices.length > 0 || this.pasidAttach.size > 0)
      throw new Error('igroup released while in use');
    if (this.group !== undefined && this.ictx.groups.get(this.group.id) === this) {
      this.ictx.groups.delete(this.group.id);
    }
  }
}

/** iommufd_get_group(): the context's igroup for an iommu_group, made on first use. */
function iommufdGetGroup(ictx: IommufdCtx, group: IommuGroup): IommufdGroup | number {
  const cur = ictx.groups.get(group.id);
  if (cur !== undefined) {
    cur.refs++;
    return cur;
  }
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const igroup = new IommufdGroup(ictx, group);
  ictx.groups.set(group.id, igroup);
  return igroup;
}

export class IommufdDevice extends IommufdObject {
  readonly type = 'device';
  readonly dev: Device;
  /** undefined while bind has not got that far: destroy must cope (the half-built device). */
  igroup: IommufdGroup | undefined;
  /** The DMA ownership claim is held (never for no-IOMMU devices). */
  ownsDma = false;
  enforceCacheCoherency = false;
  /** Holds a reference on the iommufd file, like iommufd_ctx_get(). */
  holdsCtx = false;
  /** idev->vdev: its vDEVICE, which holds it. */
  vdev: IommufdVdevice | undefined;

  constructor(ictx: IommufdCtx, dev: Device) {
    super(ictx);
    this.dev = dev;
  }

  /** iommufd_device_is_noiommu(): no dev->iommu. */
  get isNoiommu(): boolean {
    return this.dev.iommu === undefined;
  }

  /** iommufd_device_destroy(): copes with a device whose bind stopped part way. */
  destroy(): void {
    if (this.ownsDma) {
      iommuDeviceReleaseDmaOwner(this.dev);
      this.ownsDma = false;
    }
    // mutant: halfbuilt-destroy (without the `igroup !== undefined` fix a half-built device crashes)
    if (this.igroup !== undefined || mutant('halfbuilt-destroy')) {
      (this.igroup as IommufdGroup).put();
      this.igroup = undefined;
    }
    if (this.holdsCtx) {
      this.holdsCtx = false;
      this.ictx.file!.put();
    }
  }

  describe(): string {
    return `${super.describe()} ${this.dev.name}${this.isNoiommu ? ' (no-IOMMU)' : ''}`;
  }
}

/**
 * iommufd_bind_iommu(): the checks and claims of a device behind an IOMMU. A platform that cannot
 * isolate the device's MSIs is EPERM unless the allow_unsafe_interrupts parameter says otherwise.
 */
function bindIommu(idev: IommufdDevice): SyscallResult {
  const dev = idev.dev;
  // iommufd always maps cache coherent: a device that cannot be made coherent is refused.
  if (!deviceIommuCapable(dev, 'cache-coherency')) return -Errno.EINVAL;
  if (dev.group === undefined) return -Errno.ENODEV;
  const igroup = iommufdGetGroup(idev.ictx, dev.group);
  if (typeof igroup === 'number') return igroup;
  idev.igroup = igroup;
  // The test interface's mock devices have no interrupts to isolate.
  if (!isMockDevice(dev) && !iommuGroupHasIsolatedMsi(dev.group)) {
    if (!idev.ictx.subsystem.allowUnsafeInterrupts) return -Errno.EPERM;
    idev.ictx.subsystem.events.log(
      'warn',
      `vfio-pci ${dev.name}: MSI interrupts are not secure, they cannot be isolated by the ` +
        'platform. Check that platform features like interrupt remapping are enabled. Use the ' +
        '"allow_unsafe_interrupts" module parameter to override',
    );
  }
  const rc = iommuDeviceClaimDmaOwner(dev, idev.ictx);
  if (rc) return rc;
  idev.ownsDma = true;
  idev.enforceCacheCoherency = deviceIommuCapable(dev, 'enforce-cache-coherency');
  return 0;
}

/** iommufd_bind_noiommu(): a private placeholder igroup; nothing to claim or check. */
function bindNoiommu(idev: IommufdDevice): SyscallResult {
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  idev.igroup = new IommufdGroup(idev.ictx, undefined);
  return 0;
}

/**
 * iommufd_device_bind(): a new DEVICE object for `dev`, published with an extra reference for
 * the calling driver (dropped by unbind). The object is allocated first, so a failure in the
 * IOMMU or no-IOMMU half unwinds through destroy() of a partly built device.
 */
export function iommufdDeviceBind(ictx: IommufdCtx, dev: Device): IommufdDevice | number {
  const idev = ictx.allocObject(new IommufdDevice(ictx, dev));
  if (typeof idev === 'number') return idev;
  const rc = idev.isNoiommu ? bindNoiommu(idev) : bindIommu(idev);
  if (rc) {
    ictx.abortAndDestroy(idev);
    return rc;
  }
  // A VFIO device keeps the iommufd file open; a mock device lives inside it (the selftest
  // object), so closing the iommufd still destroys it.
  if (!isMockDevice(dev)) {
    ictx.file!.get();
    idev.holdsCtx = true;
  }
  // The calling driver is a user until unbind.
  idev.users.inc();
  ictx.finalize(idev);
  return idev;
}

/**
 * iommufd_device_unbind(): the driver lets go; the device must be detached already. Its vDEVICE,
 * if any, goes first and leaves a tombstone (iommufd_device_pre_destroy).
 */
export function iommufdDeviceUnbind(idev: IommufdDevice): void {
  iommufdDeviceRemoveVdev(idev);
  const rc = idev.ictx.removeObject(idev.id, idev);
  if (rc) throw new Error(`unbind of ${idev.describe()} failed with ${rc}`);
}

/** iommufd_device_is_attached(). */
function isAttached(idev: IommufdDevice): boolean {
  return idev.igroup!.devices.includes(idev);
}

type AttachFn = (
  idev: IommufdDevice,
  hwpt: HwPagetable,
  pasid: number,
) => HwPagetable | undefined | number;

/** iommufd_device_do_attach(). */
function doAttach(
  idev: IommufdDevice,
  hwpt: HwPagetable,
  pasid: number,
): HwPagetable | undefined | number {
  const rc = iommufdHwPagetableAttach(hwpt, idev, pasid);
  return rc ? rc : undefined;
}

/** iommufd_device_do_replace(): swap the igroup's HWPT; nothing changes on failure. */
function doReplace(
  idev: IommufdDevice,
  hwpt: HwPagetable,
  pasid: number,
): HwPagetable | undefined | number {
  if (pasid !== IOMMU_NO_PASID) return pasidDoReplace(idev, hwpt, pasid);
  const igroup = idev.igroup!;
  if (igroup.hwpt === undefined || !isAttached(idev)) return -Errno.EINVAL;
  if (hwpt === igroup.hwpt) return undefined;
  const old = igroup.hwpt;

  // Reserved regions follow the devices when they move to another IOAS.
  const ioas = findHwptPaging(hwpt).ioas;
  const oldIoas = findHwptPaging(old).ioas;
  const moving = oldIoas !== ioas;
  if (moving && !idev.isNoiommu) {
    for (const cur of igroup.devices) {
      for (const region of iommuGetResvRegions(cur.dev)) {
        if (region.type === 'direct-relaxable') continue;
        const rc = ioas.iopt.reserveIova(region.start, region.last, cur);
        if (rc) {
          for (const d of igroup.devices) ioas.iopt.removeReservedIova(d);
          return rc;
        }
      }
    }
  }
  // iommufd_hwpt_replace_device(): the PASID rule, then the new attach handle.
  let rc = hwptPasidCompat(hwpt, igroup, IOMMU_NO_PASID) ? 0 : -Errno.EINVAL;
  if (rc === 0 && shouldFail('kmalloc')) rc = -Errno.ENOMEM;
  if (rc === 0 && igroup.group !== undefined)
    rc = iommuReplaceGroupHandle(igroup.group, hwpt.domain!);
  if (rc) {
    if (moving) for (const d of igroup.devices) ioas.iopt.removeReservedIova(d);
    return rc;
  }
  if (igroup.group !== undefined) {
    // The old handle's faults not answered yet are answered for userspace.
    if (igroup.handle !== undefined) old.fault?.autoResponse(igroup.handle);
    igroup.handle = { idev, hwpt };
  }
  if (moving) for (const d of igroup.devices) oldIoas.iopt.removeReservedIova(d);
  igroup.hwpt = hwpt;
  // The device list's references move to the new HWPT; one stays on the old for the caller.
  const n = igroup.devices.length;
  hwpt.users.add(n);
  if (old.users.subAndTest(n - 1))
    throw new Error(`replace dropped the last reference of ${old.describe()}`);
  return old;
}

/**
 * iommufd_device_auto_get_domain(): reuse a compatible auto domain of the IOAS (EINVAL from the
 * attach means incompatible: try the next), or create one for this device (a walk: its domain
 * is filled a batch per step).
 */
function* autoGetDomainWalk(
  idev: IommufdDevice,
  pasid: number,
  ioas: Ioas,
  ptId: Ref<number>,
  attach: AttachFn,
): LongWalk<HwPagetable | undefined | number> {
  const ictx = idev.ictx;
  const immediateAttach = attach === doAttach;
  for (const hwpt of [...ioas.hwptList]) {
    if (!hwpt.autoDomain) continue;
    if (!ictx.lockObj(hwpt)) continue;
    const result = attach(idev, hwpt, pasid);
    ictx.putObject(hwpt);
    if (result === -Errno.EINVAL) continue;
    if (typeof result === 'number') return result;
    ptId.value = hwpt.id;
    return result;
  }
  const hwpt = yield* iommufdHwptPagingAllocWalk(
    ictx,
    ioas,
    idev,
    0,
    immediateAttach,
    undefined,
    pasid,
  );
  if (typeof hwpt === 'number') return hwpt;
  let result: HwPagetable | undefined | number;
  if (!immediateAttach) {
    result = attach(idev, hwpt, pasid);
    if (typeof result === 'number') {
      ictx.abortAndDestroy(hwpt);
      return result;
    }
  }
  hwpt.autoDomain = true;
  ptId.value = hwpt.id;
  ictx.finalize(hwpt);
  return result;
}

/** iommufd_device_change_pt(): pt_id names a HWPT, or an IOAS (auto domain). */
function* changePtWalk(
  idev: IommufdDevice,
  pasid: number,
  ptId: Ref<number>,
  attach: AttachFn,
): LongWalk<SyscallResult> {
  const ictx = idev.ictx;
  const ptObj = ictx.getObject(ptId.value, 'any');
  if (ptObj === undefined) return -Errno.ENOENT;
  let result: HwPagetable | undefined | number;
  switch (ptObj.type) {
    case 'hwpt-paging':
    case 'hwpt-nested':
      result = attach(idev, ptObj as HwPagetable, pasid);
      break;
    case 'ioas':
      result = yield* autoGetDomainWalk(idev, pasid, ptObj as Ioas, ptId, attach);
      break;
    default:
      result = -Errno.EINVAL;
  }
  ictx.putObject(ptObj);
  if (typeof result === 'number') return result;
  if (result !== undefined) iommufdHwPagetablePut(ictx, result);
  return 0;
}

/** iommufd_device_attach() of the RID, or of one PASID of the device: a walk (changePtWalk). */
export function* iommufdDeviceAttachWalk(
  idev: IommufdDevice,
  ptId: Ref<number>,
  pasid = IOMMU_NO_PASID,
): LongWalk<SyscallResult> {
  const rc = yield* changePtWalk(idev, pasid, ptId, doAttach);
  if (rc) return rc;
  // Pairs with detach: a device with an attachment cannot be destroyed.
  idev.users.inc();
  return 0;
}

/** iommufd_device_replace(): a walk (changePtWalk). */
export function* iommufdDeviceReplaceWalk(
  idev: IommufdDevice,
  ptId: Ref<number>,
  pasid = IOMMU_NO_PASID,
): LongWalk<SyscallResult> {
  return yield* changePtWalk(idev, pasid, ptId, doReplace);
}

/** iommufd_device_detach(): back to blocked DMA; nothing attached there is no error. */
export function iommufdDeviceDetach(idev: IommufdDevice, pasid = IOMMU_NO_PASID): void {
  const hwpt = iommufdHwPagetableDetach(idev, pasid);
  if (hwpt === undefined) return;
  iommufdHwPagetablePut(idev.ictx, hwpt);
  idev.users.dec();
}

/**
 * IOMMU_GET_HW_INFO. The emulated IOMMUs provide no vendor blob unless the platform makes a
 * unit look like Intel VT-d (decision 52); the type is then IOMMU_HW_INFO_TYPE_NONE with no data.
 * A no-IOMMU device is EOPNOTSUPP (decision 4). Userspace's buffer past the blob is cleared in
 * place, however long userspace says it is: nothing of that size is allocated, and a buffer that
 * runs into unmapped memory is EFAULT.
 */
export function iommufdGetHwInfo(ucmd: Ucmd<typeof iommuHwInfo.fields>): MaybeBlocked {
  const cmd = ucmd.cmd;
  if (cmd.flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE) return -Errno.EOPNOTSUPP;
  if (cmd.__reserved0 || cmd.__reserved1 || cmd.__reserved2) return -Errno.EOPNOTSUPP;
  let out: HwInfoOut;
  {
    using held = ucmd.ictx.getObjectRef(cmd.dev_id, 'device');
    if (held === undefined) return -Errno.ENOENT;
    const info = hwInfoOf(held.obj as IommufdDevice, cmd.flags, cmd.out_data_type);
    if (typeof info === 'number') return info;
    out = info;
  }
  // copy_to_user() of min(data_len, blob) bytes: a failed copy of nothing is no error.
  const blob = out.data;
  const copyLen = Math.min(cmd.data_len, blob.length);
  if (!copyToUser(ucmd.task, cmd.data_uptr, blob.subarray(0, copyLen)) && copyLen > 0)
    return -Errno.EFAULT;
  const respond = (): SyscallResult => {
    // The length the kernel has, which may be more or less than the buffer.
    cmd.data_len = blob.length;
    cmd.out_data_type = out.type;
    cmd.out_capabilities = out.capabilities;
    cmd.out_max_pasid_log2 = out.maxPasidLog2;
    return ucmd.respond();
  };
  if (cmd.data_len <= copyLen) return respond();
  // The tail may be gigabytes: other clients run while it is cleared (the device reference
  // is not held meanwhile: decision 222).
  const tail = cmd.data_uptr + BigInt(copyLen);
  return clearUserThen(ucmd.task, tail, cmd.data_len - copyLen, (ok) =>
    ok ? respond() : -Errno.EFAULT,
  );
}

/** What GET_HW_INFO reports of a device, read while the call holds it. */
interface HwInfoOut {
  readonly data: Uint8Array;
  readonly type: number;
  readonly capabilities: bigint;
  readonly maxPasidLog2: number;
}

function hwInfoOf(idev: IommufdDevice, flags: number, outDataType: number): HwInfoOut | number {
  // A no-IOMMU device has no driver to ask (docs/decisions.md 4).
  if (idev.isNoiommu) return -Errno.EOPNOTSUPP;
  // The driver's blob (the mock IOMMU's; the emulated units and no-IOMMU have none), of the
  // type userspace asked for with IOMMU_HW_INFO_FLAG_INPUT_TYPE (in the out_data_type field).
  const inType = flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE ? outDataType : 0;
  const info = idev.dev.iommu?.ops.hwInfo?.(idev.dev, inType);
  if (typeof info === 'number') return info;
  let capabilities = deviceIommuCapable(idev.dev, 'dirty-tracking') ? 1n : 0n;
  // Reported for every device whose IOMMU cannot use PCI ATS with it (no edu has ATS).
  if (!deviceIommuCapable(idev.dev, 'pci-ats-supported'))
    capabilities |= IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED;
  return {
    data: info?.data ?? new Uint8Array(0),
    type: info?.type ?? IOMMU_HW_INFO_TYPE_NONE,
    capabilities,
    maxPasidLog2: idev.dev.iommu?.ops.pasidBits?.(idev.dev) ?? 0,
  };
}
