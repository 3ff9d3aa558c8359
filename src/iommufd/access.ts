/**
 * In-kernel accesses to an IOAS (struct iommufd_access): a driver that reaches the memory mapped
 * in an IOAS with the CPU instead of by DMA (an mdev, or the test interface's access objects),
 * either by pinning the pages under a range of IOVA or by copying through it. Mirrors the access
 * half of drivers/iommu/iommufd/device.c and the access functions of pages.c
 * (iopt_area_add_access, iopt_area_remove_access, iopt_pages_rw_access).
 *
 * An access is an object of the context (it takes an id, which DESTROY answers EBUSY for: its
 * driver holds it) and holds the iommufd file open, like iommufd_ctx_get(). While it pins a
 * range, an unmap of that range first asks it, through its driver's unmap callback, to unpin.
 *
 * An internal access (iommufd_access_create_internal(): iommufd's own, for a vIOMMU's HW queue)
 * has no driver callbacks and does not hold the file; its pins lock the areas they are in, so an
 * unmap of them is EBUSY until the access unpins.
 */
import { shouldFail } from '../fault/fault.ts';
import type { Task } from '../host/task.ts';
import { copyFromUser, copyToUser } from '../host/uaccess.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE, ULONG_MAX } from '../uapi/iommufd.ts';
import type { IoPagetable, IoptAccess } from './io-pagetable.ts';
import type { Ioas } from './ioas.ts';
import type { IoptArea, IoptEnv } from './iopt-area.ts';
import type { IommufdCtx } from './main.ts';
import { IommufdObject } from './object.ts';
import { type IoptPages, ioptPagesPin, ioptPagesUnpin, type PagesAccess } from './pages.ts';

/** struct iommufd_access_ops: what the driver of an access provides. */
export interface IommufdAccessOps {
  /** The driver pins pages (iommufd_access_pin_pages), so IOVA must be page aligned. */
  readonly needsPinPages: boolean;
  /** Drop every pin held inside [iova, iova + length): an unmap of that range waits for it. */
  unmap(iova: bigint, length: bigint): void;
}

/** An internal access has no driver: nothing to ask at unmap, its pins lock their areas. */
const INTERNAL_OPS: IommufdAccessOps = { needsPinPages: true, unmap: () => {} };

export class IommufdAccess extends IommufdObject implements IoptAccess {
  readonly type = 'access';
  readonly ops: IommufdAccessOps;
  /** iommufd_access_is_internal(): iommufd's own access, which holds no file. */
  readonly internal: boolean;
  /** PAGE_SIZE for a driver that pins pages, else 1: the IOAS takes the larger of its own. */
  readonly iovaAlignment: bigint;
  /** The IOAS pins and copies go to; undefined while it changes (blocks new pins). */
  ioas: Ioas | undefined;
  /** The IOAS unpins go to, which stays set while `ioas` changes. */
  ioasUnpin: Ioas | undefined;

  constructor(ictx: IommufdCtx, ops: IommufdAccessOps, internal = false) {
    super(ictx);
    this.ops = ops;
    this.internal = internal;
    this.iovaAlignment = ops.needsPinPages ? PAGE_SIZE : 1n;
  }

  /** iommufd_access_destroy_object(): leave the IOAS (unpinning everything), drop the context. */
  destroy(): void {
    if (this.ioas !== undefined) changeIoas(this, undefined);
    if (!this.internal) this.ictx.file!.put();
  }

  /** iommufd_access_notify_unmap() for this access; one being destroyed is skipped. */
  notifyUnmap(iova: bigint, length: bigint): void {
    if (this.internal || !this.ictx.lockObj(this)) return;
    try {
      this.ops.unmap(iova, length);
    } finally {
      this.ictx.putObject(this);
    }
  }
}

/**
 * iommufd_access_create(): a published access object the driver holds (one users reference of
 * its own) until accessDestroy(); it holds the context's file.
 */
export function accessCreate(ictx: IommufdCtx, ops: IommufdAccessOps): IommufdAccess | number {
  const access = ictx.allocObject(new IommufdAccess(ictx, ops));
  if (typeof access === 'number') return access;
  access.users.inc();
  ictx.file!.get();
  ictx.finalize(access);
  return access;
}

/** iommufd_access_create_internal(): published at once, held by its creator, no file. */
export function accessCreateInternal(ictx: IommufdCtx): IommufdAccess | number {
  const access = ictx.allocObject(new IommufdAccess(ictx, INTERNAL_OPS, true));
  if (typeof access === 'number') return access;
  access.users.inc();
  ictx.finalize(access);
  return access;
}

