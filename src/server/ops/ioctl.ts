/**
 * IOCTL: the file's ioctl with the caller's memory, the argument's first bytes already in the
 * request (the window the shim prefetched); the bytes the handler wrote there go back in the
 * reply.
 *
 * A command that may create a file (the ioctl table's `createsFd`) runs only with an fd the shim
 * reserved (RESERVE): without one the reply asks for it and nothing runs. The handler's
 * get_unused_fd_flags() returns that fd's number and its fd_install() puts the file there.
 */
import { type File, isBlocked, type MaybeBlocked } from '../../host/file.ts';
import { ANON_INODE_MODE, type FdResolver } from '../../host/task.ts';
import { describeIoctl } from '../../trace/decode.ts';
import { createsFd } from '../../uapi/commands.ts';
import { Errno } from '../../uapi/errno.ts';
import {
  checkResult,
  guarded,
  hex,
  liveObject,
  reportBug,
  type ServerState,
  taskOf,
  trace,
} from '../call.ts';
import type { ReservedFd } from '../client-fds.ts';
import type { ServedMemory } from '../client-memory.ts';
import type { Connection, ReplyExtra } from '../connection.ts';
import { fdLabel, ioctlStruct, requestFd } from '../describe.ts';
import {
  encodeRdev,
  encodeSegments,
  ReplyFlag,
  ReqFlag,
  type Request,
  splitNewfd,
  WINDOW_MAX,
  WINDOW_MIN,
} from '../protocol.ts';

/** The fd reserved for one call and what the handler did with it. */
interface CallFd {
  readonly fd: number;
  readonly reserved: ReservedFd | undefined;
  taken: boolean;
  installed: { readonly file: File; readonly name: string } | undefined;
}

export function ioctl(s: ServerState, conn: Connection, req: Request): void {
  const object = liveObject(s, conn, req);
  if (object === undefined) return;
  const cmd = req.a0lo;
  let windowBytes = req.payload;
  let callFd: CallFd | undefined;
  if ((req.flags & ReqFlag.NEWFD) !== 0) {
    const split = splitNewfd(req.payload);
    if (split === undefined) {
      s.protocolError(conn, 'ioctl with a short emu_newfd');
      return;
    }
    windowBytes = split.window;
    const reserved = s.files.reservation(split.obj, req.creds.pid);
    callFd = { fd: split.fd, reserved, taken: false, installed: undefined };
  } else {
    const windowed = (req.flags & ReqFlag.WINDOW) !== 0;
    const creates = createsFd(cmd, windowed ? windowBytes : undefined);
    if (creates !== undefined) {
      conn.reply(req, 0, { flags: ReplyFlag.NEED_FD, v0: BigInt(creates.flags) });
      return;
    }
  }
  const windowed = (req.flags & ReqFlag.WINDOW) !== 0;
  if (windowed && (windowBytes.byteLength < WINDOW_MIN || windowBytes.byteLength > WINDOW_MAX)) {
    s.protocolError(conn, `ioctl window of ${windowBytes.byteLength} bytes`);
    return;
  }
  const memory = s.memories.forCall(
    req.creds,
    windowed
      ? { start: req.a1, bytes: windowBytes, writable: (req.flags & ReqFlag.WINDOW_RO) === 0 }
      : undefined,
  );
  const reservedFd = callFd;
  const task = taskOf(
    s,
    req.creds,
    memory,
    true,
    reservedFd === undefined ? undefined : (fds) => withReservedFd(fds, reservedFd),
  );
  const { file } = object;
  const tracing = s.kernel.events.wants('syscall');
  const input = tracing ? ioctlStruct(file, cmd, req.a1, memory) : undefined;
  // An object, not a closure: most calls finish at once (decision 182).
  const call = new PendingIoctl(
    s,
    conn,
    req,
    file,
    object.path,
    cmd,
    callFd,
    memory,
    tracing,
    input,
  );
  const run = (): MaybeBlocked =>
    file.fops.ioctl === undefined ? -Errno.ENOTTY : file.fops.ioctl(file, task, cmd, req.a1);
  let value = guarded(s, call, req.creds, run);
  // An access the kernel would have made wait for the caller's userfaultfd handler: the call runs
  // again once the page is in (client-memory.ts), each run with the fd the shim reserved.
  if (isBlocked(value) || memory.userfault !== undefined) {
    value = memory.settle(value, () => {
      if (callFd !== undefined && callFd.installed === undefined) callFd.taken = false;
      return guarded(s, call, req.creds, run);
    });
  }
  if (!isBlocked(value)) {
    finishIoctl(call, value);
    return;
  }
  // A call walking gigabytes of the caller's memory goes on a slice per turn of the event loop
  // (resched.ts): this thread's transport waits for its reply, every other client is served.
  // The file stays open until the call returns, as fdget() keeps it, whoever closes the fd.
  file.get();
  conn.deferred = true;
  value.blocked
    .catch((err: unknown) => {
      reportBug(s, call, err);
      return -Errno.EIO;
    })
    .then((result) => {
      try {
        file.put();
        finishIoctl(call, result);
      } catch (err) {
        reportBug(s, call, err);
      }
      conn.deferred = false;
      s.pump(conn);
    });
}

