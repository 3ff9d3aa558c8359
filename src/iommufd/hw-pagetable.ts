/**
 * HWPT_PAGING objects: a domain (I/O page table) that mirrors one IOAS, either allocated by
 * IOMMU_HWPT_ALLOC or created automatically when a device attaches to an IOAS (auto domain).
 * Mirrors drivers/iommu/iommufd/hw_pagetable.c, with SET_DIRTY_TRACKING, GET_DIRTY_BITMAP and
 * INVALIDATE (dirty tracking itself: iopt-dirty.ts). Nested HWPTs are on the roadmap.
 *
 * iommufd_hw_pagetable_attach/detach (device.c in the kernel) are here too: the HWPT allocation
 * attaches immediately for an auto domain, and device.ts calls into this module, never the other
 * way round.
 */
import { shouldFail } from '../fault/fault.ts';
import { mutant } from '../fault/mutant.ts';
import {
  deviceIommuCapable,
  IOMMU_NO_PASID,
  type IommuDomain,
  type IommuOps,
  iommuAttachGroupHandle,
  iommuDetachGroupHandle,
  iommuGetResvRegions,
} from '../iommu/iommu.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  type iommuHwptAlloc,
  type iommuHwptGetDirtyBitmap,
  type iommuHwptInvalidate,
  type iommuHwptSetDirtyTracking,
  ULONG_MAX,
} from '../uapi/iommufd.ts';
import type { IommufdDevice } from './device.ts';
import { iommufdNoiommuOps } from './hwpt-noiommu.ts';
import type { Ioas } from './ioas.ts';
import { ioptReadAndClearDirty, ioptSetDirtyTracking } from './iopt-dirty.ts';
import type { IommufdCtx, Ucmd } from './main.ts';
import { IommufdObject } from './object.ts';
import { hwptPasidCompat, pasidHwPagetableAttach, pasidHwPagetableDetach } from './pasid-attach.ts';

export type { IommuDomain } from '../iommu/iommu.ts';

const HWPT_PAGING_VALID_FLAGS =
  IOMMU_HWPT_ALLOC_NEST_PARENT |
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
  IOMMU_HWPT_FAULT_ID_VALID |
  IOMMU_HWPT_ALLOC_PASID;

export class HwptPaging extends IommufdObject {
  readonly type = 'hwpt-paging';
  readonly ioas: Ioas;
  domain: IommuDomain | undefined;
  /** Created by an attach to the IOAS: reused by later attaches, freed with its last device. */
  autoDomain = false;
  readonly nestParent: boolean;
  readonly pasidCompat: boolean;
  /** On ioas.hwptList and in the io_pagetable's domains. */
  onIoas = false;

  constructor(ictx: IommufdCtx, ioas: Ioas, flags: number) {
    super(ictx);
    this.ioas = ioas;
    this.nestParent = (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
    this.pasidCompat = (flags & IOMMU_HWPT_ALLOC_PASID) !== 0;
  }

  /** iommufd_hwpt_paging_destroy(). */
  destroy(): void {
    if (this.onIoas) {
      const list = this.ioas.hwptList;
      list.splice(list.indexOf(this), 1);
      this.ioas.iopt.removeDomain(this.domain!);
      this.onIoas = false;
    }
    this.domain?.free();
    this.domain = undefined;
    this.ioas.users.dec();
  }

  describe(): string {
    return `${super.describe()} on ioas ${this.ioas.id}${this.autoDomain ? ' (auto)' : ''}`;
  }
}

/**
 * get_iommu_ops(): the device's IOMMU driver, or the no-IOMMU software one for a device whose
 * igroup has no iommu_group.
 */
function getIommuOps(idev: IommufdDevice): IommuOps {
  if (idev.igroup?.group === undefined || idev.dev.iommu === undefined) return iommufdNoiommuOps;
  return idev.dev.iommu.ops;
}

/**
 * iommufd_hwpt_paging_alloc(): a new (unpublished) paging HWPT for `idev` on `ioas`. With
 * `immediateAttach` the device is attached before the domain joins the IOAS (the auto-domain path).
 */
export function iommufdHwptPagingAlloc(
  ictx: IommufdCtx,
  ioas: Ioas,
  idev: IommufdDevice,
  flags: number,
  immediateAttach: boolean,
  hasUserData: boolean,
  pasid = IOMMU_NO_PASID,
): HwptPaging | number {
  const ops = getIommuOps(idev);
  if (flags & ~HWPT_PAGING_VALID_FLAGS) return -Errno.EOPNOTSUPP;
  if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !deviceIommuCapable(idev.dev, 'dirty-tracking'))
    return -Errno.EOPNOTSUPP;
  if (flags & IOMMU_HWPT_FAULT_ID_VALID && flags & IOMMU_HWPT_ALLOC_NEST_PARENT)
    return -Errno.EOPNOTSUPP;