/** iommufd_access_attach_internal(): the IOAS of a new internal access. */
export function accessAttachInternal(access: IommufdAccess, ioas: Ioas): SyscallResult {
  if (access.ioas !== undefined) throw new Error('attach of an access already attached');
  return changeIoas(access, ioas);
}

/** iommufd_access_destroy(): the driver lets go; the object is destroyed at once. */
export function accessDestroy(access: IommufdAccess): void {
  const rc = access.ictx.removeObject(access.id, access);
  if (rc) throw new Error(`access ${access.id} still in use at destroy (${rc})`);
}

/**
 * iommufd_access_change_ioas(): join `to` (its alignment must fit every area, else EADDRINUSE)
 * before leaving the current IOAS, whose pins the driver drops through its unmap callback.
 */
function changeIoas(access: IommufdAccess, to: Ioas | undefined): SyscallResult {
  const cur = access.ioas;
  if (cur !== access.ioasUnpin) return -Errno.EBUSY;
  if (cur === to) return 0;
  access.ioas = undefined;
  if (to !== undefined) {
    const rc = to.iopt.addAccess(access);
    if (rc) {
      access.ioas = cur;
      return rc;
    }
    to.users.inc();
  }
  if (cur !== undefined) {
    access.ops.unmap(0n, ULONG_MAX);
    cur.iopt.removeAccess(access);
    cur.users.dec();
  }
  access.ioas = to;
  access.ioasUnpin = to;
  return 0;
}

function changeIoasId(access: IommufdAccess, ioasId: number): SyscallResult {
  using held = access.ictx.getObjectRef(ioasId, 'ioas');
  if (held === undefined) return -Errno.ENOENT;
  return changeIoas(access, held.obj);
}

/** iommufd_access_attach(): the first IOAS of a new access. */
export function accessAttach(access: IommufdAccess, ioasId: number): SyscallResult {
  if (access.ioas !== undefined) throw new Error('attach of an access already attached');
  return changeIoasId(access, ioasId);
}

/** iommufd_access_replace(): ENOENT for an access on no IOAS. */
export function accessReplace(access: IommufdAccess, ioasId: number): SyscallResult {
  if (access.ioas === undefined) return -Errno.ENOENT;
  return changeIoasId(access, ioasId);
}

/** One area of a contiguous walk, and the part of [iova, last] it holds. */
interface ContigPiece {
  readonly area: IoptArea;
  readonly cur: bigint;
  readonly last: bigint;
}

/**
 * iopt_for_each_contig_area(): the areas that hold [iova, last] with no gap, in order, stopping
 * at a hole or an area being built or torn down. `done` says whether they reach `last`.
 */
function contigAreas(
  iopt: IoPagetable,
  iova: bigint,
  last: bigint,
): {
  pieces: ContigPiece[];
  done: boolean;
} {
  const pieces: ContigPiece[] = [];
  let cur = iova;
  let area = iopt.areas.iterFirst(iova, iova);
  while (area !== undefined && area.pages !== undefined) {
    pieces.push({ area, cur, last: last < area.last ? last : area.last });
    if (last <= area.last) return { pieces, done: true };
    cur = area.last + 1n;
    const next = iopt.areas.iterNext(area, cur, last);
    area = next !== undefined && next.iova === cur ? next : undefined;
  }
  return { pieces, done: false };
}

/** iopt_area_iova_to_index(): the page of the area's pages object that holds `iova`. */
function indexOf(area: IoptArea, iova: bigint): bigint {
  return area.startByte(iova) / PAGE_SIZE;
}

/** check_area_prot(): a write needs a writable area, anything else a readable one. */
function areaAllows(area: IoptArea, write: boolean): boolean {
  return write ? area.prot.write : area.prot.read;
}

/** The range check every access call starts with: -EINVAL, -EOVERFLOW, or the last IOVA. */
function lastIovaOf(iova: bigint, length: bigint): bigint | number {
  if (length === 0n) return -Errno.EINVAL;
  const last = iova + length - 1n;
  return last > ULONG_MAX ? -Errno.EOVERFLOW : last;
}

/**
 * iommufd_access_pin_pages(): pin the pages under [iova, iova + length), which must be mapped
 * with no gap (ENOENT), start on a page and end on one at every area boundary (EINVAL), and allow
 * the access (EPERM). Returns the frame of each page, or a negative errno with nothing pinned.
 */
