/**
 * The wire protocol between the LD_PRELOAD shim and the server: message framing and the fixed
 * layouts, mirrored from native/shim/protocol.h (change both together). Little-endian.
 *
 * Request: [header 32 B][creds 48 B][payload]. Reply: [header 32 B][payload]. `len` counts the
 * whole message. The protocol knows no iommufd or VFIO struct.
 */
import { defineStruct } from '../uapi/struct.ts';

export const PROTOCOL_VERSION = 4;

export const HEADER_BYTES = 32;
export const CREDS_BYTES = 48;
export const SEGMENT_HEADER_BYTES = 8;
export const POLL_ENTRY_BYTES = 8;
export const MMAP_REQUEST_BYTES = 8;
export const NEWFD_BYTES = 8;
export const NOTE_BYTES = 32;

export const WINDOW_MIN = 4;
export const WINDOW_MAX = 4096;
/** One read or write moves at most this much (the shim returns a short count). */
export const RW_MAX = 1 << 20;
/** No message may be longer. */
export const MESSAGE_MAX = (1 << 20) + 8192;

/** Operation codes (`enum emu_op`). */
export const Op = {
  HELLO: 1,
  OPEN: 2,
  LOOKUP: 3,
  CLOSE: 4,
  IOCTL: 5,
  READ: 6,
  WRITE: 7,
  MMAP: 8,
  STAT: 9,
  POLL: 10,
  SYNC: 11,
  SEEK: 12,
  RESERVE: 13,
  /** A call the server does not otherwise see (dup, munmap) or whose result only the shim knows (mmap's address); only when HELLO said the server traces. */
  NOTE: 14,
} as const;

/** HELLO reply v1 bits. */
export const HelloFlag = {
  /** The server traces: send NOTE for dup, mmap and munmap of emulated fds. */
  NOTES: 0x1,
} as const;

/** NOTE a0 bits 0-31 (`enum emu_note_kind`). */
export const NoteKind = {
  /** args: DupCall, newfd asked for (dup2/dup3/F_DUPFD), flags. */
  DUP: 1,
  /** args: addr asked for, length, prot | flags << 32, offset. */
  MMAP: 2,
  /** args: addr, length. */
  MUNMAP: 3,
  /**
   * Sent whether or not the server traces: the last of a trapped mapping of an iommufd went
   * (munmap, or a failed mmap after the server's). args: the mapping's offset, length.
   */
  VMA_CLOSE: 4,
} as const;

