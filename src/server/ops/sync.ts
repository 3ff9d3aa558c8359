/** SYNC: the shim is about to use the testbed for a call on a path: bring it up to date. */
import { type ServerState, trace } from '../call.ts';
import type { Connection } from '../connection.ts';
import { quotePath } from '../describe.ts';
import { decodeCString, type Request, SyncCall } from '../protocol.ts';

export function sync(s: ServerState, conn: Connection, req: Request): void {
  s.testbed.sync();
  const call = SyncCall[req.a0lo & 0xff];
  const path = decodeCString(req.payload);
  // The shim makes the call itself, after this reply: its result is unknown here (strace's "?").
  if (call !== undefined && path !== undefined) trace(s, req.creds, call, quotePath(path), 0, '?');
  conn.reply(req, 0);
}
