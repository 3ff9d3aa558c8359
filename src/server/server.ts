/**
 * The socket server the LD_PRELOAD shim talks to: a thin transport that turns each forwarded call
 * of a real process into a call on the emulated kernel. Everything runs on the one Node event
 * loop, which serialises calls the way the kernel's object locks would.
 *
 * Connections (see native/shim/protocol.h, connection.ts): an object connection per open file
 * description (the app's fd; EOF = last copy closed = release) and a transport connection per
 * client thread. The pieces: client memory (client-memory.ts), client files and fds
 * (client-fds.ts), what every call shares (call.ts), and one function per protocol op (ops/).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { Kernel } from '../boot/kernel.ts';
import type { FailNth } from '../fault/fault.ts';
import type { ServerState } from './call.ts';
import { ClientCredentials } from './client-creds.ts';
import { ClientFiles } from './client-fds.ts';
import { type CheckedClaim, checkClaim, peerIdentity } from './client-identity.ts';
import { ClientMemories, isMemoryOf } from './client-memory.ts';
import { Connection } from './connection.ts';
import { DEFAULT_LIMITS, type ServerLimits } from './limits.ts';
import { closeBarrier } from './ops/close.ts';
import { hello } from './ops/hello.ts';
import { ioctl } from './ops/ioctl.ts';
import { lookup } from './ops/lookup.ts';
import { mmap } from './ops/mmap.ts';
import { note } from './ops/note.ts';
import { open } from './ops/open.ts';
import { poll } from './ops/poll.ts';
import { read } from './ops/read.ts';
import { reserve } from './ops/reserve.ts';
import { seek } from './ops/seek.ts';
import { stat } from './ops/stat.ts';
import { sync } from './ops/sync.ts';
import { rawWrite, write } from './ops/write.ts';
import {
  CREDS_BYTES,
  decodeCreds,
  decodeRequest,
  frameError,
  HEADER_BYTES,
  Op,
  type Request,
  sameCredsBytes,
  type WireCreds,
} from './protocol.ts';
import type { Recorder } from './recorder.ts';
import { Testbed } from './testbed.ts';

/** A running emulator server. */
export interface EmuServer {
  /** The AF_UNIX path clients connect to (IOMMUFD_EMU_SOCKET). */
  readonly socketPath: string;
  /** The real directory tree mirroring the emulated files (see testbed.ts). */
  readonly testbedRoot: string;
  /** Live client connections, transport and object connections alike. */
  readonly connectionCount: number;
  /** Bytes held for clients: requests not yet whole and replies not yet read (limits.ts). */
  readonly bufferedBytes: number;
  /** Resolves once no client connection remains (at once if none does now). */
  whenIdle(): Promise<void>;
  /** The fail-nth counter of a client thread (/proc/<pid>/task/<tid>/fail-nth). */
  failNth(pid: number, tid: number): FailNth;
  /** Stops listening, drops every connection (releasing their files) and removes the socket. */
  close(): Promise<void>;
}

export interface ServerOptions {
  /**
   * Where to build the testbed (a directory that must not exist yet, e.g. inside a private
   * 0700 directory); a new temporary directory when absent. Removed by close().
   */
  readonly testbedDir?: string;
  /** Capabilities every client holds for capable() whatever its own (`--cap`); default none. */
  readonly grantedCaps?: bigint;
  /** What clients may make the server hold; DEFAULT_LIMITS for what is not given. */
  readonly limits?: Partial<ServerLimits>;
  /** Record every request, what it saw of its caller, its reply and every event (`--record`). */
  readonly recorder?: Recorder;
}

/**
 * Serves `kernel` on a new AF_UNIX socket at socketPath (which must not exist yet). Resolves once
 * the server listens.
 */
export async function startServer(
  kernel: Kernel,
  socketPath: string,
  options: ServerOptions = {},
): Promise<EmuServer> {
  const server = new Server(kernel, socketPath, options);
  try {
    await server.listen();
  } catch (err) {
    server.testbed.remove();
    throw err;
  }
  return server;
}

type OpHandler = (s: ServerState, conn: Connection, req: Request) => void;

/** The ops a transport connection serves, by protocol op code. */
const TRANSPORT_OPS: ReadonlyMap<number, OpHandler> = new Map<number, OpHandler>([
  [Op.LOOKUP, lookup],
  [Op.CLOSE, closeBarrier],
  [Op.IOCTL, ioctl],
  [Op.READ, read],
  [Op.WRITE, write],
  [Op.MMAP, mmap],
  [Op.STAT, stat],
  [Op.POLL, poll],
  [Op.SYNC, sync],
  [Op.SEEK, seek],
  [Op.NOTE, note],
]);

