/**
 * `iommufd-emu replay FILE`: runs a recorded run again against a fresh emulator built from the
 * recorded platform, with no program. Every recorded request goes through the server's own op
 * handlers, as the shim's would; what each call asks of its caller is answered from the record
 * (replay-world.ts); device work completes where the record says it did. Every reply, every byte
 * written back and every event must match the record; the first that does not is the divergence,
 * reported with the call it happened in, decoded as the trace decodes it.
 */
import { Kernel } from '../boot/kernel.ts';
import { PlatformConfigError, parsePlatform } from '../platform/platform-config.ts';
import type { EmuEvent } from '../trace/events.ts';
import {
  bytesDifference,
  type CallLine,
  type EventLine,
  fromHex,
  hexToBytes,
  isEventLine,
  type RecordedReply,
  type RecordLine,
  type ReplyLine,
  type RunRecord,
} from '../trace/record.ts';
import { bootLogEvents, eventJson, formatEvent, formatResult } from '../trace/writer.ts';
import type { ServerState } from './call.ts';
import { ClientCredentials } from './client-creds.ts';
import { Connection, type ConnectionSocket } from './connection.ts';
import { rawWrite } from './ops/write.ts';
import { Op, type Request, requestOf, type WireCreds } from './protocol.ts';
import { recordedReply } from './recorder.ts';
import {
  CallSeen,
  ReplayFiles,
  ReplayMemories,
  ReplayTimers,
  recordedCallers,
} from './replay-world.ts';
import { dispatchRequest, dropConnection } from './server.ts';
import { Testbed } from './testbed.ts';

/** How many event-loop turns a replay waits for a late reply or event (a close's barrier). */
const TURNS_MAX = 50;

/** Where and how a replay left the record. */
export interface Divergence {
  /** The record's line (1-based) where it was found. */
  readonly line: number;
  /** What differs, in one sentence. */
  readonly what: string;
  /** The call it happened in, as the trace shows it: the record's line and the replay's. */
  readonly recorded?: string | undefined;
  readonly replayed?: string | undefined;
}

export type ReplayResult =
  | { readonly ok: true; readonly calls: number; readonly events: number }
  | { readonly ok: false; readonly divergence: Divergence };

export interface ReplayOptions {
  /** After each line replayed, with the emulator as it stands then (stepping through a run). */
  readonly onLine?: (line: number, kernel: Kernel) => void;
  /** Stop after this line (the state at a call); the result is ok if nothing diverged so far. */
  readonly untilLine?: number;
}

/** A socket that goes nowhere: a replay reads replies through Connection.onReply. */
class NullSocket implements ConnectionSocket {
  destroyed = false;
  readonly writable = true;
  write(): boolean {
    return true;
  }
  end(): void {}
  destroy(): void {
    this.destroyed = true;
  }
}

function requestOfLine(line: CallLine): Request {
  const c = line.creds;
  const creds: WireCreds = {
    pid: c.pid,
    tid: c.tid,
    uid: c.uid,
    euid: c.euid,
    gid: c.gid,
    egid: c.egid,
    capEff: fromHex(c.capEff),
    memlock: fromHex(c.memlock),
    mmCookie: fromHex(c.mmCookie),
  };
  return requestOf({
    op: line.opcode,
    flags: line.flags,
    seq: line.seq,
    obj: line.obj,
    a0: fromHex(line.a0),
    a1: fromHex(line.a1),
    creds,
    payload: hexToBytes(line.payload),
  });
}

/** The trace's JSON of an event, as an object, to compare field by field with a record line. */
function eventFields(event: EmuEvent): Record<string, unknown> {
  return JSON.parse(eventJson(event)) as Record<string, unknown>;
}

/** The first field that differs between a recorded event and a replayed one, if any. */
function eventDifference(recorded: EventLine, replayed: EmuEvent): string | undefined {
  const fields = eventFields(replayed);
  const keys = new Set([...Object.keys(recorded), ...Object.keys(fields)]);
  keys.delete('time');
  for (const key of keys) {
    const a = JSON.stringify(recorded[key]);
    const b = JSON.stringify(fields[key]);
    if (a !== b) return `${key}: recorded ${a ?? 'nothing'}, replayed ${b ?? 'nothing'}`;
  }
  return undefined;
}

