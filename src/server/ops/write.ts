/**
 * WRITE: write(2) at the file position or pwrite(2) at the request's. And the bytes a program
 * writes straight to an object connection, past the shim (glibc's stdio).
 */
import { isBlocked } from '../../host/file.ts';
import type { Task } from '../../host/task.ts';
import { Errno, errnoName } from '../../uapi/errno.ts';
import {
  checkResult,
  guarded,
  liveObject,
  reportBug,
  type ServerState,
  taskOf,
  trace,
} from '../call.ts';
import type { OpenObject } from '../client-fds.ts';
import { NO_MEMORY } from '../client-memory.ts';
import type { Connection } from '../connection.ts';
import { describeIo, describeMmio, fdLabel, requestFd } from '../describe.ts';
import { FD_UNKNOWN, ReqFlag, type Request } from '../protocol.ts';
import { position } from './read.ts';

export function write(s: ServerState, conn: Connection, req: Request): void {
  const object = liveObject(s, conn, req);
  if (object === undefined) return;
  const data = req.payload;
  const pos = position(object, req);
  const { file } = object;
  const what = `write on ${object.path}`;
  const { fops } = file;
  const mmio = (req.flags & ReqFlag.MMIO) !== 0;
  const write = mmio && fops.mmioWrite !== undefined ? fops.mmioWrite : fops.write;
  let n: unknown = pos === undefined && fops.nonseekable ? -Errno.ESPIPE : -Errno.EINVAL;
  if (pos !== undefined && write !== undefined) {
    const memory = s.memories.forCall(req.creds);
    const task = taskOf(s, req.creds, memory);
    n = guarded(s, what, req.creds, () => write.call(fops, file, task, data, pos));
    memory.done();
  }
  // A blocked write (an unbind waiting for the device's users) is answered when it returns;
  // this thread's connection waits, every other one is served meanwhile.
  if (isBlocked(n)) {
    n.blocked.then(
      (r: number) => writeDone(s, conn, req, object, pos, r),
      (err: unknown) => {
        reportBug(s, what, err);
        writeDone(s, conn, req, object, pos, -Errno.EIO);
      },
    );
    return;
  }
  writeDone(s, conn, req, object, pos, n);
}

function writeDone(
  s: ServerState,
  conn: Connection,
  req: Request,
  object: OpenObject,
  pos: bigint | undefined,
  n: unknown,
): void {
  const data = req.payload;
  const { file } = object;
  const ret = checkResult(s, `write on ${object.path}`, n, data.byteLength);
  if (ret > 0 && (req.flags & ReqFlag.POSITIONAL) === 0 && !file.fops.nonseekable)
    object.pos += BigInt(ret);
  if (s.kernel.events.wants('syscall') && (req.flags & ReqFlag.MMIO) !== 0 && pos !== undefined) {
    const label = fdLabel(requestFd(req), object.path);
    const detail = describeMmio(label, file, data.byteLength, pos, data);
    trace(s, req.creds, 'mmio', detail, ret < 0 ? ret : 0);
  } else if (s.kernel.events.wants('syscall')) {
    const positional = (req.flags & ReqFlag.POSITIONAL) !== 0;
    const label = fdLabel(requestFd(req), object.path);
    const detail = describeIo(
      label,
      file,
      data.byteLength,
      positional ? pos : undefined,
      data,
      ret,
      'write',
    );
    trace(s, req.creds, positional ? 'pwrite' : 'write', detail, ret);
  }
  conn.reply(req, ret);
}

/**
 * Bytes the program wrote straight to an object connection: glibc's stdio writes with its
 * internal write(), which the shim cannot see (bash's `echo 1 > /sys/...` flushes stdout that
 * way). They are written to the file at its position, with the opener's credentials; the
 * writer never learns of an error, so a failure is logged.
 */
export function rawWrite(s: ServerState, conn: Connection, chunk: Uint8Array): void {
  const object = conn.object ?? conn.reserved?.object;
  if (object === undefined || object.released || chunk.byteLength === 0) return;
  const { file } = object;
  const { fops } = file;
  const write = fops.write;
  const what = `write on ${object.path} (bypassing the shim)`;
  let ret: number;
  if (write === undefined) ret = -Errno.EINVAL;
  else {
    const { pid, tid } = object.creds;
    const task: Task = {
      creds: s.clientCreds.of(object.creds),
      memory: NO_MEMORY,
      fds: s.files.resolver(pid, tid),
      comm: () => s.clientCreds.comm(object.creds),
    };
    let n: unknown = guarded(s, what, object.creds, () =>
      write.call(fops, file, task, chunk, object.pos),
    );
    // Nobody waits for a write that bypassed the shim: a blocked one finishes on its own.
    if (isBlocked(n)) n = chunk.byteLength;
    ret = checkResult(s, what, n, chunk.byteLength);
    if (ret > 0 && !fops.nonseekable) object.pos += BigInt(ret);
  }
  if (ret < 0 && object.rawWriteFailed !== true) {
    // Once per open file: a client pouring bytes into a file that refuses them must not flood
    // the kernel log (and whoever reads it).
    object.rawWriteFailed = true;
    s.kernel.events.log(
      'warn',
      `a write to ${object.path} that bypassed the shim (stdio) failed: ${errnoName(ret)} (later failures on this open file are not logged)`,
    );
  }
  if (s.kernel.events.wants('syscall')) {
    const label = fdLabel(FD_UNKNOWN, object.path);
    const detail = describeIo(label, file, chunk.byteLength, undefined, chunk, ret);
    trace(s, object.creds, 'write', detail, ret);
  }
}
