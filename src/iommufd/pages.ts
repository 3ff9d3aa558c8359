/**
 * iopt_pages: the page store behind one MAP (a user VA range, page granular) or MAP_FILE (a range
 * of a file), shared by every area that COPY makes from it; and the filling of domains with its
 * pinned pages. Mirrors drivers/iommu/iommufd/pages.c. Pages are pinned only while some area using
 * them is in a domain; they are pinned once per pages object and charged once to RLIMIT_MEMLOCK.
 * A dma-buf's pages are its exporter's frames: mapped, never pinned (docs/decisions.md 251).
 */
import { shouldFail } from '../fault/fault.ts';
import { CAP_IPC_LOCK, capable } from '../host/credentials.ts';
import type { File } from '../host/file.ts';
import { FileMemory } from '../host/file-memory.ts';
import type { HostFile, Task } from '../host/task.ts';
import type { MmId, UserMemory } from '../host/user-memory.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import type { Accounting, AccountOwner, PagesAccountMode } from './accounting.ts';

const SIZE_MAX = (1n << 64n) - 1n;

/** IOMMU_READ / IOMMU_WRITE of a mapping. */
export interface IommuProt {
  readonly read: boolean;
  readonly write: boolean;
}

/** What the io_pagetable needs of a domain (a HWPT's page table). */
export interface IoptDomain {
  /** Page sizes the domain can map, bit N = 2^N bytes. */
  readonly pgsizeBitmap: bigint;
  /** The IOVA range the domain can translate; the rest is reserved in the IOAS. */
  readonly aperture: { readonly start: bigint; readonly last: bigint };
  map(iova: bigint, pa: bigint, size: bigint, prot: IommuProt): SyscallResult;
  /** Returns the bytes unmapped. */
  unmap(iova: bigint, size: bigint): bigint;
  iovaToPhys(iova: bigint): bigint | undefined;
}

/** A maximal physically contiguous run of pinned pages. */
export interface PinnedRun {
  readonly va: bigint;
  readonly pfn: bigint;
  readonly npages: bigint;
}

/** pin_user_pages(FOLL_LONGTERM) on the simulated machine: gives each pinned page a frame. */
export interface PagePinner {
  pin(mem: UserMemory, va: bigint, npages: bigint, write: boolean): PinnedRun[] | number;
  /** -EFAULT if pin() of the range would find a hole or a protection in the way, else 0. */
  faultOf(mem: UserMemory, va: bigint, npages: bigint, write: boolean): number;
  unpin(mem: UserMemory, va: bigint, npages: bigint): void;
  /**
   * The frame of a pinned page of address space `mm` (a process's, or a file's) and its pin
   * count, for the test interface's checks; undefined if unpinned.
   */
  lookup(mm: MmId, va: bigint): { readonly pfn: bigint; readonly pins: number } | undefined;
}

/** The slice of a pages object an area maps. */
export interface AreaPagesRange {
  readonly startIndex: bigint;
  readonly lastIndex: bigint;
}

/** Where a pages object's memory comes from (page aligned starts). */
export type IoptPagesSource =
  | { readonly type: 'user'; readonly uptr: bigint }
  | {
      readonly type: 'file';
      readonly start: bigint;
      readonly file: File | undefined;
      /** A client's shmem/hugetlbfs file: its pages, by offset, are what gets pinned. */
      readonly pagesOf: FileMemory | undefined;
    }
  | { readonly type: 'dmabuf'; readonly start: bigint; readonly dmabuf: PagesDmaBuf };

/**
 * A dma-buf a pages object imported (IOPT_ADDRESS_DMABUF): physical memory that is mapped, never
 * pinned or charged, and unmapped from every domain when the exporter revokes it.
 */
export interface PagesDmaBuf {
  /** The frame at offset 0 of the dma-buf (its memory is contiguous). */
  readonly pfn: bigint;
  /** Revoked since the map (the kernel's phys.len == 0): nothing is mapped, and never again. */
  readonly revoked: boolean;
  /**
   * Per filled area, what unmaps it from every domain of its IOAS (the kernel's tracker list),
   * for the revoke.
   */
  readonly trackers: Map<AreaPagesRange, () => void>;
  /** dma_buf_detach() and dma_buf_put(), when the pages object goes. */
  detach(): void;
}

