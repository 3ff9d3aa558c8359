/**
 * A radix I/O page table whose entries really live in PhysMemory frames, so a device walk reads
 * simulated RAM and the table pages count as used memory.
 *
 * Format: 4 KiB table pages of 512 little-endian u64 entries. An entry is either empty (0), a
 * pointer to the next table (PRESENT | table PA), or a leaf (PRESENT | READ? | WRITE? | DIRTY? | PA,
 * plus LEAF above the last level). Level 0 maps 4 KiB, level 1 2 MiB, level 2 1 GiB; leaves exist only
 * at those levels. 4 levels cover a 48-bit IOVA space (the hardware IOMMU domains), 6 levels the
 * whole 64-bit space (the software no-IOMMU table, like AMDv1 with a 64-bit VA).
 *
 * Table pages that become empty on unmap are freed, so `tablePages()` only counts live ones.
 *
 * Two readers, two views (decision 200). Devices translate by walking the entries in RAM, wherever
 * they lead: a no-IOMMU device that DMAs over a table page changes what devices see, as on real
 * hardware. The kernel's own code (map, unmap, iova_to_phys, free) works from its copy of what it
 * wrote, so a corrupted table never makes it follow, write through or free a garbage pointer; its
 * writes go to both, so an entry it rewrites is an entry repaired. The DIRTY bit is the hardware's:
 * only RAM holds it, and the kernel reads it there.
 */
import { Errno } from '../uapi/errno.ts';
import type { PhysMemory } from './phys-memory.ts';
import {
  alignDown,
  isAligned,
  PAGE_SHIFT,
  paOf,
  pfnOf,
  SZ_1G,
  SZ_2M,
  SZ_4K,
  U64_MAX,
} from './sizes.ts';

/** Mapping permissions, with the kernel's IOMMU_READ / IOMMU_WRITE / IOMMU_CACHE values. */
export const Prot = { READ: 1, WRITE: 2, CACHE: 4 } as const;

/** Page-table entry bits. */
export const Pte = {
  PRESENT: 1n << 0n,
  READ: 1n << 1n,
  WRITE: 1n << 2n,
  /** Set by the IOMMU when a device writes through a leaf while dirty tracking is on. */
  DIRTY: 1n << 6n,
  /** A large leaf (2 MiB / 1 GiB) rather than a pointer to the next table. */
  LEAF: 1n << 7n,
  /** Output address bits 12..51 (52-bit physical addresses). */
  ADDR_MASK: ((1n << 52n) - 1n) & ~0xfffn,
} as const;

/** The page sizes a radix leaf can have: 4K | 2M | 1G. */
export const RADIX_PGSIZES = SZ_4K | SZ_2M | SZ_1G;
/** The largest physical address a leaf can hold. */
export const PA_LAST = (1n << 52n) - 1n;

export interface IoPagetableOptions {
  /** Number of radix levels, 2..6: 4 gives 48-bit IOVAs, 6 the full 64 bits. */
  readonly levels: number;
  /** Leaf sizes allowed (a subset of 4K | 2M | 1G, including the smallest one used). */
  readonly pgsizeBitmap: bigint;
}

/** One leaf mapping. */
export interface PtLeaf {
  /** First IOVA of the leaf. */
  readonly iova: bigint;
  /** First PA of the leaf. */
  readonly pa: bigint;
  readonly size: bigint;
  /** Prot bits (READ / WRITE). */
  readonly prot: number;
}

/** One table visited by a walk. */
export interface WalkStep {
  /** levels-1 at the top, 0 at the 4 KiB level. */
  readonly level: number;
  readonly tablePa: bigint;
  readonly index: number;
  readonly ptePa: bigint;
  readonly pte: bigint;
}

export type WalkResult =
  | { readonly kind: 'leaf'; readonly pa: bigint; readonly pageSize: bigint; readonly prot: number }
  | { readonly kind: 'not-present'; readonly level: number }
  | { readonly kind: 'outside' };

