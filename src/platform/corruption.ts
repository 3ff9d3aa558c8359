/**
 * Device writes over memory the kernel owns: I/O page tables (of any domain, the no-IOMMU software
 * table included) and kernel allocations. On real hardware a no-IOMMU device that does this
 * corrupts the kernel without a word; the emulator sees every device write land, so it says so
 * loudly (a kernel-log line naming the device, the address and what it overwrote), keeps a record
 * for snapshots, and tells the kernel, which taints itself (TAINT_BAD_PAGE). The write still
 * lands: what it does to later translations is in io-pgtable.ts (decision 200).
 */
import type { EventBus } from '../trace/events.ts';
import type { DomainRegistry } from './iommu.ts';
import type { PhysMemory } from './phys-memory.ts';
import { hex, PAGE_SHIFT } from './sizes.ts';

/** One device write that overwrote kernel-owned memory. */
export interface CorruptionRecord {
  readonly device: string;
  /** The first byte of the transfer that landed on kernel-owned memory. */
  readonly pa: bigint;
  /** Bytes of the transfer's piece that reached it. */
  readonly length: number;
  /** Kernel-owned frames it overwrote. */
  readonly frames: number;
  /** What the first of them is: "the I/O page table of domain 3 (dmar0)". */
  readonly victim: string;
}

/** What a snapshot shows: how many writes corrupted kernel memory, and the first few. */
export interface CorruptionSnapshot {
  readonly count: number;
  readonly first: readonly CorruptionRecord[];
}

/** How many records a snapshot keeps (the count goes on). */
const KEPT = 16;

/** Watches device writes for kernel-owned memory. One per machine. */
export class CorruptionMonitor {
  private readonly phys: PhysMemory;
  private readonly domains: DomainRegistry;
  private readonly events: EventBus;
  private readonly kept: CorruptionRecord[] = [];
  private seen = 0;
  private readonly listeners: ((record: CorruptionRecord) => void)[] = [];

  constructor(phys: PhysMemory, domains: DomainRegistry, events: EventBus) {
    this.phys = phys;
    this.domains = domains;
    this.events = events;
  }

  /** Whether any device has overwritten kernel-owned memory since boot. */
  get corrupted(): boolean {
    return this.seen > 0;
  }

  /** Calls `listener` for every corrupting write (the kernel taints itself). */
  onCorruption(listener: (record: CorruptionRecord) => void): void {
    this.listeners.push(listener);
  }

  /**
   * A device is about to write [pa, pa + length) of physical memory: reports it when any frame
   * of it is kernel-owned. Cheap when none is: one frame-state lookup per frame.
   */
  deviceWrite(device: string, pa: bigint, length: number): void {
    if (length <= 0) return;
    const firstPfn = pa >> PAGE_SHIFT;
    const lastPfn = (pa + BigInt(length) - 1n) >> PAGE_SHIFT;
    let first: bigint | undefined;
    let frames = 0;
    for (let pfn = firstPfn; pfn <= lastPfn; pfn++) {
      const state = this.phys.frameState(pfn);
      if (state !== 'page-table' && state !== 'kernel') continue;
      first ??= pfn;
      frames++;
    }
    if (first === undefined) return;
    const at = first === firstPfn ? pa : first << PAGE_SHIFT;
    const record: CorruptionRecord = {
      device,
      pa: at,
      length,
      frames,
      victim: this.victimOf(first << PAGE_SHIFT),
    };
    this.seen++;
    if (this.kept.length < KEPT) this.kept.push(record);
    const more = frames > 1 ? ` (and ${frames - 1} more kernel frame${frames > 2 ? 's' : ''})` : '';
    this.events.log(
      'error',
      `BUG: kernel memory corrupted: ${device} DMA wrote over ${record.victim} at PA ${hex(at)}${more}; ` +
        'kernel tainted (B)',
    );
    for (const listener of this.listeners) listener(record);
  }

  snapshot(): CorruptionSnapshot {
    return { count: this.seen, first: [...this.kept] };
  }

  private victimOf(framePa: bigint): string {
    if (this.phys.frameState(framePa >> PAGE_SHIFT) === 'kernel') return 'kernel memory';
    const domain = this.domains.live().find((d) => d.hasTablePage(framePa));
    if (domain === undefined) return 'an I/O page-table page of no live domain';
    if (domain.kind === 'noiommu') return `the no-IOMMU software page table (domain ${domain.id})`;
    return `the I/O page table of domain ${domain.id} (${domain.unit?.name ?? 'no unit'})`;
  }
}