class Server implements EmuServer, ServerState {
  readonly socketPath: string;
  readonly testbed: Testbed;
  readonly kernel: Kernel;
  readonly memories: ClientMemories;
  readonly files: ClientFiles;
  readonly clientCreds: ClientCredentials;
  readonly observeFds: ServerState['observeFds'];
  private readonly recorder: Recorder | undefined;
  private readonly net: net.Server;
  private readonly connections = new Set<Connection>();
  private idleWaiters: (() => void)[] = [];
  private closing: Promise<void> | undefined;
  private warnedUnverifiable = false;
  private readonly limits: ServerLimits;
  /** Bytes held for all connections (the sum of their `held`). */
  private held = 0;
  /** Connections paused because all clients together hold too much. */
  private readonly overBudget = new Set<Connection>();
  /** The connection whose requests are being dispatched now (pump). */
  private pumping: Connection | undefined;
  /** When connections were last refused for the cap (said at most once a second). */
  private refusedAt = 0;

  constructor(kernel: Kernel, socketPath: string, options: ServerOptions) {
    this.kernel = kernel;
    // Kernel work no caller waits for (what a released device leaves to unpin) goes a slice per
    // turn, so that a dying client does not hold the others (whenIdle() waits for it).
    kernel.iommufd.work.deferred = true;
    this.socketPath = socketPath;
    const recorder = options.recorder;
    this.recorder = recorder;
    this.memories = new ClientMemories(kernel.events, recorder?.observeMemory, (mm) => {
      kernel.pagemap?.release(mm);
      // Its mappings of iommufd regions are gone with it (exit, exec).
      kernel.iommufd.dropMappings((m) => m.mm === mm);
    });
    this.files = new ClientFiles(kernel.events);
    this.clientCreds = new ClientCredentials(kernel.events, options.grantedCaps ?? 0n);
    this.observeFds =
      recorder === undefined ? undefined : (fds) => recorder.observeFds(fds, this.files);
    this.testbed = new Testbed(kernel, options.testbedDir);
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    // Clients are host processes: /proc/<pid>/status is theirs, plus what the kernel pins.
    kernel.hostProcStatus = hostProcStatus;
    kernel.mmOfProcess = isMemoryOf;
    if (recorder !== undefined) {
      this.clientCreds.observe = recorder.observeCaller;
      recorder.start(kernel, this.testbed.root);
    }
    this.net = net.createServer({ allowHalfOpen: false }, (socket) => {
      this.accept(socket);
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        reject(err);
      };
      this.net.once('error', onError);
      // Only the emulator's user may connect, whatever the umask: the socket is bound under a
      // umask that leaves it 0600 (bind happens inside listen()), then set so explicitly.
      const umask = process.umask(0o177);
      try {
        this.net.listen(this.socketPath, () => {
          try {
            fs.chmodSync(this.socketPath, 0o600);
          } catch (err) {
            reject(err);
            return;
          }
          this.net.off('error', onError);
          this.net.on('error', (err) => {
            this.kernel.events.log('error', `server: ${err.message}`);
          });
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
  }

  get testbedRoot(): string {
    return this.testbed.root;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  get bufferedBytes(): number {
    return this.held;
  }

  /** No connection left, and no kernel work a release left behind (iommufd unpins). */
  async whenIdle(): Promise<void> {
    if (this.connections.size > 0) {
      await new Promise<void>((resolve) => {
        this.idleWaiters.push(resolve);
      });
    }
    await this.kernel.iommufd.work.whenIdle();
  }

  failNth(pid: number, tid: number): FailNth {
    return this.kernel.failNth(pid, tid);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const stopped = new Promise<void>((resolve) => {
      this.net.close(() => {
        resolve();
      });
    });
    for (const conn of this.connections) conn.socket.destroy();
    await this.whenIdle();
    await stopped;
    this.memories.close();
    this.testbed.remove();
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      // libuv removes the socket file itself on close.
    }
  }

  private accept(socket: net.Socket): void {
    if (this.connections.size >= this.limits.maxConnections) {
      this.refuse(socket);
      return;
    }
    const conn = new Connection(socket, (c) => {
      // A reply written while its requests are pumped is accounted for when the pump ends.
      if (this.pumping !== c) this.settle(c);
    });
    this.recorder?.accept(conn);
    this.connections.add(conn);
    const peer = peerIdentity(socket);
    if (typeof peer === 'object') conn.peer = peer;
    else if (peer === 'unverifiable') this.warnUnverifiable();
    else {
      this.kernel.events.log('warn', `server: refusing a connection: ${peer}`);
      socket.destroy();
    }
    this.arm(conn, this.limits.handshakeMs, 'sent no request');
    socket.on('data', (chunk: Buffer) => {
      if (conn.kind === 'object') {
        this.recorder?.rawWrite(conn, chunk);
        rawWrite(this, conn, chunk);
        return;
      }
      conn.reader.push(chunk);
      this.pump(conn);
    });
    socket.on('drain', () => {
      this.settle(conn);
      this.pump(conn);
    });
    // EOF: for an object connection, the last copy of the fd is gone. Release right here, in the
    // same event-loop turn that reads the EOF (the CLOSE barrier relies on that).
    socket.on('end', () => {
      this.dropConnection(conn);
    });
    socket.on('error', () => {
      // ECONNRESET / EPIPE from a client that died: it looks like closed fds, nothing else.
    });
    socket.on('close', () => {
      this.dropConnection(conn);
      conn.socketClosed = true;
      this.forgetWhenSettled(conn);
    });
  }

  /** Over the connection cap: closed at once, and said at most once a second. */
  private refuse(socket: net.Socket): void {
    socket.destroy();
    const now = Date.now();
    if (now - this.refusedAt < 1000) return;
    this.refusedAt = now;
    this.kernel.events.log(
      'warn',
      `server: refusing connections: ${this.limits.maxConnections} are open (the most at once)`,
    );
  }

  /** Drops `conn` unless it is disarmed within `ms` (a handshake or a request left half sent). */
  private arm(conn: Connection, ms: number, why: string): void {
    clearTimeout(conn.deadline);
    conn.deadline = setTimeout(() => {
      conn.deadline = undefined;
      this.protocolError(conn, `${why} within ${ms} ms`);
    }, ms);
    conn.deadline.unref();
  }

  /**
   * After a connection's buffers changed: account for what it holds, give a partial request a
   * deadline, and stop reading from it while its replies go unread or all clients together hold
   * more than the budget (the kernel's socket buffer then holds the client's writes back).
   */
  private settle(conn: Connection): void {
    const held = conn.closed ? 0 : conn.reader.buffered + socketOf(conn).writableLength;
    this.held += held - conn.held;
    conn.held = held;
    if (conn.closed) return;
    if (conn.kind !== 'new') {
      if (conn.reader.buffered === 0 || conn.kind === 'object') {
        clearTimeout(conn.deadline);
        conn.deadline = undefined;
      } else if (conn.deadline === undefined) {
        this.arm(conn, this.limits.frameMs, 'a request was not sent whole');
      }
    }
    const backlogged = socketOf(conn).writableLength > this.limits.replyBacklog;
    const overBudget = this.held > this.limits.bufferBudget && conn.reader.buffered > 0;
    if (backlogged || overBudget) {
      if (overBudget) this.overBudget.add(conn);
      if (!conn.paused) {
        conn.paused = true;
        socketOf(conn).pause();
      }
    } else if (conn.paused && !this.overBudget.has(conn)) {
      conn.paused = false;
      socketOf(conn).resume();
    }
    if (this.held <= this.limits.bufferBudget && this.overBudget.size > 0) this.resumeAll();
  }

  /** The total is back under the budget: connections paused for it are read again. */
  private resumeAll(): void {
    const paused = [...this.overBudget];
    this.overBudget.clear();
    for (const c of paused) {
      if (c.closed || socketOf(c).writableLength > this.limits.replyBacklog) continue;
      c.paused = false;
      socketOf(c).resume();
    }
  }

  private dropConnection(conn: Connection): void {
    if (conn.closed) return;
    this.recorder?.drop(conn);
    clearTimeout(conn.deadline);
    this.overBudget.delete(conn);
    dropConnection(this, conn);
    // Closed now: what it held is given back.
    this.settle(conn);
  }

  /**
   * Forgets a connection whose socket has closed, once no call of its is still running: a
   * deferred call holds its file until it returns (ops/ioctl.ts), so until then the server is not
   * idle (exec's leak check waits for idle).
   */
  private forgetWhenSettled(conn: Connection): void {
    if (conn.deferred || !this.connections.delete(conn)) return;
    if (this.connections.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  pump(conn: Connection): void {
    if (conn.socketClosed) {
      this.forgetWhenSettled(conn);
      return;
    }
    const outer = this.pumping;
    this.pumping = conn;
    try {
      this.dispatchFrames(conn);
    } finally {
      this.pumping = outer;
    }
    this.settle(conn);
  }

  /** Dispatches the whole requests a transport has received, until one is deferred. */
  private dispatchFrames(conn: Connection): void {
    while (!conn.deferred && !conn.closed && conn.kind !== 'object') {
      // Replies nobody reads: read no more requests until they are (the 'drain' event).
      if (socketOf(conn).writableLength > this.limits.replyBacklog) return;
      let frame: Uint8Array | undefined;
      try {
        frame = conn.reader.next();
      } catch (err) {
        this.protocolError(conn, (err as Error).message);
        return;
      }
      if (frame === undefined) return;
      const req = this.request(conn, frame);
      if (req === undefined) return;
      this.dispatch(conn, req);
    }
  }

  /** A frame as a request with the credentials it may act with; undefined after a protocol error. */
  private request(conn: Connection, frame: Uint8Array): Request | undefined {
    const why = frameError(frame);
    if (why !== undefined) {
      this.protocolError(conn, why);
      return undefined;
    }
    const creds = this.credsOf(conn, frame);
    if (creds === undefined) return undefined;
    const req = decodeRequest(frame, creds);
    return typeof req === 'string' ? undefined : req;
  }

  protocolError(conn: Connection, why: string): void {
    this.kernel.events.log('warn', `server: dropping a client connection: ${why}`);
    conn.socket.destroy();
  }

  /** Without the fd addon nobody's claims can be checked: said once. */
  private warnUnverifiable(): void {
    if (this.warnedUnverifiable) return;
    this.warnedUnverifiable = true;
    this.kernel.events.log(
      'warn',
      "server: the fd addon is not built: clients' pids, ids and capabilities are taken as they claim them (build native/ with Node's headers)",
    );
  }

  /**
   * The credentials a request may act with (client-identity.ts), or undefined after dropping a
   * connection whose claim is refused. A transport serves one thread: the one that said HELLO on
   * it. A claim is decoded and checked when its bytes differ from the connection's last one;
   * the same bytes stand for the same credentials (decision 261).
   */
  private credsOf(conn: Connection, frame: Uint8Array): WireCreds | undefined {
    const last = conn.claim;
    // The same bytes were checked, the tid among them (HELLO fixed the thread from them).
    if (last !== undefined && sameCredsBytes(last.bytes, frame)) return last.creds;
    const claim = decodeCreds(frame);
    if (conn.thread !== undefined && claim.tid !== conn.thread.tid) {
      this.protocolError(
        conn,
        `claims tid ${claim.tid} on the transport of tid ${conn.thread.tid}`,
      );
      return undefined;
    }
    let checked: CheckedClaim = { claim, creds: claim };
    if (conn.peer !== undefined) {
      const result = checkClaim(conn.peer, claim, last?.checked);
      if (typeof result === 'string') {
        this.protocolError(conn, result);
        return undefined;
      }
      checked = result;
    }
    // A copy: the frame's bytes belong to the socket's chunk.
    const bytes = new Uint8Array(HEADER_BYTES + CREDS_BYTES);
    bytes.set(frame.subarray(0, HEADER_BYTES + CREDS_BYTES));
    conn.claim = { bytes, creds: checked.creds, checked };
    return checked.creds;
  }

  private dispatch(conn: Connection, req: Request): void {
    if (this.recorder === undefined) {
      dispatchRequest(this, conn, req);
      return;
    }
    this.recorder.beginCall(conn, req);
    try {
      dispatchRequest(this, conn, req);
    } finally {
      this.recorder.endCall();
    }
  }
}

/** The socket of a connection the server accepted (a replay's stand in for no real one). */
function socketOf(conn: Connection): net.Socket {
  return conn.socket as net.Socket;
}

/** Serves one request of a connection: the op its state allows, or a protocol error. */
export function dispatchRequest(s: ServerState, conn: Connection, req: Request): void {
  if (conn.kind === 'new') {
    if (req.op === Op.HELLO) hello(s, conn, req);
    else if (req.op === Op.OPEN) open(s, conn, req);
    else if (req.op === Op.RESERVE) reserve(s, conn, req);
    else s.protocolError(conn, `op ${req.op} before HELLO/OPEN/RESERVE`);
    return;
  }
  if (conn.kind === 'object') {
    s.protocolError(conn, `op ${req.op} on an object connection`);
    return;
  }
  const handler = TRANSPORT_OPS.get(req.op);
  if (handler === undefined) s.protocolError(conn, `unknown op ${req.op}`);
  else handler(s, conn, req);
}

/**
 * A connection's far end is gone: an object connection's file is released (the last copy of the
 * fd closed), a transport's thread is forgotten.
 */
export function dropConnection(s: ServerState, conn: Connection): void {
  if (conn.closed) return;
  conn.closed = true;
  if (conn.object !== undefined) s.files.release(conn.object);
  if (conn.reserved !== undefined) s.files.dropReservation(conn.reserved);
  const thread = conn.thread;
  if (thread !== undefined) {
    // The thread is gone (its transport closes only when it exits, or its process does).
    s.kernel.forgetTask(thread.pid, thread.tid);
    s.memories.detach(thread.memoryKey);
  }
}

/** The host's /proc/<pid>[/task/<tid>]/status, or undefined if there is no such process. */
function hostProcStatus(pid: number, tid: number | undefined): string | undefined {
  const path = tid === undefined ? `/proc/${pid}/status` : `/proc/${pid}/task/${tid}/status`;
  try {
    return fs.readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}