/** A full translation of one IOVA, as hardware would perform it: for DMA and the inspector. */
export interface PagetableWalk {
  readonly iova: bigint;
  readonly steps: readonly WalkStep[];
  readonly result: WalkResult;
}

/** The kernel's copy of one table page: what it last wrote to each entry. */
interface TablePage {
  readonly pa: bigint;
  readonly entries: BigUint64Array;
  /** Entries present. */
  present: number;
}

/** Where a kernel walk (of its copy) stopped. */
type Found =
  | {
      readonly leaf: true;
      readonly level: number;
      readonly table: TablePage;
      readonly index: number;
      readonly pte: bigint;
    }
  | { readonly leaf: false; readonly level: number };

/** Where a hardware walk (of RAM) stopped. */
type HwFound =
  | { readonly leaf: true; readonly level: number; readonly ptePa: bigint; readonly pte: bigint }
  | { readonly leaf: false; readonly level: number };

const ENTRIES = 512;
/** An IOVA shifted by this is the index of the 2 MiB region one level-0 table maps. */
const LEVEL0_REGION_SHIFT = 21n;

/** Shift and size of what one entry at each level maps; index 6 is the span of a 6-level table. */
const LEVEL_SHIFTS: readonly bigint[] = [0, 1, 2, 3, 4, 5, 6].map(
  (l) => PAGE_SHIFT + 9n * BigInt(l),
);
const LEVEL_SIZES: readonly bigint[] = LEVEL_SHIFTS.map((shift) => 1n << shift);

// Tables, not arithmetic: every bigint operation allocates, and these run per level per walk.
function levelShift(level: number): bigint {
  return LEVEL_SHIFTS[level]!;
}

function levelSize(level: number): bigint {
  return LEVEL_SIZES[level]!;
}

function indexAt(iova: bigint, level: number): number {
  return Number((iova >> levelShift(level)) & 511n);
}

function isLeaf(pte: bigint, level: number): boolean {
  return level === 0 || (pte & Pte.LEAF) !== 0n;
}

/** Leaves exist at levels 0..2 only: LEAF higher up is an entry the hardware refuses. */
const MAX_LEAF_LEVEL = 2;

function protOf(pte: bigint): number {
  return ((pte & Pte.READ) !== 0n ? Prot.READ : 0) | ((pte & Pte.WRITE) !== 0n ? Prot.WRITE : 0);
}

/** A radix I/O page table stored in simulated physical memory. */
export class IoPagetable {
  readonly levels: number;
  readonly pgsizeBitmap: bigint;
  /** The last IOVA this table can translate. */
  readonly lastIova: bigint;
  /** PA of the top-level table. */
  readonly root: bigint;

  /** The RAM its table pages live in. */
  readonly phys: PhysMemory;
  /** The kernel's copy of every live table page (root included), by PA. */
  private readonly tables = new Map<number, TablePage>();
  private readonly rootPage: TablePage;
  private readonly minPage: bigint;
  private mapped = 0n;
  private freed = false;
  /** The kernel walk's cache: the level-0 table of one 2 MiB region (dropped when tables go). */
  private kernelCache: { region: bigint; table: TablePage } | undefined;
  /** The hardware walk's cache: a level-0 table and the RAM generation it was read in. */
  private walkCache: { region: bigint; table: bigint; generation: number } | undefined;

  /**
   * Allocates the top-level table. Returns the table, -EINVAL for unsupported options, or
   * -ENOMEM (the 'pagetable-alloc' injection site).
   */
  static create(phys: PhysMemory, options: IoPagetableOptions): IoPagetable | number {
    const { levels, pgsizeBitmap } = options;
    if (!Number.isInteger(levels) || levels < 2 || levels > 6) return -Errno.EINVAL;
    if (pgsizeBitmap === 0n || (pgsizeBitmap & ~RADIX_PGSIZES) !== 0n) return -Errno.EINVAL;
    if ((pgsizeBitmap & SZ_1G) !== 0n && levels < 3) return -Errno.EINVAL;
    const pfn = phys.allocContiguous(1n, 1n, 'page-table');
    if (typeof pfn === 'number') return pfn;
    return new IoPagetable(phys, options, paOf(pfn));
  }