/** NOTE DUP arg0 (`enum emu_dup_call`). */
export const DupCall = {
  DUP: 1,
  DUP2: 2,
  DUP3: 3,
  F_DUPFD: 4,
  F_DUPFD_CLOEXEC: 5,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

/** Request flags. */
export const ReqFlag = {
  /** IOCTL: the payload is the caller's memory at arg. */
  WINDOW: 0x1,
  /** READ/WRITE: at position a1 (pread/pwrite) instead of the file position. */
  POSITIONAL: 0x2,
  /** STAT: do not follow a symlink in the last component (lstat, AT_SYMLINK_NOFOLLOW). */
  NOFOLLOW: 0x4,
  /** IOCTL: the window's memory is not writable (a write to it is EFAULT). */
  WINDOW_RO: 0x8,
  /** IOCTL: the payload starts with `emu_newfd`, an fd the shim reserved for a new file. */
  NEWFD: 0x10,
  /** READ/WRITE: an access to a trapped mapping (MMIO), not a pread/pwrite. */
  MMIO: 0x20,
} as const;

/** IOCTL/READ/WRITE a0 bits 32-63: the caller's fd number, for the trace (this: unknown). */
export const FD_UNKNOWN = 0xffffffff;

/** SYNC a0: the call the shim is about to serve from the testbed (`enum emu_sync_call`). */
export const SyncCall: Record<number, string> = {
  1: 'opendir',
  2: 'scandir',
  3: 'readlink',
  4: 'realpath',
  5: 'chdir',
};

/** SEEK a1 (whence). */
export const Whence = { SET: 0, CUR: 1, END: 2 } as const;

/** Reply flags. */
export const ReplyFlag = {
  /** The request named an object that is not (or no longer) live: the shim drops its entry. */
  STALE: 0x1,
  /** IOCTL: the command may create a file and no fd was reserved: nothing ran; v0 = open flags. */
  NEED_FD: 0x2,
  /** IOCTL: the call installed a new file on the reserved fd; v0 = st_mode, v1 = rdev. */
  NEWFD: 0x4,
} as const;

/** MMAP reply v1: what backs the mapping. */
export const MmapKind = {
  /** v0 = offset in the backing file the payload names; the shim maps that file. */
  FILE: 0,
  /** v0 = region offset; the shim traps every access and sends it as a positional READ/WRITE. */
  TRAPPED: 1,
} as const;

/** The caller's credentials as the shim read them for this request (`struct emu_creds`). */
export interface WireCreds {
  readonly pid: number;
  readonly tid: number;
  readonly uid: number;
  readonly euid: number;
  readonly gid: number;
  readonly egid: number;
  /** capget() effective set, both 32-bit words. */
  readonly capEff: bigint;
  /** RLIMIT_MEMLOCK soft limit; 2^64-1 for RLIM_INFINITY. */
  readonly memlock: bigint;
  /** Random per address space: new after exec and in every fork child. */
  readonly mmCookie: bigint;
}

export interface Request {
  readonly op: number;
  readonly flags: number;
  readonly seq: number;
  readonly obj: number;
  readonly a0: bigint;
  /**
   * a0's low and high 32 bits as numbers: what most ops want of it (an ioctl's command, a read's
   * count, the caller's fd in bits 32-63), with no bigint arithmetic.
   */
  readonly a0lo: number;
  readonly a0hi: number;
  readonly a1: bigint;
  readonly creds: WireCreds;
  readonly payload: Uint8Array;
}

/** What a request is made of (a0's halves follow from a0): what encodeRequest and requestOf take. */
export type RequestFields = Omit<Request, 'a0lo' | 'a0hi'>;

/** A Request from its fields (a replay's, a test's). */
export function requestOf(fields: RequestFields): Request {
  const a0 = BigInt.asUintN(64, fields.a0);
  return { ...fields, a0lo: Number(a0 & 0xffffffffn), a0hi: Number(a0 >> 32n) };
}

export interface Reply {
  readonly op: number;
  readonly seq: number;
  readonly ret: number;
  readonly flags?: number | undefined;
  readonly v0?: bigint | undefined;
  readonly v1?: bigint | undefined;
  readonly payload?: Uint8Array | undefined;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/*
 * Every request's header is read from its bytes, without a DataView (a fresh one per request
 * cost as much as the rest of the decode) and without bigints: a0 and a1 become bigints only
 * when an op reads them, and most ops want a0's halves (decision 261).
 */

function u16(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8);
}

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/** The u64 whose halves these are: one bigint made from a double while that is exact. */
function u64(lo: number, hi: number): bigint {
  if (hi < 0x200000) return hi === 0 && lo === 0 ? 0n : BigInt(hi * 0x100000000 + lo);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** A decoded request: the header's numbers, a0 and a1 made bigints when first read. */
class WireRequest implements Request {
  readonly op: number;
  readonly flags: number;
  readonly seq: number;
  readonly obj: number;
  readonly a0lo: number;
  readonly a0hi: number;
  private readonly a1lo: number;
  private readonly a1hi: number;
  private a0big: bigint | undefined;
  private a1big: bigint | undefined;
  readonly creds: WireCreds;
  readonly payload: Uint8Array;

  constructor(frame: Uint8Array, creds: WireCreds) {
    this.op = u16(frame, 4);
    this.flags = u16(frame, 6);
    this.seq = u32(frame, 8);
    this.obj = u32(frame, 12);
    this.a0lo = u32(frame, 16);
    this.a0hi = u32(frame, 20);
    this.a1lo = u32(frame, 24);
    this.a1hi = u32(frame, 28);
    this.a0big = undefined;
    this.a1big = undefined;
    this.creds = creds;
    this.payload = frame.subarray(HEADER_BYTES + CREDS_BYTES);
  }

  get a0(): bigint {
    this.a0big ??= u64(this.a0lo, this.a0hi);
    return this.a0big;
  }

  get a1(): bigint {
    this.a1big ??= u64(this.a1lo, this.a1hi);
    return this.a1big;
  }
}

/** Why a frame cannot be a request, or undefined when its size and length field agree. */
export function frameError(frame: Uint8Array): string | undefined {
  if (frame.byteLength < HEADER_BYTES + CREDS_BYTES) return `short request (${frame.byteLength} B)`;
  const len = u32(frame, 0);
  if (len !== frame.byteLength) return `length field ${len} != frame ${frame.byteLength}`;
  return undefined;
}

/** The credentials block of a request frame (checked by frameError), decoded. */
export function decodeCreds(frame: Uint8Array): WireCreds {
  const c = HEADER_BYTES;
  return {
    pid: u32(frame, c + 0),
    tid: u32(frame, c + 4),
    uid: u32(frame, c + 8),
    euid: u32(frame, c + 12),
    gid: u32(frame, c + 16),
    egid: u32(frame, c + 20),
    // cap_eff_lo then cap_eff_hi, little-endian: one u64.
    capEff: u64(u32(frame, c + 24), u32(frame, c + 28)),
    memlock: u64(u32(frame, c + 32), u32(frame, c + 36)),
    mmCookie: u64(u32(frame, c + 40), u32(frame, c + 44)),
  };
}

/** Whether two request frames carry the same bytes of credentials. */
export function sameCredsBytes(a: Uint8Array, b: Uint8Array): boolean {
  for (let at = HEADER_BYTES; at < HEADER_BYTES + CREDS_BYTES; at += 4) {
    if (u32(a, at) !== u32(b, at)) return false;
  }
  return true;
}

/**
 * Decodes one complete request frame, or returns why it is malformed. `creds`: what the frame's
 * credentials block stands for when the caller decoded (and checked) the same bytes before.
 */
export function decodeRequest(frame: Uint8Array, creds?: WireCreds): Request | string {
  const why = frameError(frame);
  if (why !== undefined) return why;
  return new WireRequest(frame, creds ?? decodeCreds(frame));
}

/** Replies are carved from slabs of this size (Node's own pool is 8 KiB: a new one per 256). */
const REPLY_SLAB = 64 * 1024;
let slab = Buffer.allocUnsafeSlow(REPLY_SLAB);
let slabUsed = 0;

/**
 * A fresh buffer of n bytes for a reply. Never reused: the socket may still hold a written one.
 * A small Uint8Array would live on the JS heap, and writing it (or a DataView over it) moves it
 * off the heap first, a malloc per reply.
 */
function replyBuffer(n: number): Buffer {
  if (n > REPLY_SLAB / 16) return Buffer.allocUnsafe(n);
  if (slabUsed + n > REPLY_SLAB) {
    slab = Buffer.allocUnsafeSlow(REPLY_SLAB);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + n);
  slabUsed += (n + 7) & ~7;
  return out;
}

function put16(out: Uint8Array, at: number, value: number): void {
  out[at] = value;
  out[at + 1] = value >>> 8;
}

function put32(out: Uint8Array, at: number, value: number): void {
  out[at] = value;
  out[at + 1] = value >>> 8;
  out[at + 2] = value >>> 16;
  out[at + 3] = value >>> 24;
}

/** A u64 field: most are 0, which needs no bigint arithmetic. */
function putU64(out: Buffer, at: number, value: bigint | undefined): void {
  if (value === undefined || value === 0n) {
    put32(out, at, 0);
    put32(out, at + 4, 0);
  } else {
    out.writeBigUInt64LE(BigInt.asUintN(64, value), at);
  }
}

/** What a reply carries besides its op, seq and result. */
export interface ReplyParts {
  readonly flags?: number | undefined;
  readonly v0?: bigint | undefined;
  readonly v1?: bigint | undefined;
  readonly payload?: Uint8Array | undefined;
}

/** Encodes a reply (header + payload) into one buffer (replyBuffer). */
export function encodeReply(reply: Reply): Uint8Array {
  return encodeReplyOf(reply.op, reply.seq, reply.ret, reply);
}

/** The same from its parts, with no object made to hold them. */
export function encodeReplyOf(op: number, seq: number, ret: number, parts: ReplyParts): Uint8Array {
  const payload = parts.payload;
  const length = payload === undefined ? 0 : payload.byteLength;
  const out = replyBuffer(HEADER_BYTES + length);
  put32(out, 0, out.byteLength);
  put16(out, 4, op);
  put16(out, 6, parts.flags ?? 0);
  put32(out, 8, seq);
  put32(out, 12, ret);
  putU64(out, 16, parts.v0);
  putU64(out, 24, parts.v1);
  if (length !== 0) out.set(payload!, HEADER_BYTES);
  return out;
}

/** Encodes a request: used by tests and tools that talk to the server without the shim. */
export function encodeRequest(
  request: Omit<RequestFields, 'payload'> & { readonly payload?: Uint8Array },
): Uint8Array {
  const payload = request.payload ?? new Uint8Array(0);
  const out = new Uint8Array(HEADER_BYTES + CREDS_BYTES + payload.byteLength);
  const v = view(out);
  v.setUint32(0, out.byteLength, true);
  v.setUint16(4, request.op, true);
  v.setUint16(6, request.flags, true);
  v.setUint32(8, request.seq, true);
  v.setUint32(12, request.obj, true);
  v.setBigUint64(16, BigInt.asUintN(64, request.a0), true);
  v.setBigUint64(24, BigInt.asUintN(64, request.a1), true);
  const c = HEADER_BYTES;
  const k = request.creds;
  v.setUint32(c + 0, k.pid, true);
  v.setUint32(c + 4, k.tid, true);
  v.setUint32(c + 8, k.uid, true);
  v.setUint32(c + 12, k.euid, true);
  v.setUint32(c + 16, k.gid, true);
  v.setUint32(c + 20, k.egid, true);
  v.setUint32(c + 24, Number(k.capEff & 0xffffffffn), true);
  v.setUint32(c + 28, Number((k.capEff >> 32n) & 0xffffffffn), true);
  v.setBigUint64(c + 32, BigInt.asUintN(64, k.memlock), true);
  v.setBigUint64(c + 40, BigInt.asUintN(64, k.mmCookie), true);
  out.set(payload, HEADER_BYTES + CREDS_BYTES);
  return out;
}

/**
 * Splits a byte stream into frames by their leading u32 length. `push` takes what arrived;
 * `next` yields complete frames, undefined when more bytes are needed, or throws RangeError on a
 * length no valid message has (the connection is then unusable).
 */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private count = 0;
  private readonly minimum: number;

  constructor(minimum = HEADER_BYTES) {
    this.minimum = minimum;
  }

  /** Bytes received and not yet taken as frames. */
  get buffered(): number {
    return this.count;
  }

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.count += chunk.byteLength;
  }

  next(): Uint8Array | undefined {
    if (this.count < 4) return undefined;
    if (this.chunks[0]!.byteLength < 4) this.chunks = [concat(this.chunks, this.count)];
    const len = u32(this.chunks[0]!, 0);
    if (len < this.minimum || len > MESSAGE_MAX) throw new RangeError(`bad frame length ${len}`);
    if (this.count < len) return undefined;
    return this.take(len);
  }

  private take(n: number): Uint8Array {
    const first = this.chunks[0]!;
    let frame: Uint8Array;
    if (first.byteLength === n) {
      // One request per read, the usual case: the chunk is the frame, no view is made.
      frame = first;
      this.chunks.shift();
    } else if (first.byteLength > n) {
      frame = first.subarray(0, n);
      this.chunks[0] = first.subarray(n);
    } else {
      const all = concat(this.chunks, this.count);
      frame = all.subarray(0, n);
      this.chunks = all.byteLength > n ? [all.subarray(n)] : [];
    }
    this.count -= n;
    return frame;
  }
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** A run of window bytes written by a call (`struct emu_seg` + bytes). */
export interface Segment {
  readonly offset: number;
  readonly data: Uint8Array;
}

export function encodeSegments(segments: readonly Segment[]): Uint8Array {
  let total = 0;
  for (const s of segments) total += SEGMENT_HEADER_BYTES + s.data.byteLength;
  if (total === 0) return EMPTY;
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const s of segments) {
    out.writeUInt32LE(s.offset, at);
    out.writeUInt32LE(s.data.byteLength, at + 4);
    out.set(s.data, at + SEGMENT_HEADER_BYTES);
    at += SEGMENT_HEADER_BYTES + s.data.byteLength;
  }
  return out;
}

