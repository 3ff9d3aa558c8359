/**
 * Pinned user pages and the frames that stand for them.
 *
 * When the kernel pins a process page (pin_user_pages with FOLL_LONGTERM) the page gets a fixed
 * physical address until it is unpinned. Here each pinned page is given a PhysMemory frame that
 * STANDS FOR that page: a device DMA to the frame's PA reads or writes the process's memory at
 * the page's VA (PhysMemory routes it through `userPage()`). The same (mm, page) pinned twice gets
 * the same frame, refcounted. Pages of a hugepage VMA share one contiguous, huge-page-aligned
 * frame block per huge page, as a real hugetlbfs or THP folio would; 4K pages get single frames,
 * which the allocator scatters, so ordinary memory is physically discontiguous.
 *
 * Pins are kept as extents, not per page: an extent is a run of pages of one mm that are
 * contiguous in VA and in PA (inside one huge block, or a single 4K frame) and hold the same pin
 * count. Pinning 64 GiB of 1 GiB hugepages is 64 extents; only 4K pages, whose frames are scattered,
 * cost one extent each, as they cost the kernel one struct page each.
 */

import { Errno } from '../uapi/errno.ts';
import type { FrameBacking, PhysMemory, UserPageOfFrame } from './phys-memory.ts';
import { alignDown, hex, isAligned, PAGE_SHIFT, PAGE_SIZE, U64_MAX } from './sizes.ts';
import type { MmId, UserMemory, Vma } from './user-memory.ts';

/** A maximal run of pinned pages that is contiguous both virtually and physically. */
export interface PinnedRun {
  readonly va: bigint;
  readonly pfn: bigint;
  readonly npages: bigint;
}

/** The reverse lookup of a user-page frame. */
export interface FrameOwner {
  readonly mm: MmId;
  /** The page-aligned VA this frame stands for. */
  readonly va: bigint;
  /** Pins held on this 4 KiB page: 0 for a page of a pinned huge page that was not pinned itself. */
  readonly pins: number;
  /** The huge page this frame is part of, when hugepage-backed. */
  readonly hugePage?: { readonly va: bigint; readonly pfn: bigint; readonly size: bigint };
}

/** Counters for the inspector and leak checks. */
export interface PinnedStats {
  /** Distinct 4 KiB pages with at least one pin. */
  readonly pinnedPages: bigint;
  /** Sum of all pin counts. */
  readonly pins: bigint;
  readonly hugeBlocks: bigint;
  /** Frames held for user pages (single frames plus whole huge blocks). */
  readonly frames: bigint;
  /** Address spaces with at least one pinned page. */
  readonly mms: number;
  /** Extents the pins are kept in (runs of equally pinned pages), the store's size. */
  readonly extents: number;
}

/** One extent of the pin store: pages contiguous in VA and PA, each pinned `pins` times. */
export interface PinnedExtentInfo {
  readonly va: bigint;
  readonly pfn: bigint;
  readonly npages: bigint;
  readonly pins: number;
  /** Whether the frames belong to a huge page block. */
  readonly huge: boolean;
}

/** One address space's pinned runs, for snapshots. */
export interface MmPinSnapshot {
  readonly mm: MmId;
  readonly runs: readonly PinnedRun[];
}

interface HugeBlock {
  readonly mm: MmId;
  readonly va: bigint;
  readonly pfn: bigint;
  readonly size: bigint;
  /** 4 KiB pages of this block with a pin; the block is freed when this drops to 0. */
  pinnedPages: bigint;
}

/** Pages [va, va + npages) of one mm, backed by frames [pfn, pfn + npages), each pinned `refs` times. */
interface PinnedExtent {
  readonly va: bigint;
  readonly npages: bigint;
  readonly pfn: bigint;
  refs: number;
  /** The huge block the frames belong to; undefined for a single 4K frame (npages 1). */
  readonly block: HugeBlock | undefined;
}

/** A 4K single frame: the page it stands for, and its mm's pins, whose `mem` DMA goes to. */
interface SingleFrame {
  readonly mm: MmId;
  readonly owner: MmPins;
  readonly va: bigint;
}

interface MmPins {
  /** The latest UserMemory seen for this mm; DMA to its frames goes here. */
  mem: UserMemory;
  /** Disjoint, sorted by va. */
  extents: PinnedExtent[];
  readonly blocks: Map<bigint, HugeBlock>;
}

function extentEnd(e: PinnedExtent): bigint {
  return e.va + (e.npages << PAGE_SHIFT);
}

