/**
 * CLOSE: the process closed an fd of an object. If that was the last copy, its EOF is already
 * readable here: let the event loop take one more poll phase (which reads it and releases)
 * before answering, so release is synchronous with close() as in the kernel; a release that
 * waits for a call holding its context, or tears down what it left, is waited for too.
 */
import { type ServerState, trace } from '../call.ts';
import type { Connection } from '../connection.ts';
import { fdLabel, requestFd } from '../describe.ts';
import { FD_UNKNOWN, type Request } from '../protocol.ts';

export function closeBarrier(s: ServerState, conn: Connection, req: Request): void {
  // Named now: the release the close causes may forget the object before the barrier ends.
  const fd = requestFd(req);
  const path = fd === FD_UNKNOWN ? undefined : s.files.pathOf(req.obj);
  conn.deferred = true;
  const answer = (): void => {
    conn.deferred = false;
    if (path !== undefined) trace(s, req.creds, 'close', fdLabel(fd, path), 0);
    conn.reply(req, 0);
    s.pump(conn);
  };
  setImmediate(() => {
    setImmediate(() => {
      const releasing = s.files.releaseOf(req.obj);
      if (releasing === undefined) answer();
      else void releasing.then(answer, answer);
    });
  });
}