/**
 * One replay of a record, kept open: it runs to a line and stops there with its emulator as it
 * stands (a tool stepping through a run forward; to go back, open another and run it to the
 * earlier line). replayRecord() runs one to the end.
 */
export class RecordReplay implements ServerState {
  readonly kernel: Kernel;
  readonly testbed: Testbed;
  readonly memories: ReplayMemories;
  readonly files: ReplayFiles;
  readonly clientCreds: ClientCredentials;
  readonly record: RunRecord;
  private readonly timers = new ReplayTimers();
  private readonly connections = new Map<number, Connection>();
  /** Replies the replay gave, by connection and seq, not yet compared. */
  private readonly replies = new Map<string, RecordedReply>();
  /**
   * Events the replay published, not yet compared: those of the line being replayed (a call,
   * a drop, device work), which must follow it in the record in order; and those published while
   * the replay waited on the event loop (a close's barrier, a write that had blocked), which the
   * record has wherever the recording's event loop put them, matched in their own order.
   */
  private readonly produced: EmuEvent[] = [];
  private readonly producedLater: EmuEvent[] = [];
  /** A line is being replayed synchronously: what it publishes is its own. */
  private inLine = false;
  private seen: CallSeen | undefined;
  /** The line being replayed, and the first divergence found. */
  private at = 0;
  private divergence:
    | { line: number; what: string; recorded?: string; replayed?: string }
    | undefined;
  private calls = 0;
  private events = 0;
  /** The index in record.lines of the next line to replay. */
  private next = 0;

  /** A replay of `record` on a fresh emulator of its platform; a string says why there is none. */
  static open(record: RunRecord): RecordReplay | string {
    const kernel = bootRecorded(record);
    return typeof kernel === 'string' ? kernel : new RecordReplay(record, kernel);
  }

  /** The record line replayed last (0 before the first). */
  get position(): number {
    return this.next === 0 ? 0 : (this.record.lines[this.next - 1]?.line ?? 0);
  }

  private constructor(record: RunRecord, kernel: Kernel) {
    this.record = record;
    this.kernel = kernel;
    const current = (): CallSeen | undefined => this.seen;
    const diverge = (what: string): void => this.diverge(what);
    this.memories = new ReplayMemories(current, diverge);
    this.files = new ReplayFiles(kernel.events, current, diverge);
    this.clientCreds = new ClientCredentials(
      kernel.events,
      fromHex(record.header.grantedCaps),
      recordedCallers(current, diverge),
    );
    this.testbed = new Testbed(kernel);
    for (const device of kernel.machine.devices.values()) device.timers = this.timers;
    // The record starts with the boot log, as a trace does.
    this.produced.push(...bootLogEvents(kernel.dmesg));
    kernel.events.subscribe((event) => {
      (this.inLine ? this.produced : this.producedLater).push(event);
    });
  }

  pump(): void {}

  protocolError(conn: Connection, why: string): void {
    this.diverge(`the server dropped the connection: ${why}`);
    conn.socket.destroy();
  }

  /**
   * Replays from where it stopped up to `options.untilLine` (inclusive), or to the end, where
   * nothing the replay produced may be left unmatched. After a divergence it replays no more.
   */
  async run(options: ReplayOptions = {}): Promise<ReplayResult> {
    const lines = this.record.lines;
    if (this.divergence !== undefined) return { ok: false, divergence: this.divergence };
    for (; this.next < lines.length; ) {
      const i = this.next++;
      const { line, entry } = lines[i]!;
      this.at = line;
      if (isEventLine(entry)) await this.expectEvent(entry);
      else if (entry.kind === 'reply') {
        await this.expectReply(entry.conn, entry.seq, entry);
      } else {
        this.noUnexpectedEvent(this.produced);
        this.inLine = true;
        try {
          this.replayLine(entry, this.tracedAfter(i));
        } finally {
          this.inLine = false;
        }
      }
      if (this.divergence !== undefined) return { ok: false, divergence: this.divergence };
      options.onLine?.(line, this.kernel);
      if (options.untilLine !== undefined && line >= options.untilLine) break;
    }
    if (this.next >= lines.length) {
      this.at = lines.at(-1)?.line ?? 0;
      this.noUnexpectedEvent(this.produced);
      this.noUnexpectedEvent(this.producedLater);
      if (this.divergence !== undefined) return { ok: false, divergence: this.divergence };
    }
    return { ok: true, calls: this.calls, events: this.events };
  }

