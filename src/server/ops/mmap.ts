/**
 * MMAP: the driver names what backs the mapping: a file the client maps itself, or device memory
 * the shim traps and replays as READ/WRITE at regionOffset + offset.
 */
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
import type { Connection, ReplyExtra } from '../connection.ts';
import { describeMmap } from '../describe.ts';
import { decodeMmapRequest, encodeCStrings, MmapKind, type Request } from '../protocol.ts';

const PAGE_SIZE = 4096n;

export function mmap(s: ServerState, conn: Connection, req: Request): void {
  const object = liveObject(s, conn, req);
  if (object === undefined) return;
  const how = decodeMmapRequest(req.payload);
  if (how === undefined) {
    s.protocolError(conn, 'MMAP without prot/flags');
    return;
  }
  const length = req.a0;
  const offset = req.a1;
  const { file } = object;
  const what = `mmap on ${object.path}`;
  let ret: number;
  let extra: ReplyExtra = {};
  const { fops } = file;
  const mmap = fops.mmap;
  if (mmap === undefined) ret = -Errno.ENODEV;
  else {
    const memory = s.memories.forCall(req.creds);
    const task = taskOf(s, req.creds, memory);
    const backing = guarded(s, what, req.creds, () =>
      mmap.call(fops, file, task, length, offset / PAGE_SIZE, how),
    );
    memory.done();
    if (typeof backing === 'object' && backing.kind === 'trapped') {
      // The shim traps every access and sends it back as READ/WRITE at regionOffset + offset.
      ret = 0;
      extra = { v0: backing.regionOffset, v1: BigInt(MmapKind.TRAPPED) };
    } else if (typeof backing === 'object') {
      if (backing.fileOffset < 0n || backing.fileOffset % PAGE_SIZE !== 0n) {
        reportBug(s, what, new Error(`backing offset ${backing.fileOffset} is not page aligned`));
        ret = -Errno.EIO;
      } else {
        ret = 0;
        extra = {
          v0: backing.fileOffset,
          v1: BigInt(MmapKind.FILE),
          payload: encodeCStrings([backing.path]),
        };
      }
    } else {
      ret = checkResult(s, what, backing, -1);
    }
  }
  // With NOTEs on, the shim notes the call with the address it mapped (note.ts).
  if (!conn.notes) {
    const detail = describeMmap(object.path, file, 0n, length, how.prot, how.flags, offset);
    trace(s, req.creds, 'mmap', detail, ret, ret < 0 ? undefined : '?');
  }
  conn.reply(req, ret, extra);
}