  private constructor(phys: PhysMemory, options: IoPagetableOptions, root: bigint) {
    this.phys = phys;
    this.levels = options.levels;
    this.pgsizeBitmap = options.pgsizeBitmap;
    this.minPage = options.pgsizeBitmap & -options.pgsizeBitmap;
    const span = levelShift(options.levels);
    this.lastIova = span >= 64n ? U64_MAX : (1n << span) - 1n;
    this.root = root;
    this.rootPage = this.addTable(root);
  }

  /** Bytes currently mapped. */
  get mappedBytes(): bigint {
    return this.mapped;
  }

  /** Live table pages, the top-level one included (0 after free()). */
  tablePages(): bigint {
    return BigInt(this.tables.size);
  }

  /** PAs of the live table pages (for the inspector and leak checks). */
  tablePagePas(): bigint[] {
    return [...this.tables.values()].map((t) => t.pa);
  }

  /** Whether the frame at `pa` is one of this table's live pages. */
  hasTablePage(pa: bigint): boolean {
    return this.tables.has(Number(pa & ~0xfffn));
  }

  /**
   * Entries whose value in RAM is not what the kernel wrote (the DIRTY bit aside): what a
   * device's write over the table changed and no kernel write has repaired since.
   */
  divergentEntries(): number {
    let n = 0;
    for (const table of this.tables.values()) {
      const ram = this.phys.read(table.pa, 4096);
      const view = new DataView(ram.buffer);
      for (let i = 0; i < ENTRIES; i++) {
        if ((view.getBigUint64(i * 8, true) & ~Pte.DIRTY) !== table.entries[i]) n++;
      }
    }
    return n;
  }

  /**
   * Maps [iova, iova + size) to [pa, pa + size) using the largest leaves the alignment of both
   * addresses and the page-size bitmap allow. -EINVAL for misalignment, a zero size or no
   * READ/WRITE permission; -ERANGE beyond the table's IOVA space or 52-bit PAs; -EADDRINUSE if any
   * part is already mapped; -ENOMEM when a table page cannot be allocated. On failure nothing of
   * this call stays mapped.
   */
  map(iova: bigint, pa: bigint, size: bigint, prot: number): number {
    if (this.freed) return -Errno.EINVAL;
    if (size <= 0n || (prot & (Prot.READ | Prot.WRITE)) === 0) return -Errno.EINVAL;
    if (!isAligned(iova | pa | size, this.minPage)) return -Errno.EINVAL;
    if (iova < 0n || iova + size - 1n > this.lastIova || pa < 0n || pa + size - 1n > PA_LAST) {
      return -Errno.ERANGE;
    }
    let done = 0n;
    while (done < size) {
      const level = this.leafLevelFor(iova + done, pa + done, size - done);
      const rc = this.mapLeaf(iova + done, pa + done, level, prot);
      if (rc < 0) {
        if (done > 0n) this.unmap(iova, done);
        return rc;
      }
      done += levelSize(level);
      this.mapped += levelSize(level);
    }
    return 0;
  }

  /**
   * Removes every leaf lying entirely inside [iova, iova + size) and returns the bytes unmapped.
   * Holes are skipped. A large leaf straddling either end is left mapped (iommufd only unmaps what
   * it mapped, so that would be a caller bug) and is not counted. Misaligned requests unmap nothing.
   */
  unmap(iova: bigint, size: bigint): bigint {
    if (this.freed || size <= 0n || !isAligned(iova | size, this.minPage)) return 0n;
    const limit = this.lastIova + 1n;
    const end = iova + size > limit ? limit : iova + size;
    let total = 0n;
    let cur = iova;
    while (cur < end) {
      const found = this.find(cur);
      const sz = levelSize(found.level);
      const base = alignDown(cur, sz);
      if (found.leaf && base >= iova && base + sz <= end) {
        this.setEntry(found.table, found.index, 0n);
        this.prune(base);
        total += sz;
      }
      cur = base + sz;
    }
    this.mapped -= total;
    return total;
  }

