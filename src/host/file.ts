/**
 * An open file description ("struct file"): what an fd of an emulated node refers to. dup() and
 * fork() share one File; it is released when its last reference goes, like fput().
 */
import { Refcount } from '../lib/refcount.ts';
import type { SyscallResult } from '../uapi/errno.ts';
import type { Task } from './task.ts';

/**
 * What mmap of a file region is backed by: a file the client maps itself at fileOffset, or
 * device memory whose every access must reach the device in program order (a BAR with register
 * side effects), which the shim traps and replays as reads and writes at regionOffset + offset.
 */
export type MmapBacking =
  | { readonly kind: 'file'; readonly path: string; readonly fileOffset: bigint }
  | { readonly kind: 'trapped'; readonly regionOffset: bigint };

/**
 * A call that blocks its caller until `blocked` settles (an unbind waiting for the device's last
 * user, an ioctl clearing gigabytes of the caller's memory a step at a time). Only that caller waits: the server replies when the promise settles and goes on serving
 * everyone else meanwhile.
 */
export interface BlockedCall {
  readonly blocked: Promise<SyscallResult>;
}

/** What a call that may block returns: its result now, or later. */
export type MaybeBlocked = SyscallResult | BlockedCall;

export function isBlocked(value: unknown): value is BlockedCall {
  return typeof value === 'object' && value !== null && 'blocked' in value;
}

export interface FileOperations {
  /** Short name for traces and the inspector, e.g. "iommufd" or "vfio-dev". */
  readonly name: string;
  /** A command that walks much of the caller's memory may answer later (resched.ts). */
  ioctl?(file: File, task: Task, cmd: number, arg: bigint): MaybeBlocked;
  /** pread/read: the bytes read, or a negative errno. */
  read?(file: File, task: Task, length: number, pos: bigint): Uint8Array | number;
  /** pwrite/write: bytes written, or a negative errno; or a write that blocks. */
  write?(file: File, task: Task, data: Uint8Array, pos: bigint): SyscallResult | BlockedCall;
  /** `how` is mmap's prot and flags (PROT_*, MAP_*), for a driver that checks them. */
  mmap?(
    file: File,
    task: Task,
    length: bigint,
    pgoff: bigint,
    how?: { readonly prot: number; readonly flags: number },
  ): MmapBacking | number;
  /**
   * Loads and stores of a 'trapped' mapping when they are not the file's read and write (the
   * iommufd file has none: its mappings are a driver's memory). `pos` is regionOffset + offset.
   */
  mmioRead?(file: File, task: Task, length: number, pos: bigint): Uint8Array | number;
  mmioWrite?(file: File, task: Task, data: Uint8Array, pos: bigint): SyscallResult;
  /**
   * poll(): the ready mask (POLLIN, POLLOUT, ...) now. A file without one polls as always
   * readable and writable (DEFAULT_POLLMASK). Pollers learn of a change by asking again.
   */
  poll?(file: File, task: Task): number;
  /**
   * A stream (an anonymous file without llseek, or one opened with nonseekable_open()): pread,
   * pwrite and lseek are ESPIPE, and read and write leave the file position at 0.
   */
  readonly nonseekable?: boolean;
  /**
   * Called once, when the last reference is dropped. A promise when the release waits (for a
   * call that holds what it tears down) or leaves work behind: close() returns after it.
   */
  release(file: File): void | Promise<void>;
}

/**
 * What a file is, for the registry of open files: /dev/iommu, /dev/vfio/vfio (an iommufd context
 * too, with type1 accounting), a VFIO device cdev, a VFIO group node, a device fd a group gave, a sysfs/procfs attribute,
 * an eventfd of a simulated process, a directory opened to be listed.
 */
export type FileKind =
  | 'iommufd'
  | 'vfio-container'
  | 'vfio-cdev'
  | 'vfio-group'
  | 'vfio-device'
  | 'sysfs'
  | 'procfs'
  | 'eventfd'
  | 'directory'
  /** An access object of the test interface (CREATE_ACCESS's "[iommufd_test_staccess]"). */
  | 'iommufd-test-access'
  /** An iommufd event queue (a fault queue or a vEVENTQ), an anonymous inode. */
  | 'iommufd-eventq'
  /** A dma-buf the test interface exported (DMABUF_GET). */
  | 'dmabuf';

export class File {
  readonly kind: FileKind;
  readonly fops: FileOperations;
  /** The object behind the file (an iommufd context, a VFIO device file, ...). */
  readonly privateData: unknown;
  /** The device number reported by fstat (st_rdev). */
  readonly rdev: { major: number; minor: number };
  /** f_count: one per fd and per kernel holder; the last put releases. */
  private readonly refs: Refcount;
  /** The registry that lists the file while it is open (OpenFiles.add). */
  private openFiles: OpenFiles | undefined;
  /** Its release, when that goes on after the last put (FileOperations.release). */
  releasing: Promise<void> | undefined;

  constructor(
    kind: FileKind,
    fops: FileOperations,
    privateData: unknown,
    rdev: { major: number; minor: number },
  ) {
    this.kind = kind;
    this.fops = fops;
    this.privateData = privateData;
    this.rdev = rdev;
    this.refs = new Refcount(1, () => `${this.fops.name} file`);
  }

  get refCount(): number {
    return this.refs.read();
  }

  /** get_file(): another holder (an fd, a bound device) keeps the file alive. */
  get(): this {
    this.refs.inc();
    return this;
  }

  /** fput(): the last put releases. */
  put(): void {
    if (!this.refs.decAndTest()) return;
    this.openFiles?.delete(this);
    const done = this.fops.release(this);
    if (done instanceof Promise) this.releasing = done;
  }

  /** Called by OpenFiles.add(): the registry this file leaves at its last put. */
  listIn(openFiles: OpenFiles): void {
    if (this.openFiles !== undefined) throw new Error(`${this.kind} file listed twice`);
    this.openFiles = openFiles;
  }
}

/**
 * Every file the emulated kernel has open, by kind: a file joins when open() made it and leaves
 * at its last put. The invariants count these against the counters drivers keep (a VFIO
 * device's registration references, its open count, its group's opens).
 */
export class OpenFiles {
  private readonly files = new Set<File>();

  add(file: File): void {
    file.listIn(this);
    this.files.add(file);
  }

  delete(file: File): void {
    this.files.delete(file);
  }

  /** The open files of one kind, in the order they were opened. */
  ofKind(kind: FileKind): File[] {
    return [...this.files].filter((f) => f.kind === kind);
  }

  /** Every open file, in the order they were opened. */
  all(): File[] {
    return [...this.files];
  }

  get size(): number {
    return this.files.size;
  }
}

/** st_mode type bits of a character device. */
export const S_IFCHR = 0o020000;