/** No bytes (shared: nobody writes into a zero-length array). */
const EMPTY = new Uint8Array(0);

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/** Each string NUL-terminated, concatenated (HELLO's prefix list, MMAP's path). */
export function encodeCStrings(list: readonly string[]): Uint8Array {
  const parts = list.map((s) => encoder.encode(`${s}\0`));
  return concat(
    parts,
    parts.reduce((n, p) => n + p.byteLength, 0),
  );
}

/** The NUL-terminated string at the start of bytes, or undefined if there is no NUL. */
export function decodeCString(bytes: Uint8Array): string | undefined {
  const end = bytes.indexOf(0);
  if (end < 0) return undefined;
  return decoder.decode(bytes.subarray(0, end));
}

/** rdev on the wire: major in the high 32 bits, minor in the low 32 bits. */
export function encodeRdev(rdev: { readonly major: number; readonly minor: number }): bigint {
  return (BigInt(rdev.major >>> 0) << 32n) | BigInt(rdev.minor >>> 0);
}

/** One POLL request entry (`struct emu_poll_ent`). */
export interface PollEntry {
  readonly obj: number;
  readonly events: number;
}

export function decodePollEntries(payload: Uint8Array): PollEntry[] | undefined {
  if (payload.byteLength % POLL_ENTRY_BYTES !== 0) return undefined;
  const v = view(payload);
  const out: PollEntry[] = [];
  for (let at = 0; at < payload.byteLength; at += POLL_ENTRY_BYTES) {
    out.push({ obj: v.getUint32(at, true), events: v.getUint32(at + 4, true) });
  }
  return out;
}

