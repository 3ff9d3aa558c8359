/**
 * HWPT objects: HWPT_PAGING, a domain (I/O page table) that mirrors one IOAS, either allocated by
 * IOMMU_HWPT_ALLOC or created automatically when a device attaches to an IOAS (auto domain); and
 * HWPT_NESTED, a stage-1 domain described by driver data on top of a NEST_PARENT paging HWPT.
 * Mirrors drivers/iommu/iommufd/hw_pagetable.c, with SET_DIRTY_TRACKING, GET_DIRTY_BITMAP and
 * INVALIDATE (dirty tracking itself: iopt-dirty.ts).
 *
 * iommufd_hw_pagetable_attach/detach (device.c in the kernel) are here too: the HWPT allocation
 * attaches immediately for an auto domain, and device.ts calls into this module, never the other
 * way round.
 */
import { shouldFail } from '../fault/fault.ts';
import { mutant } from '../fault/mutant.ts';
import type { MaybeBlocked } from '../host/file.ts';
import type { LongWalk } from '../host/resched.ts';
import {
  deviceIommuCapable,
  IOMMU_NO_PASID,
  type IommuAnyDomain,
  type IommuDomain,
  type IommuNestedDomain,
  type IommuOps,
  type IommuUserData,
  type IommuUserDataArray,
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
  PAGE_SIZE,
  ULONG_MAX,
} from '../uapi/iommufd.ts';
import type { IommufdCtx } from './context.ts';
import { walkHolding } from './ctx-hold.ts';
import type { IommufdDevice } from './device.ts';
import type { IommufdFault } from './eventq.ts';
import { iommufdNoiommuOps } from './hwpt-noiommu.ts';
import type { Ioas } from './ioas.ts';
import { ioptReadAndClearDirty, ioptSetDirtyTracking } from './iopt-dirty.ts';
import { IommufdObject } from './object.ts';
import { hwptPasidCompat, pasidHwPagetableAttach, pasidHwPagetableDetach } from './pasid-attach.ts';
import type { Ucmd } from './ucmd.ts';
import { deviceIommuInstance, IommufdViommu } from './viommu.ts';

export type { IommuDomain } from '../iommu/iommu.ts';

const HWPT_PAGING_VALID_FLAGS =
  IOMMU_HWPT_ALLOC_NEST_PARENT |
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
  IOMMU_HWPT_FAULT_ID_VALID |
  IOMMU_HWPT_ALLOC_PASID;

/** struct iommufd_hw_pagetable: what paging and nested HWPTs share, and what devices attach to. */
export abstract class HwPagetable extends IommufdObject {
  abstract readonly type: 'hwpt-paging' | 'hwpt-nested';
  abstract domain: IommuAnyDomain | undefined;
  /** Allocated with IOMMU_HWPT_ALLOC_PASID: PASIDs may attach to it. */
  readonly pasidCompat: boolean;
  /**
   * hwpt->fault: the fault queue (held) its domain's I/O page faults go to, from
   * IOMMU_HWPT_FAULT_ID_VALID; the domain then has an iopf handler.
   */
  fault: IommufdFault | undefined;

  constructor(ictx: IommufdCtx, flags: number) {
    super(ictx);
    this.pasidCompat = (flags & IOMMU_HWPT_ALLOC_PASID) !== 0;
  }

  /** __iommufd_hwpt_destroy()'s part for both kinds: the domain goes, then the fault queue. */
  protected releaseDomainAndFault(): void {
    this.domain?.free();
    this.domain = undefined;
    this.fault?.users.dec();
    this.fault = undefined;
  }
}

/**
 * struct iommufd_attach_handle: one attachment of a device's group (at one PASID) to a HWPT,
 * made by the first device that attaches; I/O page faults are reported through it, and the
 * faults not answered when it goes are answered for userspace.
 */
export interface AttachHandle {
  readonly idev: IommufdDevice;
  readonly hwpt: HwPagetable;
}

