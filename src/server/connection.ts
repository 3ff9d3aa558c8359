/**
 * One client connection and its framing (see native/shim/protocol.h): a transport connection per
 * client thread carries requests and replies; an object connection per open file description
 * carries nothing after its OPEN but raw bytes the program writes past the shim, and its EOF is
 * the last close.
 */
import type { OpenObject, ReservedFd } from './client-fds.ts';
import { CREDS_BYTES, encodeReply, FrameReader, HEADER_BYTES, type Request } from './protocol.ts';

/** What a reply carries besides the result. */
export interface ReplyExtra {
  readonly flags?: number;
  readonly v0?: bigint;
  readonly v1?: bigint;
  readonly payload?: Uint8Array | undefined;
}

/** What a connection needs of its socket (a net.Socket; a replay's stands in for it). */
export interface ConnectionSocket {
  readonly destroyed: boolean;
  readonly writable: boolean;
  write(data: Uint8Array): unknown;
  end(): unknown;
  destroy(): unknown;
}

export class Connection {
  kind: 'new' | 'transport' | 'object' = 'new';
  readonly socket: ConnectionSocket;
  readonly reader = new FrameReader(HEADER_BYTES + CREDS_BYTES);
  /** A reply is outstanding (CLOSE barrier): hold further frames until it is sent. */
  deferred = false;
  closed = false;
  /** Transport: the thread it serves and the address space it reported. */
  thread: { pid: number; tid: number; memoryKey: string } | undefined;
  /** Transport: HELLO told the shim to send NOTEs (the server traced then). */
  notes = false;
  /** Transport: the last poll traced found nothing ready with these args (ops/poll.ts). */
  lastPoll: string | undefined;
  /** Object connection: the open file it is. */
  object: OpenObject | undefined;
  /** Object connection made by RESERVE: the fd a call may install a new file on. */
  reserved: ReservedFd | undefined;

  /** Sees every reply (a recording, a replay). */
  onReply: ((req: Request, ret: number, extra: ReplyExtra) => void) | undefined;

  constructor(socket: ConnectionSocket) {
    this.socket = socket;
  }

  /** Sends the reply to `req` (nothing if the client is gone). */
  reply(req: Request, ret: number, extra: ReplyExtra = {}): void {
    this.onReply?.(req, ret, extra);
    if (this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(encodeReply({ op: req.op, seq: req.seq, ret, ...extra }));
  }
}
