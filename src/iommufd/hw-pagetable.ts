/**
 * HWPT_PAGING objects: a domain (I/O page table) that mirrors one IOAS, either allocated by
 * IOMMU_HWPT_ALLOC or created automatically when a device attaches to an IOAS (auto domain).
 * Mirrors drivers/iommu/iommufd/hw_pagetable.c. Nested HWPTs are on the roadmap.
 */
import { mutant } from '../fault/mutant.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_FAULT_ID_VALID,
  type iommuHwptAlloc,
} from '../uapi/iommufd.ts';
import type { IommufdDevice } from './device.ts';
import { iommufdHwPagetableAttach, iommufdHwPagetableDetach } from './device.ts';
import type { Ioas } from './ioas.ts';
import type { IommufdCtx, Ucmd } from './main.ts';
import { IommufdObject } from './object.ts';
import type { IoptDomain } from './pages.ts';

/** An iommu_domain as iommufd holds it. The platform supplies real and no-IOMMU ones. */
export interface IommuDomain extends IoptDomain {
  /** domain->owner: which iommu_ops made it; GET_PA only trusts no-IOMMU domains. */
  readonly owner: 'iommu' | 'noiommu';
  free(): void;
}

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
    this.ioas.users--;
  }

  describe(): string {
    return `${super.describe()} on ioas ${this.ioas.id}${this.autoDomain ? ' (auto)' : ''}`;
  }
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
): HwptPaging | number {
  const ops = idev.iommuOps();
  if (flags & ~HWPT_PAGING_VALID_FLAGS) return -Errno.EOPNOTSUPP;
  if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !ops.capable('dirty-tracking'))
    return -Errno.EOPNOTSUPP;
  if (flags & IOMMU_HWPT_FAULT_ID_VALID && flags & IOMMU_HWPT_ALLOC_NEST_PARENT)
    return -Errno.EOPNOTSUPP;

  const hwpt = ictx.allocObject(new HwptPaging(ictx, ioas, flags));
  if (typeof hwpt === 'number') return hwpt;
  // Pairs with the release in destroy().
  ioas.users++;

  let rc: SyscallResult;
  const domain = ops.domainAllocPaging(flags & ~IOMMU_HWPT_FAULT_ID_VALID, hasUserData);
  if (typeof domain === 'number') {
    // mutant: hwpt-ioas-ref (a plain abort skips destroy(), which drops the IOAS reference)
    if (mutant('hwpt-ioas-ref')) ictx.abort(hwpt);
    else ictx.abortAndDestroy(hwpt);
    return domain;
  }
  hwpt.domain = domain;

  if (immediateAttach) {
    rc = iommufdHwPagetableAttach(hwpt, idev);
    if (rc) {
      ictx.abortAndDestroy(hwpt);
      return rc;
    }
  }
  rc = ioas.iopt.addDomain(domain);
  if (rc) {
    if (immediateAttach) iommufdHwPagetableDetach(idev);
    ictx.abortAndDestroy(hwpt);
    return rc;
  }
  ioas.hwptList.push(hwpt);
  hwpt.onIoas = true;
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
  hwpt.users--;
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