export class HwptPaging extends HwPagetable {
  readonly type = 'hwpt-paging';
  readonly ioas: Ioas;
  domain: IommuDomain | undefined;
  /** Created by an attach to the IOAS: reused by later attaches, freed with its last device. */
  autoDomain = false;
  readonly nestParent: boolean;
  /** On ioas.hwptList and in the io_pagetable's domains. */
  onIoas = false;
  /**
   * hwpt_paging->enforce_cache_coherency: set once, at allocation for a device that can enforce
   * it (iommufd_hwpt_paging_enforce_cc); a HWPT made for another device never gains it.
   */
  enforceCacheCoherency = false;

  constructor(ictx: IommufdCtx, ioas: Ioas, flags: number) {
    super(ictx, flags);
    this.ioas = ioas;
    this.nestParent = (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
  }

  /** iommufd_hwpt_paging_destroy(). */
  destroy(): void {
    if (this.onIoas) {
      const list = this.ioas.hwptList;
      list.splice(list.indexOf(this), 1);
      // The domain leaves the IOAS now. What it maps goes, unpinned where it was an area's last
      // domain, a batch per step before the call returns (area-unfill.ts); then it is freed.
      const areas = this.ioas.iopt.removeDomain(this.domain!);
      this.ictx.teardowns.push({ domain: this.domain!, areas, done: 0 });
      this.domain = undefined;
      this.onIoas = false;
    }
    this.releaseDomainAndFault();
    this.ioas.users.dec();
  }

  describe(): string {
    return `${super.describe()} on ioas ${this.ioas.id}${this.autoDomain ? ' (auto)' : ''}`;
  }
}

/**
 * struct iommufd_hwpt_nested: a nested domain on `parent`, which it holds (its devices' reserved
 * IOVA lives in the parent's IOAS).
 */
export class HwptNested extends HwPagetable {
  readonly type = 'hwpt-nested';
  readonly parent: HwptPaging;
  /** The vIOMMU it was allocated through, which it holds instead of the parent. */
  readonly viommu: IommufdViommu | undefined;
  domain: IommuNestedDomain | undefined;

  constructor(
    ictx: IommufdCtx,
    parent: HwptPaging,
    flags: number,
    viommu: IommufdViommu | undefined,
  ) {
    super(ictx, flags);
    this.parent = parent;
    this.viommu = viommu;
  }

  /** iommufd_hwpt_nested_destroy(). */
  destroy(): void {
    this.releaseDomainAndFault();
    if (this.viommu !== undefined) this.viommu.users.dec();
    else this.parent.users.dec();
  }

