/**
 * The calling task ("current"): credentials, its memory, and its fd table, as one call sees them.
 * A new Task value is made for every call, so credentials are always the ones of that moment.
 */
import type { Credentials } from './credentials.ts';
import type { File } from './file.ts';
import type { UserMemory } from './user-memory.ts';

/** An eventfd of the caller, held by a driver (eventfd_ctx_fdget) to signal interrupts. */
export interface EventfdRef {
  /** eventfd_signal(): adds 1 to the counter, waking pollers in the owning process. */
  signal(): void;
  /** eventfd_ctx_put(). */
  release(): void;
}

/**
 * A shmem or hugetlbfs file the caller has open that is not one of the emulator's (a memfd):
 * its pages, by file offset, whichever mapping or fd reaches them. The holder must release() it.
 */
export interface HostFile {
  /** The inode's identity ("major:minor:ino"), the same for every fd and mapping of the file. */
  readonly id: string;
  /** shmem (tmpfs, memfd) or hugetlbfs (memfd with MFD_HUGETLB): the files memfd_pin_folios takes. */
  readonly kind: 'shmem' | 'hugetlbfs';
  /** The file's size now. */
  size(): bigint;
  /** The bytes at `offset`, or undefined past the end or on an I/O error. */
  read(offset: bigint, length: number): Uint8Array | undefined;
  write(offset: bigint, data: Uint8Array): boolean;
  release(): void;
}

export interface FdResolver {
  /** fget(): the emulated File behind fd in the caller's table, or undefined (not open, or not ours). */
  fileOf(fd: number): File | undefined;
  /** Whether fd is open at all in the caller (to tell EBADF from "open but not ours"). */
  isOpen(fd: number): boolean;
  /** eventfd_ctx_fdget(): -EBADF for a closed fd, -EINVAL for an fd that is not an eventfd. */
  eventfd(fd: number): EventfdRef | number;
  /**
   * The shmem or hugetlbfs file behind a client fd (memfd), for MAP_FILE: -EBADF for a closed fd,
   * -EINVAL for any other kind of file. Absent where the caller cannot hold such files.
   */
  hostFile?(fd: number): HostFile | number;
  /**
   * get_unused_fd_flags(): the number a file this call creates will have in the caller's table,
   * or -EMFILE. A client call has one only for a command the ioctl table marks `createsFd`.
   */
  getUnusedFd(): number;
  /**
   * fd_install(): the caller's reference to `file` moves to fd, a number getUnusedFd() gave.
   * `name` is what /proc/<pid>/fd shows for it ("anon_inode:[vfio-device]"). A number taken and
   * never installed is given back when the call returns (put_unused_fd).
   */
  fdInstall(fd: number, file: File, name: string): void;
}

/** st_mode of an anonymous-inode file as fstat() reports it: no file type bits, 0600. */
export const ANON_INODE_MODE = 0o600;

export interface Task {
  readonly creds: Credentials;
  readonly memory: UserMemory;
  readonly fds: FdResolver;
  /** current->comm, for the kernel's log lines that name the caller ("comm:pid"). */
  comm(): string;
  /**
   * Whether a long walk over this caller's memory may let other callers run between its steps
   * (resched.ts): a served client's ioctl may, and its reply then comes later. Absent: every
   * call runs to its end at once (the library API, whose callers wait for a number).
   */
  readonly yields?: boolean;
}
