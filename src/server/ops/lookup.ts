/** LOOKUP: an fd inherited across exec, found again by its connection's socket inode. */
import { Errno } from '../../uapi/errno.ts';
import type { ServerState } from '../call.ts';
import type { Connection } from '../connection.ts';
import { encodeRdev, type Request } from '../protocol.ts';

export function lookup(s: ServerState, conn: Connection, req: Request): void {
  const object = s.files.byInode(req.a0);
  if (object === undefined) {
    conn.reply(req, -Errno.ENOENT);
    return;
  }
  conn.reply(req, object.id, { v0: BigInt(object.mode), v1: encodeRdev(object.file.rdev) });
}
