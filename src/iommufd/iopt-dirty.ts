/**
 * Dirty tracking of a domain attached to an io_pagetable: iopt_set_dirty_tracking() and
 * iopt_read_and_clear_dirty_data() of drivers/iommu/iommufd/io_pagetable.c, with the user bitmap
 * writer of drivers/iommu/iommufd/iova_bitmap.c (one bit per `page_size` granule from `iova`,
 * u64 words in the caller's memory; bits are only ever set, never cleared).
 */
import type { Task } from '../host/task.ts';
import type { IommuDomain } from '../iommu/iommu.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
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
 * domain reports sets the bits of the granules it touches, ORed into the caller's bitmap in
 * place. As 7.3's iova_bitmap, the bitmap's pages are pinned for write only when a bit is to be
 * set there, and a bit whose page cannot be pinned (unmapped, read-only) is dropped: the call
 * succeeds all the same, with the IOPTEs read (and cleared) as usual.
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
  const writable = new Map<bigint, boolean>();
  for (const [byte, mask] of touched) {
    const at = bitmap.data + byte;
    const page = at / PAGE_SIZE;
    let ok = writable.get(page);
    if (ok === undefined) {
      ok = userWritable(task, at);
      writable.set(page, ok);
    }
    if (!ok) continue;
    const cur = task.memory.read(at, 1);
    if (cur !== undefined) task.memory.write(at, Uint8Array.of(cur[0]! | mask));
  }
  return 0;
}

/** The byte at addr is in a writable mapping of the caller (pin_user_pages_fast(FOLL_WRITE)). */
function userWritable(task: Task, addr: bigint): boolean {
  return task.memory.vma(addr)?.writable === true;
}
