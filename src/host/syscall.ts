/**
 * The boundary every call into the emulated kernel crosses, from the server or the library API:
 * the caller's fail-nth counter is made current, and an exception inside a handler (an emulator
 * bug) becomes EIO for that call with its stack logged, so nothing a client does takes the
 * emulator down.
 */
import { type FailNth, withFailNth } from '../fault/fault.ts';
import type { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';

export function runSyscall<T>(
  events: EventBus,
  what: string,
  failNth: FailNth | undefined,
  fn: () => T | number,
): T | number {
  try {
    return withFailNth(failNth, fn);
  } catch (err) {
    const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
    const message = `emulator bug in ${what}: ${stack}`;
    events.log('bug', message);
    process.stderr.write(`iommufd-emu: ${message}\n`);
    return -Errno.EIO;
  }
}