  const hwpt = ictx.allocObject(new HwptPaging(ictx, ioas, flags));
  if (typeof hwpt === 'number') return hwpt;
  // Pairs with the release in destroy().
  ioas.users.inc();

  let rc: SyscallResult;
  const domain = ops.domainAllocPaging(idev.dev, flags & ~IOMMU_HWPT_FAULT_ID_VALID, hasUserData);
  if (typeof domain === 'number') {
    // mutant: hwpt-ioas-ref (a plain abort skips destroy(), which drops the IOAS reference)
    if (mutant('hwpt-ioas-ref')) ictx.abort(hwpt);
    else ictx.abortAndDestroy(hwpt);
    return domain;
  }
  hwpt.domain = domain;

  if (immediateAttach) {
    rc = iommufdHwPagetableAttach(hwpt, idev, pasid);
    if (rc) {
      ictx.abortAndDestroy(hwpt);
      return rc;
    }
  }
  rc = ioas.iopt.addDomain(domain);
  if (rc) {
    if (immediateAttach) iommufdHwPagetableDetach(idev, pasid);
    ictx.abortAndDestroy(hwpt);
    return rc;
  }
  ioas.hwptList.push(hwpt);
  hwpt.onIoas = true;
  return hwpt;
}

/**
 * iommufd_device_attach_reserved_iova(): the device's reserved regions become reserved IOVA in
 * the HWPT's IOAS. A no-IOMMU device has none: no reserved IOVA is added.
 */
function attachReservedIova(idev: IommufdDevice, hwpt: HwptPaging): SyscallResult {
  if (idev.isNoiommu) return 0;
  const iopt = hwpt.ioas.iopt;
  for (const region of iommuGetResvRegions(idev.dev)) {
    if (region.type === 'direct-relaxable') continue;
    const rc = iopt.reserveIova(region.start, region.last, idev);
    if (rc) {
      iopt.removeReservedIova(idev);
      return rc;
    }
  }
  return 0;
}

/**
 * iommufd_hwpt_attach_device(): the attach handle, then the iommu core, which applies the
 * domain-owner rule. For a no-IOMMU device the core is not called: no hardware to program.
 */
function hwptAttachDevice(hwpt: HwptPaging, idev: IommufdDevice): SyscallResult {
  if (!hwptPasidCompat(hwpt, idev.igroup!, IOMMU_NO_PASID)) return -Errno.EINVAL;
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const group = idev.igroup!.group;
  if (group === undefined) return 0;
  return iommuAttachGroupHandle(hwpt.domain!, group);
}

/**
 * iommufd_hw_pagetable_attach(): the first device of the igroup programs the hardware. A PASID
 * other than IOMMU_NO_PASID attaches that PASID only (pasid-attach.ts).
 */
