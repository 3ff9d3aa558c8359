/**
 * HW queues of a vIOMMU (the HW queue half of drivers/iommu/iommufd/viommu.c): IOMMU_HW_QUEUE_ALLOC
 * and the HW_QUEUE object. A HW queue is guest memory (a range of the vIOMMU's nesting parent's
 * IOAS) that the IOMMU reads by physical address, so iommufd pins it through an internal access
 * (iommufd_hw_queue_alloc_phys): the pages must be physically contiguous, and while the queue
 * exists the areas under it are locked (IOMMU_IOAS_UNMAP of them is EBUSY). What a queue is to
 * the IOMMU is its vIOMMU driver's (`ViommuOps.hwQueueInitPhys`; only the mock driver has one,
 * selftest-viommu.ts).
 */
import { shouldFail } from '../fault/fault.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_HW_QUEUE_TYPE_DEFAULT,
  type iommuHwQueueAlloc,
  PAGE_SIZE,
  ULONG_MAX,
} from '../uapi/iommufd.ts';
import {
  accessAttachInternal,
  accessCreateInternal,
  accessDestroy,
  accessPinPages,
  accessUnpinPages,
  type IommufdAccess,
} from './access.ts';
import { IommufdObject } from './object.ts';
import type { Ucmd } from './ucmd.ts';
import type { IommufdViommu } from './viommu.ts';

/** kvmalloc() refuses a size above INT_MAX outright. */
const KVMALLOC_MAX = 0x7fffffffn;

/** struct iommufd_hw_queue. Its fields are set as creation goes, so destroy can undo a part. */
export class IommufdHwQueue extends IommufdObject {
  readonly type = 'hw-queue';
  /** Held once the queue's memory is pinned. */
  viommu: IommufdViommu | undefined;
  /** The internal access pinning [page of baseAddr, page after baseAddr + length). */
  access: IommufdAccess | undefined;
  queueType = 0;
  /** The queue's IOVA in the nesting parent, and its length in bytes, as userspace gave them. */
  baseAddr = 0n;
  length = 0n;
  /** hw_queue->destroy: set by the driver's init once the queue is the driver's. */
  driverDestroy: ((hwQueue: IommufdHwQueue) => void) | undefined;
  /** The driver's own state (the mock driver's index and the queue it depends on). */
  driverData: unknown;

  /** iommufd_hw_queue_destroy(): the driver's part, then the pins, then the vIOMMU. */
  destroy(): void {
    this.driverDestroy?.(this);
    this.driverDestroy = undefined;
    if (this.access !== undefined) {
      const { aligned, length } = pinnedRange(this.baseAddr, this.length);
      accessUnpinPages(this.access, aligned, length);
      accessDestroy(this.access);
      this.access = undefined;
    }
    this.viommu?.users.dec();
    this.viommu = undefined;
  }

  describe(): string {
    const on = this.viommu === undefined ? '' : ` of viommu ${this.viommu.id}`;
    return `${super.describe()}${on} at ${this.baseAddr.toString(16)}+${this.length}`;
  }
}

/** The whole pages a queue at `iova` of `length` bytes covers (lengths already checked). */
function pinnedRange(iova: bigint, length: bigint): { aligned: bigint; length: bigint } {
  const aligned = iova - (iova % PAGE_SIZE);
  const npages = (iova - aligned + length + PAGE_SIZE - 1n) / PAGE_SIZE;
  return { aligned, length: npages * PAGE_SIZE };
}

/**
 * iommufd_hw_queue_alloc_phys(): the queue's pages rounded out to whole pages (ERANGE if that
 * passes 2^64), the array of their frames (kvzalloc: ENOMEM), an internal access on the parent's
 * IOAS pinning them for read (what iommufd_access_pin_pages() answers: ENOENT for a hole, ...),
 * and every page right after the one before in physical memory (EFAULT). Returns the access and
 * the queue's physical address.
 */
