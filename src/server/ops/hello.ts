/** HELLO: a client thread's transport introduces itself; the reply names the emulated paths. */
import type { ServerState } from '../call.ts';
import type { Connection } from '../connection.ts';
import { encodeCStrings, HelloFlag, PROTOCOL_VERSION, type Request } from '../protocol.ts';

const EPROTO = 71;

export function hello(s: ServerState, conn: Connection, req: Request): void {
  if (req.a0 !== BigInt(PROTOCOL_VERSION)) {
    conn.reply(req, -EPROTO, { v0: BigInt(PROTOCOL_VERSION) });
    return;
  }
  const key = s.memories.attach(req.creds);
  conn.kind = 'transport';
  conn.thread = { pid: req.creds.pid, tid: req.creds.tid, memoryKey: key };
  // While tracing, the shim also tells what the server does not see (dup, munmap, mmap's address).
  conn.notes = s.kernel.events.wants('syscall');
  conn.reply(req, 0, {
    v0: BigInt(PROTOCOL_VERSION),
    v1: BigInt(conn.notes ? HelloFlag.NOTES : 0),
    payload: encodeCStrings([s.testbed.root, ...s.kernel.emulatedPrefixes()]),
  });
}