export function iommufdHwPagetableAttach(
  hwpt: HwptPaging,
  idev: IommufdDevice,
  pasid = IOMMU_NO_PASID,
): SyscallResult {
  if (pasid !== IOMMU_NO_PASID) return pasidHwPagetableAttach(hwpt, idev, pasid);
  const igroup = idev.igroup!;
  if (igroup.hwpt !== undefined && igroup.hwpt !== hwpt) return -Errno.EINVAL;
  // A no-IOMMU device never reaches the iommu core, so nothing applies the domain-owner rule to
  // it: it joins any HWPT, an IOMMU's too (docs/decisions.md 13).
  let rc = attachReservedIova(idev, hwpt);
  if (rc) return rc;
  if (igroup.devices.length === 0) {
    rc = hwptAttachDevice(hwpt, idev);
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

/**
 * iommufd_hw_pagetable_detach(): returns the HWPT, whose reference the caller drops (undefined:
 * nothing was attached at that PASID).
 */
export function iommufdHwPagetableDetach(
  idev: IommufdDevice,
  pasid = IOMMU_NO_PASID,
): HwptPaging | undefined {
  if (pasid !== IOMMU_NO_PASID) return pasidHwPagetableDetach(idev, pasid);
  const igroup = idev.igroup!;
  const hwpt = igroup.hwpt!;
  igroup.devices.splice(igroup.devices.indexOf(idev), 1);
  if (igroup.devices.length === 0) {
    if (igroup.group !== undefined) iommuDetachGroupHandle(hwpt.domain!, igroup.group);
    igroup.hwpt = undefined;
  }
  hwpt.ioas.iopt.removeReservedIova(idev);
  return hwpt;
}

/**
 * iommufd_hw_pagetable_put(): drop a device's reference; an auto domain goes away with its last
 * user (if nothing else holds it, the removal simply fails with EBUSY and it stays).
 */
export function iommufdHwPagetablePut(ictx: IommufdCtx, hwpt: HwptPaging): void {
  if (hwpt.autoDomain) {
    ictx.removeObject(hwpt.id, hwpt);
    return;
  }
  hwpt.users.dec();
}

/** IOMMU_HWPT_ALLOC (paging HWPTs only for now: nested ones are on the roadmap). */
export function iommufdHwptAlloc(ucmd: Ucmd<typeof iommuHwptAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.__reserved || cmd.__reserved2) return -Errno.EOPNOTSUPP;
  if (
    (cmd.data_type === IOMMU_HWPT_DATA_NONE && cmd.data_len) ||
    (cmd.data_type !== IOMMU_HWPT_DATA_NONE && !cmd.data_len)
  ) {
    return -Errno.EINVAL;
  }
  const idev = ictx.getObject(cmd.dev_id, 'device') as IommufdDevice | undefined;
  if (idev === undefined) return -Errno.ENOENT;
  try {
    // A missing pt_id is EINVAL here, not ENOENT.
    const ptObj = ictx.getObject(cmd.pt_id, 'any');
    if (ptObj === undefined) return -Errno.EINVAL;
    try {
      if (ptObj.type === 'hwpt-paging') {
        // A nested HWPT on a paging parent: no driver here supports nesting yet.
        return -Errno.EOPNOTSUPP;
      }
      if (ptObj.type !== 'ioas') return -Errno.EINVAL;
      const hwpt = iommufdHwptPagingAlloc(
        ictx,
        ptObj as Ioas,
        idev,
        cmd.flags,
        false,
        cmd.data_len !== 0,
      );
      if (typeof hwpt === 'number') return hwpt;
      if (cmd.flags & IOMMU_HWPT_FAULT_ID_VALID) {
        // Fault queues are on the roadmap: no FAULT object can exist, so the id is not found.
        ictx.abortAndDestroy(hwpt);
        return -Errno.ENOENT;
      }
      cmd.out_hwpt_id = hwpt.id;
      const rc = ucmd.respond();
      if (rc) {
        ictx.abortAndDestroy(hwpt);
        return rc;
      }
      ictx.finalize(hwpt);
      return 0;
    } finally {
      ictx.putObject(ptObj);
    }
  } finally {
    ictx.putObject(idev);
  }
}

/** iommufd_get_hwpt_paging(): only a paging HWPT will do; anything else is ENOENT. */
function getHwptPaging(ictx: IommufdCtx, id: number): HwptPaging | undefined {
  return ictx.getObject(id, 'hwpt-paging') as HwptPaging | undefined;
}

/**
 * IOMMU_HWPT_SET_DIRTY_TRACKING (iommufd_hwpt_set_dirty_tracking, iopt_set_dirty_tracking):
 * EOPNOTSUPP for a domain allocated without IOMMU_HWPT_ALLOC_DIRTY_TRACKING (no dirty_ops).
 */
export function iommufdHwptSetDirtyTracking(
  ucmd: Ucmd<typeof iommuHwptSetDirtyTracking.fields>,
): SyscallResult {
  const cmd = ucmd.cmd;
  // __reserved is not checked.
  if (cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE) return -Errno.EOPNOTSUPP;
  const hwpt = getHwptPaging(ucmd.ictx, cmd.hwpt_id);
  if (hwpt === undefined) return -Errno.ENOENT;
  try {
    const enable = (cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE) !== 0;
    return ioptSetDirtyTracking(hwpt.ioas.iopt, hwpt.domain!, enable);
  } finally {
    ucmd.ictx.putObject(hwpt);
  }
}

/**
 * iommufd_check_iova_range(): the bitmap range in u64 arithmetic, against the IOAS alignment and
 * then the bitmap's page size. `last + 1` wraps to 0 for a range that ends at 2^64 - 1.
 */
function checkDirtyIovaRange(
  iovaAlignment: bigint,
  cmd: { iova: bigint; length: bigint; page_size: bigint },
): SyscallResult {
  const U64 = (1n << 64n) - 1n;
  const last = cmd.iova + ((cmd.length - 1n) & U64);
  if (last > U64) return -Errno.EOVERFLOW;
  if (cmd.iova > ULONG_MAX || last > ULONG_MAX) return -Errno.EOVERFLOW;
  const end = (last + 1n) & U64;
  if (cmd.iova & (iovaAlignment - 1n) || end & (iovaAlignment - 1n)) return -Errno.EINVAL;
  if (cmd.page_size === 0n) return -Errno.EINVAL;
  const mask = (cmd.page_size - 1n) & U64;
  if (cmd.iova & mask || end & mask) return -Errno.EINVAL;
  return 0;
}

/**
 * IOMMU_HWPT_GET_DIRTY_BITMAP (iommufd_hwpt_get_dirty_bitmap, iopt_read_and_clear_dirty_data):
 * the range is checked before the domain's dirty_ops (EOPNOTSUPP without them).
 */
export function iommufdHwptGetDirtyBitmap(
  ucmd: Ucmd<typeof iommuHwptGetDirtyBitmap.fields>,
): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR || cmd.__reserved) return -Errno.EOPNOTSUPP;
  const hwpt = getHwptPaging(ucmd.ictx, cmd.hwpt_id);
  if (hwpt === undefined) return -Errno.ENOENT;
  try {
    const rc = checkDirtyIovaRange(hwpt.ioas.iopt.iovaAlignment, cmd);
    if (rc) return rc;
    const noClear = (cmd.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) !== 0;
    return ioptReadAndClearDirty(ucmd.task, hwpt.ioas.iopt, hwpt.domain!, noClear, {
      iova: cmd.iova,
      length: cmd.length,
      pageSize: cmd.page_size,
      data: cmd.data,
    });
  } finally {
    ucmd.ictx.putObject(hwpt);
  }
}