  /**
   * The IOMMU sets the DIRTY bit of the leaf it translated `iova` through (a device wrote through
   * it), in RAM, wherever its walk led; false if the walk found no leaf.
   */
  setDirty(iova: bigint): boolean {
    if (this.freed || iova < 0n || iova > this.lastIova) return false;
    const found = this.hwFind(iova);
    if (!found.leaf) return false;
    if ((found.pte & Pte.DIRTY) === 0n) this.phys.writeU64(found.ptePa, found.pte | Pte.DIRTY);
    return true;
  }

  /**
   * Calls `record` with each leaf of [iova, iova + size) whose DIRTY bit is set (its whole IOVA
   * range), clearing the bit unless `noClear`. Holes are skipped. The kernel finds its leaves in
   * its copy and reads and clears the bit in RAM, where the IOMMU sets it.
   */
  readAndClearDirty(
    iova: bigint,
    size: bigint,
    noClear: boolean,
    record: ((iova: bigint, length: bigint) => void) | undefined,
  ): void {
    if (this.freed || size <= 0n) return;
    const limit = this.lastIova + 1n;
    const end = iova + size > limit ? limit : iova + size;
    let cur = iova;
    while (cur < end) {
      const found = this.find(cur);
      const sz = levelSize(found.level);
      const base = alignDown(cur, sz);
      if (found.leaf) {
        const ptePa = found.table.pa + BigInt(found.index * 8);
        const inRam = this.phys.readU64(ptePa);
        if ((inRam & Pte.DIRTY) !== 0n) {
          if (!noClear) this.phys.writeU64(ptePa, inRam & ~Pte.DIRTY);
          record?.(base, sz);
        }
      }
      cur = base + sz;
    }
  }

  /** The PA for `iova` including its offset inside the page, or undefined when not mapped. */
  iovaToPhys(iova: bigint): bigint | undefined {
    const leaf = this.lookup(iova);
    return leaf === undefined ? undefined : leaf.pa + (iova - leaf.iova);
  }

  /** The leaf the kernel mapped at `iova`, or undefined. */
  lookup(iova: bigint): PtLeaf | undefined {
    if (this.freed || iova < 0n || iova > this.lastIova) return undefined;
    const found = this.find(iova);
    return found.leaf ? leafAt(iova, found.level, found.pte) : undefined;
  }

  /**
   * The leaf the IOMMU translates `iova` through: a walk of the entries in RAM, at most one read
   * per level wherever they point (beyond RAM reads as zeros). Undefined when it finds none, or
   * an entry the hardware refuses (a large leaf above 1 GiB).
   */
  hardwareLookup(iova: bigint): PtLeaf | undefined {
    if (this.freed || iova < 0n || iova > this.lastIova) return undefined;
    const found = this.hwFind(iova);
    return found.leaf ? leafAt(iova, found.level, found.pte) : undefined;
  }

  /** Walks the table in RAM for `iova` as the IOMMU does, recording every entry read. */
  walk(iova: bigint): PagetableWalk {
    const steps: WalkStep[] = [];
    if (this.freed || iova < 0n || iova > this.lastIova)
      return { iova, steps, result: { kind: 'outside' } };
    let table = this.root;
    for (let level = this.levels - 1; level >= 0; level--) {
      const index = indexAt(iova, level);
      const ptePa = table + BigInt(index * 8);
      const pte = this.phys.readU64(ptePa);
      steps.push({ level, tablePa: table, index, ptePa, pte });
      if ((pte & Pte.PRESENT) === 0n || (isLeaf(pte, level) && level > MAX_LEAF_LEVEL))
        return { iova, steps, result: { kind: 'not-present', level } };
      if (isLeaf(pte, level)) {
        const size = levelSize(level);
        const pa = (pte & Pte.ADDR_MASK & ~(size - 1n)) + (iova & (size - 1n));
        return { iova, steps, result: { kind: 'leaf', pa, pageSize: size, prot: protOf(pte) } };
      }
      table = pte & Pte.ADDR_MASK;
    }
    return { iova, steps, result: { kind: 'not-present', level: 0 } };
  }

