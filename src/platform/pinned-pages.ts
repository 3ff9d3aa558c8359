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
 * The API is range-based so the storage can become extent-based later; for now it keeps one map
 * entry per pinned 4 KiB page.
 */

import { Errno } from '../uapi/errno.ts';
import type { FrameBacking, PhysMemory } from './phys-memory.ts';
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
  pinnedPages: number;
}

interface PinnedPage {
  readonly pfn: bigint;
  refs: number;
  readonly block: HugeBlock | undefined;
}

interface MmPins {
  /** The latest UserMemory seen for this mm; DMA to its frames goes here. */
  mem: UserMemory;
  readonly pages: Map<bigint, PinnedPage>;
  readonly blocks: Map<bigint, HugeBlock>;
}

/** The pin store of one machine. */
export class PinnedPages implements FrameBacking {
  private readonly phys: PhysMemory;
  private readonly mms = new Map<MmId, MmPins>();
  /** 4K single frames: pfn -> the page it stands for. */
  private readonly singles = new Map<bigint, { readonly mm: MmId; readonly va: bigint }>();
  /** Huge blocks by first frame. */
  private readonly blocks = new Map<bigint, HugeBlock>();
  /** Frame counts of the huge page sizes seen, for the reverse lookup. */
  private readonly blockFrames = new Set<bigint>();

  constructor(phys: PhysMemory) {
    this.phys = phys;
    phys.setBacking(this);
  }

  /**
   * Pins `npages` pages from `va` (page aligned) of `mem`. Returns the pinned runs in VA order, or
   * -EFAULT for a hole, a write pin of a non-writable VMA or an inaccessible one, -EINVAL for a
   * misaligned or overflowing range, -ENOMEM when a frame cannot be allocated. On failure nothing
   * from this call stays pinned.
   */
  pin(mem: UserMemory, va: bigint, npages: bigint, write: boolean): PinnedRun[] | number {
    if (!isAligned(va, PAGE_SIZE) || npages < 0n) return -Errno.EINVAL;
    if (npages === 0n) return [];
    if (va + (npages << PAGE_SHIFT) - 1n > U64_MAX) return -Errno.EINVAL;
    const runs: PinnedRun[] = [];
    let vma: Vma | undefined;
    for (let i = 0n; i < npages; i++) {
      const pageVa = va + (i << PAGE_SHIFT);
      if (vma === undefined || pageVa >= vma.end || pageVa < vma.start) vma = mem.vma(pageVa);
      const pfn = this.pinOne(mem, vma, pageVa, write);
      if (typeof pfn === 'number') {
        if (i > 0n) this.unpin(mem.mm, va, i);
        return pfn;
      }
      appendPage(runs, pageVa, pfn);
    }
    return runs;
  }

  /**
   * Drops one pin from each of `npages` pages from `va`. Unpinning a page that is not pinned is a
   * caller bug: reported, nothing changes, -EINVAL.
   */
  unpin(mm: MmId, va: bigint, npages: bigint): number {
    const pins = this.mms.get(mm);
    for (let i = 0n; i < npages; i++) {
      const pageVa = va + (i << PAGE_SHIFT);
      if (pins?.pages.get(pageVa) === undefined) {
        this.phys.events.log('bug', `unpin of ${mm} page ${hex(pageVa)} that is not pinned`);
        return -Errno.EINVAL;
      }
    }
    if (pins === undefined) return 0;
    for (let i = 0n; i < npages; i++) {
      const pageVa = va + (i << PAGE_SHIFT);
      const page = pins.pages.get(pageVa)!;
      if (--page.refs > 0) continue;
      pins.pages.delete(pageVa);
      if (page.block === undefined) {
        this.singles.delete(page.pfn);
        this.phys.free(page.pfn);
      } else if (--page.block.pinnedPages === 0) {
        pins.blocks.delete(page.block.va);
        this.blocks.delete(page.block.pfn);
        this.phys.free(page.block.pfn, page.block.size >> PAGE_SHIFT);
      }
    }
    if (pins.pages.size === 0) this.mms.delete(mm);
    return 0;
  }

  /** The frame of a pinned page, or undefined when (mm, va page) is not pinned. */
  lookup(mm: MmId, va: bigint): bigint | undefined {
    return this.mms.get(mm)?.pages.get(alignDown(va, PAGE_SIZE))?.pfn;
  }

