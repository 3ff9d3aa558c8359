/**
 * RESERVE: the first and only request on an object connection the shim made before an ioctl that
 * may create a file (see ops/ioctl.ts). The connection is the fd the new file gets; until a call
 * installs one, its EOF only drops the reservation.
 */
import type { ServerState } from '../call.ts';
import type { Connection } from '../connection.ts';
import type { Request } from '../protocol.ts';

export function reserve(s: ServerState, conn: Connection, req: Request): void {
  const why = s.files.unusableInode(conn, req.a1, req.obj);
  if (why !== undefined) {
    s.protocolError(conn, `RESERVE ${why}`);
    return;
  }
  conn.kind = 'object';
  conn.reserved = s.files.reserve(req.a1, req.creds);
  conn.reply(req, conn.reserved.id);
}
