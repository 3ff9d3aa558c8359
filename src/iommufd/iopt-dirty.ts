/**
 * Dirty tracking of a domain attached to an io_pagetable: iopt_set_dirty_tracking() and
 * iopt_read_and_clear_dirty_data() of drivers/iommu/iommufd/io_pagetable.c, with the user bitmap
 * writer of drivers/iommu/iommufd/iova_bitmap.c (one bit per `page_size` granule from `iova`,
 * u64 words in the caller's memory; bits are only ever set, never cleared).
 */
import type { Task } from '../host/task.ts';
import type { IommuDomain } from '../iommu/iommu.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import type { IoPagetable } from './io-pagetable.ts';

/** Calls `fn` on the part of each area inside [iova, last], lowest first. */
function forEachAreaSpan(
  iopt: IoPagetable,
  iova: bigint,
  last: bigint,
  fn: (start: bigint, length: bigint) => SyscallResult,
): SyscallResult {
  let area = iopt.areas.iterFirst(iova, last);
  while (area !== undefined) {
    const start = area.iova > iova ? area.iova : iova;
    const end = area.last < last ? area.last : last;
    const rc = fn(start, end - start + 1n);
    if (rc) return rc;
    area = iopt.areas.iterNext(area, iova, last);
  }
  return 0;
}

/**
 * iopt_set_dirty_tracking(): EOPNOTSUPP for a domain without dirty ops. Enabling clears what the
 * IOPTEs had recorded first, so a bitmap read later reports only writes made while tracking.
 */
export function ioptSetDirtyTracking(
  iopt: IoPagetable,
  domain: IommuDomain,
  enable: boolean,
): SyscallResult {
  const ops = domain.dirtyOps;
  if (ops === undefined) return -Errno.EOPNOTSUPP;
  if (enable) {
    const rc = forEachAreaSpan(iopt, 0n, (1n << 64n) - 1n, (start, length) =>
      ops.readAndClearDirty(start, length, false, undefined),
    );
    if (rc) return rc;
  }
  return ops.setDirtyTracking(enable);
}

/** The bitmap GET_DIRTY_BITMAP writes: its IOVA range, granule and user address. */
export interface DirtyBitmap {
  readonly iova: bigint;
  readonly length: bigint;
  readonly pageSize: bigint;
  readonly data: bigint;
}

/**
 * iommu_read_and_clear_dirty() over the areas of [iova, iova+length): each dirty range the
 * domain reports sets the bits of the granules it touches, ORed into the caller's bitmap (which
 * iova_bitmap pins and sets bits in, in place: a bad bitmap is EFAULT before anything is read).
 */
export function ioptReadAndClearDirty(
  task: Task,
  iopt: IoPagetable,
  domain: IommuDomain,
  noClear: boolean,
  bitmap: DirtyBitmap,
): SyscallResult {
  const ops = domain.dirtyOps;
  if (ops === undefined) return -Errno.EOPNOTSUPP;
  // iova_bitmap_alloc() and its pinning of the user's bitmap come before any IOPTE is read:
  // a bitmap that is not all writable memory is EFAULT with nothing cleared.
  const nbits = (bitmap.length + bitmap.pageSize - 1n) / bitmap.pageSize;
  const nbytes = ((nbits + 63n) / 64n) * 8n;
  if (!userWritable(task, bitmap.data, nbytes)) return -Errno.EFAULT;
  const touched = new Map<bigint, number>();
  const record = (iova: bigint, length: bigint): void => {
    const first = (iova - bitmap.iova) / bitmap.pageSize;
    const last = (iova + length - 1n - bitmap.iova) / bitmap.pageSize;
    for (let bit = first; bit <= last; bit++) {
      const byte = bit / 8n;
      touched.set(byte, (touched.get(byte) ?? 0) | (1 << Number(bit % 8n)));
    }
  };
  const last = bitmap.iova + bitmap.length - 1n;
  const rc = forEachAreaSpan(iopt, bitmap.iova, last, (start, length) =>
    ops.readAndClearDirty(start, length, noClear, record),
  );
  if (rc) return rc;
  // Set the bits in place; the bytes around them keep what userspace had.
  for (const [byte, mask] of touched) {
    const at = bitmap.data + byte;
    const cur = task.memory.read(at, 1);
    if (cur === undefined || !task.memory.write(at, Uint8Array.of(cur[0]! | mask)))
      return -Errno.EFAULT;
  }
  return 0;
}

/** Every byte of [addr, addr+length) is in a writable mapping of the caller (pin for write). */
function userWritable(task: Task, addr: bigint, length: bigint): boolean {
  let at = addr;
  const end = addr + length;
  while (at < end) {
    const vma = task.memory.vma(at);
    if (vma === undefined || !vma.writable) return false;
    at = vma.end;
  }
  return true;
}
