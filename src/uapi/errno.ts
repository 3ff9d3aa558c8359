/**
 * Linux errno values (x86-64 / generic), as the kernel returns them negated from an ioctl.
 * Handlers return `-Errno.X` on failure, like kernel code does.
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  ERANGE: 34,
  EDEADLK: 35,
  ENOSYS: 38,
  EBADE: 52,
  ELOOP: 40,
  EOVERFLOW: 75,
  EBADFD: 77,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
} as const;

export type ErrnoName = keyof typeof Errno;
export type ErrnoValue = (typeof Errno)[ErrnoName];

const errnoNames = new Map<number, ErrnoName>(
  (Object.entries(Errno) as [ErrnoName, number][]).map(([name, value]) => [value, name]),
);

/** "EINVAL" for 22; "errno N" for a value this table does not know. */
export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

/**
 * The result of a syscall-like operation: >= 0 is success (a value), < 0 is a negated errno.
 * This is the kernel's own convention (`long` returns), kept so handlers read like the C they model.
 */
export type SyscallResult = number;

/** strerror() text of each errno above (glibc's), for the trace's `= -1 EEXIST (File exists)`. */
const errnoTexts: Record<ErrnoName, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  ESRCH: 'No such process',
  EINTR: 'Interrupted system call',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  E2BIG: 'Argument list too long',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EFAULT: 'Bad address',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  EMFILE: 'Too many open files',
  ENOTTY: 'Inappropriate ioctl for device',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  ESPIPE: 'Illegal seek',
  EROFS: 'Read-only file system',
  ERANGE: 'Numerical result out of range',
  EDEADLK: 'Resource deadlock avoided',
  ENOSYS: 'Function not implemented',
  ELOOP: 'Too many levels of symbolic links',
  EOVERFLOW: 'Value too large for defined data type',
  EBADE: 'Invalid exchange',
  EBADFD: 'File descriptor in bad state',
  EMSGSIZE: 'Message too long',
  EOPNOTSUPP: 'Operation not supported',
  EADDRINUSE: 'Address already in use',
};

/** "EEXIST (File exists)" for 17 (or -17); "errno N" for a value this table does not know. */
export function errnoWithText(errno: number): string {
  const name = errnoNames.get(Math.abs(errno));
  return name === undefined ? `errno ${Math.abs(errno)}` : `${name} (${errnoTexts[name]})`;
}