export function accessPinPages(
  access: IommufdAccess,
  iova: bigint,
  length: bigint,
  write: boolean,
): bigint[] | number {
  if (access.iovaAlignment !== PAGE_SIZE) throw new Error('pin_pages on an access without pins');
  const last = lastIovaOf(iova, length);
  if (typeof last === 'number') return last;
  const ioas = access.ioas;
  if (ioas === undefined) return -Errno.ENOENT;
  const env = access.ictx.subsystem.ioptEnv;
  const { pieces, done } = contigAreas(ioas.iopt, iova, last);
  const pfns: bigint[] = [];
  const added: ContigPiece[] = [];
  let rc: SyscallResult = 0;
  for (const piece of pieces) {
    const { area } = piece;
    const atEnd = piece.last === last;
    if (
      area.preventAccess ||
      area.startByte(piece.cur) % PAGE_SIZE !== 0n ||
      (!atEnd && area.startByte(area.last) % PAGE_SIZE !== PAGE_SIZE - 1n)
    ) {
      rc = -Errno.EINVAL;
      break;
    }
    if (!areaAllows(area, write)) {
      rc = -Errno.EPERM;
      break;
    }
    const got = areaAddAccess(env, piece, write, access.internal);
    if (typeof got === 'number') {
      rc = got;
      break;
    }
    pfns.push(...got);
    added.push(piece);
  }
  if (rc === 0 && !done) rc = -Errno.ENOENT;
  if (rc) {
    for (const piece of added) areaRemoveAccess(env, piece, access.internal);
    return rc;
  }
  return pfns;
}

/** iommufd_access_unpin_pages(): undo one accessPinPages() of exactly this range. */
export function accessUnpinPages(access: IommufdAccess, iova: bigint, length: bigint): void {
  const last = lastIovaOf(iova, length);
  const ioas = access.ioasUnpin;
  if (typeof last === 'number' || ioas === undefined) throw new Error('unpin of a bad range');
  const env = access.ictx.subsystem.ioptEnv;
  const { pieces, done } = contigAreas(ioas.iopt, iova, last);
  for (const piece of pieces) areaRemoveAccess(env, piece, access.internal);
  if (!done) throw new Error(`unpin of ${iova.toString(16)}+${length} found a hole`);
}

/**
 * iopt_area_add_access(): pin the pages of the piece for an access. A second pin of exactly the
 * same pages shares the first's record.
 */
function areaAddAccess(
  env: IoptEnv,
  piece: ContigPiece,
  write: boolean,
  lockArea: boolean,
): bigint[] | number {
  const { area } = piece;
  const pages = area.pages!;
  const start = indexOf(area, piece.cur);
  const last = indexOf(area, piece.last);
  if (write && !pages.writable) return -Errno.EPERM;
  // An access cannot pin a dma-buf's memory.
  if (pages.type === 'dmabuf') return -Errno.EINVAL;
  const existing = pages.exactAccess(start, last);
  if (existing !== undefined) {
    area.numAccesses++;
    if (lockArea) area.numLocks++;
    existing.users++;
    return pinnedFrames(env, pages, start, last);
  }
  // kzalloc() of the record.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const record: PagesAccess = { startIndex: start, lastIndex: last, users: 1 };
  const runs = ioptPagesPin(pages, record, env.pinner, env.accounting);
  if (typeof runs === 'number') return runs;
  pages.addAccessRange(record);
  area.numAccesses++;
  if (lockArea) area.numLocks++;
  const pfns: bigint[] = [];
  for (const run of runs) for (let i = 0n; i < run.npages; i++) pfns.push(run.pfn + i);
  return pfns;
}

/** iopt_area_remove_access(): the last pin of a record unpins what nothing else holds. */
function areaRemoveAccess(env: IoptEnv, piece: ContigPiece, unlockArea: boolean): void {
  const { area } = piece;
  const pages = area.pages!;
  const record = pages.exactAccess(indexOf(area, piece.cur), indexOf(area, piece.last));
  if (record === undefined || area.numAccesses === 0)
    throw new Error('remove of an access pin the area does not hold');
  if (unlockArea && area.numLocks-- === 0) throw new Error('unlock of an area not locked');
  area.numAccesses--;
  if (--record.users > 0) return;
  pages.deleteAccessRange(record);
  ioptPagesUnpin(pages, record, env.pinner, env.accounting);
}