  /** Every leaf the kernel mapped, in IOVA order. */
  leaves(): PtLeaf[] {
    const out: PtLeaf[] = [];
    if (!this.freed) this.collect(this.rootPage, this.levels - 1, 0n, out);
    return out;
  }

  /** Releases every table page. The table is unusable afterwards; calling free() twice is a no-op. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    for (const table of this.tables.values()) this.phys.free(pfnOf(table.pa));
    this.tables.clear();
    this.kernelCache = undefined;
    this.mapped = 0n;
  }

  // ---- internals ----------------------------------------------------------------------------

  private addTable(pa: bigint): TablePage {
    const table: TablePage = { pa, entries: new BigUint64Array(ENTRIES), present: 0 };
    this.tables.set(Number(pa), table);
    return table;
  }

  /** The kernel writes an entry: its copy, and the RAM devices read. */
  private setEntry(table: TablePage, index: number, value: bigint): void {
    const old = table.entries[index]!;
    table.entries[index] = value;
    if ((old & Pte.PRESENT) === 0n && (value & Pte.PRESENT) !== 0n) table.present++;
    if ((old & Pte.PRESENT) !== 0n && (value & Pte.PRESENT) === 0n) table.present--;
    this.phys.writeU64(table.pa + BigInt(index * 8), value);
  }

  /** The table a kernel-written pointer entry leads to (always one of its own). */
  private next(pte: bigint): TablePage {
    const table = this.tables.get(Number(pte & Pte.ADDR_MASK));
    if (table === undefined) throw new Error(`io-pgtable: pointer ${pte} to no table of its own`);
    return table;
  }

  private leafLevelFor(iova: bigint, pa: bigint, remaining: bigint): number {
    for (let level = Math.min(MAX_LEAF_LEVEL, this.levels - 1); level > 0; level--) {
      const size = levelSize(level);
      if ((this.pgsizeBitmap & size) !== 0n && isAligned(iova | pa, size) && remaining >= size) {
        return level;
      }
    }
    return 0;
  }

  private mapLeaf(iova: bigint, pa: bigint, level: number, prot: number): number {
    let table = this.rootPage;
    for (let l = this.levels - 1; l > level; l--) {
      const index = indexAt(iova, l);
      const pte = table.entries[index]!;
      if ((pte & Pte.PRESENT) !== 0n) {
        if (isLeaf(pte, l)) return -Errno.EADDRINUSE;
        table = this.next(pte);
        continue;
      }
      const pfn = this.phys.allocContiguous(1n, 1n, 'page-table');
      if (typeof pfn === 'number') {
        this.prune(iova);
        return pfn;
      }
      const next = this.addTable(paOf(pfn));
      this.setEntry(table, index, next.pa | Pte.PRESENT);
      table = next;
    }
    const index = indexAt(iova, level);
    if ((table.entries[index]! & Pte.PRESENT) !== 0n) {
      this.prune(iova);
      return -Errno.EADDRINUSE;
    }
    let pte = pa | Pte.PRESENT;
    if ((prot & Prot.READ) !== 0) pte |= Pte.READ;
    if ((prot & Prot.WRITE) !== 0) pte |= Pte.WRITE;
    if (level > 0) pte |= Pte.LEAF;
    this.setEntry(table, index, pte);
    return 0;
  }

