/**
 * A process's memory as the kernel sees it: copy_from_user / copy_to_user, and the VMA facts that
 * pinning needs. It lives with the machine because pinned pages stand for a process's pages
 * (reads and writes of their PA reach the process). Two implementations in the kernel core: a
 * real process (through /proc/<pid>/mem, host/proc-memory.ts) and a simulated one
 * (host/sim-memory.ts) for in-process tests and embedding.
 */

/** What the kernel knows about the VMA that holds an address. */
export interface Vma {
  readonly start: bigint;
  /** One past the last byte. */
  readonly end: bigint;
  readonly readable: boolean;
  readonly writable: boolean;
  /** Backing page size: 4096, or 2 MiB / 1 GiB for hugetlbfs and THP-backed memory. */
  readonly pageSize: bigint;
  /**
   * A shared mapping of a file: its identity ("major:minor:ino") and the file offset of `start`.
   * Its pages are the file's, whichever mapping reaches them.
   */
  readonly file?: { readonly id: string; readonly offset: bigint };
  /**
   * The range is registered with a userfaultfd (smaps VmFlags `um`, `ui`, `uw` or `ur`): a page the
   * kernel must fault in there may have to wait for the program's fault handler.
   */
  readonly userfault?: boolean;
}

/** Identifies an address space (an mm). Two tasks share an mm only as threads of one process. */
export type MmId = string;

export interface UserMemory {
  readonly mm: MmId;
  /** copy_from_user: the bytes, or undefined when any byte is not mapped (EFAULT). */
  read(addr: bigint, length: number): Uint8Array | undefined;
  /**
   * read() into the caller's buffer (all of it), for device DMA, which would otherwise copy
   * every page twice. Optional: PhysMemory falls back to read().
   */
  readInto?(addr: bigint, dst: Uint8Array): boolean;
  /** copy_to_user: false when any byte is not mapped (EFAULT). Ignores PROT_READ, like FOLL_FORCE. */
  write(addr: bigint, data: Uint8Array): boolean;
  /** The VMA containing addr, or undefined for a hole. */
  vma(addr: bigint): Vma | undefined;
  /**
   * A real process's /proc/<pid>/pagemap entries for `count` pages from `va`, as the host gives
   * them, with the frame numbers of present pages cleared (the emulated kernel has its own).
   * Absent for a simulated process; undefined when unreadable.
   */
  hostPagemap?(va: bigint, count: number): bigint[] | undefined;
  /**
   * Whether pinning [addr, addr+length) would wait for a userfaultfd handler to supply pages (a
   * registered range whose pages are not all present): the pin then fails as a fault does, and
   * the call is run again once they are in (decision 287). Absent or false: pin as usual.
   */
  pinFaults?(addr: bigint, length: bigint): boolean;
}
