/** READ: read(2) at the file position or pread(2) at the request's; the bytes come back. */
import { Errno } from '../../uapi/errno.ts';
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
import type { Connection } from '../connection.ts';
import { describeIo, describeMmio, fdLabel, requestFd, value } from '../describe.ts';
import { ReqFlag, type Request, RW_MAX } from '../protocol.ts';

/**
 * Where a read or write happens: the file position, or pread/pwrite's (EINVAL if negative). A
 * stream (nonseekable) is always read at its position, and pread/pwrite of it is ESPIPE.
 */
export function position(object: OpenObject, req: Request): bigint | undefined {
  if ((req.flags & ReqFlag.POSITIONAL) === 0) return object.pos;
  if (object.file.fops.nonseekable === true) return undefined;
  const pos = BigInt.asIntN(64, req.a1);
  return pos < 0n ? undefined : pos;
}

export function read(s: ServerState, conn: Connection, req: Request): void {
  const object = liveObject(s, conn, req);
  if (object === undefined) return;
  const count = Math.min(req.a0lo, RW_MAX);
  const pos = position(object, req);
  const { file } = object;
  const what = `read on ${object.path}`;
  let ret: number;
  let payload: Uint8Array | undefined;
  const { fops } = file;
  const mmio = (req.flags & ReqFlag.MMIO) !== 0;
  const read = mmio && fops.mmioRead !== undefined ? fops.mmioRead : fops.read;
  if (pos === undefined) ret = object.file.fops.nonseekable ? -Errno.ESPIPE : -Errno.EINVAL;
  else if (read === undefined) ret = -Errno.EINVAL;
  else {
    const memory = s.memories.forCall(req.creds);
    const task = taskOf(s, req.creds, memory);
    const data = guarded(s, what, req.creds, () => read.call(fops, file, task, count, pos));
    memory.done();
    if (data instanceof Uint8Array) {
      if (data.byteLength > count) {
        reportBug(s, what, new Error(`returned ${data.byteLength} bytes for a ${count}-byte read`));
        ret = -Errno.EIO;
      } else {
        ret = data.byteLength;
        payload = data;
        if ((req.flags & ReqFlag.POSITIONAL) === 0 && !fops.nonseekable) object.pos += BigInt(ret);
      }
    } else {
      ret = checkResult(s, what, data, -1);
    }
  }
  if (s.kernel.events.wants('syscall') && (req.flags & ReqFlag.MMIO) !== 0 && pos !== undefined) {
    const label = fdLabel(requestFd(req), object.path);
    const shown = payload !== undefined && ret > 0 ? value(payload.subarray(0, ret)) : undefined;
    trace(s, req.creds, 'mmio', describeMmio(label, file, count, pos, undefined), ret, shown);
  } else if (s.kernel.events.wants('syscall')) {
    const positional = (req.flags & ReqFlag.POSITIONAL) !== 0;
    const label = fdLabel(requestFd(req), object.path);
    const detail = describeIo(label, file, count, positional ? pos : undefined, payload, ret);
    trace(s, req.creds, positional ? 'pread' : 'read', detail, ret);
  }
  conn.reply(req, ret, { payload });
}
