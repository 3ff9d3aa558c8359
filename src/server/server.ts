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
import { ClientMemories } from './client-memory.ts';
import { Connection } from './connection.ts';
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
import { decodeRequest, Op, type Request } from './protocol.ts';
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

  constructor(kernel: Kernel, socketPath: string, options: ServerOptions) {
    this.kernel = kernel;
    this.socketPath = socketPath;
    const recorder = options.recorder;
    this.recorder = recorder;
    this.memories = new ClientMemories(kernel.events, recorder?.observeMemory, (mm) =>
      kernel.pagemap?.release(mm),
    );
    this.files = new ClientFiles(kernel.events);
    this.clientCreds = new ClientCredentials(kernel.events, options.grantedCaps ?? 0n);
    this.observeFds =
      recorder === undefined ? undefined : (fds) => recorder.observeFds(fds, this.files);
    this.testbed = new Testbed(kernel, options.testbedDir);
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
      this.net.listen(this.socketPath, () => {
        this.net.off('error', onError);
        this.net.on('error', (err) => {
          this.kernel.events.log('error', `server: ${err.message}`);
        });
        resolve();
      });
    });
  }

  get testbedRoot(): string {
    return this.testbed.root;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  whenIdle(): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
    });
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
    const conn = new Connection(socket);
    this.recorder?.accept(conn);
    this.connections.add(conn);
    socket.on('data', (chunk: Buffer) => {
      if (conn.kind === 'object') {
        this.recorder?.rawWrite(conn, chunk);
        rawWrite(this, conn, chunk);
        return;
      }
      conn.reader.push(chunk);
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
      this.connections.delete(conn);
      if (this.connections.size === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    });
  }

  private dropConnection(conn: Connection): void {
    if (conn.closed) return;
    this.recorder?.drop(conn);
    dropConnection(this, conn);
  }

  pump(conn: Connection): void {
    while (!conn.deferred && !conn.closed && conn.kind !== 'object') {
      let frame: Uint8Array | undefined;
      try {
        frame = conn.reader.next();
      } catch (err) {
        this.protocolError(conn, (err as Error).message);
        return;
      }
      if (frame === undefined) return;
      const req = decodeRequest(frame);
      if (typeof req === 'string') {
        this.protocolError(conn, req);
        return;
      }
      this.dispatch(conn, req);
    }
  }

  protocolError(conn: Connection, why: string): void {
    this.kernel.events.log('warn', `server: dropping a client connection: ${why}`);
    conn.socket.destroy();
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
