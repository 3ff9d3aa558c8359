/**
 * The IOMMU's walk of an I/O page table for DMA, in numbers, and the two caches hardware keeps
 * of it: a paging-structure cache (the level-0 table of the last 2 MiB region walked) and an
 * IOTLB (that table's 4 KiB translations).
 *
 * It walks the entries in RAM exactly as IoPagetable.hardwareLookup() does, wherever they lead
 * (decision 200), but a device asks it for every page it moves, so it makes no bigint and no
 * object: an IOVA below 2^52 is exact in a double, and so is an entry's low 52 bits, which are
 * all the format looks at (flags in bits 0-11, an address in bits 12-51).
 *
 * The caches stay valid while PhysMemory.ramGeneration is unchanged: any write to RAM (so any
 * map, unmap or device write over a table) and any free bumps it. Tables that are not RAM (a
 * corrupted pointer into a frame standing for a process's page, whose bytes change without the
 * generation moving) are never cached, so a cached walk always answers what a fresh one would.
 */
import { Prot, Pte } from './io-pgtable.ts';
import type { PhysMemory } from './phys-memory.ts';

/** Every IOVA the walk in numbers takes is below this, so it and its offsets are exact. */
export const NUMBER_IOVA_LIMIT = 2 ** 52;

const ENTRIES = 512;
const PAGE_BYTES = 4096;
/** Bytes one entry maps at each level (a power of two, exact as a double up to level 6). */
const LEVEL_BYTES: readonly number[] = [0, 1, 2, 3, 4, 5, 6].map((l) => 2 ** (12 + 9 * l));
/** Leaves exist at levels 0..2 only: LEAF higher up is an entry the hardware refuses. */
const MAX_LEAF_LEVEL = 2;
// The entry bits the walk looks at, as numbers (all in bits 0-11).
const PTE_PRESENT = Number(Pte.PRESENT);
const PTE_READ = Number(Pte.READ);
const PTE_WRITE = Number(Pte.WRITE);
const PTE_LEAF = Number(Pte.LEAF);
/** An IOTLB slot not filled since the region was cached. */
const EMPTY = -1;

/** What the walk needs of a table: where its top level is and how deep it goes. */
export interface WalkedTable {
  readonly root: bigint;
  readonly levels: number;
  readonly lastIova: bigint;
}

/** The DMA walk of one table. */
export class DmaWalker {
  private readonly phys: PhysMemory;
  private readonly root: number;
  private readonly levels: number;
  private readonly lastIova: number;
  /** The 2 MiB region cached (IOVA / 2 MiB), or -1. */
  private region = -1;
  /** The RAM generation the cached region was walked in. */
  private generation = 0;
  /** The PA of the region's level-0 table. */
  private table = 0;
  /** The region's 4 KiB translations as page() answers them, or EMPTY. */
  private readonly tlb = new Float64Array(ENTRIES);

  constructor(phys: PhysMemory, table: WalkedTable) {
    this.phys = phys;
    this.root = Number(table.root);
    this.levels = table.levels;
    // Above 2^52 the walk in numbers is not used; the limit keeps its comparisons exact.
    this.lastIova =
      table.lastIova < BigInt(NUMBER_IOVA_LIMIT) ? Number(table.lastIova) : NUMBER_IOVA_LIMIT;
  }

  /**
   * The PA of the 4 KiB page `iova` falls in plus the leaf's Prot bits (a page's PA has 12 zero
   * low bits), or -1 when the walk finds no leaf: what hardwareLookup() finds, for one page.
   */
  page(iova: number): number {
    if (iova < 0 || iova > this.lastIova || iova >= NUMBER_IOVA_LIMIT) return -1;
    const region = Math.floor(iova / LEVEL_BYTES[1]!);
    if (this.region === region && this.generation === this.phys.ramGeneration) {
      const slot = Math.floor(iova / PAGE_BYTES) - region * ENTRIES;
      const cached = this.tlb[slot]!;
      if (cached !== EMPTY) return cached;
      const found = this.walk(iova, this.table, 0, false);
      if (found >= 0) this.tlb[slot] = found;
      return found;
    }
    const found = this.walk(iova, this.root, this.levels - 1, true);
    // The walk cached this region's table if it could: then this page is its first IOTLB entry.
    if (found >= 0 && this.region === region && this.generation === this.phys.ramGeneration) {
      this.tlb[Math.floor(iova / PAGE_BYTES) - region * ENTRIES] = found;
    }
    return found;
  }

  /** Drops both caches (the table was freed). */
  forget(): void {
    this.region = -1;
  }

  /**
   * Walks from `table` at `level` down. On the way through level 1 it caches the level-0 table
   * the walk goes on to, when `cache` and every table on the way is RAM.
   */
  private walk(iova: number, table: number, level: number, cache: boolean): number {
    let cacheable = cache;
    for (; level >= 0; level--) {
      cacheable &&= !this.phys.standsForUserPage(table);
      const size = LEVEL_BYTES[level]!;
      const index = Math.floor(iova / size) % ENTRIES;
      const pte = this.phys.readPteBits(table + index * 8);
      const flags = pte % PAGE_BYTES;
      if ((flags & PTE_PRESENT) === 0) return -1;
      if (level === 0 || (flags & PTE_LEAF) !== 0) {
        if (level > MAX_LEAF_LEVEL) return -1;
        const leafPa = pte - flags;
        const pagePa = leafPa - (leafPa % size) + (iova % size) - (iova % PAGE_BYTES);
        return pagePa + (flags & PTE_READ ? Prot.READ : 0) + (flags & PTE_WRITE ? Prot.WRITE : 0);
      }
      table = pte - flags;
      if (level === 1 && cacheable && !this.phys.standsForUserPage(table)) {
        this.region = Math.floor(iova / LEVEL_BYTES[1]!);
        this.generation = this.phys.ramGeneration;
        this.table = table;
        this.tlb.fill(EMPTY);
        cacheable = false;
      }
    }
    return -1;
  }
}
