/**
 * IOCTL: the file's ioctl with the caller's memory, the argument's first bytes already in the
 * request (the window the shim prefetched); the bytes the handler wrote there go back in the
 * reply.
 */
import { Errno } from '../../uapi/errno.ts';
import { checkResult, guarded, hex, liveObject, type ServerState, taskOf, trace } from '../call.ts';
import type { Connection } from '../connection.ts';
import { describeIoctl, fdLabel, ioctlStruct, requestFd } from '../describe.ts';
import { encodeSegments, ReqFlag, type Request, WINDOW_MAX, WINDOW_MIN } from '../protocol.ts';

export function ioctl(s: ServerState, conn: Connection, req: Request): void {
  const object = liveObject(s, conn, req);
  if (object === undefined) return;
  const windowed = (req.flags & ReqFlag.WINDOW) !== 0;
  if (windowed && (req.payload.byteLength < WINDOW_MIN || req.payload.byteLength > WINDOW_MAX)) {
    s.protocolError(conn, `ioctl window of ${req.payload.byteLength} bytes`);
    return;
  }
  const { memory, done } = s.memories.forCall(
    req.creds,
    windowed
      ? { start: req.a1, bytes: req.payload, writable: (req.flags & ReqFlag.WINDOW_RO) === 0 }
      : undefined,
  );
  const task = taskOf(s, req.creds, memory);
  const cmd = Number(req.a0 & 0xffffffffn);
  const { file } = object;
  const what = `ioctl ${hex(cmd)} on ${object.path}`;
  const tracing = s.kernel.events.wants('syscall');
  const input = tracing ? ioctlStruct(file, cmd, req.a1, memory) : undefined;
  const value = guarded(s, what, req.creds, () =>
    file.fops.ioctl === undefined ? -Errno.ENOTTY : file.fops.ioctl(file, task, cmd, req.a1),
  );
  const ret = checkResult(s, what, value, 0x7fffffff);
  if (tracing) {
    const shown = ret >= 0 ? (ioctlStruct(file, cmd, req.a1, memory) ?? input) : input;
    const label = fdLabel(requestFd(req.a0), object.path);
    trace(s, req.creds, 'ioctl', `${label}, ${describeIoctl(file, cmd, req.a1, shown)}`, ret);
  }
  done();
  conn.reply(req, ret, { payload: windowed ? encodeSegments(memory.written()) : undefined });
}