/** Index of the first extent that ends after `va` (extents.length if none). */
function firstEndingAfter(extents: readonly PinnedExtent[], va: bigint): number {
  let lo = 0;
  let hi = extents.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (extentEnd(extents[mid]!) <= va) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The extent holding page `va`, or undefined. */
function extentAt(pins: MmPins | undefined, va: bigint): PinnedExtent | undefined {
  if (pins === undefined) return undefined;
  const e = pins.extents[firstEndingAfter(pins.extents, va)];
  return e !== undefined && e.va <= va ? e : undefined;
}

/** Splits the extent straddling `va`, if any, so that an extent boundary falls on `va`. */
function splitAt(pins: MmPins, va: bigint): void {
  const i = firstEndingAfter(pins.extents, va);
  const e = pins.extents[i];
  if (e === undefined || e.va >= va) return;
  const head = (va - e.va) >> PAGE_SHIFT;
  pins.extents.splice(
    i,
    1,
    { va: e.va, npages: head, pfn: e.pfn, refs: e.refs, block: e.block },
    { va, npages: e.npages - head, pfn: e.pfn + head, refs: e.refs, block: e.block },
  );
}

/** The pin store of one machine. */
export class PinnedPages implements FrameBacking {
  private readonly phys: PhysMemory;
  private readonly mms = new Map<MmId, MmPins>();
  // The reverse lookups, asked on every DMA, are keyed by frame numbers as JS numbers (exact:
  // frames are below 2^40), which Maps hash without a bigint.
  /** 4K single frames: pfn -> the page it stands for. */
  private readonly singles = new Map<number, SingleFrame>();
  /** Huge blocks by first frame. */
  private readonly blocks = new Map<number, HugeBlock>();
  /** Frame counts of the huge page sizes seen, for the reverse lookup. */
  private readonly blockFrames = new Set<number>();

  constructor(phys: PhysMemory) {
    this.phys = phys;
    phys.setBacking(this);
  }

  /**
   * Pins `npages` pages from `va` (page aligned) of `mem`. Returns the pinned runs in VA order, or
   * -EFAULT for a hole, a write pin of a non-writable VMA or an inaccessible one, -EINVAL for a
   * misaligned or overflowing range, -ENOMEM when a frame cannot be allocated. On failure nothing
   * from this call stays pinned. Costs one step per extent, not per page.
   */
  pin(mem: UserMemory, va: bigint, npages: bigint, write: boolean): PinnedRun[] | number {
    if (!isAligned(va, PAGE_SIZE) || npages < 0n) return -Errno.EINVAL;
    if (npages === 0n) return [];
    const end = va + (npages << PAGE_SHIFT);
    if (end - 1n > U64_MAX) return -Errno.EINVAL;
    const runs: PinnedRun[] = [];
    let vma: Vma | undefined;
    let at = va;
    while (at < end) {
      if (vma === undefined || at >= vma.end || at < vma.start) vma = mem.vma(at);
      const limit = vma !== undefined && vma.end < end ? vma.end : end;
      // GUP faults each page in first; in a userfaultfd range that may wait for the handler,
      // which the caller's memory arranges (a fault now, the call run again once it is in).
      const pinned =
        vma?.userfault === true && mem.pinFaults?.(at, limit - at) === true
          ? -Errno.EFAULT
          : this.pinSome(mem, vma, at, limit, write);
      if (typeof pinned === 'number') {
        if (at > va) this.unpin(mem.mm, va, (at - va) >> PAGE_SHIFT);
        return pinned;
      }
      appendRun(runs, pinned.va, pinned.pfn, pinned.npages);
      at = extentEnd(pinned);
    }
    return runs;
  }

  /**
   * What pin() of the same range would fail with for a hole or a protection, found from the
   * VMAs alone (nothing pinned, no frame allocated): -EFAULT, or 0.
   */
  faultOf(mem: UserMemory, va: bigint, npages: bigint, write: boolean): number {
    const end = va + (npages << PAGE_SHIFT);
    for (let at = va; at < end; ) {
      const vma = mem.vma(at);
      if (vma === undefined || at < vma.start || at >= vma.end) return -Errno.EFAULT;
      if (!vma.readable && !vma.writable) return -Errno.EFAULT;
      if (write && !vma.writable) return -Errno.EFAULT;
      at = vma.end;
    }
    return 0;
  }

  /**
   * Drops one pin from each of `npages` pages from `va`. Unpinning a page that is not pinned is a
   * caller bug: reported, nothing changes, -EINVAL.
   */
  unpin(mm: MmId, va: bigint, npages: bigint): number {
    const pins = this.mms.get(mm);
    const end = va + (npages << PAGE_SHIFT);
    for (let at = va; at < end; ) {
      const e = extentAt(pins, at);
      if (e === undefined) {
        this.phys.events.log('bug', `unpin of ${mm} page ${hex(at)} that is not pinned`);
        return -Errno.EINVAL;
      }
      at = extentEnd(e);
    }
    if (pins === undefined) return 0;
    splitAt(pins, va);
    splitAt(pins, end);
    const extents = pins.extents;
    const first = firstEndingAfter(extents, va);
    let kept = first;
    let i = first;
    for (; i < extents.length && extents[i]!.va < end; i++) {
      const e = extents[i]!;
      if (--e.refs > 0) {
        extents[kept++] = e;
        continue;
      }
      if (e.block === undefined) {
        this.singles.delete(Number(e.pfn));
        this.phys.free(e.pfn);
      } else {
        e.block.pinnedPages -= e.npages;
        if (e.block.pinnedPages === 0n) {
          pins.blocks.delete(e.block.va);
          this.blocks.delete(Number(e.block.pfn));
          this.phys.free(e.block.pfn, e.block.size >> PAGE_SHIFT);
        }
      }
    }
    if (kept !== i) extents.splice(kept, i - kept);
    if (extents.length === 0) this.mms.delete(mm);
    return 0;
  }

  /** The frame of a pinned page, or undefined when (mm, va page) is not pinned. */
  lookup(mm: MmId, va: bigint): bigint | undefined {
    const page = alignDown(va, PAGE_SIZE);
    const e = extentAt(this.mms.get(mm), page);
    return e === undefined ? undefined : e.pfn + ((page - e.va) >> PAGE_SHIFT);
  }

  /** Whose page frame `pfn` stands for, or undefined when it is not a user-page frame. */
  frameOwner(pfn: bigint): FrameOwner | undefined {
    const single = this.singles.get(Number(pfn));
    if (single !== undefined) {
      return { mm: single.mm, va: single.va, pins: this.pinCount(single.mm, single.va) };
    }
    const block = this.blockOf(Number(pfn));
    if (block === undefined) return undefined;
    const va = block.va + ((pfn - block.pfn) << PAGE_SHIFT);
    return {
      mm: block.mm,
      va,
      pins: this.pinCount(block.mm, va),
      hugePage: { va: block.va, pfn: block.pfn, size: block.size },
    };
  }

  /** Whether frame `pfn` is a user page with at least one pin. */
  isPinned(pfn: bigint): boolean {
    return (this.frameOwner(pfn)?.pins ?? 0) > 0;
  }

  /** FrameBacking: the process page behind a user-page frame. */
  userPage(pfn: number): UserPageOfFrame | undefined {
    // A single frame's record is the answer itself: a DMA of 4K pages allocates nothing here.
    const single = this.singles.get(pfn);
    if (single !== undefined) return single;
    const owner = this.hugeOwner(pfn);
    if (owner === undefined) return undefined;
    const pins = this.mms.get(owner.mm);
    return pins === undefined ? undefined : { owner: pins, va: owner.va };
  }

  stats(): PinnedStats {
    let pins = 0n;
    let pinnedPages = 0n;
    let extents = 0;
    for (const mmPins of this.mms.values()) {
      extents += mmPins.extents.length;
      for (const e of mmPins.extents) {
        pinnedPages += e.npages;
        pins += e.npages * BigInt(e.refs);
      }
    }
    let frames = BigInt(this.singles.size);
    for (const block of this.blocks.values()) frames += block.size >> PAGE_SHIFT;
    return {
      pinnedPages,
      pins,
      hugeBlocks: BigInt(this.blocks.size),
      frames,
      mms: this.mms.size,
      extents,
    };
  }

  /** Every mm's pinned pages as maximal runs, VA-sorted. */
  snapshot(): MmPinSnapshot[] {
    const out: MmPinSnapshot[] = [];
    for (const [mm, pins] of this.mms) {
      const runs: PinnedRun[] = [];
      for (const e of pins.extents) appendRun(runs, e.va, e.pfn, e.npages);
      out.push({ mm, runs });
    }
    return out;
  }

  /**
   * Every extent with its pin count, VA-sorted per mm: what the inspector lists as pinned frames
   * (snapshot() merges runs and drops the counts).
   */
  extents(): { readonly mm: MmId; readonly extents: readonly PinnedExtentInfo[] }[] {
    return [...this.mms].map(([mm, pins]) => ({
      mm,
      extents: pins.extents.map((e) => ({
        va: e.va,
        pfn: e.pfn,
        npages: e.npages,
        pins: e.refs,
        huge: e.block !== undefined,
      })),
    }));
  }

  // ---- internals ----------------------------------------------------------------------------

  /**
   * Pins pages from `va` up to at most `limit` (inside `vma`) and returns the extent that now
   * starts at `va`: an existing one (pinned once more) or a new one on fresh frames.
   */
  private pinSome(
    mem: UserMemory,
    vma: Vma | undefined,
    va: bigint,
    limit: bigint,
    write: boolean,
  ): PinnedExtent | number {
    if (vma === undefined || va < vma.start || va >= vma.end) return -Errno.EFAULT;
    if (!vma.readable && !vma.writable) return -Errno.EFAULT;
    if (write && !vma.writable) return -Errno.EFAULT;

    const pins = this.mmPins(mem);
    const known = extentAt(pins, va);
    if (known !== undefined) {
      splitAt(pins, va);
      splitAt(pins, limit);
      const e = extentAt(pins, va)!;
      e.refs++;
      return e;
    }
    // A hole in the pins: fill it up to the next pinned page, the limit or the huge page's end.
    const next = pins.extents[firstEndingAfter(pins.extents, va)];
    if (next !== undefined && next.va < limit) limit = next.va;

    let extent: PinnedExtent;
    const hugeBase = alignDown(va, vma.pageSize);
    if (vma.pageSize > PAGE_SIZE && hugeBase >= vma.start && hugeBase + vma.pageSize <= vma.end) {
      let block = pins.blocks.get(hugeBase);
      if (block === undefined) {
        const frames = vma.pageSize >> PAGE_SHIFT;
        const pfn = this.phys.allocContiguous(frames, frames, 'user-page');
        if (typeof pfn === 'number') {
          if (pins.extents.length === 0) this.mms.delete(mem.mm);
          return pfn;
        }
        block = { mm: mem.mm, va: hugeBase, pfn, size: vma.pageSize, pinnedPages: 0n };
        pins.blocks.set(hugeBase, block);
        this.blocks.set(Number(pfn), block);
        this.blockFrames.add(Number(frames));
      }
      const blockEnd = hugeBase + vma.pageSize;
      const npages = ((limit < blockEnd ? limit : blockEnd) - va) >> PAGE_SHIFT;
      block.pinnedPages += npages;
      extent = { va, npages, pfn: block.pfn + ((va - hugeBase) >> PAGE_SHIFT), refs: 1, block };
    } else {
      const pfn = this.phys.allocFrame('user-page');
      if (typeof pfn === 'number') {
        if (pins.extents.length === 0) this.mms.delete(mem.mm);
        return pfn;
      }
      this.singles.set(Number(pfn), { mm: mem.mm, owner: pins, va });
      extent = { va, npages: 1n, pfn, refs: 1, block: undefined };
    }
    pins.extents.splice(firstEndingAfter(pins.extents, va), 0, extent);
    return extent;
  }

  /** This mm's pins, created on first use; remembers `mem` as the memory DMA goes to. */
  private mmPins(mem: UserMemory): MmPins {
    let pins = this.mms.get(mem.mm);
    if (pins === undefined) {
      pins = { mem, extents: [], blocks: new Map() };
      this.mms.set(mem.mm, pins);
    }
    pins.mem = mem;
    return pins;
  }

  private pinCount(mm: MmId, va: bigint): number {
    return extentAt(this.mms.get(mm), va)?.refs ?? 0;
  }

  /** Huge blocks are aligned to their size, so the block holding pfn starts at pfn rounded down. */
  private blockOf(pfn: number): HugeBlock | undefined {
    for (const frames of this.blockFrames) {
      const block = this.blocks.get(pfn - (pfn % frames));
      if (block !== undefined && BigInt(pfn) < block.pfn + (block.size >> PAGE_SHIFT)) return block;
    }
    return undefined;
  }

  private hugeOwner(pfn: number): { readonly mm: MmId; readonly va: bigint } | undefined {
    const block = this.blockOf(pfn);
    if (block === undefined) return undefined;
    return { mm: block.mm, va: block.va + ((BigInt(pfn) - block.pfn) << PAGE_SHIFT) };
  }
}

/** Appends pages to a run list, extending the last run when VA and PA both continue it. */
function appendRun(runs: PinnedRun[], va: bigint, pfn: bigint, npages: bigint): void {
  const last = runs[runs.length - 1];
  if (
    last !== undefined &&
    last.va + (last.npages << PAGE_SHIFT) === va &&
    last.pfn + last.npages === pfn
  ) {
    runs[runs.length - 1] = { va: last.va, pfn: last.pfn, npages: last.npages + npages };
    return;
  }
  runs.push({ va, pfn, npages });
}