/**
 * IOMMU_HWPT_INVALIDATE (iommufd_hwpt_invalidate): hands an array of cache invalidation records
 * to a nested HWPT's or a vIOMMU's driver. entry_num is written back on every path, with the
 * number of records handled (0 on early errors); a failed write-back makes the call EFAULT.
 * Only HWPT_NESTED and VIOMMU ids are accepted, and no emulated driver makes either yet, so a
 * found object (a paging HWPT, an IOAS, a device) is EINVAL.
 */
export function iommufdHwptInvalidate(
  ucmd: Ucmd<typeof iommuHwptInvalidate.fields>,
): SyscallResult {
  const cmd = ucmd.cmd;
  const rc = hwptInvalidate(ucmd);
  cmd.entry_num = 0;
  if (ucmd.respond()) return -Errno.EFAULT;
  return rc;
}

function hwptInvalidate(ucmd: Ucmd<typeof iommuHwptInvalidate.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) return -Errno.EOPNOTSUPP;
  if (cmd.entry_num && (!cmd.data_uptr || !cmd.entry_len)) return -Errno.EINVAL;
  const obj = ucmd.ictx.getObject(cmd.hwpt_id, 'any');
  if (obj === undefined) return -Errno.ENOENT;
  try {
    if (obj.type === 'hwpt-nested' || obj.type === 'viommu')
      throw new Error(`${obj.type} objects cannot exist yet`);
    return -Errno.EINVAL;
  } finally {
    ucmd.ictx.putObject(obj);
  }
}
