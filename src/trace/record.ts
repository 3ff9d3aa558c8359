/**
 * The record format (`exec --record FILE`, `iommufd-emu replay FILE`): JSON lines, one object
 * per line, in the order things happened. The first line is the header (the platform, the boot
 * options); then the trace's own JSON events (the same objects `--trace-json` writes, with their
 * `text` line) interleaved with what a replay needs besides: every request a program's shim sent
 * with the bytes it passed, what the call saw of the program (memory read, VMAs, fds,
 * credentials), the reply with what the kernel wrote back, and where device work completed.
 * docs/trace.md describes every line kind.
 *
 * This module only reads and writes lines: it knows no server and no kernel, so a tool (the
 * inspector) can load a record with it alone. Numbers that may exceed 2^53 are hex strings
 * ("0x2000000"), byte strings are lowercase hex ("0c000000"), as in the trace's JSON.
 */
import type { EmuEvent } from './events.ts';

/** What the first line's `format` says. */
export const RECORD_FORMAT = 'iommufd-emu-record';
/** Bumped when a line changes meaning; a reader refuses other versions. */
export const RECORD_VERSION = 1;

/** A u64 as the record writes it. */
export type Hex = `0x${string}`;

/** The first line: how to build the same emulator again. */
export interface RecordHeader {
  readonly kind: 'record';
  readonly format: typeof RECORD_FORMAT;
  readonly version: number;
  /** The emulator's version that recorded. */
  readonly emulator: string;
  /** The platform, as a platform file (`iommufd-emu platform --print-default` shape). */
  readonly platform: unknown;
  readonly enableUnsafeNoiommuMode: boolean;
  /** `--cap`: capabilities granted to every program. */
  readonly grantedCaps: Hex;
  /** The program and its arguments (`serve`: its command, if any), for people (a replay runs none). */
  readonly program: readonly string[];
  /** The testbed directory the recording server named in HELLO (a replay's differs). */
  readonly testbed: string;
}

/** The credentials of a request (`struct emu_creds`), as the shim read them. */
export interface RecordedCreds {
  readonly pid: number;
  readonly tid: number;
  readonly uid: number;
  readonly euid: number;
  readonly gid: number;
  readonly egid: number;
  readonly capEff: Hex;
  readonly memlock: Hex;
  readonly mmCookie: Hex;
}

/** A VMA as the kernel saw it (`Vma`), or `hole` for none. */
export interface RecordedVma {
  readonly start: Hex;
  readonly end: Hex;
  readonly readable: boolean;
  readonly writable: boolean;
  readonly pageSize: Hex;
  readonly file?: { readonly id: string; readonly offset: Hex };
}

/** One thing a call asked of the program's memory, in the order asked. */
export type MemoryAccess =
  /** copy_from_user: `bytes` read, or null for a fault (EFAULT). */
  | {
      readonly op: 'read';
      readonly addr: Hex;
      readonly length: number;
      readonly bytes: string | null;
    }
  /** copy_to_user: what the kernel wrote back, and whether it could. */
  | { readonly op: 'write'; readonly addr: Hex; readonly bytes: string; readonly ok: boolean }
  /** A VMA lookup (pinning, MAP_FILE): the VMA, or null for a hole. */
  | { readonly op: 'vma'; readonly addr: Hex; readonly vma: RecordedVma | null }
  /** The host's /proc/<pid>/pagemap entries of `count` pages (frames cleared), or null. */
  | {
      readonly op: 'pagemap';
      readonly addr: Hex;
      readonly count: number;
      readonly entries: readonly Hex[] | null;
    }
  /** The address space's mappings (the protection check of a user copy). */
  | {
      readonly op: 'maps';
      readonly ranges: readonly {
        readonly start: Hex;
        readonly end: Hex;
        readonly readable: boolean;
        readonly writable: boolean;
      }[];
    };

