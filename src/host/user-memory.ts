/**
 * A process's memory as the kernel sees it (copy_from_user, copy_to_user, VMA facts): the
 * interface lives with the machine (platform/user-memory.ts), whose pinned pages read and write
 * a process's pages; the kernel core uses it from here.
 */
export type { MmId, UserMemory, Vma } from '../platform/user-memory.ts';
