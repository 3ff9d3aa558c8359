/**
 * The pages of a shmem or hugetlbfs file seen as an address space: "address" is the file offset.
 * MAP_FILE pins a file's pages by offset (memfd_pin_folios), so the frames that stand for them are
 * keyed by the file, not by whichever process mapped it: every mapping and fd of the file reaches
 * the same pinned pages, and device DMA to them lands in the file.
 */
import type { HostFile } from './task.ts';
import type { MmId, UserMemory, Vma } from './user-memory.ts';

const PAGE = 4096n;
const HUGE_PAGE = 2n << 20n;

/** The address space of a file's pages, for pinning them. */
export function fileMm(id: string): MmId {
  return `file:${id}`;
}

export class FileMemory implements UserMemory {
  readonly mm: MmId;
  readonly file: HostFile;

  constructor(file: HostFile) {
    this.file = file;
    this.mm = fileMm(file.id);
  }

  read(addr: bigint, length: number): Uint8Array | undefined {
    return this.file.read(addr, length);
  }

  write(addr: bigint, data: Uint8Array): boolean {
    return this.file.write(addr, data);
  }

  /** One "VMA" over the whole file, in pages of the file system's size; past the end, a hole. */
  vma(addr: bigint): Vma | undefined {
    const pageSize = this.file.kind === 'hugetlbfs' ? HUGE_PAGE : PAGE;
    const end = ((this.file.size() + pageSize - 1n) / pageSize) * pageSize;
    if (addr < 0n || addr >= end) return undefined;
    return { start: 0n, end, readable: true, writable: true, pageSize };
  }
}
