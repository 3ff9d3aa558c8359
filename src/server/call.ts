/**
 * What every served call shares: the server state an op works on, the Task a call runs as (the
 * caller's credentials of that moment, its memory, its fd table), the syscall boundary (fail-nth
 * current, an exception becomes EIO), result checks and the trace.
 */

import type { Kernel } from '../boot/kernel.ts';
import type { Credentials } from '../host/credentials.ts';
import { type CallName, runSyscall } from '../host/syscall.ts';
import type { FdResolver, Task } from '../host/task.ts';
import type { UserMemory } from '../host/user-memory.ts';
import { Errno } from '../uapi/errno.ts';
import type { ClientCredentials } from './client-creds.ts';
import type { ClientFiles, OpenObject } from './client-fds.ts';
import { holdsSocket } from './client-identity.ts';
import type { CallMemories } from './client-memory.ts';
import type { Connection } from './connection.ts';
import { requestFd } from './describe.ts';
import { Op, ReplyFlag, type Request, type WireCreds } from './protocol.ts';
import type { Testbed } from './testbed.ts';

const MAX_ERRNO = 4095;

/** The server as its ops see it. */
export interface ServerState {
  readonly kernel: Kernel;
  readonly testbed: Testbed;
  readonly memories: CallMemories;
  readonly files: ClientFiles;
  /** Sees the fd table of every call (a recording): returns the table the call uses. */
  readonly observeFds?: ((fds: FdResolver) => FdResolver) | undefined;
  /** Turns what the shim reports into the kernel's view of the caller (client-creds.ts). */
  readonly clientCreds: ClientCredentials;
  /** Reads and dispatches the frames waiting on a transport (after a deferred reply). */
  pump(conn: Connection): void;
  /** Drops a connection that broke the protocol. */
  protocolError(conn: Connection, why: string): void;
}

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

/**
 * A served call's Task. A class, so that a call makes no closure for `comm` (decision 182); its
 * fields are the call's own, so a task is never spread into another (that would drop `comm`).
 * Its credentials and fd table are made when the handler first asks (most calls use neither):
 * the credentials at once when a grant is to be named at the first call, the fd table at once
 * while a recording watches, which ties what it sees to the call being recorded (decision 261).
 */
class ServedTask implements Task {
  readonly memory: UserMemory;
  readonly yields: boolean;
  private readonly s: ServerState;
  private readonly wire: WireCreds;
  private readonly wrapFds: ((resolver: FdResolver) => FdResolver) | undefined;
  private taskCreds: Credentials | undefined;
  private taskFds: FdResolver | undefined;

  constructor(
    s: ServerState,
    wire: WireCreds,
    memory: UserMemory,
    yields: boolean,
    wrapFds: ((resolver: FdResolver) => FdResolver) | undefined,
  ) {
    this.s = s;
    this.wire = wire;
    this.taskCreds = s.clientCreds.namedAtFirstCall ? s.clientCreds.of(wire) : undefined;
    this.memory = memory;
    this.yields = yields;
    this.wrapFds = wrapFds;
    this.taskFds = undefined;
    if (s.observeFds !== undefined) this.taskFds = this.findFds();
  }

  get creds(): Credentials {
    this.taskCreds ??= this.s.clientCreds.of(this.wire);
    return this.taskCreds;
  }

  get fds(): FdResolver {
    this.taskFds ??= this.findFds();
    return this.taskFds;
  }

  private findFds(): FdResolver {
    const resolver = this.s.files.resolver(this.wire.pid, this.wire.tid);
    const observed = this.s.observeFds?.(resolver) ?? resolver;
    return this.wrapFds === undefined ? observed : this.wrapFds(observed);
  }

  comm(): string {
    return this.s.clientCreds.comm(this.wire);
  }
}

/**
 * The Task a call runs as. `yields`: a long walk may let other clients run (an ioctl);
 * `fds` wraps the thread's fd table for this call (an ioctl's reserved fd).
 */
export function taskOf(
  s: ServerState,
  creds: WireCreds,
  memory: UserMemory,
  yields = false,
  fds?: (resolver: FdResolver) => FdResolver,
): Task {
  return new ServedTask(s, creds, memory, yields, fds);
}

/**
 * Runs one handler as the calling thread (its fail-nth counter current). An exception is an
 * emulator bug: logged with its stack, and the call fails with EIO (runSyscall).
 */
export function guarded<T>(
  s: ServerState,
  what: CallName,
  creds: WireCreds,
  fn: () => T | number,
): T | number {
  return runSyscall(s.kernel.events, what, s.kernel.failNth(creds.pid, creds.tid), fn);
}

/** A handler's numeric result, or EIO (and a bug report) when it is not a valid one. */
export function checkResult(s: ServerState, what: CallName, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value > max || value < -MAX_ERRNO) {
    reportBug(s, what, new Error(`returned ${String(value)}, not a result or a negative errno`));
    return -Errno.EIO;
  }
  return value;
}

/** A handler broke its contract: a 'bug' event (the CLI prints it), and the call fails. */
export function reportBug(s: ServerState, what: CallName, err: unknown): void {
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  s.kernel.events.log('bug', `emulator bug in ${String(what)}; the call fails with EIO: ${text}`);
}

/** Publishes a served call for the trace. */
export function trace(
  s: ServerState,
  creds: WireCreds,
  call: string,
  detail: string,
  ret: number,
  shown?: string,
): void {
  if (!s.kernel.events.wants('syscall')) return;
  s.kernel.events.publish({
    kind: 'syscall',
    pid: creds.pid,
    tid: creds.tid,
    call,
    detail,
    ret,
    ...(shown === undefined ? {} : { shown }),
  });
}

/**
 * The open object `id` if the connection's process holds an fd on it, as fget() finds only the
 * caller's own files: an object id is a number anyone can write, so a first use by a connection
 * is checked against the process's fd table (/proc/<pid>/fd; `fd` is where the caller says it
 * holds it), then remembered.
 */
export function heldObject(
  s: ServerState,
  conn: Connection,
  id: number,
  fd?: number,
): OpenObject | undefined {
  const object = s.files.get(id);
  if (object === undefined || conn.peer === undefined || conn.heldObjects.has(object)) {
    return object;
  }
  if (!holdsSocket(conn.peer.pid, object.ino, fd)) return undefined;
  conn.heldObjects.add(object);
  return object;
}

/** The live object a request names, or undefined after replying STALE. */
export function liveObject(s: ServerState, conn: Connection, req: Request): OpenObject | undefined {
  // IOCTL, READ and WRITE carry the caller's fd number in a0 bits 32-63.
  const fd =
    req.op === Op.IOCTL || req.op === Op.READ || req.op === Op.WRITE ? requestFd(req) : undefined;
  const object = heldObject(s, conn, req.obj, fd);
  if (object === undefined) conn.reply(req, -Errno.EBADF, { flags: ReplyFlag.STALE });
  return object;
}
