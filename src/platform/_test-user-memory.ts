/**
 * A tiny in-memory UserMemory for the platform tests: VMAs you add by hand, sparse 4 KiB pages
 * that read as zeros until written. Internal to the tests; not exported from the package.
 */
import type { MmId, UserMemory, Vma } from './user-memory.ts';

export interface TestVmaOptions {
  readonly readable?: boolean;
  readonly writable?: boolean;
  readonly pageSize?: bigint;
}

export class TestUserMemory implements UserMemory {
  readonly mm: MmId;
  private readonly vmas: Vma[] = [];
  private readonly pages = new Map<bigint, Uint8Array>();

  constructor(mm: MmId = 'test-mm') {
    this.mm = mm;
  }

  /** Adds a VMA [start, start + length). */
  mmap(start: bigint, length: bigint, options: TestVmaOptions = {}): Vma {
    const vma: Vma = {
      start,
      end: start + length,
      readable: options.readable ?? true,
      writable: options.writable ?? true,
      pageSize: options.pageSize ?? 4096n,
    };
    this.vmas.push(vma);
    return vma;
  }

  vma(addr: bigint): Vma | undefined {
    return this.vmas.find((v) => addr >= v.start && addr < v.end);
  }

  read(addr: bigint, length: number): Uint8Array | undefined {
    if (!this.mapped(addr, length)) return undefined;
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      const a = addr + BigInt(i);
      out[i] = this.pages.get(a >> 12n)?.[Number(a & 0xfffn)] ?? 0;
    }
    return out;
  }

  write(addr: bigint, data: Uint8Array): boolean {
    if (!this.mapped(addr, data.length)) return false;
    for (let i = 0; i < data.length; i++) {
      const a = addr + BigInt(i);
      let page = this.pages.get(a >> 12n);
      if (page === undefined) {
        page = new Uint8Array(4096);
        this.pages.set(a >> 12n, page);
      }
      page[Number(a & 0xfffn)] = data[i] ?? 0;
    }
    return true;
  }

  private mapped(addr: bigint, length: number): boolean {
    for (let i = 0n; i < BigInt(length); i += 4096n) {
      if (this.vma(addr + i) === undefined) return false;
    }
    return length === 0 || this.vma(addr + BigInt(length) - 1n) !== undefined;
  }
}

/** `length` bytes of a recognisable pattern starting at `seed`. */
export function pattern(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed + i * 7) & 0xff;
  return out;
}
