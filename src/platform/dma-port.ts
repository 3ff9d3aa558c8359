/**
 * The path a device's DMA takes to memory. The machine gives every device one port:
 *
 * - IommuDmaPort: the device sits behind an IOMMU. Bus addresses are IOVAs, translated page by
 *   page through the device's current domain. A device with no domain is blocked. Any page that
 *   fails to translate is an IOMMU fault: an 'iommu-fault' event, and no byte of the transfer
 *   moves.
 * - DirectDmaPort: no IOMMU. Bus addresses are physical addresses and go straight to PhysMemory.
 *   When the range is not entirely pinned user pages the transfer is unsafe (it reads or corrupts
 *   simulated RAM: page tables, free memory, other frames): an 'unsafe-dma' event, and the
 *   transfer still happens, as it would on real hardware. A write over kernel-owned memory (an
 *   I/O page table) is also reported as the corruption it is (corruption.ts).
 */
import type { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import type { CorruptionMonitor } from './corruption.ts';
import type { DmaAccess, IommuDomain, IommuFaultReason, IommuUnit } from './iommu.ts';
import { trackDomainUser } from './iommu.ts';
import type { PhysMemory } from './phys-memory.ts';
import type { PinnedPages } from './pinned-pages.ts';
import { hex, PAGE_SHIFT, PAGE_SIZE, U64_MAX } from './sizes.ts';

/** A device's window onto memory. Lengths are buffer sizes (numbers); addresses are bigint. */
export interface DmaPort {
  /** 'iommu' when addresses are translated through a domain, 'direct' when they are PAs. */
  readonly path: 'iommu' | 'direct';
  /** Reads memory for the device: the bytes, or undefined when the access faulted. */
  read(addr: bigint, length: number): Uint8Array | undefined;
  /** Writes memory for the device: false when the access faulted (nothing was written). */
  write(addr: bigint, data: Uint8Array): boolean;
  /** For the trace: the PA `addr` reaches now, undefined when it does not translate (no fault). */
  physical(addr: bigint, access: DmaAccess): bigint | undefined;
}

const PAGE_BYTES = Number(PAGE_SIZE);
/** Below this an IOVA and any offset of a transfer into it are exact as numbers. */
const FAST_IOVA_LIMIT = 2n ** 52n;

interface Segment {
  readonly pa: bigint;
  readonly length: number;
}

/** DMA through an IOMMU domain. */
export class IommuDmaPort implements DmaPort {
  readonly path = 'iommu';
  readonly device: string;
  readonly unit: IommuUnit;
  private readonly phys: PhysMemory;
  private readonly events: EventBus;
  private readonly corruption: CorruptionMonitor | undefined;
  private current: IommuDomain | undefined;

  constructor(device: string, unit: IommuUnit, events: EventBus, corruption?: CorruptionMonitor) {
    this.device = device;
    this.unit = unit;
    this.phys = unit.phys;
    this.events = events;
    this.corruption = corruption;
  }

  /** The domain the device translates through, or undefined when DMA is blocked. */
  get domain(): IommuDomain | undefined {
    return this.current;
  }

  /**
   * Points the device's context entry at `domain` (undefined blocks all DMA). -EINVAL for a
   * domain of another unit, a no-IOMMU domain or a freed one.
   */
  setDomain(domain: IommuDomain | undefined): number {
    if (
      domain !== undefined &&
      (domain.unit !== this.unit || domain.kind !== 'paging' || domain.freed)
    ) {
      return -Errno.EINVAL;
    }
    if (this.current !== undefined) trackDomainUser(this.current, this.device, false);
    this.current = domain;
    if (domain !== undefined) trackDomainUser(domain, this.device, true);
    return 0;
  }

  physical(addr: bigint, access: DmaAccess): bigint | undefined {
    const domain = this.current;
    if (domain === undefined || domain.freed || addr > U64_MAX) return undefined;
    const t = domain.translate(addr, access);
    return 'fault' in t ? undefined : t.pa;
  }

  read(addr: bigint, length: number): Uint8Array | undefined {
    if (addr < FAST_IOVA_LIMIT) {
      const iova = Number(addr);
      const pages = this.translatePages(iova, length, 'read');
      if (pages !== undefined) {
        const out = new Uint8Array(length);
        this.readPages(iova, pages, out);
        return out;
      }
    }
    const segments = this.translate(addr, length, 'read');
    if (segments === undefined) return undefined;
    const out = new Uint8Array(length);
    let done = 0;
    for (const seg of segments) {
      // No view when one segment is the whole transfer (a page-sized DMA): views cost an object.
      const dst = seg.length === length ? out : out.subarray(done, done + seg.length);
      this.phys.readInto(seg.pa, dst);
      done += seg.length;
    }
    return out;
  }

  write(addr: bigint, data: Uint8Array): boolean {
    if (addr < FAST_IOVA_LIMIT) {
      const iova = Number(addr);
      const pages = this.translatePages(iova, data.length, 'write');
      if (pages !== undefined) {
        this.writePages(iova, pages, data);
        return true;
      }
    }
    const segments = this.translate(addr, data.length, 'write');
    if (segments === undefined) return false;
    let done = 0;
    for (const seg of segments) {
      // Only a table a device corrupted first can lead a translated write onto kernel memory.
      this.corruption?.deviceWrite(this.device, seg.pa, seg.length);
      this.phys.write(seg.pa, data.subarray(done, done + seg.length));
      done += seg.length;
    }
    return true;
  }

  /**
   * The DMA path in numbers: the PA of every 4 KiB page of [iova, iova + length) in order, or
   * undefined when any page does not translate (or the device is blocked), which leaves the
   * fault to translate() to report with its reason. Like translate(), it translates the whole
   * range before a byte moves.
   */
  private translatePages(iova: number, length: number, access: DmaAccess): number[] | undefined {
    const domain = this.current;
    if (domain === undefined || domain.freed) return undefined;
    const end = iova + length;
    const firstEnd = iova - (iova % PAGE_BYTES) + PAGE_BYTES;
    // Most transfers lie in one page (the edu's 4 KiB at an aligned IOVA): a literal, no growing.
    if (length > 0 && end <= firstEnd) {
      const pa = domain.translatePage(iova, access);
      return pa < 0 ? undefined : [pa];
    }
    const pages: number[] = [];
    for (let at = iova; at < end; at += PAGE_BYTES - (at % PAGE_BYTES)) {
      const pa = domain.translatePage(at, access);
      if (pa < 0) return undefined;
      pages.push(pa);
    }
    return pages;
  }

  /** Copies the pages translatePages() found into `out`, page by page, straight from memory. */
  private readPages(iova: number, pages: readonly number[], out: Uint8Array): void {
    let offset = iova % PAGE_BYTES;
    let done = 0;
    for (const pa of pages) {
      const n = Math.min(out.length - done, PAGE_BYTES - offset);
      // No view when one page is the whole transfer (a page-sized DMA): views cost an object.
      const dst = n === out.length ? out : out.subarray(done, done + n);
      this.phys.readIntoFrame(pa / PAGE_BYTES, offset, dst);
      done += n;
      offset = 0;
    }
  }

  /**
   * Writes `data` to the pages translatePages() found. Physically contiguous pages are one
   * write, as they are one segment of translate(), so a write a corrupted table leads onto
   * kernel memory is reported the same either way.
   */
  private writePages(iova: number, pages: readonly number[], data: Uint8Array): void {
    let offset = iova % PAGE_BYTES;
    let done = 0;
    let i = 0;
    while (i < pages.length) {
      const pa = pages[i]! + offset;
      let n = Math.min(data.length - done, PAGE_BYTES - offset);
      while (i + 1 < pages.length && pages[i + 1] === pages[i]! + PAGE_BYTES) {
        i++;
        n += Math.min(data.length - done - n, PAGE_BYTES);
      }
      i++;
      this.corruption?.deviceWrite(this.device, BigInt(pa), n);
      this.phys.write(BigInt(pa), data.subarray(done, done + n));
      done += n;
      offset = 0;
    }
  }

  /** Translates the whole range first, so a fault anywhere moves no byte at all. */
  private translate(addr: bigint, length: number, access: DmaAccess): Segment[] | undefined {
    const domain = this.current;
    if (domain === undefined || domain.freed) {
      this.fault(addr, access, 'blocked: no domain attached');
      return undefined;
    }
    const segments: Segment[] = [];
    let done = 0;
    while (done < length) {
      const iova = addr + BigInt(done);
      if (iova > U64_MAX) {
        this.fault(iova, access, 'outside-aperture');
        return undefined;
      }
      const t = domain.translate(iova, access);
      if ('fault' in t) {
        this.fault(iova, access, t.fault);
        return undefined;
      }
      // Hardware translates page by page; one segment never crosses a 4 KiB boundary.
      const pageLeft = PAGE_SIZE - (iova & (PAGE_SIZE - 1n));
      const n = Math.min(length - done, Number(t.span < pageLeft ? t.span : pageLeft));
      // Physically contiguous pages (a huge IOPTE) become one segment: one copy, not one a page.
      const prev = segments[segments.length - 1];
      if (prev !== undefined && prev.pa + BigInt(prev.length) === t.pa) {
        segments[segments.length - 1] = { pa: prev.pa, length: prev.length + n };
      } else {
        segments.push({ pa: t.pa, length: n });
      }
      done += n;
    }
    return segments;
  }

  private fault(iova: bigint, access: DmaAccess, reason: IommuFaultReason | string): void {
    this.events.publish({ kind: 'iommu-fault', device: this.device, iova, access, reason });
  }
}

/** DMA with no IOMMU: bus addresses are physical addresses. */
export class DirectDmaPort implements DmaPort {
  readonly path = 'direct';
  readonly device: string;
  private readonly phys: PhysMemory;
  private readonly pinned: PinnedPages;
  private readonly events: EventBus;
  private readonly corruption: CorruptionMonitor | undefined;

  constructor(
    device: string,
    phys: PhysMemory,
    pinned: PinnedPages,
    events: EventBus,
    corruption?: CorruptionMonitor,
  ) {
    this.device = device;
    this.phys = phys;
    this.pinned = pinned;
    this.events = events;
    this.corruption = corruption;
  }

  physical(addr: bigint): bigint {
    return addr;
  }

  read(addr: bigint, length: number): Uint8Array {
    this.checkSafe(addr, length, 'read');
    return this.phys.read(addr, length);
  }

  write(addr: bigint, data: Uint8Array): boolean {
    this.checkSafe(addr, data.length, 'write');
    this.corruption?.deviceWrite(this.device, addr, data.length);
    this.phys.write(addr, data);
    return true;
  }

  /**
   * Publishes 'unsafe-dma' unless every byte of the range is a pinned user page; a write over a
   * frame the kernel owns (an I/O page table, kernel memory) is marked as the corruption it is.
   */
  private checkSafe(pa: bigint, length: number, dir: DmaAccess): void {
    if (length === 0) return;
    const reason = this.unsafeReason(pa, BigInt(length));
    if (reason === undefined) return;
    const corrupts = dir === 'write' && this.hitsKernelFrames(pa, BigInt(length));
    this.events.publish({
      kind: 'unsafe-dma',
      device: this.device,
      pa,
      length,
      dir,
      reason,
      ...(corrupts ? { corrupts } : {}),
    });
  }

  private hitsKernelFrames(pa: bigint, length: bigint): boolean {
    const last = pa + length - 1n;
    for (let pfn = pa >> PAGE_SHIFT; pfn <= last >> PAGE_SHIFT; pfn++) {
      const state = this.phys.frameState(pfn);
      if (state === 'page-table' || state === 'kernel') return true;
    }
    return false;
  }

  private unsafeReason(pa: bigint, length: bigint): string | undefined {
    const last = pa + length - 1n;
    let bad = 0n;
    let first: string | undefined;
    for (let pfn = pa >> PAGE_SHIFT; pfn <= last >> PAGE_SHIFT; pfn++) {
      const why = this.frameProblem(pfn);
      if (why === undefined) continue;
      bad++;
      first ??= why;
    }
    if (first === undefined) return undefined;
    const more = bad > 1n ? ` (and ${bad - 1n} more frame${bad > 2n ? 's' : ''})` : '';
    return `not pinned user memory: ${first}${more}`;
  }

  private frameProblem(pfn: bigint): string | undefined {
    const at = hex(pfn << PAGE_SHIFT);
    const state = this.phys.frameState(pfn);
    switch (state) {
      case 'outside':
        return `${at} is beyond the end of RAM (${hex(this.phys.size)})`;
      case 'reserved':
        return `${at} is in the reserved low 1 MiB`;
      case 'free':
        return `${at} is a free frame of RAM`;
      case 'page-table':
        return `${at} is an I/O page-table page`;
      case 'kernel':
        return `${at} is kernel memory`;
      // Memory a driver exported for devices: no pin needed.
      case 'dma-buf':
        return undefined;
      case 'user-page': {
        const owner = this.pinned.frameOwner(pfn);
        if (owner === undefined) return `${at} is a user-page frame with no owner`;
        if (owner.pins > 0) return undefined;
        return `${at} is ${owner.mm} page ${hex(owner.va)}, which is not pinned`;
      }
    }
  }
}