/** The frames of pinned pages [start, last] of a pages object. */
function pinnedFrames(env: IoptEnv, pages: IoptPages, start: bigint, last: bigint): bigint[] {
  const out: bigint[] = [];
  for (let i = start; i <= last; i++) {
    const pinned = env.pinner.lookup(pages.memory.mm, pages.uptr + i * PAGE_SIZE);
    if (pinned === undefined) throw new Error('an access record over unpinned pages');
    out.push(pinned.pfn);
  }
  return out;
}

/** IOMMUFD_ACCESS_RW_* of iommufd_access_rw(). */
export interface AccessRwFlags {
  readonly write: boolean;
  /** __IOMMUFD_ACCESS_RW_SLOW_PATH (test kernels): copy as if from another process. */
  readonly slowPath: boolean;
}

/**
 * iommufd_access_rw(): copy `data` to (write) or fill it from (read) the memory mapped at
 * [iova, iova + data.length), with no pin needed and at any alignment. The areas must be mapped
 * with no gap (ENOENT) and allow the direction (EPERM); a write done before a failure stays.
 */
export function accessRw(
  task: Task,
  access: IommufdAccess,
  iova: bigint,
  data: Uint8Array,
  flags: AccessRwFlags,
): SyscallResult {
  const last = lastIovaOf(iova, BigInt(data.length));
  if (typeof last === 'number') return last;
  const ioas = access.ioas;
  if (ioas === undefined) return -Errno.ENOENT;
  const { pieces, done } = contigAreas(ioas.iopt, iova, last);
  let at = 0;
  for (const { area, cur, last: pieceLast } of pieces) {
    if (area.preventAccess) return -Errno.EINVAL;
    if (!areaAllows(area, flags.write)) return -Errno.EPERM;
    const bytes = Number(pieceLast - cur + 1n);
    const rc = pagesRw(
      task,
      area.pages!,
      area.startByte(cur),
      data.subarray(at, at + bytes),
      flags,
    );
    if (rc) return rc;
    at += bytes;
  }
  return done ? 0 : -Errno.ENOENT;
}

/**
 * iopt_pages_rw_access(): the copy itself. The caller's own MAP is copied with
 * copy_to/from_user; another process's, a file's, or any with the slow-path flag go through the
 * pages themselves (one page pinned for the copy, or a PFN reader over the range), which reach
 * the same memory and fail at their own injection points.
 */
function pagesRw(
  task: Task,
  pages: IoptPages,
  startByte: bigint,
  data: Uint8Array,
  flags: AccessRwFlags,
): SyscallResult {
  if (flags.write && !pages.writable) return -Errno.EPERM;
  if (pages.type === 'dmabuf') return -Errno.EINVAL;
  const addr = pages.uptr + startByte;
  const changeMm = flags.slowPath || task.memory.mm !== pages.memory.mm;
  if (pages.type === 'user' && !changeMm) {
    if (flags.write) return copyToUser(task, addr, data) ? 0 : -Errno.EFAULT;
    const got = copyFromUser(task, addr, data.length);
    if (got === undefined) return -Errno.EFAULT;
    data.set(got);
    return 0;
  }
  const onePage = startByte / PAGE_SIZE === (startByte + BigInt(data.length) - 1n) / PAGE_SIZE;
  if (pages.type === 'user' && onePage) {
    // iopt_pages_rw_page(): the test kernel's own failure point, then one remote pin.
    if (shouldFail('kmalloc')) return -Errno.EINVAL;
  } else if (shouldFail('kmalloc')) {
    // iopt_pages_rw_slow(): the PFN reader's batch.
    return -Errno.ENOMEM;
  }
  if (shouldFail('pin-pages')) return -Errno.ENOMEM;
  if (flags.write) return pages.memory.write(addr, data) ? 0 : -Errno.EFAULT;
  const got = pages.memory.read(addr, data.length);
  if (got === undefined) return -Errno.EFAULT;
  data.set(got);
  return 0;
}

/**
 * The test interface's syzkaller IOVA (MOCK_FLAGS_ACCESS_SYZ): the low 32 bits pick the nth area
 * of the access's IOAS, the high 32 an offset in it; 0 when there is no such area.
 */
export function accessSyzIova(access: IommufdAccess, iova: bigint): bigint {
  const ioas = access.ioas;
  if (ioas === undefined) return 0n;
  let nth = iova & 0xffffffffn;
  for (const area of ioas.iopt.areas.iter()) {
    if (nth === 0n) return area.iova + (iova >> 32n);
    nth--;
  }
  return 0n;
}
