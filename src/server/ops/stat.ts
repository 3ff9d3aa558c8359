/** STAT: stat(2) or lstat(2) of a path, walked by the kernel model's VFS. */
import { type ServerState, taskOf } from '../call.ts';
import type { Connection } from '../connection.ts';
import { decodeCString, encodeRdev, ReqFlag, type Request } from '../protocol.ts';

export function stat(s: ServerState, conn: Connection, req: Request): void {
  const path = decodeCString(req.payload);
  if (path === undefined) {
    s.protocolError(conn, 'STAT without a path');
    return;
  }
  const memory = s.memories.forCall(req.creds);
  const task = taskOf(s, req.creds, memory);
  const node = s.kernel.vfs.stat(task, path, (req.flags & ReqFlag.NOFOLLOW) === 0);
  memory.done();
  if (typeof node === 'number') conn.reply(req, node);
  else conn.reply(req, 0, { v0: BigInt(node.mode), v1: encodeRdev(node.rdev) });
}