  /** Whose page frame `pfn` stands for, or undefined when it is not a user-page frame. */
  frameOwner(pfn: bigint): FrameOwner | undefined {
    const single = this.singles.get(pfn);
    if (single !== undefined) {
      return { mm: single.mm, va: single.va, pins: this.pinCount(single.mm, single.va) };
    }
    const block = this.blockOf(pfn);
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
  userPage(pfn: bigint): { readonly mem: UserMemory; readonly va: bigint } | undefined {
    const owner = this.singles.get(pfn) ?? this.hugeOwner(pfn);
    if (owner === undefined) return undefined;
    const pins = this.mms.get(owner.mm);
    return pins === undefined ? undefined : { mem: pins.mem, va: owner.va };
  }

  stats(): PinnedStats {
    let pins = 0n;
    let pinnedPages = 0n;
    for (const mmPins of this.mms.values()) {
      pinnedPages += BigInt(mmPins.pages.size);
      for (const page of mmPins.pages.values()) pins += BigInt(page.refs);
    }
    let frames = BigInt(this.singles.size);
    for (const block of this.blocks.values()) frames += block.size >> PAGE_SHIFT;
    return {
      pinnedPages,
      pins,
      hugeBlocks: BigInt(this.blocks.size),
      frames,
      mms: this.mms.size,
    };
  }

  /** Every mm's pinned pages as maximal runs, VA-sorted. */
  snapshot(): MmPinSnapshot[] {
    const out: MmPinSnapshot[] = [];
    for (const [mm, pins] of this.mms) {
      const vas = [...pins.pages.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const runs: PinnedRun[] = [];
      for (const va of vas) appendPage(runs, va, pins.pages.get(va)!.pfn);
      out.push({ mm, runs });
    }
    return out;
  }

  // ---- internals ----------------------------------------------------------------------------

  private pinOne(
    mem: UserMemory,
    vma: Vma | undefined,
    va: bigint,
    write: boolean,
  ): bigint | number {
    if (vma === undefined || va < vma.start || va >= vma.end) return -Errno.EFAULT;
    if (!vma.readable && !vma.writable) return -Errno.EFAULT;
    if (write && !vma.writable) return -Errno.EFAULT;

    const existing = this.mms.get(mem.mm);
    const known = existing?.pages.get(va);
    if (existing !== undefined) existing.mem = mem;
    if (known !== undefined) {
      known.refs++;
      return known.pfn;
    }

    let page: PinnedPage;
    const hugeBase = alignDown(va, vma.pageSize);
    if (vma.pageSize > PAGE_SIZE && hugeBase >= vma.start && hugeBase + vma.pageSize <= vma.end) {
      let block = existing?.blocks.get(hugeBase);
      if (block === undefined) {
        const frames = vma.pageSize >> PAGE_SHIFT;
        const pfn = this.phys.allocContiguous(frames, frames, 'user-page');
        if (typeof pfn === 'number') return pfn;
        block = { mm: mem.mm, va: hugeBase, pfn, size: vma.pageSize, pinnedPages: 0 };
        this.mmPins(mem).blocks.set(hugeBase, block);
        this.blocks.set(pfn, block);
        this.blockFrames.add(frames);
      }
      block.pinnedPages++;
      page = { pfn: block.pfn + ((va - hugeBase) >> PAGE_SHIFT), refs: 1, block };
    } else {
      const pfn = this.phys.allocFrame('user-page');
      if (typeof pfn === 'number') return pfn;
      this.singles.set(pfn, { mm: mem.mm, va });
      page = { pfn, refs: 1, block: undefined };
    }
    this.mmPins(mem).pages.set(va, page);
    return page.pfn;
  }

  private mmPins(mem: UserMemory): MmPins {
    let pins = this.mms.get(mem.mm);
    if (pins === undefined) {
      pins = { mem, pages: new Map(), blocks: new Map() };
      this.mms.set(mem.mm, pins);
    }
    return pins;
  }

  private pinCount(mm: MmId, va: bigint): number {
    return this.mms.get(mm)?.pages.get(va)?.refs ?? 0;
  }

  /** Huge blocks are aligned to their size, so the block holding pfn starts at pfn rounded down. */
  private blockOf(pfn: bigint): HugeBlock | undefined {
    for (const frames of this.blockFrames) {
      const block = this.blocks.get(alignDown(pfn, frames));
      if (block !== undefined && pfn < block.pfn + (block.size >> PAGE_SHIFT)) return block;
    }
    return undefined;
  }

  private hugeOwner(pfn: bigint): { readonly mm: MmId; readonly va: bigint } | undefined {
    const block = this.blockOf(pfn);
    if (block === undefined) return undefined;
    return { mm: block.mm, va: block.va + ((pfn - block.pfn) << PAGE_SHIFT) };
  }
}

/** Appends one page to a run list, extending the last run when VA and PA both continue it. */
function appendPage(runs: PinnedRun[], va: bigint, pfn: bigint): void {
  const last = runs[runs.length - 1];
  if (
    last !== undefined &&
    last.va + (last.npages << PAGE_SHIFT) === va &&
    last.pfn + last.npages === pfn
  ) {
    runs[runs.length - 1] = { va: last.va, pfn: last.pfn, npages: last.npages + 1n };
    return;
  }
  runs.push({ va, pfn, npages: 1n });
}