  /** The trace line among the events that follow line `i` (a call's own), if any. */
  private tracedAfter(i: number): string | undefined {
    const lines = this.record.lines;
    for (let k = i + 1; k < lines.length; k++) {
      const entry = lines[k]!.entry;
      if (!isEventLine(entry)) return undefined;
      if (entry.kind === 'syscall') return entry.text;
    }
    return undefined;
  }

  /** A line other than an event or a reply, replayed synchronously. */
  private replayLine(
    entry: Exclude<RecordLine, EventLine | ReplyLine>,
    recordedText: string | undefined,
  ): void {
    switch (entry.kind) {
      case 'call':
        this.call(entry, recordedText);
        break;
      case 'drop': {
        const conn = this.connections.get(entry.conn);
        if (conn !== undefined) dropConnection(this, conn);
        break;
      }
      case 'raw-write':
        rawWrite(this, this.connection(entry.conn), hexToBytes(entry.data));
        break;
      case 'device-work': {
        // Its DMA reads what the program had there then, and must write what it wrote.
        const seen = new CallSeen({ memory: entry.memory ?? [] });
        this.seen = seen;
        try {
          if (!this.timers.complete(entry.device, entry.work)) {
            this.diverge(`${entry.device} has no ${entry.work} pending to complete`);
          }
        } finally {
          this.seen = undefined;
        }
        const unused = seen.unused();
        if (unused !== undefined) this.diverge(unused);
        break;
      }
      case 'end':
        break;
    }
  }

  /** Stops the emulator's devices and removes its testbed. */
  close(): void {
    this.kernel.machine.shutdown();
    this.testbed.remove();
  }

  private diverge(what: string): void {
    this.divergence ??= { line: this.at, what };
  }

  private connection(id: number): Connection {
    let conn = this.connections.get(id);
    if (conn === undefined) {
      conn = new Connection(new NullSocket());
      conn.onReply = (req, ret, extra) => {
        this.replies.set(`${id}/${req.seq}`, recordedReply(ret, extra));
      };
      this.connections.set(id, conn);
    }
    return conn;
  }

  /**
   * Dispatches a recorded request with what it saw, and checks a reply given at once;
   * `recordedText` is its trace line in the record (the first among the events after it).
   */
  private call(line: CallLine, recordedText: string | undefined): void {
    this.calls++;
    const conn = this.connection(line.conn);
    const req = requestOfLine(line);
    const seen = new CallSeen(line);
    const firstNew = this.produced.length;
    this.seen = seen;
    try {
      dispatchRequest(this, conn, req);
    } finally {
      this.seen = undefined;
    }
    const unused = seen.unused();
    if (unused !== undefined) this.diverge(unused);
    const key = `${line.conn}/${line.seq}`;
    const given = this.replies.get(key);
    if (line.reply === undefined) {
      if (given !== undefined) {
        this.diverge('the call was answered at once; the recorded one was answered later');
      }
    } else if (given === undefined) {
      this.diverge('the call was not answered at once; the recorded one was');
    } else {
      this.replies.delete(key);
      this.compareReply(req.op, line.reply, given);
    }
    // A divergence in this call is shown with the call, as the trace decodes it.
    const d = this.divergence;
    if (d !== undefined && d.line === this.at && d.replayed === undefined) {
      const mine = this.produced.slice(firstNew).find((e) => e.kind === 'syscall');
      if (recordedText !== undefined) d.recorded = recordedText;
      // An ioctl's trace line shows its reply's result: show the recorded one there.
      if (recordedText !== undefined && req.op === Op.IOCTL && line.reply !== undefined) {
        d.recorded = recordedText.replace(/ = [^=]*$/, ` = ${formatResult(line.reply.ret)}`);
      }
      if (mine !== undefined) d.replayed = formatEvent(mine);
    }
  }