/** One thing a call asked of the program's fd table (fget and friends), in the order asked. */
export type FdAccess =
  /** fget(): the emulated open file (its object id), or null. */
  | { readonly op: 'file'; readonly fd: number; readonly object: number | null }
  | { readonly op: 'open'; readonly fd: number; readonly open: boolean }
  /** eventfd_ctx_fdget(): 0 for an eventfd taken, or the negative errno. */
  | { readonly op: 'eventfd'; readonly fd: number; readonly ret: number }
  /** A memfd for MAP_FILE: its identity, or the negative errno. */
  | {
      readonly op: 'host-file';
      readonly fd: number;
      readonly ret: number;
      readonly id?: string;
      readonly fileKind?: 'shmem' | 'hugetlbfs';
      readonly size?: Hex;
    };

/** The caller's credentials as the kernel counted them (the user namespace check's answer). */
export interface CredsLookup {
  readonly userNs: 'initial' | 'other';
  readonly capEff: Hex;
  readonly uid: number;
  readonly unreadable: boolean;
}

/** A caller's filesystem ids and groups, as a permission check read them. */
export interface RecordedFsIds {
  readonly fsuid: number;
  readonly fsgid: number;
  readonly groups: readonly number[];
}

/** A reply to a request (`struct emu_rep` and its payload). */
export interface RecordedReply {
  readonly ret: number;
  readonly flags: number;
  readonly v0: Hex;
  readonly v1: Hex;
  /** The payload: for an IOCTL, the window bytes the kernel wrote back. */
  readonly payload: string;
}

/** A request the shim sent, what it saw of the program, and its reply if given at once. */
export interface CallLine {
  readonly kind: 'call';
  /** The connection it came on (numbered as they were accepted). */
  readonly conn: number;
  /** The protocol op (`HELLO`, `OPEN`, `IOCTL`, ...) and its number. */
  readonly op: string;
  readonly opcode: number;
  readonly flags: number;
  readonly seq: number;
  readonly obj: number;
  readonly a0: Hex;
  readonly a1: Hex;
  readonly creds: RecordedCreds;
  /** The request's payload: a path, the ioctl argument's first bytes, the data written. */
  readonly payload: string;
  readonly memory: readonly MemoryAccess[];
  readonly fds: readonly FdAccess[];
  readonly lookups: readonly CredsLookup[];
  /** The filesystem ids a permission check read (once per request's credentials), in order. */
  readonly fsIds?: readonly RecordedFsIds[];
  /** The caller's comm, as the kernel's log lines read it (/proc/<tid>/comm), in order. */
  readonly comms?: readonly string[];
  /** Absent when the reply came later (a `reply` line): a close, a write that blocked. */
  readonly reply?: RecordedReply;
}

/** The late reply to a call of connection `conn`. */
export interface ReplyLine extends RecordedReply {
  readonly kind: 'reply';
  readonly conn: number;
  readonly seq: number;
}

/** A connection's far end closed: for an open file's connection, the last copy of the fd. */
export interface DropLine {
  readonly kind: 'drop';
  readonly conn: number;
}

/** Bytes a program wrote to an open file's connection past the shim (stdio). */
export interface RawWriteLine {
  readonly kind: 'raw-write';
  readonly conn: number;
  readonly data: string;
}

/**
 * A device's asynchronous work completed here (edu's DMA or factorial), with the program memory
 * its DMA reached: the bytes it read from the program (`read`), the bytes it wrote (`write`).
 */
export interface DeviceWorkLine {
  readonly kind: 'device-work';
  readonly device: string;
  readonly work: 'dma' | 'factorial';
  readonly memory: readonly MemoryAccess[];
}

/** The trace's JSON event: EmuEvent with u64 as hex strings, `errno` and `text` added. */
export type EventLine = { readonly kind: EmuEvent['kind']; readonly text: string } & Readonly<
  Record<string, unknown>
>;

/** The last line: the program's exit status. */
export interface EndLine {
  readonly kind: 'end';
  readonly status: number;
}

export type RecordLine =
  | CallLine
  | ReplyLine
  | DropLine
  | RawWriteLine
  | DeviceWorkLine
  | EventLine
  | EndLine;

/** A record read back: the header and every other line with its line number (1-based). */
export interface RunRecord {
  readonly header: RecordHeader;
  readonly lines: readonly { readonly line: number; readonly entry: RecordLine }[];
}

