/**
 * A simulated process address space for in-process use (tests, embedding): VMAs created with
 * mmap(), bytes kept per 4 KiB page, allocated on first touch.
 */
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import type { MmId, UserMemory, Vma } from './user-memory.ts';

let nextMm = 1;

interface SimVma extends Vma {
  readonly pages: Map<bigint, Uint8Array>;
}

export interface MmapOptions {
  readonly writable?: boolean;
  readonly readable?: boolean;
  /** 4096 (default), or 2 MiB / 1 GiB for hugepage-backed memory. */
  readonly pageSize?: bigint;
  /** Place the mapping here instead of choosing an address. */
  readonly at?: bigint;
}

export class SimulatedMemory implements UserMemory {
  readonly mm: MmId;
  private readonly vmas: SimVma[] = [];
  /** Where the next mmap() without `at` goes: above the usual user-space start. */
  private nextVa = 0x7f0000000000n;

  constructor() {
    this.mm = `sim-${nextMm++}`;
  }

  /** mmap(MAP_ANONYMOUS): returns the start address of a new zero-filled VMA. */
  mmap(length: bigint, options: MmapOptions = {}): bigint {
    const pageSize = options.pageSize ?? PAGE_SIZE;
    const size = ((length + pageSize - 1n) / pageSize) * pageSize;
    let start = options.at;
    if (start === undefined) {
      start = ((this.nextVa + pageSize - 1n) / pageSize) * pageSize;
      // Leave a guard hole after every mapping so neighbours never merge by accident.
      this.nextVa = start + size + PAGE_SIZE;
    }
    if (this.vmas.some((v) => v.start < start + size && start < v.end)) {
      throw new Error(`mmap at 0x${start.toString(16)} overlaps an existing mapping`);
    }
    this.vmas.push({
      start,
      end: start + size,
      readable: options.readable ?? true,
      writable: options.writable ?? true,
      pageSize,
      pages: new Map(),
    });
    this.vmas.sort((a, b) => (a.start < b.start ? -1 : 1));
    return start;
  }

  /** munmap() of a whole VMA. */
  munmap(start: bigint): void {
    const i = this.vmas.findIndex((v) => v.start === start);
    if (i < 0) throw new Error(`munmap of 0x${start.toString(16)}: no such mapping`);
    this.vmas.splice(i, 1);
  }

  vma(addr: bigint): Vma | undefined {
    return this.findVma(addr);
  }

  private findVma(addr: bigint): SimVma | undefined {
    return this.vmas.find((v) => v.start <= addr && addr < v.end);
  }

  read(addr: bigint, length: number): Uint8Array | undefined {
    const out = new Uint8Array(length);
    return this.readInto(addr, out) ? out : undefined;
  }

  readInto(addr: bigint, dst: Uint8Array): boolean {
    const length = dst.length;
    let done = 0;
    while (done < length) {
      const at = addr + BigInt(done);
      const vma = this.findVma(at);
      if (vma === undefined) return false;
      const pageIndex = at / PAGE_SIZE;
      const offset = Number(at % PAGE_SIZE);
      const n = Math.min(length - done, Number(PAGE_SIZE) - offset);
      const page = vma.pages.get(pageIndex);
      if (page !== undefined)
        dst.set(n === page.length ? page : page.subarray(offset, offset + n), done);
      else dst.fill(0, done, done + n);
      done += n;
    }
    return true;
  }

  write(addr: bigint, data: Uint8Array): boolean {
    // Check the whole range first: a fault must not leave a partial write behind here.
    for (let at = addr - (addr % PAGE_SIZE); at < addr + BigInt(data.length); at += PAGE_SIZE) {
      if (this.findVma(at < addr ? addr : at) === undefined) return false;
    }
    let done = 0;
    while (done < data.length) {
      const at = addr + BigInt(done);
      const vma = this.findVma(at)!;
      const pageIndex = at / PAGE_SIZE;
      const offset = Number(at % PAGE_SIZE);
      const n = Math.min(data.length - done, Number(PAGE_SIZE) - offset);
      let page = vma.pages.get(pageIndex);
      if (page === undefined) {
        page = new Uint8Array(Number(PAGE_SIZE));
        vma.pages.set(pageIndex, page);
      }
      page.set(data.subarray(done, done + n), offset);
      done += n;
    }
    return true;
  }

  /** fork(): a copy of the address space (a new mm). */
  clone(): SimulatedMemory {
    const copy = new SimulatedMemory();
    copy.nextVa = this.nextVa;
    for (const v of this.vmas) {
      const pages = new Map<bigint, Uint8Array>();
      for (const [i, p] of v.pages) pages.set(i, p.slice());
      copy.vmas.push({ ...v, pages });
    }
    return copy;
  }
}
