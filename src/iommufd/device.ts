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
import { clearUser, copyToUser } from '../host/uaccess.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_HW_INFO_FLAG_INPUT_TYPE,
  IOMMU_HW_INFO_TYPE_NONE,
  type iommuHwInfo,
} from '../uapi/iommufd.ts';
import {
  type HwptPaging,
  type IommuDomain,
  iommufdHwPagetablePut,
  iommufdHwptPagingAlloc,
} from './hw-pagetable.ts';
import type { Ref } from './io-pagetable.ts';
import type { Ioas } from './ioas.ts';
import type { IommufdCtx, Ucmd } from './main.ts';
import { IommufdObject } from './object.ts';

/** IOMMU_RESV_*: only these matter to iommufd. */
export interface ReservedRegion {
  readonly start: bigint;
  readonly last: bigint;
  readonly type: 'direct' | 'direct-relaxable' | 'reserved' | 'msi' | 'sw-msi';
}

/** The iommu driver as iommufd reaches it for one device (dev_iommu_ops / get_iommu_ops). */
export interface IommuOps {
  domainAllocPaging(flags: number, hasUserData: boolean): IommuDomain | number;
  capable(cap: 'cache-coherency' | 'enforce-cache-coherency' | 'dirty-tracking'): boolean;
}

/** An iommu_group of the platform: DMA ownership and the domain the hardware uses. */
export interface IommuGroupHw {
  readonly id: number;
  /** iommu_device_claim_dma_owner(): -EPERM if another owner holds the group. */
  claimDmaOwner(owner: object): SyscallResult;
  releaseDmaOwner(owner: object): void;
  /** iommu_attach/replace_group_handle (a domain) and detach (undefined: DMA blocked). */
  setDomain(domain: IommuDomain | undefined): SyscallResult;
  /** Whether MSIs from the group are isolated (interrupt remapping). */
  readonly msiIsolated: boolean;
}

/** struct device, as iommufd sees a physical device. */
export interface BindableDevice {
  readonly name: string;
  /** dev->iommu: undefined for a device behind no IOMMU. */
  readonly iommu: { readonly ops: IommuOps; readonly group: IommuGroupHw } | undefined;
  reservedRegions(): readonly ReservedRegion[];
}

/** The iommu_ops of no-IOMMU mode: only domain allocation, of a software-only page table. */
export function noiommuOps(allocSoftwareDomain: () => IommuDomain | number): IommuOps {
  return {
    domainAllocPaging(flags, hasUserData) {
      if (flags || hasUserData) return -Errno.EOPNOTSUPP;
      return allocSoftwareDomain();
    },
    capable: () => false,
  };
}

/** struct iommufd_group: per iommu_group state in one context (a private one for no-IOMMU). */
export class IommufdGroup {
  readonly ictx: IommufdCtx;
  /** undefined: the placeholder of a no-IOMMU device, never shared and not in ictx.groups. */
  readonly group: IommuGroupHw | undefined;
  refs = 1;
  hwpt: HwptPaging | undefined;
  readonly devices: IommufdDevice[] = [];

  constructor(ictx: IommufdCtx, group: IommuGroupHw | undefined) {
    this.ictx = ictx;
    this.group = group;
  }

  put(): void {
    this.refs--;
    if (this.refs > 0) return;
    if (this.hwpt !== undefined || this.devices.length > 0)
      throw new Error('igroup released while in use');
    if (this.group !== undefined && this.ictx.groups.get(this.group.id) === this) {
      this.ictx.groups.delete(this.group.id);
    }
  }
}

