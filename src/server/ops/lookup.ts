/** LOOKUP: an fd inherited across exec, found again by its connection's socket inode. */
import { Errno } from '../../uapi/errno.ts';
import type { ServerState } from '../call.ts';
import { holdsSocket } from '../client-identity.ts';
import type { Connection } from '../connection.ts';
import { encodeRdev, type Request } from '../protocol.ts';

export function lookup(s: ServerState, conn: Connection, req: Request): void {
  const object = s.files.byInode(req.a0);
  // Only a socket the caller holds: another process's inode names nothing for it.
  if (object === undefined || (conn.peer !== undefined && !holdsSocket(conn.peer.pid, req.a0))) {
    conn.reply(req, -Errno.ENOENT);
    return;
  }
  conn.heldObjects.add(object);
  conn.reply(req, object.id, { v0: BigInt(object.mode), v1: encodeRdev(object.file.rdev) });
}
