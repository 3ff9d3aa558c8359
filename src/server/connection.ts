/**
 * One client connection and its framing (see native/shim/protocol.h): a transport connection per
 * client thread carries requests and replies; an object connection per open file description
 * carries nothing after its OPEN but raw bytes the program writes past the shim, and its EOF is
 * the last close.
 */
import type { OpenObject, ReservedFd } from './client-fds.ts';
import type { CheckedClaim, PeerIdentity } from './client-identity.ts';
import {
  CREDS_BYTES,
  encodeReplyOf,
  FrameReader,
  HEADER_BYTES,
  type ReplyParts,
  type Request,
  type WireCreds,
} from './protocol.ts';

/** What a reply carries besides the result. */
export type ReplyExtra = ReplyParts;

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
  /** The socket itself has closed (after `closed`); the server forgets it once no call runs. */
  socketClosed = false;
  /** Transport: the thread it serves and the address space it reported. */
  thread: { pid: number; tid: number; memoryKey: string } | undefined;
  /** Transport: HELLO told the shim to send NOTEs (the server traced then). */
  notes = false;
  /** Transport: the last poll traced found nothing ready with these args (ops/poll.ts). */
  lastPoll: string | undefined;
  /** The connecting process as the kernel saw it (SO_PEERCRED); undefined without the addon. */
  peer: PeerIdentity | undefined;
  /**
   * The last claim on this connection: its frame's header and credentials bytes (a copy), the
   * credentials it was found to stand for, and the check (client-identity.ts).
   */
  claim:
    | { readonly bytes: Uint8Array; readonly creds: WireCreds; readonly checked: CheckedClaim }
    | undefined;
  /** Open objects this connection's process was found to hold an fd on (forgotten with them). */
  readonly heldObjects = new WeakSet<OpenObject>();
  /** Object connection: the open file it is. */
  object: OpenObject | undefined;
  /** Object connection made by RESERVE: the fd a call may install a new file on. */
  reserved: ReservedFd | undefined;

  /** Bytes the server holds for this connection (limits.ts): a partial request, unread replies. */
  held = 0;
  /** Not read from (limits.ts): its replies are not being read, or all clients hold too much. */
  paused = false;
  /** When the handshake or the partial request must be complete by (limits.ts). */
  deadline: NodeJS.Timeout | undefined;
  /** Called after anything is written to the client (the server accounts for it). */
  private readonly written: (conn: Connection) => void;

  /** Sees every reply (a recording, a replay). */
  onReply: ((req: Request, ret: number, extra: ReplyExtra) => void) | undefined;

  constructor(socket: ConnectionSocket, written: (conn: Connection) => void = () => {}) {
    this.socket = socket;
    this.written = written;
  }

  /** Sends the reply to `req` (nothing if the client is gone). */
  reply(req: Request, ret: number, extra: ReplyExtra = {}): void {
    this.onReply?.(req, ret, extra);
    this.send(encodeReplyOf(req.op, req.seq, ret, extra));
  }

  /** Writes bytes to the client (nothing if it is gone). */
  send(bytes: Uint8Array): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(bytes);
    this.written(this);
  }
}