/**
 * struct iopt_pages_access: pages an in-kernel access pinned, one record per exact index range
 * (the kernel's access_itree), shared by every pin of that range. Its pages are pinned like a
 * filled area's: once per pages object, whoever else holds them.
 */
export interface PagesAccess extends AreaPagesRange {
  users: number;
}

/** enum iopt_address_type: what a pages object reads its PFNs from. */
export type IoptAddressType = 'user' | 'file' | 'dmabuf';

const NO_RANGES: ReadonlySet<AreaPagesRange> = new Set();

export class IoptPages {
  /** kref: one per area and per in-flight list entry. */
  refs = 1;
  readonly type: IoptAddressType;
  /**
   * Page aligned start of the range: a user VA (type 'user', the kernel's pages->uptr) or a byte
   * offset in the file (type 'file', pages->start).
   */
  readonly uptr: bigint;
  readonly npages: bigint;
  readonly writable: boolean;
  accountMode: PagesAccountMode;
  /** source_user / source_mm / source_task; IOMMU_IOAS_CHANGE_PROCESS moves them. */
  owner: AccountOwner;
  memory: UserMemory;
  /** A 'file' pages object's file when it is an emulated one (get_file). */
  readonly file: File | undefined;
  /**
   * The pages of a client's shmem or hugetlbfs file (a memfd), pinned by offset and held until
   * the pages object goes; undefined for a file whose pages cannot be pinned (any other kind).
   */
  readonly filePages: FileMemory | undefined;
  /** The imported dma-buf of a 'dmabuf' pages object (its uptr is an offset in it). */
  readonly dmabuf: PagesDmaBuf | undefined;
  /** Pages currently pinned (and charged) for this pages object. */
  npinned = 0n;
  /**
   * The page ranges of areas whose pages are in domains (the kernel's domains_itree). Made on
   * first use: most pages objects of a large IOAS are never in a domain, and an empty Set is
   * a fifth of an area's heap (docs/performance.md).
   */
  #filled: Set<AreaPagesRange> | undefined;
  /**
   * Access pins by "start:last" page index (the kernel's access_itree); each is a filled range
   * too. Made on first use, like #filled.
   */
  #accesses: Map<string, PagesAccess> | undefined;

  constructor(
    source: IoptPagesSource,
    npages: bigint,
    writable: boolean,
    accountMode: PagesAccountMode,
    owner: AccountOwner,
    memory: UserMemory,
  ) {
    this.type = source.type;
    this.uptr = source.type === 'user' ? source.uptr : source.start;
    this.file = source.type === 'file' ? source.file : undefined;
    this.filePages = source.type === 'file' ? source.pagesOf : undefined;
    this.dmabuf = source.type === 'dmabuf' ? source.dmabuf : undefined;
    this.npages = npages;
    this.writable = writable;
    this.accountMode = accountMode;
    this.owner = owner;
    this.memory = memory;
  }

  get filledRanges(): ReadonlySet<AreaPagesRange> {
    return this.#filled ?? NO_RANGES;
  }

  addFilledRange(range: AreaPagesRange): void {
    this.#filled ??= new Set();
    this.#filled.add(range);
  }