  describe(): string {
    return `${super.describe()} on hwpt ${this.parent.id}`;
  }
}

/** find_hwpt_paging(): the paging HWPT whose IOAS a HWPT's devices reserve IOVA in. */
export function findHwptPaging(hwpt: HwPagetable): HwptPaging {
  return hwpt instanceof HwptNested ? hwpt.parent : (hwpt as HwptPaging);
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
 * A walk: the domain is filled with the IOAS's areas a batch per step (io-pagetable.ts).
 */
export function* iommufdHwptPagingAllocWalk(
  ictx: IommufdCtx,
  ioas: Ioas,
  idev: IommufdDevice,
  flags: number,
  immediateAttach: boolean,
  userData: IommuUserData | undefined,
  pasid = IOMMU_NO_PASID,
): LongWalk<HwptPaging | number> {
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
  const domain = ops.domainAllocPaging(idev.dev, flags & ~IOMMU_HWPT_FAULT_ID_VALID, userData);
  if (typeof domain === 'number') {
    // mutant: hwpt-ioas-ref (a plain abort skips destroy(), which drops the IOAS reference)
    if (mutant('hwpt-ioas-ref')) ictx.abort(hwpt);
    else ictx.abortAndDestroy(hwpt);
    return domain;
  }
  hwpt.domain = domain;
  // Before the domain joins the IOAS, as the coherency mode may decide how it maps. The
  // emulated drivers' domains enforce it whenever the device's IOMMU reports it can.
  if (idev.enforceCacheCoherency) hwpt.enforceCacheCoherency = true;

  if (immediateAttach) {
    rc = iommufdHwPagetableAttach(hwpt, idev, pasid);
    if (rc) {
      ictx.abortAndDestroy(hwpt);
      return rc;
    }
  }
  rc = yield* ioas.iopt.addDomainWalk(domain);
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
function attachReservedIova(idev: IommufdDevice, hwpt: HwPagetable): SyscallResult {
  if (idev.isNoiommu) return 0;
  const iopt = findHwptPaging(hwpt).ioas.iopt;
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
function hwptAttachDevice(hwpt: HwPagetable, idev: IommufdDevice): SyscallResult {
  if (!hwptPasidCompat(hwpt, idev.igroup!, IOMMU_NO_PASID)) return -Errno.EINVAL;
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const group = idev.igroup!.group;
  if (group === undefined) return 0;
  const rc = iommuAttachGroupHandle(hwpt.domain!, group);
  if (rc) return rc;
  idev.igroup!.handle = { idev, hwpt };
  return 0;
}

/**
 * iommufd_hw_pagetable_attach(): the first device of the igroup programs the hardware. A PASID
 * other than IOMMU_NO_PASID attaches that PASID only (pasid-attach.ts).
 */
export function iommufdHwPagetableAttach(
  hwpt: HwPagetable,
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
      findHwptPaging(hwpt).ioas.iopt.removeReservedIova(idev);
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
): HwPagetable | undefined {
  if (pasid !== IOMMU_NO_PASID) return pasidHwPagetableDetach(idev, pasid);
  const igroup = idev.igroup!;
  const hwpt = igroup.hwpt!;
  igroup.devices.splice(igroup.devices.indexOf(idev), 1);
  if (igroup.devices.length === 0) {
    if (igroup.group !== undefined) iommuDetachGroupHandle(hwpt.domain!, igroup.group);
    // iommufd_auto_response_faults() of the handle that goes.
    if (igroup.handle !== undefined) hwpt.fault?.autoResponse(igroup.handle);
    igroup.handle = undefined;
    igroup.hwpt = undefined;
  }
  findHwptPaging(hwpt).ioas.iopt.removeReservedIova(idev);
  return hwpt;
}

/**
 * iommufd_hw_pagetable_put(): drop a device's reference; an auto domain goes away with its last
 * user (if nothing else holds it, the removal simply fails with EBUSY and it stays).
 */
export function iommufdHwPagetablePut(ictx: IommufdCtx, hwpt: HwPagetable): void {
  if (hwpt instanceof HwptPaging && hwpt.autoDomain) {
    ictx.removeObject(hwpt.id, hwpt);
    return;
  }
  hwpt.users.dec();
}

/**
 * iommufd_hwpt_nested_alloc(): a nested HWPT on `parent` for `idev`'s driver. EOPNOTSUPP for
 * flags other than FAULT_ID_VALID and PASID, no driver data, or a driver that cannot nest;
 * EINVAL for a parent that is an auto domain, not NEST_PARENT, or of another driver.
 */
function iommufdHwptNestedAlloc(
  ictx: IommufdCtx,
  parent: HwptPaging,
  idev: IommufdDevice,
  flags: number,
  userData: IommuUserData,
): HwptNested | number {
  const ops = getIommuOps(idev);
  const nestedFlags = IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;
  if (flags & ~nestedFlags || !userData.len || ops.domainAllocNested === undefined)
    return -Errno.EOPNOTSUPP;
  if (parent.autoDomain || !parent.nestParent || parent.domain!.owner !== ops) return -Errno.EINVAL;
  const hwpt = ictx.allocObject(new HwptNested(ictx, parent, flags, undefined));
  if (typeof hwpt === 'number') return hwpt;
  // Pairs with the release in destroy().
  parent.users.inc();
  const domain = ops.domainAllocNested(
    idev.dev,
    parent.domain!,
    flags & ~IOMMU_HWPT_FAULT_ID_VALID,
    userData,
  );
  if (typeof domain === 'number') {
    ictx.abortAndDestroy(hwpt);
    return domain;
  }
  hwpt.domain = domain;
  return hwpt;
}

/**
 * iommufd_viommu_alloc_hwpt_nested(): a nested HWPT of `viommu`'s driver on its parent.
 * EOPNOTSUPP for flags other than FAULT_ID_VALID and PASID, no data, or a vIOMMU that cannot.
 */
function viommuAllocHwptNested(
  viommu: IommufdViommu,
  flags: number,
  userData: IommuUserData,
): HwptNested | number {
  const ictx = viommu.ictx;
  if (flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID)) return -Errno.EOPNOTSUPP;
  if (!userData.len) return -Errno.EOPNOTSUPP;
  const alloc = viommu.ops?.allocDomainNested;
  if (alloc === undefined) return -Errno.EOPNOTSUPP;
  const hwpt = ictx.allocObject(new HwptNested(ictx, viommu.hwpt, flags, viommu));
  if (typeof hwpt === 'number') return hwpt;
  viommu.users.inc();
  const domain = alloc(viommu, flags & ~IOMMU_HWPT_FAULT_ID_VALID, userData);
  if (typeof domain === 'number') {
    ictx.abortAndDestroy(hwpt);
    return domain;
  }
  hwpt.domain = domain;
  return hwpt;
}

/**
 * IOMMU_HWPT_ALLOC (iommufd_hwpt_alloc): pt_id names an IOAS (a paging HWPT), a paging HWPT (a
 * nested one on it) or a vIOMMU (a nested one of the vIOMMU, for a device behind its IOMMU). __reserved2 is not checked (decision 160). The device only picks the
 * driver: the new HWPT is not attached to it.
 */
export function iommufdHwptAlloc(ucmd: Ucmd<typeof iommuHwptAlloc.fields>): MaybeBlocked {
  return walkHolding(ucmd.ictx, ucmd.task, hwptAllocWalk(ucmd));
}

/** iommufd_hwpt_alloc() itself: a paging HWPT's domain is filled a batch per step. */
function* hwptAllocWalk(ucmd: Ucmd<typeof iommuHwptAlloc.fields>): LongWalk<SyscallResult> {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.__reserved) return -Errno.EOPNOTSUPP;
  if (
    (cmd.data_type === IOMMU_HWPT_DATA_NONE && cmd.data_len) ||
    (cmd.data_type !== IOMMU_HWPT_DATA_NONE && !cmd.data_len)
  ) {
    return -Errno.EINVAL;
  }
  const userData: IommuUserData = {
    type: cmd.data_type,
    uptr: cmd.data_uptr,
    len: cmd.data_len,
    task: ucmd.task,
  };
  using heldDev = ictx.getObjectRef(cmd.dev_id, 'device');
  if (heldDev === undefined) return -Errno.ENOENT;
  const idev = heldDev.obj as IommufdDevice;
  // A missing pt_id is EINVAL here, not ENOENT.
  using heldPt = ictx.getObjectRef(cmd.pt_id, 'any');
  if (heldPt === undefined) return -Errno.EINVAL;
  const ptObj = heldPt.obj;
  let hwpt: HwPagetable | number;
  if (ptObj.type === 'ioas') {
    const data = userData.len ? userData : undefined;
    hwpt = yield* iommufdHwptPagingAllocWalk(ictx, ptObj as Ioas, idev, cmd.flags, false, data);
  } else if (ptObj.type === 'hwpt-paging') {
    hwpt = iommufdHwptNestedAlloc(ictx, ptObj as HwptPaging, idev, cmd.flags, userData);
  } else if (ptObj.type === 'viommu') {
    const viommu = ptObj as IommufdViommu;
    const instance = deviceIommuInstance(idev);
    if (instance === undefined || instance !== viommu.iommuInstance) return -Errno.EINVAL;
    hwpt = viommuAllocHwptNested(viommu, cmd.flags, userData);
  } else {
    return -Errno.EINVAL;
  }
  if (typeof hwpt === 'number') return hwpt;
  if (cmd.flags & IOMMU_HWPT_FAULT_ID_VALID) {
    using heldFault = ictx.getObjectRef(cmd.fault_id, 'fault');
    if (heldFault === undefined) {
      ictx.abortAndDestroy(hwpt);
      return -Errno.ENOENT;
    }
    // The HWPT holds the queue; its domain's faults go there (iommufd_fault_iopf_handler).
    hwpt.fault = heldFault.obj as IommufdFault;
    hwpt.fault.users.inc();
  }
  cmd.out_hwpt_id = hwpt.id;
  const rc = ucmd.respond();
  if (rc) {
    ictx.abortAndDestroy(hwpt);
    return rc;
  }
  ictx.finalize(hwpt);
  return 0;
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

/** An arbitrary bound on entry_num, far above any real batch (the kernel's). */
const INVALIDATE_ENTRY_NUM_MAX = 1 << 19;

/**
 * IOMMU_HWPT_INVALIDATE (iommufd_hwpt_invalidate): hands an array of cache invalidation records
 * to a nested HWPT's domain (or a vIOMMU's driver). entry_num is written back on every path,
 * with the number of records handled (0 on early errors); a failed write-back makes the call
 * EFAULT. Any other kind of object is EINVAL.
 */
export function iommufdHwptInvalidate(
  ucmd: Ucmd<typeof iommuHwptInvalidate.fields>,
): SyscallResult {
  const cmd = ucmd.cmd;
  const array: IommuUserDataArray = {
    type: cmd.data_type,
    uptr: cmd.data_uptr,
    entryLen: cmd.entry_len,
    entryNum: cmd.entry_num,
    task: ucmd.task,
  };
  const rc = hwptInvalidate(ucmd, array);
  cmd.entry_num = rc.done;
  if (ucmd.respond()) return -Errno.EFAULT;
  return rc.rc;
}

function hwptInvalidate(
  ucmd: Ucmd<typeof iommuHwptInvalidate.fields>,
  array: IommuUserDataArray,
): { rc: SyscallResult; done: number } {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) return { rc: -Errno.EOPNOTSUPP, done: 0 };
  // Bounded so that one call cannot keep the CPU for long.
  if (
    cmd.entry_num &&
    (!cmd.data_uptr ||
      !cmd.entry_len ||
      BigInt(cmd.entry_len) > PAGE_SIZE ||
      cmd.entry_num > INVALIDATE_ENTRY_NUM_MAX)
  )
    return { rc: -Errno.EINVAL, done: 0 };
  using held = ucmd.ictx.getObjectRef(cmd.hwpt_id, 'any');
  if (held === undefined) return { rc: -Errno.ENOENT, done: 0 };
  const obj = held.obj;
  let rc: SyscallResult;
  if (obj instanceof HwptNested) {
    const invalidate = obj.domain!.cacheInvalidateUser;
    if (invalidate === undefined) return { rc: -Errno.EOPNOTSUPP, done: 0 };
    rc = invalidate.call(obj.domain, array);
  } else if (obj instanceof IommufdViommu) {
    const invalidate = obj.ops?.cacheInvalidate;
    if (invalidate === undefined) return { rc: -Errno.EOPNOTSUPP, done: 0 };
    rc = invalidate(obj, array);
  } else {
    return { rc: -Errno.EINVAL, done: 0 };
  }
  return { rc, done: array.entryNum };
}