function hwQueueAllocPhys(
  viommu: IommufdViommu,
  iova: bigint,
  length: bigint,
): { access: IommufdAccess; basePa: bigint } | number {
  const aligned = iova - (iova % PAGE_SIZE);
  const withOffset = iova - aligned + length;
  if (withOffset > ULONG_MAX || withOffset + PAGE_SIZE - 1n > ULONG_MAX) return -Errno.ERANGE;
  const npages = (withOffset + PAGE_SIZE - 1n) / PAGE_SIZE;
  if (npages * 8n > KVMALLOC_MAX || shouldFail('kmalloc')) return -Errno.ENOMEM;
  const access = accessCreateInternal(viommu.ictx);
  if (typeof access === 'number') return access;
  let rc = accessAttachInternal(access, viommu.hwpt.ioas);
  if (rc) {
    accessDestroy(access);
    return rc;
  }
  const pfns = accessPinPages(access, aligned, npages * PAGE_SIZE, false);
  if (typeof pfns === 'number') {
    accessDestroy(access);
    return pfns;
  }
  rc = pfns.every((pfn, i) => i === 0 || pfn === pfns[i - 1]! + 1n) ? 0 : -Errno.EFAULT;
  if (rc) {
    accessUnpinPages(access, aligned, npages * PAGE_SIZE);
    accessDestroy(access);
    return rc;
  }
  return { access, basePa: pfns[0]! * PAGE_SIZE + (iova - aligned) };
}

/**
 * IOMMU_HW_QUEUE_ALLOC (iommufd_hw_queue_alloc_ioctl): flags and the DEFAULT type (EOPNOTSUPP),
 * a zero length (EINVAL), the queue's last IOVA past 2^64 - 1 (EOVERFLOW), then the vIOMMU
 * (ENOENT), whose driver must have HW queues of the type (EOPNOTSUPP); then the object, the
 * queue's memory pinned (hwQueueAllocPhys), and the driver's init with `index`. The queue holds
 * the vIOMMU.
 */
export function iommufdHwQueueAlloc(ucmd: Ucmd<typeof iommuHwQueueAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.flags || cmd.type === IOMMU_HW_QUEUE_TYPE_DEFAULT) return -Errno.EOPNOTSUPP;
  if (!cmd.length) return -Errno.EINVAL;
  if (cmd.nesting_parent_iova + cmd.length - 1n > ULONG_MAX) return -Errno.EOVERFLOW;
  using held = ictx.getObjectRef(cmd.viommu_id, 'viommu');
  if (held === undefined) return -Errno.ENOENT;
  const viommu = held.obj as IommufdViommu;
  const ops = viommu.ops;
  if (ops?.hwQueueSupports === undefined || ops.hwQueueInitPhys === undefined)
    return -Errno.EOPNOTSUPP;
  if (!ops.hwQueueSupports(viommu, cmd.type)) return -Errno.EOPNOTSUPP;
  const hwQueue = ictx.allocObject(new IommufdHwQueue(ictx));
  if (typeof hwQueue === 'number') return hwQueue;
  const phys = hwQueueAllocPhys(viommu, cmd.nesting_parent_iova, cmd.length);
  let rc: SyscallResult;
  if (typeof phys === 'number') {
    rc = phys;
  } else {
    hwQueue.viommu = viommu;
    viommu.users.inc();
    hwQueue.access = phys.access;
    hwQueue.queueType = cmd.type;
    hwQueue.length = cmd.length;
    hwQueue.baseAddr = cmd.nesting_parent_iova;
    rc = ops.hwQueueInitPhys(hwQueue, cmd.index, phys.basePa);
    if (rc === 0) {
      cmd.out_hw_queue_id = hwQueue.id;
      rc = ucmd.respond();
    }
  }
  if (rc) {
    ictx.abortAndDestroy(hwQueue);
    return rc;
  }
  ictx.finalize(hwQueue);
  return 0;
}