  deleteFilledRange(range: AreaPagesRange): void {
    this.#filled?.delete(range);
    if (this.#filled?.size === 0) this.#filled = undefined;
  }

  /** The access record of exactly [start, last], if one is pinned. */
  exactAccess(start: bigint, last: bigint): PagesAccess | undefined {
    return this.#accesses?.get(`${start}:${last}`);
  }

  addAccessRange(access: PagesAccess): void {
    this.#accesses ??= new Map();
    this.#accesses.set(`${access.startIndex}:${access.lastIndex}`, access);
  }

  deleteAccessRange(access: PagesAccess): void {
    this.#accesses?.delete(`${access.startIndex}:${access.lastIndex}`);
    if (this.#accesses?.size === 0) this.#accesses = undefined;
  }

  /** Every access record, for the checker. */
  get accessRanges(): readonly PagesAccess[] {
    return this.#accesses === undefined ? [] : [...this.#accesses.values()];
  }

  get(): void {
    this.refs++;
  }

  put(): void {
    this.refs--;
    if (this.refs < 0) throw new Error('iopt_pages refcount underflow');
    if (this.refs !== 0) return;
    if (this.npinned !== 0n || this.filledRanges.size !== 0) {
      throw new Error(`iopt_pages released with ${this.npinned} pages pinned`);
    }
    // iopt_release_pages(): fput() of a file pages object.
    this.file?.put();
    this.filePages?.file.release();
    this.dmabuf?.detach();
  }

  /** Whether the domains hold IOPTEs for its filled ranges: not once a dma-buf is revoked. */
  get mapsIoptes(): boolean {
    return this.dmabuf?.revoked !== true;
  }

  /** Pages of [start, last] not covered by any filled range other than `except`. */
  uncoveredPages(start: bigint, last: bigint, except: AreaPagesRange): bigint {
    let count = 0n;
    for (const seg of this.segments(start, last, except)) {
      if (!seg.covered) count += seg.last - seg.start + 1n;
    }
    return count;
  }

  /**
   * [start, last] cut into the runs covered by some filled range other than `except` and the runs
   * that are not. Areas of one pages object are few, so a sweep over sorted cut points is enough.
   */
  segments(start: bigint, last: bigint, except: AreaPagesRange): PageSegment[] {
    const others = [...this.filledRanges].filter((r) => r !== except);
    const cuts = new Set<bigint>([start, last + 1n]);
    for (const r of others) {
      if (r.startIndex > start && r.startIndex <= last) cuts.add(r.startIndex);
      if (r.lastIndex + 1n > start && r.lastIndex + 1n <= last) cuts.add(r.lastIndex + 1n);
    }
    const points = [...cuts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out: PageSegment[] = [];
    for (let i = 0; i + 1 < points.length; i++) {
      const s = points[i]!;
      const covered = others.some((r) => r.startIndex <= s && r.lastIndex >= s);
      out.push({ start: s, last: points[i + 1]! - 1n, covered });
    }
    return out;
  }
}

/**
 * The owner record made last. Records are immutable and compared by value (CHANGE_PROCESS
 * replaces them), so the MAPs of one task share one instead of carrying a copy per area.
 */
let lastOwner: AccountOwner | undefined;

/** A run of page indexes of a pages object, and whether another filled range holds it. */
export interface PageSegment {
  readonly start: bigint;
  readonly last: bigint;
  readonly covered: boolean;
}

/** The source fields iopt_alloc_pages() records: who is charged, from which mm. */
function currentOwner(task: Task): { accountMode: PagesAccountMode; owner: AccountOwner } {
  const { uid, memlockLimit } = task.creds;
  const mm = task.memory.mm;
  if (
    lastOwner === undefined ||
    lastOwner.uid !== uid ||
    lastOwner.mm !== mm ||
    lastOwner.memlockLimit !== memlockLimit
  ) {
    lastOwner = { uid, mm, memlockLimit };
  }
  return { accountMode: capable(task.creds, CAP_IPC_LOCK) ? 'none' : 'user', owner: lastOwner };
}

/** iopt_alloc_pages(): the length check common to user and file pages. */
function checkPagesLength(length: bigint): SyscallResult {
  // The DIV_ROUND_UP of the page count must not overflow.
  if (length > SIZE_MAX - PAGE_SIZE || length === 0n) return -Errno.EINVAL;
  return 0;
}

/** iopt_alloc_user_pages(): a pages object for [uptr, uptr+length) of the caller. */
export function ioptAllocPages(
  task: Task,
  uptr: bigint,
  length: bigint,
  writable: boolean,
): IoptPages | number {
  const rc = checkPagesLength(length);
  if (rc) return rc;
  if (uptr + length > SIZE_MAX) return -Errno.EOVERFLOW;
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const start = uptr - (uptr % PAGE_SIZE);
  const npages = (length + (uptr - start) + PAGE_SIZE - 1n) / PAGE_SIZE;
  const { accountMode, owner } = currentOwner(task);
  return new IoptPages(
    { type: 'user', uptr: start },
    npages,
    writable,
    accountMode,
    owner,
    task.memory,
  );
}

/**
 * iopt_alloc_file_pages(): a pages object for [start, start+length) of a file; `startByte` is
 * start's offset in its page. `file` is the emulated file behind the fd when it is one of ours:
 * it is held until the pages object goes (get_file). A host file is only known to be open.
 */
export function ioptAllocFilePages(
  task: Task,
  file: File | undefined,
  hostFile: HostFile | undefined,
  startByte: bigint,
  start: bigint,
  length: bigint,
  writable: boolean,
): IoptPages | number {
  const rc = checkPagesLength(length);
  if (rc) return rc;
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const npages = (length + startByte + PAGE_SIZE - 1n) / PAGE_SIZE;
  const { accountMode, owner } = currentOwner(task);
  const pagesOf = hostFile === undefined ? undefined : new FileMemory(hostFile);
  return new IoptPages(
    { type: 'file', start: start - startByte, file: file?.get(), pagesOf },
    npages,
    writable,
    accountMode,
    owner,
    pagesOf ?? task.memory,
  );
}

/**
 * iopt_alloc_dmabuf_pages(): a pages object for [start, start+length) of a dma-buf whose size is
 * `size`; `attach` makes the import (dma_buf_dynamic_attach and the exporter's physical range:
 * ENODEV if revoked). No pinned page accounting.
 */
export function ioptAllocDmabufPages(
  task: Task,
  size: bigint,
  attach: () => PagesDmaBuf | number,
  startByte: bigint,
  start: bigint,
  length: bigint,
  writable: boolean,
): IoptPages | number {
  if (size <= start + length - 1n) return -Errno.EINVAL;
  const rc = checkPagesLength(length);
  if (rc) return rc;
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const dmabuf = attach();
  if (typeof dmabuf === 'number') return dmabuf;
  const npages = (length + startByte + PAGE_SIZE - 1n) / PAGE_SIZE;
  const { owner } = currentOwner(task);
  return new IoptPages(
    { type: 'dmabuf', start: start - startByte, dmabuf },
    npages,
    writable,
    'none',
    owner,
    task.memory,
  );
}

/** pfn_reader_fill_dmabuf(): a dma-buf's frames of [range], read from its physical range. */
export function ioptDmabufRuns(pages: IoptPages, range: AreaPagesRange): PinnedRun[] {
  const dmabuf = pages.dmabuf!;
  if (dmabuf.revoked) return [];
  return [
    {
      va: pageVa(pages, range.startIndex),
      pfn: dmabuf.pfn + pages.uptr / PAGE_SIZE + range.startIndex,
      npages: range.lastIndex - range.startIndex + 1n,
    },
  ];
}

/**
 * Pins pages [range] of `pages` and charges the ones this pages object did not hold yet.
 * Returns the runs, or -EFAULT (a hole or a read-only page for a writable map) / -ENOMEM.
 */
export function ioptPagesPin(
  pages: IoptPages,
  range: AreaPagesRange,
  pinner: PagePinner,
  accounting: Accounting,
): PinnedRun[] | number {
  // pfn_reader_user_pin() pins a file through memfd_pin_folios(), which takes only shmem and
  // hugetlbfs files: any other file is EINVAL, nothing pinned, nothing charged.
  if (pages.type === 'file' && pages.filePages === undefined) return -Errno.EINVAL;
  // A dma-buf's memory is the exporter's: nothing to pin or charge.
  if (pages.type === 'dmabuf') {
    pages.addFilledRange(range);
    return ioptDmabufRuns(pages, range);
  }
  const npages = range.lastIndex - range.startIndex + 1n;
  const va = pages.uptr + range.startIndex * PAGE_SIZE;
  if (shouldFail('pin-pages')) return -Errno.ENOMEM;
  const fresh = pages.uncoveredPages(range.startIndex, range.lastIndex, range);
  if (accounting.exceeds(pages.accountMode, pages.owner, fresh)) {
    // The kernel pins the whole range, then finds the limit exceeded and unpins it all. Same
    // answer without pinning (a 1 GiB map by a task limited to 64 KiB fails at once): EFAULT
    // for a hole, which the pin would have hit first, else the charge's ENOMEM.
    const fault = pinner.faultOf(pages.memory, va, npages, pages.writable);
    if (fault < 0) return fault;
    // Charged anyway, so the injection point and the answer are the kernel's: it fails.
    const rc = accounting.charge(pages.accountMode, pages.owner, fresh);
    if (rc === 0) throw new Error('a charge over the memlock limit succeeded');
    return rc;
  }
  const runs = pinner.pin(pages.memory, va, npages, pages.writable);
  if (typeof runs === 'number') return runs;
  const segments = pages.segments(range.startIndex, range.lastIndex, range);
  const rc = accounting.charge(pages.accountMode, pages.owner, fresh);
  if (rc < 0) {
    pinner.unpin(pages.memory, va, npages);
    return rc;
  }
  // A pages object pins each page once: where another area already holds a page, the pin just
  // taken (only to learn the PFNs) is dropped again.
  for (const seg of segments) {
    if (seg.covered)
      pinner.unpin(pages.memory, pageVa(pages, seg.start), seg.last - seg.start + 1n);
  }
  pages.npinned += fresh;
  pages.addFilledRange(range);
  return runs;
}

/**
 * The part of an area's pages a fill has pinned so far: [startIndex, lastIndex], empty while
 * lastIndex < startIndex. It is a filled range of its pages object from the fill's start, so
 * that every other user of the pages object (another area's unpin, an access pin, another
 * fill) sees those pages pinned and charged once, whenever it runs between two batches.
 */
export class PinProgress implements AreaPagesRange {
  readonly startIndex: bigint;
  lastIndex: bigint;
  /** Whether a batch has passed the charge's injection point (one per fill). */
  chargeInjected = false;

  constructor(startIndex: bigint) {
    this.startIndex = startIndex;
    this.lastIndex = startIndex - 1n;
  }
}

/**
 * The start of a batched pin of an area's pages: what comes once per fill (a file that cannot be
 * pinned, the pin's injection point), then an empty progress range. Not for a dma-buf.
 */
export function ioptPagesPinStart(pages: IoptPages, range: AreaPagesRange): PinProgress | number {
  if (pages.type === 'dmabuf') throw new Error('a batched pin of a dma-buf');
  // pfn_reader_user_pin() pins a file through memfd_pin_folios(), which takes only shmem and
  // hugetlbfs files: any other file is EINVAL, nothing pinned, nothing charged.
  if (pages.type === 'file' && pages.filePages === undefined) return -Errno.EINVAL;
  if (shouldFail('pin-pages')) return -Errno.ENOMEM;
  const progress = new PinProgress(range.startIndex);
  pages.addFilledRange(progress);
  return progress;
}

/**
 * Pins the next batch of a fill, up to page `last`: charged before it is pinned (a task over its
 * limit pins nothing), then pinned, each page once per pages object. Returns the batch's runs, or
 * -EFAULT / -ENOMEM with the batch left unpinned and uncharged (the earlier batches stay, for
 * the caller to release with ioptPagesUnpin() of the progress).
 */
export function ioptPagesPinBatch(
  pages: IoptPages,
  range: AreaPagesRange,
  progress: PinProgress,
  last: bigint,
  pinner: PagePinner,
  accounting: Accounting,
): PinnedRun[] | number {
  const first = progress.lastIndex + 1n;
  const va = pageVa(pages, first);
  const fresh = pages.uncoveredPages(first, last, progress);
  const inject = !progress.chargeInjected && fresh !== 0n && pages.accountMode !== 'none';
  if (accounting.exceeds(pages.accountMode, pages.owner, fresh)) {
    // The kernel pins the whole range before it charges, so a hole anywhere in the rest of the
    // range is its answer (EFAULT), else the charge's ENOMEM. Same answers, nothing pinned.
    const fault = pinner.faultOf(pages.memory, va, range.lastIndex - first + 1n, pages.writable);
    if (fault < 0) return fault;
    const rc = accounting.charge(pages.accountMode, pages.owner, fresh, inject);
    if (rc === 0) throw new Error('a charge over the memlock limit succeeded');
    return rc;
  }
  const runs = pinner.pin(pages.memory, va, last - first + 1n, pages.writable);
  if (typeof runs === 'number') return runs;
  const segments = pages.segments(first, last, progress);
  const rc = accounting.charge(pages.accountMode, pages.owner, fresh, inject);
  if (inject) progress.chargeInjected = true;
  if (rc < 0) {
    pinner.unpin(pages.memory, va, last - first + 1n);
    return rc;
  }
  // Where another range already holds a page, the pin just taken (to learn its PFN) is dropped.
  for (const seg of segments) {
    if (seg.covered)
      pinner.unpin(pages.memory, pageVa(pages, seg.start), seg.last - seg.start + 1n);
  }
  pages.npinned += fresh;
  progress.lastIndex = last;
  return runs;
}

/**
 * The last page of the batch that starts at page `first` of `range`: `batchPages` pages, or on
 * to the end of the huge page the batch would end in, so that a huge page is pinned whole (one
 * extent, one IOPTE), never cut at a batch edge.
 */
export function ioptPagesBatchLast(
  pages: IoptPages,
  range: AreaPagesRange,
  first: bigint,
  batchPages: bigint,
): bigint {
  let last = first + batchPages - 1n;
  if (last >= range.lastIndex) return range.lastIndex;
  const va = pageVa(pages, last);
  const vma = pages.memory.vma(va);
  if (vma !== undefined && vma.pageSize > PAGE_SIZE && va >= vma.start && va < vma.end) {
    const hugeEnd = va - (va % vma.pageSize) + vma.pageSize;
    last = (hugeEnd - pages.uptr) / PAGE_SIZE - 1n;
  }
  return last < range.lastIndex ? last : range.lastIndex;
}

/** The end of a batched pin that pinned all of `range`: the area holds the pages now. */
export function ioptPagesPinDone(
  pages: IoptPages,
  range: AreaPagesRange,
  progress: PinProgress,
): void {
  if (progress.lastIndex !== range.lastIndex) throw new Error('a fill ended before its last page');
  pages.deleteFilledRange(progress);
  pages.addFilledRange(range);
}

/** Undoes ioptPagesPin() for one area's range. */
export function ioptPagesUnpin(
  pages: IoptPages,
  range: AreaPagesRange,
  pinner: PagePinner,
  accounting: Accounting,
): void {
  if (!pages.filledRanges.has(range)) throw new Error('unpin of a range that is not pinned');
  if (pages.type === 'dmabuf' || range.lastIndex < range.startIndex) {
    pages.deleteFilledRange(range);
    return;
  }
  // One batch of all of it: pages another area still holds keep their one pin.
  const progress = ioptPagesUnpinStart(pages, range);
  ioptPagesUnpinBatch(pages, progress, range.lastIndex, pinner, accounting);
}

/**
 * The part of an area's pages an unpin has not released yet: [startIndex, lastIndex], given back
 * from the front a batch at a time. It stands for the area among its pages object's filled
 * ranges until the last batch, so that whatever runs between two batches counts each page once.
 */
export class UnpinProgress implements AreaPagesRange {
  startIndex: bigint;
  readonly lastIndex: bigint;

  constructor(range: AreaPagesRange) {
    this.startIndex = range.startIndex;
    this.lastIndex = range.lastIndex;
  }
}

/** ioptPagesUnpin() of `range` begins: the range gives way to its progress. */
export function ioptPagesUnpinStart(pages: IoptPages, range: AreaPagesRange): UnpinProgress {
  if (!pages.filledRanges.has(range)) throw new Error('unpin of a range that is not pinned');
  if (pages.type === 'dmabuf') throw new Error('a batched unpin of a dma-buf');
  const progress = new UnpinProgress(range);
  pages.deleteFilledRange(range);
  pages.addFilledRange(progress);
  return progress;
}

/**
 * Unpins the next batch of an unpin, up to page `last`: the pages no other filled range holds
 * are unpinned and uncharged. After the last batch the progress is no filled range any more.
 */
export function ioptPagesUnpinBatch(
  pages: IoptPages,
  progress: UnpinProgress,
  last: bigint,
  pinner: PagePinner,
  accounting: Accounting,
): void {
  const first = progress.startIndex;
  const fresh = pages.uncoveredPages(first, last, progress);
  for (const seg of pages.segments(first, last, progress)) {
    if (!seg.covered)
      pinner.unpin(pages.memory, pageVa(pages, seg.start), seg.last - seg.start + 1n);
  }
  accounting.uncharge(pages.accountMode, pages.owner, fresh);
  pages.npinned -= fresh;
  progress.startIndex = last + 1n;
  if (progress.startIndex > progress.lastIndex) pages.deleteFilledRange(progress);
}

/** The user VA of page `index` of a pages object. */
function pageVa(pages: IoptPages, index: bigint): bigint {
  return pages.uptr + index * PAGE_SIZE;
}