/** iommufd_get_group(): the context's igroup for an iommu_group, made on first use. */
function iommufdGetGroup(ictx: IommufdCtx, group: IommuGroupHw): IommufdGroup | number {
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
  readonly dev: BindableDevice;
  /** undefined while bind has not got that far: destroy must cope (the half-built device). */
  igroup: IommufdGroup | undefined;
  /** The DMA ownership claim is held (never for no-IOMMU devices). */
  ownsDma = false;
  enforceCacheCoherency = false;
  /** Holds a reference on the iommufd file, like iommufd_ctx_get(). */
  holdsCtx = false;
  private readonly noiommu: () => IommuOps;

  constructor(ictx: IommufdCtx, dev: BindableDevice, noiommu: () => IommuOps) {
    super(ictx);
    this.dev = dev;
    this.noiommu = noiommu;
  }

  /** iommufd_device_is_noiommu(): no dev->iommu. */
  get isNoiommu(): boolean {
    return this.dev.iommu === undefined;
  }

  /** get_iommu_ops(): the device's IOMMU driver, or the no-IOMMU software one. */
  iommuOps(): IommuOps {
    return this.dev.iommu?.ops ?? this.noiommu();
  }

  /** iommufd_device_destroy(): copes with a device whose bind stopped part way. */
  destroy(): void {
    if (this.ownsDma) {
      this.dev.iommu!.group.releaseDmaOwner(this.ictx);
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

/** iommufd_bind_iommu(): the checks and claims of a device behind an IOMMU. */
function bindIommu(idev: IommufdDevice, allowUnsafeInterrupts: boolean): SyscallResult {
  const iommu = idev.dev.iommu!;
  // iommufd always maps cache coherent: a device that cannot be made coherent is refused.
  if (!iommu.ops.capable('cache-coherency')) return -Errno.EINVAL;
  const igroup = iommufdGetGroup(idev.ictx, iommu.group);
  if (typeof igroup === 'number') return igroup;
  idev.igroup = igroup;
  if (!iommu.group.msiIsolated && !allowUnsafeInterrupts) return -Errno.EPERM;
  const rc = iommu.group.claimDmaOwner(idev.ictx);
  if (rc) return rc;
  idev.ownsDma = true;
  idev.enforceCacheCoherency = iommu.ops.capable('enforce-cache-coherency');
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
export function iommufdDeviceBind(
  ictx: IommufdCtx,
  dev: BindableDevice,
  noiommu: () => IommuOps,
  allowUnsafeInterrupts: boolean,
): IommufdDevice | number {
  const idev = ictx.allocObject(new IommufdDevice(ictx, dev, noiommu));
  if (typeof idev === 'number') return idev;
  const rc = idev.isNoiommu ? bindNoiommu(idev) : bindIommu(idev, allowUnsafeInterrupts);
  if (rc) {
    ictx.abortAndDestroy(idev);
    return rc;
  }
  ictx.file!.get();
  idev.holdsCtx = true;
  // The calling driver is a user until unbind.
  idev.users.inc();
  ictx.finalize(idev);
  return idev;
}

/** iommufd_device_unbind(): the driver lets go; the device must be detached already. */
export function iommufdDeviceUnbind(idev: IommufdDevice): void {
  const rc = idev.ictx.removeObject(idev.id, idev);
  if (rc) throw new Error(`unbind of ${idev.describe()} failed with ${rc}`);
}

/** iommufd_device_is_attached(). */
function isAttached(idev: IommufdDevice): boolean {
  return idev.igroup!.devices.includes(idev);
}

/**
 * iommufd_device_attach_reserved_iova(): the device's reserved regions become reserved IOVA in
 * the HWPT's IOAS. A no-IOMMU device has none: no reserved IOVA is added.
 */
function attachReservedIova(idev: IommufdDevice, hwpt: HwptPaging): SyscallResult {
  if (idev.isNoiommu) return 0;
  const iopt = hwpt.ioas.iopt;
  for (const region of idev.dev.reservedRegions()) {
    if (region.type === 'direct-relaxable') continue;
    const rc = iopt.reserveIova(region.start, region.last, idev);
    if (rc) {
      iopt.removeReservedIova(idev);
      return rc;
    }
  }
  return 0;
}

/** iommufd_hw_pagetable_attach(): the first device of the igroup programs the hardware. */
export function iommufdHwPagetableAttach(hwpt: HwptPaging, idev: IommufdDevice): SyscallResult {
  const igroup = idev.igroup!;
  if (igroup.hwpt !== undefined && igroup.hwpt !== hwpt) return -Errno.EINVAL;
  // A domain of another driver is incompatible (the iommu core checks domain->owner): for a
  // no-IOMMU device this makes the auto-domain search create a no-IOMMU domain of its own.
  const wantOwner = idev.isNoiommu ? 'noiommu' : 'iommu';
  if (hwpt.domain!.owner !== wantOwner) return -Errno.EINVAL;
  let rc = attachReservedIova(idev, hwpt);
  if (rc) return rc;
  if (igroup.devices.length === 0) {
    rc = shouldFail('kmalloc') ? -Errno.ENOMEM : 0;
    // No-IOMMU: the iommu core is not called at all; there is no hardware to program.
    if (rc === 0 && igroup.group !== undefined) rc = igroup.group.setDomain(hwpt.domain);
    if (rc) {
      hwpt.ioas.iopt.removeReservedIova(idev);
      return rc;
    }
    igroup.hwpt = hwpt;
  }
  hwpt.users.inc();
  igroup.devices.push(idev);
  return 0;
}

/** iommufd_hw_pagetable_detach(): returns the HWPT, whose reference the caller drops. */
export function iommufdHwPagetableDetach(idev: IommufdDevice): HwptPaging {
  const igroup = idev.igroup!;
  const hwpt = igroup.hwpt!;
  igroup.devices.splice(igroup.devices.indexOf(idev), 1);
  if (igroup.devices.length === 0) {
    if (igroup.group !== undefined) igroup.group.setDomain(undefined);
    igroup.hwpt = undefined;
  }
  hwpt.ioas.iopt.removeReservedIova(idev);
  return hwpt;
}

type AttachFn = (idev: IommufdDevice, hwpt: HwptPaging) => HwptPaging | undefined | number;

/** iommufd_device_do_attach(). */
function doAttach(idev: IommufdDevice, hwpt: HwptPaging): HwptPaging | undefined | number {
  const rc = iommufdHwPagetableAttach(hwpt, idev);
  return rc ? rc : undefined;
}

/** iommufd_device_do_replace(): swap the igroup's HWPT; nothing changes on failure. */
function doReplace(idev: IommufdDevice, hwpt: HwptPaging): HwptPaging | undefined | number {
  const igroup = idev.igroup!;
  if (igroup.hwpt === undefined || !isAttached(idev)) return -Errno.EINVAL;
  if (hwpt === igroup.hwpt) return undefined;
  const old = igroup.hwpt;
  const wantOwner = idev.isNoiommu ? 'noiommu' : 'iommu';
  if (hwpt.domain!.owner !== wantOwner) return -Errno.EINVAL;

  // Reserved regions follow the devices when they move to another IOAS.
  const moving = old.ioas !== hwpt.ioas;
  if (moving && !idev.isNoiommu) {
    for (const cur of igroup.devices) {
      for (const region of cur.dev.reservedRegions()) {
        if (region.type === 'direct-relaxable') continue;
        const rc = hwpt.ioas.iopt.reserveIova(region.start, region.last, cur);
        if (rc) {
          for (const d of igroup.devices) hwpt.ioas.iopt.removeReservedIova(d);
          return rc;
        }
      }
    }
  }
  // iommufd_hwpt_replace_device() allocates the new attach handle first.
  let rc = shouldFail('kmalloc') ? -Errno.ENOMEM : 0;
  if (rc === 0 && igroup.group !== undefined) rc = igroup.group.setDomain(hwpt.domain);
  if (rc) {
    if (moving) for (const d of igroup.devices) hwpt.ioas.iopt.removeReservedIova(d);
    return rc;
  }
  if (moving) for (const d of igroup.devices) old.ioas.iopt.removeReservedIova(d);
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
 * attach means incompatible: try the next), or create one for this device.
 */
function autoGetDomain(
  idev: IommufdDevice,
  ioas: Ioas,
  ptId: Ref<number>,
  attach: AttachFn,
): HwptPaging | undefined | number {
  const ictx = idev.ictx;
  const immediateAttach = attach === doAttach;
  for (const hwpt of [...ioas.hwptList]) {
    if (!hwpt.autoDomain) continue;
    if (!ictx.lockObj(hwpt)) continue;
    const result = attach(idev, hwpt);
    ictx.putObject(hwpt);
    if (result === -Errno.EINVAL) continue;
    if (typeof result === 'number') return result;
    ptId.value = hwpt.id;
    return result;
  }
  const hwpt = iommufdHwptPagingAlloc(ictx, ioas, idev, 0, immediateAttach, false);
  if (typeof hwpt === 'number') return hwpt;
  let result: HwptPaging | undefined | number;
  if (!immediateAttach) {
    result = attach(idev, hwpt);
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
function changePt(idev: IommufdDevice, ptId: Ref<number>, attach: AttachFn): SyscallResult {
  const ictx = idev.ictx;
  const ptObj = ictx.getObject(ptId.value, 'any');
  if (ptObj === undefined) return -Errno.ENOENT;
  let result: HwptPaging | undefined | number;
  switch (ptObj.type) {
    case 'hwpt-paging':
      result = attach(idev, ptObj as HwptPaging);
      break;
    case 'ioas':
      result = autoGetDomain(idev, ptObj as Ioas, ptId, attach);
      break;
    default:
      result = -Errno.EINVAL;
  }
  ictx.putObject(ptObj);
  if (typeof result === 'number') return result;
  if (result !== undefined) iommufdHwPagetablePut(ictx, result);
  return 0;
}

/** iommufd_device_attach(). */
export function iommufdDeviceAttach(idev: IommufdDevice, ptId: Ref<number>): SyscallResult {
  const rc = changePt(idev, ptId, doAttach);
  if (rc) return rc;
  // Pairs with detach: a device with an attachment cannot be destroyed.
  idev.users.inc();
  return 0;
}

/** iommufd_device_replace(). */
export function iommufdDeviceReplace(idev: IommufdDevice, ptId: Ref<number>): SyscallResult {
  return changePt(idev, ptId, doReplace);
}

/** iommufd_device_detach(): back to blocked DMA. */
export function iommufdDeviceDetach(idev: IommufdDevice): void {
  const hwpt = iommufdHwPagetableDetach(idev);
  iommufdHwPagetablePut(idev.ictx, hwpt);
  idev.users.dec();
}

/**
 * IOMMU_GET_HW_INFO. The emulated IOMMUs and the no-IOMMU ops provide no vendor blob, so the
 * type is IOMMU_HW_INFO_TYPE_NONE with no data (see docs/decisions.md). Userspace's buffer past
 * the blob is cleared in place, however long userspace says it is: nothing of that size is
 * allocated, and a buffer that runs into unmapped memory is EFAULT.
 */
export function iommufdGetHwInfo(ucmd: Ucmd<typeof iommuHwInfo.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE) return -Errno.EOPNOTSUPP;
  if (cmd.__reserved0 || cmd.__reserved1 || cmd.__reserved2) return -Errno.EOPNOTSUPP;
  using held = ucmd.ictx.getObjectRef(cmd.dev_id, 'device');
  if (held === undefined) return -Errno.ENOENT;
  const idev = held.obj as IommufdDevice;
  // copy_to_user() of the driver's blob, min(data_len, 0) bytes: the injection point is
  // reached, but a failed copy of nothing leaves nothing uncopied and is no error.
  const blob = new Uint8Array(0);
  copyToUser(ucmd.task, cmd.data_uptr, blob);
  if (cmd.data_len > blob.length) {
    const tail = cmd.data_uptr + BigInt(blob.length);
    if (!clearUser(ucmd.task, tail, cmd.data_len - blob.length)) return -Errno.EFAULT;
  }
  // The length the kernel has, which may be more or less than the buffer.
  cmd.data_len = blob.length;
  cmd.out_data_type = IOMMU_HW_INFO_TYPE_NONE;
  cmd.out_capabilities = idev.iommuOps().capable('dirty-tracking') ? 1n : 0n;
  cmd.out_max_pasid_log2 = 0;
  return ucmd.respond();
}