  private async expectReply(connId: number, seq: number, recorded: RecordedReply): Promise<void> {
    const key = `${connId}/${seq}`;
    await this.waitFor(() => this.replies.has(key));
    const given = this.replies.get(key);
    if (given === undefined) {
      this.diverge(`the replay never answered request ${seq} of connection ${connId}`);
      return;
    }
    this.replies.delete(key);
    this.compareReply(undefined, recorded, given);
  }

  private compareReply(
    op: number | undefined,
    recorded: RecordedReply,
    given: RecordedReply,
  ): void {
    if (recorded.ret !== given.ret) {
      this.diverge(
        `the result differs: recorded ${formatResult(recorded.ret)}, replayed ${formatResult(given.ret)}`,
      );
      return;
    }
    for (const field of ['flags', 'v0', 'v1'] as const) {
      if (recorded[field] !== given[field]) {
        this.diverge(
          `the reply's ${field} differs: recorded ${recorded[field]}, replayed ${given[field]}`,
        );
        return;
      }
    }
    // HELLO's payload lists the testbed and the paths the shim forwards: the transport's
    // configuration, which differs between runs and versions, not the kernel's answer.
    if (op === Op.HELLO) return;
    const difference = bytesDifference(recorded.payload, given.payload);
    if (difference !== undefined) this.diverge(`what the kernel wrote back differs ${difference}`);
  }

  private async expectEvent(recorded: EventLine): Promise<void> {
    let event = this.produced.shift();
    if (event === undefined) {
      await this.waitFor(() => this.producedLater.length > 0);
      event = this.producedLater.shift();
    }
    if (event === undefined) {
      this.diverge(`the replay did not produce this event: ${recorded.text}`);
      return;
    }
    this.events++;
    const difference = eventDifference(recorded, event);
    if (difference === undefined) return;
    this.divergence ??= {
      line: this.at,
      what: `the ${recorded.kind === 'syscall' ? 'trace line' : `${recorded.kind} event`} differs (${difference})`,
      recorded: recorded.text,
      replayed: formatEvent(event),
    };
  }

  /** Events the replay published that the record does not have at this point. */
  private noUnexpectedEvent(queue: readonly EmuEvent[]): void {
    const event = queue[0];
    if (event === undefined) return;
    this.divergence ??= {
      line: this.at,
      what: 'the replay produced an event the record does not have here',
      replayed: formatEvent(event),
    };
  }

  /** Lets the event loop run (a close's barrier, a write that blocked) until `done` or enough. */
  private async waitFor(done: () => boolean): Promise<void> {
    for (let turn = 0; turn < TURNS_MAX && !done(); turn++) {
      await new Promise<void>((resolve) => {
        setImmediate(resolve);
      });
    }
  }
}

/** The emulator a record was made on, built again; a string says why it cannot be. */
export function bootRecorded(record: RunRecord): Kernel | string {
  const platform = parsePlatform(record.header.platform);
  if (platform instanceof PlatformConfigError) return `the record's platform: ${platform.message}`;
  return new Kernel({
    platform,
    enableUnsafeNoiommuMode: record.header.enableUnsafeNoiommuMode,
  });
}

/** Replays a record against a fresh emulator; the first divergence, or how much matched. */
export async function replayRecord(
  record: RunRecord,
  options: ReplayOptions = {},
): Promise<ReplayResult> {
  const replay = RecordReplay.open(record);
  if (typeof replay === 'string') return { ok: false, divergence: { line: 1, what: replay } };
  try {
    return await replay.run(options);
  } finally {
    replay.close();
  }
}
