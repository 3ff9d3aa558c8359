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

export interface FdResolver {
  /** fget(): the emulated File behind fd in the caller's table, or undefined (not open, or not ours). */
  fileOf(fd: number): File | undefined;
  /** Whether fd is open at all in the caller (to tell EBADF from "open but not ours"). */
  isOpen(fd: number): boolean;
  /** eventfd_ctx_fdget(): -EBADF for a closed fd, -EINVAL for an fd that is not an eventfd. */
  eventfd(fd: number): EventfdRef | number;
}

export interface Task {
  readonly creds: Credentials;
  readonly memory: UserMemory;
  readonly fds: FdResolver;
}
