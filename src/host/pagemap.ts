/**
 * /proc/<pid>/pagemap and /proc/<pid>/task/<tid>/pagemap (fs/proc/task_mmu.c): one 64-bit entry per virtual page of the process,
 * whose low 55 bits are the page's frame number when the file's opener holds CAP_SYS_ADMIN. A
 * driver of a no-IOMMU device opened through its group has no other way to learn where its
 * buffers are in physical memory (DPDK's rte_mem_virt2phy reads it), so the emulated kernel
 * answers with the simulated machine's frames.
 *
 * A page has a simulated frame only while something pins it. The first time pagemap reports a
 * page's frame, that page is pinned for the rest of the address space's life (a "resident" pin),
 * so the frame stays what the program was told, DMA to it reaches the page, and an iommufd
 * mapping of the same page later finds the same frame; as mlock'd memory keeps its frame on a
 * real machine. The resident pins go when the address space does (release()). The other bits
 * (present, swapped, exclusive, soft-dirty...) are the host's own, for a real process.
 */
import type { PinnedPages } from '../platform/pinned-pages.ts';
import { Errno } from '../uapi/errno.ts';
import { CAP_SYS_ADMIN, capable } from './credentials.ts';
import { File, type FileOperations } from './file.ts';
import type { Task } from './task.ts';
import type { MmId, UserMemory } from './user-memory.ts';

/** PM_ENTRY_BYTES. */
const ENTRY_BYTES = 8n;
const PAGE_SHIFT = 12n;
const PAGE_SIZE = 1n << PAGE_SHIFT;
/** x86-64 TASK_SIZE_MAX with 4-level paging: entries past it are never read. */
const TASK_SIZE = (1n << 47n) - PAGE_SIZE;
/** PM_PFRAME_BITS: the frame number's bits; PM_SWAP and PM_PRESENT. */
export const PM_PFRAME_MASK = (1n << 55n) - 1n;
export const PM_SOFT_DIRTY = 1n << 55n;
export const PM_MMAP_EXCLUSIVE = 1n << 56n;
/** The page is write-protected by userfaultfd (UFFDIO_WRITEPROTECT). */
export const PM_UFFD_WP = 1n << 57n;
export const PM_SWAP = 1n << 62n;
export const PM_PRESENT = 1n << 63n;

interface PagemapFile {
  /** The opener's memory (proc_mem_open() takes the mm at open). */
  readonly memory: UserMemory;
  /** pm.show_pfn: the opener held CAP_SYS_ADMIN (file_ns_capable). */
  readonly showPfn: boolean;
}

export class Pagemap {
  private readonly pinned: PinnedPages;
  /** Pages pinned because pagemap reported their frame, by address space. */
  private readonly resident = new Map<MmId, Set<bigint>>();

  constructor(pinned: PinnedPages) {
    this.pinned = pinned;
  }

  /**
   * pagemap_open(): only a process's own (another's memory is not the caller's to read here:
   * EACCES). The file's 0400 mode was checked at open (a write open needs CAP_DAC_OVERRIDE, as
   * may_open allows); it has no write method.
   */
  open(task: Task, pid: number): File | number {
    if (task.creds.pid !== pid) return -Errno.EACCES;
    const data: PagemapFile = {
      memory: task.memory,
      showPfn: capable(task.creds, CAP_SYS_ADMIN),
    };
    const fops: FileOperations = {
      name: 'pagemap',
      read: (_file, _task, length, pos) => this.read(data, length, pos),
      release() {},
    };
    return new File('procfs', fops, data, { major: 0, minor: 0 });
  }

  /** Pages held resident, for the invariants and the leak check: one pin each. */
  residentPages(): { mm: MmId; va: bigint }[] {
    const out: { mm: MmId; va: bigint }[] = [];
    for (const [mm, vas] of this.resident) for (const va of vas) out.push({ mm, va });
    return out;
  }

  /** The address space is gone: its resident pins go. */
  release(mm: MmId): void {
    const vas = this.resident.get(mm);
    if (vas === undefined) return;
    this.resident.delete(mm);
    for (const va of vas) this.pinned.unpin(mm, va, 1n);
  }

  /**
   * pagemap_read(): whole entries from a whole entry's offset (EINVAL otherwise), nothing past
   * the top of the user address space. An address with no VMA reads 0.
   */
  private read(file: PagemapFile, length: number, pos: bigint): Uint8Array | number {
    if (pos % ENTRY_BYTES !== 0n || length % Number(ENTRY_BYTES) !== 0) return -Errno.EINVAL;
    const start = (pos / ENTRY_BYTES) << PAGE_SHIFT;
    if (start >= TASK_SIZE || length === 0) return new Uint8Array(0);
    const room = (TASK_SIZE - start) >> PAGE_SHIFT;
    const count = Number(BigInt(length / 8) < room ? BigInt(length / 8) : room);
    const { memory } = file;
    const flags = memory.hostPagemap?.(start, count) ?? this.flagsFromVmas(memory, start, count);
    const out = new Uint8Array(count * 8);
    const view = new DataView(out.buffer);
    for (let i = 0; i < count; i++) {
      let entry = flags[i] ?? 0n;
      if (file.showPfn && (entry & PM_PRESENT) !== 0n) {
        const pfn = this.frameOf(memory, start + (BigInt(i) << PAGE_SHIFT));
        if (pfn !== undefined) entry |= pfn & PM_PFRAME_MASK;
      }
      view.setBigUint64(i * 8, entry, true);
    }
    return out;
  }

  /** Without the host's view (a simulated process): every page of a readable VMA is present. */
  private flagsFromVmas(memory: UserMemory, start: bigint, count: number): bigint[] {
    const out: bigint[] = [];
    for (let i = 0; i < count; i++) {
      const vma = memory.vma(start + (BigInt(i) << PAGE_SHIFT));
      out.push(vma?.readable ? PM_PRESENT | PM_MMAP_EXCLUSIVE : 0n);
    }
    return out;
  }

  /** The frame behind page `va`, pinned resident the first time it is asked for. */
  private frameOf(memory: UserMemory, va: bigint): bigint | undefined {
    let vas = this.resident.get(memory.mm);
    if (vas?.has(va)) return this.pinned.lookup(memory.mm, va);
    const runs = this.pinned.pin(memory, va, 1n, false);
    if (typeof runs === 'number' || runs.length === 0) return undefined;
    if (vas === undefined) {
      vas = new Set();
      this.resident.set(memory.mm, vas);
    }
    vas.add(va);
    return this.pinned.lookup(memory.mm, va);
  }
}
