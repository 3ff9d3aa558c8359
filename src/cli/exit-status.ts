/**
 * The exit statuses of `iommufd-emu`, chosen so that they never collide with a program's own:
 *
 * - `exec` and `serve -- CMD` exit with the program's status (128+N when signal N killed it);
 * - what the emulator finds (leaks after the program, a broken invariant, a sweep violation) is
 *   reported with one status the user picks with `--error-exitcode` (as valgrind's option);
 * - the emulator's own failures use the statuses `env`, `nice` and `timeout` use for theirs:
 *   125 it could not do its job (bad usage, a bad platform file, no gcc), 126 PROGRAM exists but
 *   cannot be run, 127 PROGRAM was not found.
 */
import { InvalidArgumentError } from 'commander';

/** The status for the emulator's findings unless --error-exitcode says otherwise. */
export const DEFAULT_ERROR_EXITCODE = 99;
/** iommufd-emu itself failed: bad usage, a bad platform file, a shim it cannot build. */
export const EXIT_EMULATOR_FAILED = 125;
/** PROGRAM was found but cannot be run (permission, not an executable). */
export const EXIT_CANNOT_RUN = 126;
/** PROGRAM was not found. */
export const EXIT_NOT_FOUND = 127;

/** The exit statuses as --help and the README list them. */
export const EXIT_STATUS_HELP = `
Exit status:
  0       success (check: no violation; serve: stopped with nothing leaked)
  1-124   exec, serve -- CMD: the program's own status, passed through
  128+N   exec, serve -- CMD: signal N killed the program
  ${DEFAULT_ERROR_EXITCODE}      the emulator found something wrong: leaks after the program, a broken
          invariant (--check), a sweep violation, a replay that diverged from its record;
          --error-exitcode N (1-124) picks another
  ${EXIT_EMULATOR_FAILED}     iommufd-emu itself failed (bad usage, bad platform file, no gcc or make)
  ${EXIT_CANNOT_RUN}     PROGRAM cannot be run (permission denied, not an executable)
  ${EXIT_NOT_FOUND}     PROGRAM not found`;

/** --error-exitcode: 1-124, so that it is neither success, ours, nor a signal's status. */
export function parseErrorExitcode(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(n >= 1 && n <= 124))
    throw new InvalidArgumentError(
      'must be from 1 to 124 (125-127 are the emulator failing, 128 and above mean a signal)',
    );
  return n;
}

/** What an errno code means, for messages (Node's own read "spawn ./x ENOENT"). */
export function describeErrno(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    case 'ENOTDIR':
      return 'a component of the path is not a directory';
    case 'EEXIST':
      return 'already exists';
    case 'ENOEXEC':
      return 'not an executable format';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

/** Bad usage or a failure of the emulator's own, worded for the user: exit 125. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function fail(message: string): never {
  throw new UsageError(message);
}
