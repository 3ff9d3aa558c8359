/**
 * CLOSE: the process closed an fd of an object. If that was the last copy, its EOF is already
 * readable here: let the event loop take one more poll phase (which reads it and releases)
 * before answering, so release is synchronous with close() as in the kernel.
 */
import type { ServerState } from '../call.ts';
import type { Connection } from '../connection.ts';
import type { Request } from '../protocol.ts';

export function closeBarrier(s: ServerState, conn: Connection, req: Request): void {
  conn.deferred = true;
  setImmediate(() => {
    setImmediate(() => {
      conn.deferred = false;
      conn.reply(req, 0);
      s.pump(conn);
    });
  });
}