/**
 * What an ioctl's reply needs once its handler returned. Its string is the call's name for a bug
 * report, made only if one is made (decision 261).
 */
class PendingIoctl {
  readonly s: ServerState;
  readonly conn: Connection;
  readonly req: Request;
  readonly file: File;
  readonly path: string;
  readonly cmd: number;
  readonly callFd: CallFd | undefined;
  readonly memory: ServedMemory;
  readonly tracing: boolean;
  readonly input: ReturnType<typeof ioctlStruct> | undefined;

  constructor(
    s: ServerState,
    conn: Connection,
    req: Request,
    file: File,
    path: string,
    cmd: number,
    callFd: CallFd | undefined,
    memory: ServedMemory,
    tracing: boolean,
    input: ReturnType<typeof ioctlStruct> | undefined,
  ) {
    this.s = s;
    this.conn = conn;
    this.req = req;
    this.file = file;
    this.path = path;
    this.cmd = cmd;
    this.callFd = callFd;
    this.memory = memory;
    this.tracing = tracing;
    this.input = input;
  }

  toString(): string {
    return `ioctl ${hex(this.cmd)} on ${this.path}`;
  }
}

/** Checks the handler's result, installs its new fd, traces the call and replies. */
function finishIoctl(c: PendingIoctl, result: unknown): void {
  const { s, req, memory } = c;
  const ret = checkResult(s, c, result, 0x7fffffff);
  // The new file is listed among the open files before the call is reported (and checked).
  const fdExtra = installFd(s, c.callFd, ret);
  if (c.tracing) {
    const output = ret >= 0 ? ioctlStruct(c.file, c.cmd, req.a1, memory) : undefined;
    const label = fdLabel(requestFd(req), c.path);
    const call = describeIoctl(c.file.fops.name, c.cmd, req.a1, c.input, output);
    trace(s, req.creds, 'ioctl', `${label}, ${call}`, ret);
  }
  memory.done();
  const payload = (req.flags & ReqFlag.WINDOW) !== 0 ? encodeSegments(memory.written()) : undefined;
  c.conn.reply(req, ret, {
    flags: fdExtra.flags,
    v0: fdExtra.v0,
    v1: fdExtra.v1,
    payload,
  });
}

/** A reply that installed no file. */
const NO_FD: ReplyExtra = {};

/** The caller's fd table with the call's reserved fd as its one unused number. */
function withReservedFd(fds: FdResolver, callFd: CallFd): FdResolver {
  return {
    ...fds,
    getUnusedFd: (): number => {
      if (callFd.reserved === undefined || callFd.taken) return -Errno.EMFILE;
      callFd.taken = true;
      return callFd.fd;
    },
    fdInstall: (fd: number, file: File, name: string): void => {
      if (!callFd.taken || fd !== callFd.fd || callFd.installed !== undefined) {
        throw new Error(`fd_install(${fd}) of a number the call did not take`);
      }
      callFd.installed = { file, name };
    },
  };
}

/**
 * After the call: the file it installed becomes the reserved connection's open object, and the
 * reply says so (the shim then keeps the fd; otherwise it closes it, put_unused_fd). A call that
 * installed a file and still failed is an emulator bug (checkResult reported it): the file is put.
 */
function installFd(s: ServerState, callFd: CallFd | undefined, ret: number): ReplyExtra {
  const installed = callFd?.installed;
  if (callFd?.reserved === undefined || installed === undefined) return NO_FD;
  // A failed call; or the reserved connection is gone (the process died while the call went
  // on): the fd table the file would go into went with it, and the file goes with its last put.
  if (ret < 0 || callFd.reserved.dropped) {
    installed.file.put();
    return NO_FD;
  }
  s.kernel.openFiles.add(installed.file);
  s.files.install(callFd.reserved, installed.file, installed.name, ANON_INODE_MODE);
  return {
    flags: ReplyFlag.NEWFD,
    v0: BigInt(ANON_INODE_MODE),
    v1: encodeRdev(installed.file.rdev),
  };
}