export function encodeU32s(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const v = view(out);
  values.forEach((x, i) => {
    v.setUint32(i * 4, x >>> 0, true);
  });
  return out;
}

/** MMAP request payload (`struct emu_mmap_req`). */
export function decodeMmapRequest(
  payload: Uint8Array,
): { readonly prot: number; readonly flags: number } | undefined {
  if (payload.byteLength !== MMAP_REQUEST_BYTES) return undefined;
  const v = view(payload);
  return { prot: v.getUint32(0, true), flags: v.getUint32(4, true) };
}

/*
 * The fixed layouts of protocol.h, field by field. The codec above reads and writes these
 * offsets directly (it is on every call's path); test/abi/protocol-drift.test.ts checks these
 * tables against protocol.h through a C program, and the codec against these tables.
 */

export const emuReq = defineStruct('emu_req', HEADER_BYTES, 'a1', {
  len: { offset: 0, type: 'u32' },
  op: { offset: 4, type: 'u16' },
  flags: { offset: 6, type: 'u16' },
  seq: { offset: 8, type: 'u32' },
  obj: { offset: 12, type: 'u32' },
  a0: { offset: 16, type: 'u64' },
  a1: { offset: 24, type: 'u64' },
});

export const emuRep = defineStruct('emu_rep', HEADER_BYTES, 'v1', {
  len: { offset: 0, type: 'u32' },
  op: { offset: 4, type: 'u16' },
  flags: { offset: 6, type: 'u16' },
  seq: { offset: 8, type: 'u32' },
  ret: { offset: 12, type: 's32' },
  v0: { offset: 16, type: 'u64' },
  v1: { offset: 24, type: 'u64' },
});