const EVENT_KINDS: ReadonlySet<string> = new Set([
  'syscall',
  'dma',
  'iommu-fault',
  'unsafe-dma',
  'irq',
  'log',
]);
const OTHER_KINDS: ReadonlySet<string> = new Set([
  'call',
  'reply',
  'drop',
  'raw-write',
  'device-work',
  'end',
]);

export class RecordError extends Error {}

/** Whether a line is one of the trace's events. */
export function isEventLine(entry: RecordLine): entry is EventLine {
  return EVENT_KINDS.has(entry.kind);
}

/**
 * Parses a record's text. Throws RecordError naming the line for anything that is not a record
 * of this version; the fields of each line are trusted as written (a replay checks them).
 */
export function parseRecord(text: string): RunRecord {
  const rows = text.split('\n');
  let header: RecordHeader | undefined;
  const lines: { line: number; entry: RecordLine }[] = [];
  rows.forEach((row, i) => {
    if (row.trim() === '') return;
    const at = i + 1;
    let value: unknown;
    try {
      value = JSON.parse(row);
    } catch (err) {
      throw new RecordError(`line ${at}: not JSON: ${(err as Error).message}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new RecordError(`line ${at}: not a JSON object`);
    }
    const kind = (value as { kind?: unknown }).kind;
    if (header === undefined) {
      const h = value as Partial<RecordHeader>;
      if (kind !== 'record' || h.format !== RECORD_FORMAT) {
        throw new RecordError(`line ${at}: not an iommufd-emu record (no header line)`);
      }
      if (h.version !== RECORD_VERSION) {
        throw new RecordError(
          `line ${at}: record version ${String(h.version)}; this emulator reads version ${RECORD_VERSION}`,
        );
      }
      header = value as RecordHeader;
      return;
    }
    if (typeof kind !== 'string' || !(EVENT_KINDS.has(kind) || OTHER_KINDS.has(kind))) {
      throw new RecordError(`line ${at}: unknown kind ${JSON.stringify(kind)}`);
    }
    lines.push({ line: at, entry: value as RecordLine });
  });
  if (header === undefined) throw new RecordError('an empty file: not a record');
  return { header, lines };
}

/** A line that is not an event, with the trace's events that follow it (what it caused). */
export interface RecordStep {
  readonly line: number;
  readonly entry: Exclude<RecordLine, EventLine>;
  readonly events: readonly EventLine[];
}

/**
 * The record as steps: each call (or reply, drop, device work...) with the events after it, the
 * call's own trace line first. Events before the first step (the boot log) are `boot`.
 */
export function recordSteps(record: RunRecord): {
  readonly boot: readonly EventLine[];
  readonly steps: readonly RecordStep[];
} {
  const boot: EventLine[] = [];
  const steps: { line: number; entry: Exclude<RecordLine, EventLine>; events: EventLine[] }[] = [];
  for (const { line, entry } of record.lines) {
    if (isEventLine(entry)) (steps.at(-1)?.events ?? boot).push(entry);
    else steps.push({ line, entry: entry as Exclude<RecordLine, EventLine>, events: [] });
  }
  return { boot, steps };
}

// -- values ---------------------------------------------------------------------------------------

export function toHex(v: bigint | number): Hex {
  return `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;
}

export function fromHex(v: string): bigint {
  return BigInt(v);
}

export function bytesToHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function hexToBytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

/** Where two hex byte strings first differ, with a few bytes of each from there. */
export function bytesDifference(recorded: string, replayed: string): string | undefined {
  if (recorded === replayed) return undefined;
  let at = 0;
  while (at < recorded.length && at < replayed.length && recorded[at] === replayed[at]) at++;
  const byte = Math.floor(at / 2);
  const show = (hex: string): string => {
    const part = hex.slice(byte * 2, byte * 2 + 32);
    if (part === '') return hex === '' ? 'nothing' : `${hex.length / 2} bytes`;
    return `${part}${hex.length > byte * 2 + 32 ? '...' : ''}`;
  };
  return `at byte ${byte} of ${recorded.length / 2}: recorded ${show(recorded)}, replayed ${show(replayed)}`;
}
