/** SEEK: lseek() of an object's file position: SEEK_SET and SEEK_CUR (SEEK_END: EINVAL). */
import { Errno } from '../../uapi/errno.ts';
import { liveObject, type ServerState } from '../call.ts';
import type { Connection } from '../connection.ts';
import { type Request, Whence } from '../protocol.ts';

export function seek(s: ServerState, conn: Connection, req: Request): void {
  const object = liveObject(s, conn, req);
  if (object === undefined) return;
  if (object.file.fops.nonseekable === true) {
    conn.reply(req, -Errno.ESPIPE);
    return;
  }
  const offset = BigInt.asIntN(64, req.a0);
  let pos: bigint;
  if (req.a1 === BigInt(Whence.SET)) pos = offset;
  else if (req.a1 === BigInt(Whence.CUR)) pos = object.pos + offset;
  else pos = -1n;
  if (pos < 0n || pos > 0x7fffffffffffffffn) {
    conn.reply(req, -Errno.EINVAL);
    return;
  }
  object.pos = pos;
  conn.reply(req, 0, { v0: pos });
}
