/**
 * An open file description ("struct file"): what an fd of an emulated node refers to. dup() and
 * fork() share one File; it is released when its last reference goes, like fput().
 */
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
 * user). Only that caller waits: the server replies when the promise settles and goes on serving
 * everyone else meanwhile.
 */
export interface BlockedCall {
  readonly blocked: Promise<SyscallResult>;
}

export interface FileOperations {
  /** Short name for traces and the inspector, e.g. "iommufd" or "vfio-dev". */
  readonly name: string;
  ioctl?(file: File, task: Task, cmd: number, arg: bigint): SyscallResult;
  /** pread/read: the bytes read, or a negative errno. */
  read?(file: File, task: Task, length: number, pos: bigint): Uint8Array | number;
  /** pwrite/write: bytes written, or a negative errno; or a write that blocks. */
  write?(file: File, task: Task, data: Uint8Array, pos: bigint): SyscallResult | BlockedCall;
  mmap?(file: File, task: Task, length: bigint, pgoff: bigint): MmapBacking | number;
  /** Called once, when the last reference is dropped. */
  release(file: File): void;
}

export class File {
  readonly fops: FileOperations;
  /** The object behind the file (an iommufd context, a VFIO device file, ...). */
  readonly privateData: unknown;
  /** The device number reported by fstat (st_rdev). */
  readonly rdev: { major: number; minor: number };
  private refs = 1;

  constructor(fops: FileOperations, privateData: unknown, rdev: { major: number; minor: number }) {
    this.fops = fops;
    this.privateData = privateData;
    this.rdev = rdev;
  }

  get refCount(): number {
    return this.refs;
  }

  /** get_file(): another holder (an fd, a bound device) keeps the file alive. */
  get(): this {
    if (this.refs <= 0) throw new Error(`get() on a released ${this.fops.name} file`);
    this.refs++;
    return this;
  }

  /** fput(): the last put releases. */
  put(): void {
    if (this.refs <= 0) throw new Error(`put() on a released ${this.fops.name} file`);
    this.refs--;
    if (this.refs === 0) this.fops.release(this);
  }
}

/** st_mode type bits of a character device. */
export const S_IFCHR = 0o020000;