export const emuCreds = defineStruct('emu_creds', CREDS_BYTES, 'mm_cookie', {
  pid: { offset: 0, type: 'u32' },
  tid: { offset: 4, type: 'u32' },
  uid: { offset: 8, type: 'u32' },
  euid: { offset: 12, type: 'u32' },
  gid: { offset: 16, type: 'u32' },
  egid: { offset: 20, type: 'u32' },
  cap_eff_lo: { offset: 24, type: 'u32' },
  cap_eff_hi: { offset: 28, type: 'u32' },
  memlock: { offset: 32, type: 'u64' },
  mm_cookie: { offset: 40, type: 'u64' },
});

export const emuSeg = defineStruct('emu_seg', SEGMENT_HEADER_BYTES, 'len', {
  off: { offset: 0, type: 'u32' },
  len: { offset: 4, type: 'u32' },
});

export const emuMmapReq = defineStruct('emu_mmap_req', MMAP_REQUEST_BYTES, 'flags', {
  prot: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
});

export const emuNewfd = defineStruct('emu_newfd', NEWFD_BYTES, 'obj', {
  fd: { offset: 0, type: 'u32' },
  obj: { offset: 4, type: 'u32' },
});

/** IOCTL with ReqFlag.NEWFD: the reserved fd, and the window after it. */
export function splitNewfd(
  payload: Uint8Array,
): { readonly fd: number; readonly obj: number; readonly window: Uint8Array } | undefined {
  if (payload.byteLength < NEWFD_BYTES) return undefined;
  const v = view(payload);
  return {
    fd: v.getUint32(0, true),
    obj: v.getUint32(4, true),
    window: payload.subarray(NEWFD_BYTES),
  };
}

export const emuNote = defineStruct('emu_note', NOTE_BYTES, 'arg3', {
  arg0: { offset: 0, type: 'u64' },
  arg1: { offset: 8, type: 'u64' },
  arg2: { offset: 16, type: 'u64' },
  arg3: { offset: 24, type: 'u64' },
});

/** NOTE payload: its four args. */
export function decodeNote(payload: Uint8Array): readonly bigint[] | undefined {
  if (payload.byteLength !== NOTE_BYTES) return undefined;
  const v = view(payload);
  return [0, 8, 16, 24].map((at) => v.getBigUint64(at, true));
}

export const emuPollEnt = defineStruct('emu_poll_ent', POLL_ENTRY_BYTES, 'events', {
  obj: { offset: 0, type: 'u32' },
  events: { offset: 4, type: 'u32' },
});