  /** A walk of the kernel's copy. */
  private find(iova: bigint): Found {
    let table = this.rootPage;
    let level = this.levels - 1;
    // GET_PA and the checker ask page after page of one region: start from its level-0 table.
    const region = iova >> LEVEL0_REGION_SHIFT;
    if (this.kernelCache?.region === region) {
      table = this.kernelCache.table;
      level = 0;
    }
    for (; level >= 0; level--) {
      const index = indexAt(iova, level);
      const pte = table.entries[index]!;
      if ((pte & Pte.PRESENT) === 0n) return { leaf: false, level };
      if (isLeaf(pte, level)) return { leaf: true, level, table, index, pte };
      table = this.next(pte);
      if (level === 1) this.kernelCache = { region, table };
    }
    return { leaf: false, level: 0 };
  }

  /** A walk of RAM, as the IOMMU does it. */
  private hwFind(iova: bigint): HwFound {
    let table = this.root;
    let level = this.levels - 1;
    // A device streaming through a buffer walks the same upper levels page after page; like a
    // paging-structure cache, start from the last level-0 table of this 2 MiB region, as long as
    // no RAM (so no table entry) changed since it was read.
    const region = iova >> LEVEL0_REGION_SHIFT;
    if (
      this.walkCache?.generation === this.phys.ramGeneration &&
      this.walkCache.region === region
    ) {
      table = this.walkCache.table;
      level = 0;
    }
    // A table in a frame standing for a process's page changes without the generation moving.
    let cacheable = level > 0;
    for (; level >= 0; level--) {
      cacheable &&= !this.phys.standsForUserPage(Number(table));
      const ptePa = table + BigInt(indexAt(iova, level) * 8);
      const pte = this.phys.readU64(ptePa);
      if ((pte & Pte.PRESENT) === 0n) return { leaf: false, level };
      if (isLeaf(pte, level)) {
        return level > MAX_LEAF_LEVEL ? { leaf: false, level } : { leaf: true, level, ptePa, pte };
      }
      table = pte & Pte.ADDR_MASK;
      if (level === 1 && cacheable && !this.phys.standsForUserPage(Number(table)))
        this.walkCache = { region, table, generation: this.phys.ramGeneration };
    }
    return { leaf: false, level: 0 };
  }

  /** Frees the empty tables on the path to `iova`, deepest first (the root always stays). */
  private prune(iova: bigint): void {
    const path: { table: TablePage; parent: TablePage; index: number }[] = [];
    let table = this.rootPage;
    for (let level = this.levels - 1; level > 0; level--) {
      const index = indexAt(iova, level);
      const pte = table.entries[index]!;
      if ((pte & Pte.PRESENT) === 0n || isLeaf(pte, level)) break;
      const next = this.next(pte);
      path.push({ table: next, parent: table, index });
      table = next;
    }
    for (let i = path.length - 1; i >= 0; i--) {
      const step = path[i]!;
      if (step.table.present !== 0) return;
      this.setEntry(step.parent, step.index, 0n);
      this.tables.delete(Number(step.table.pa));
      this.kernelCache = undefined;
      this.phys.free(pfnOf(step.table.pa));
    }
  }

  private collect(table: TablePage, level: number, base: bigint, out: PtLeaf[]): void {
    const size = levelSize(level);
    for (let index = 0; index < ENTRIES; index++) {
      const pte = table.entries[index]!;
      if ((pte & Pte.PRESENT) === 0n) continue;
      const iova = base + BigInt(index) * size;
      if (isLeaf(pte, level)) {
        out.push({ iova, pa: pte & Pte.ADDR_MASK & ~(size - 1n), size, prot: protOf(pte) });
      } else {
        this.collect(this.next(pte), level - 1, iova, out);
      }
    }
  }
}

/** The leaf `pte` at `level` describes, for the page holding `iova`. */
function leafAt(iova: bigint, level: number, pte: bigint): PtLeaf {
  const size = levelSize(level);
  return {
    iova: alignDown(iova, size),
    pa: pte & Pte.ADDR_MASK & ~(size - 1n),
    size,
    prot: protOf(pte),
  };
}
