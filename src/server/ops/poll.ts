/** POLL: the ready mask of each emulated file in a poll set (the shim polls the real ones). */
import { guarded, heldObject, type ServerState, taskOf, trace } from '../call.ts';
import type { Connection } from '../connection.ts';
import { pollNames } from '../describe.ts';
import { decodePollEntries, encodeU32s, type PollEntry, type Request } from '../protocol.ts';

const POLLIN = 0x1;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLNVAL = 0x20;
const POLLRDNORM = 0x40;
const POLLWRNORM = 0x100;
/** What poll reports for a file without a poll operation (the kernel's DEFAULT_POLLMASK). */
const DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;

export function poll(s: ServerState, conn: Connection, req: Request): void {
  const entries = decodePollEntries(req.payload);
  if (entries === undefined) {
    s.protocolError(conn, 'POLL with a partial entry');
    return;
  }
  const memory = s.memories.forCall(req.creds);
  const task = taskOf(s, req.creds, memory);
  const revents = entries.map((entry) => {
    const object = heldObject(s, conn, entry.obj);
    if (object === undefined) return POLLNVAL;
    const { file } = object;
    const fops = file.fops;
    if (fops.poll === undefined) return DEFAULT_POLLMASK;
    const poll = fops.poll;
    const mask = guarded(s, `poll on ${object.path}`, req.creds, () => poll.call(fops, file, task));
    return Number.isInteger(mask) && mask >= 0 ? mask : POLLERR;
  });
  memory.done();
  if (s.kernel.events.wants('syscall')) tracePoll(s, conn, req, entries, revents);
  conn.reply(req, 0, { payload: encodeU32s(revents) });
}

/**
 * `poll([{/dev/iommu, POLLIN}], 1) => [{/dev/iommu, revents=POLLIN}]`, counting what is ready
 * among the emulated fds (the shim polls the others). A waiting poll asks every 10 ms: a check
 * that finds what the previous one on this thread found, nothing ready, is not repeated.
 */
function tracePoll(
  s: ServerState,
  conn: Connection,
  req: Request,
  entries: readonly PollEntry[],
  revents: readonly number[],
): void {
  const name = (e: PollEntry): string => s.files.pathOf(e.obj) ?? `object ${e.obj}`;
  const asked = entries.map((e) => `{${name(e)}, ${pollNames(e.events)}}`).join(', ');
  const ready = entries
    .map((e, i) => ({ e, r: (revents[i] ?? 0) & (e.events | POLLERR | 0x10 | POLLNVAL) }))
    .filter(({ r }) => r !== 0);
  const detail = `[${asked}], ${entries.length}`;
  if (ready.length === 0 && conn.lastPoll === detail) return;
  conn.lastPoll = ready.length === 0 ? detail : undefined;
  const shown = ready.map(({ e, r }) => `{${name(e)}, revents=${pollNames(r)}}`).join(', ');
  const out = ready.length === 0 ? '' : ` => [${shown}]`;
  trace(s, req.creds, 'poll', `${detail}${out}`, ready.length);
}
