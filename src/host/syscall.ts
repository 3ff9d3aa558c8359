/**
 * The boundary every call into the emulated kernel crosses, from the server or the library API:
 * the caller's fail-nth counter is made current, and an exception inside a handler (an emulator
 * bug) becomes EIO for that call and a 'bug' event with its stack, so nothing a client does takes
 * the emulator down. The kernel model never writes to a terminal: whoever listens (the CLI, the
 * checker, a test) decides what to show.
 */
import { type FailNth, withFailNth } from '../fault/fault.ts';
import { describeIoctl, ioctlInfo } from '../trace/decode.ts';
import type { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { type File, isBlocked } from './file.ts';
import type { Task } from './task.ts';

/**
 * A call's name for a bug report: a string, or an object whose toString() makes it, so that a
 * call that goes well never builds it.
 */
export type CallName = string | { toString(): string };

export function runSyscall<T>(
  events: EventBus,
  what: CallName,
  failNth: FailNth | undefined,
  fn: () => T | number,
): T | number {
  try {
    return withFailNth(failNth, fn);
  } catch (err) {
    const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
    const message = `emulator bug in ${String(what)}: ${stack}`;
    events.log('bug', message);
    return -Errno.EIO;
  }
}

/**
 * ioctl through a File, publishing a decoded 'syscall' event when anyone listens. The struct is
 * read straight from the caller's memory for the trace, outside the fault-injection sites.
 */
export function tracedIoctl(
  events: EventBus,
  call: { readonly pid: number; readonly tid: number; readonly fd: number },
  file: File,
  task: Task,
  cmd: number,
  arg: bigint,
  failNth: FailNth | undefined,
): number {
  const fopsIoctl = file.fops.ioctl;
  // The library's tasks never yield (Task.yields), so every ioctl answers at once.
  const ioctl = (f: File, t: Task, c: number, a: bigint): number => {
    const ret = fopsIoctl?.(f, t, c, a) ?? -Errno.ENOTTY;
    if (isBlocked(ret)) throw new Error('an ioctl of a task that may not yield blocked');
    return ret;
  };
  const what = `ioctl(${call.fd}, 0x${cmd.toString(16)})`;
  if (fopsIoctl === undefined) return -Errno.ENOTTY;
  if (!events.wants('syscall'))
    return runSyscall(events, what, failNth, () => ioctl(file, task, cmd, arg));
  const info = ioctlInfo(file.fops.name, cmd);
  const before = info?.spec === undefined ? undefined : task.memory.read(arg, info.spec.size);
  const ret = runSyscall(events, what, failNth, () => ioctl(file, task, cmd, arg));
  const after =
    info?.spec === undefined || ret < 0 ? undefined : task.memory.read(arg, info.spec.size);
  const detail = `${call.fd}, ${describeIoctl(file.fops.name, cmd, arg, before, after)}`;
  events.publish({ kind: 'syscall', pid: call.pid, tid: call.tid, call: 'ioctl', detail, ret });
  return ret;
}
