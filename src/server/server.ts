/**
 * The socket server the LD_PRELOAD shim talks to: turns each forwarded call of a real process into
 * a call on the emulated Kernel, with a Task made for that call (the caller's credentials of that
 * moment, its memory through /proc/<pid>/mem plus the prefetched ioctl window, its fd table through
 * /proc/<pid>/task/<tid>/fd). Everything runs on the one Node event loop, which serialises calls
 * the way the kernel's object locks would.
 *
 * Connections (see native/shim/protocol.h): an object connection per open file description (the
 * app's fd; EOF = last copy closed = release) and a transport connection per client thread.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FailNth } from '../fault/fault.ts';
import { File, type FileOperations, S_IFCHR } from '../host/file.ts';
import type { Kernel } from '../host/kernel.ts';
import { CallMemory, ProcMemory } from '../host/proc-memory.ts';
import { runSyscall } from '../host/syscall.ts';
import type { EventfdRef, FdResolver, Task } from '../host/task.ts';
import type { UserMemory } from '../host/user-memory.ts';
import { Errno, errnoName } from '../uapi/errno.ts';
import { ClientCredentials } from './client-creds.ts';
import {
  describeIo,
  describeIoctl,
  fdLabel,
  ioctlStruct,
  openFlags,
  requestFd,
} from './describe.ts';
import {
  CREDS_BYTES,
  decodeCString,
  decodeMmapRequest,
  decodePollEntries,
  decodeRequest,
  encodeCStrings,
  encodeRdev,
  encodeReply,
  encodeSegments,
  encodeU32s,
  FD_UNKNOWN,
  FrameReader,
  HEADER_BYTES,
  MmapKind,
  Op,
  PROTOCOL_VERSION,
  ReplyFlag,
  ReqFlag,
  type Request,
  RW_MAX,
  SyncCall,
  Whence,
  WINDOW_MAX,
  WINDOW_MIN,
  type WireCreds,
} from './protocol.ts';
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

const ELOOP = 40;
const EPROTO = 71;
const MAX_ERRNO = 4095;
/** How often memory views of finished processes are looked for. */
const SWEEP_MS = 5000;
const PAGE_SIZE = 4096n;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFMT = 0o170000;
/** Symlinks followed in one path walk before ELOOP (the kernel's MAXSYMLINKS). */
const MAX_SYMLINKS = 40;
const POLLIN = 0x1;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLNVAL = 0x20;
const POLLRDNORM = 0x40;
const POLLWRNORM = 0x100;
/** What poll reports for a file without a poll operation (the kernel's DEFAULT_POLLMASK). */
const DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;
const { O_CREAT, O_EXCL, O_DIRECTORY, O_RDONLY, O_WRONLY } = fs.constants;

/** FileOperations may gain a poll operation; until then every file polls as DEFAULT_POLLMASK. */
type MaybePollable = FileOperations & { poll?(file: File, task: Task): number };

/** An open file description: one object connection. */
interface OpenObject {
  readonly id: number;
  readonly file: File;
  readonly path: string;
  readonly mode: number;
  /** st_ino of the client's end of the object connection: its identity in every process. */
  readonly ino: bigint;
  /** The file position read()/write() use (shared by dup'd fds, like f_pos). */
  pos: bigint;
  released: boolean;
  /** The opener's credentials (f_cred), for writes that arrive raw on the object connection. */
  readonly creds: WireCreds;
}

/** The memory of a caller the server cannot name: every access faults. */
const NO_MEMORY: UserMemory = {
  mm: 'none',
  read: () => undefined,
  write: () => false,
  vma: () => undefined,
};

interface MemoryEntry {
  readonly memory: ProcMemory;
  transports: number;
}

class Connection {
  kind: 'new' | 'transport' | 'object' = 'new';
  readonly socket: net.Socket;
  readonly reader = new FrameReader(HEADER_BYTES + CREDS_BYTES);
  /** A reply is outstanding (CLOSE barrier): hold further frames until it is sent. */
  deferred = false;
  closed = false;
  /** Transport: the thread it serves and the address space it reported. */
  thread: { pid: number; tid: number; memoryKey: string } | undefined;
  /** Object connection: the open file it is. */
  object: OpenObject | undefined;

  constructor(socket: net.Socket) {
    this.socket = socket;
  }
}

function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

function memoryKey(creds: WireCreds): string {
  return `pid${creds.pid}/mm${creds.mmCookie.toString(16)}`;
}

class Server implements EmuServer {
  readonly socketPath: string;
  readonly testbed: Testbed;
  private readonly kernel: Kernel;
  private readonly net: net.Server;
  private readonly connections = new Set<Connection>();
  private readonly objects = new Map<number, OpenObject>();
  private readonly byIno = new Map<bigint, OpenObject>();
  private readonly memories = new Map<string, MemoryEntry>();
  private idleWaiters: (() => void)[] = [];
  private nextObjectId = 1;
  private sweep: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  /** Turns what the shim reports into the kernel's view of the caller (client-creds.ts). */
  private readonly clientCreds: ClientCredentials;

  constructor(kernel: Kernel, socketPath: string, options: ServerOptions) {
    this.kernel = kernel;
    this.clientCreds = new ClientCredentials(kernel.events, options.grantedCaps ?? 0n);
    this.socketPath = socketPath;
    this.testbed = new Testbed(kernel, options.testbedDir);
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
    clearInterval(this.sweep);
    for (const entry of this.memories.values()) entry.memory.close();
    this.memories.clear();
    this.testbed.remove();
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      // libuv removes the socket file itself on close.
    }
  }

  // -- connections -------------------------------------------------------------------------------

  private accept(socket: net.Socket): void {
    const conn = new Connection(socket);
    this.connections.add(conn);
    socket.on('data', (chunk: Buffer) => {
      if (conn.kind === 'object') {
        this.rawWrite(conn, chunk);
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
    conn.closed = true;
    if (conn.object !== undefined) this.release(conn.object);
    const thread = conn.thread;
    if (thread !== undefined) {
      // The thread is gone (its transport closes only when it exits, or its process does).
      this.kernel.forgetTask(thread.pid, thread.tid);
      const entry = this.memories.get(thread.memoryKey);
      // The last calling thread is gone. If the address space still lives (other threads), keep
      // the view: devices may still DMA into it. The sweep retires it once the process is gone.
      if (entry !== undefined && --entry.transports === 0) {
        if (entry.memory.current) this.startSweep();
        else {
          this.memories.delete(thread.memoryKey);
          entry.memory.retire();
        }
      }
    }
  }

  /** Retires, every few seconds, the memory views of address spaces that are gone. */
  private startSweep(): void {
    if (this.sweep !== undefined) return;
    this.sweep = setInterval(() => {
      for (const [key, entry] of this.memories) {
        if (entry.transports === 0 && !entry.memory.current) {
          this.memories.delete(key);
          entry.memory.retire();
        }
      }
      if (![...this.memories.values()].some((e) => e.transports === 0)) {
        clearInterval(this.sweep);
        this.sweep = undefined;
      }
    }, SWEEP_MS);
    this.sweep.unref();
  }

  private release(object: OpenObject): void {
    if (object.released) return;
    object.released = true;
    this.objects.delete(object.id);
    if (this.byIno.get(object.ino) === object) this.byIno.delete(object.ino);
    runSyscall(this.kernel.events, `release of ${object.path}`, undefined, () => {
      object.file.put();
      return 0;
    });
  }

  private pump(conn: Connection): void {
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

  private protocolError(conn: Connection, why: string): void {
    this.kernel.events.log('warn', `server: dropping a client connection: ${why}`);
    conn.socket.destroy();
  }

  private reply(conn: Connection, req: Request, ret: number, extra: ReplyExtra = {}): void {
    if (conn.socket.destroyed || !conn.socket.writable) return;
    conn.socket.write(encodeReply({ op: req.op, seq: req.seq, ret, ...extra }));
  }

  private dispatch(conn: Connection, req: Request): void {
    if (conn.kind === 'new') {
      if (req.op === Op.HELLO) this.hello(conn, req);
      else if (req.op === Op.OPEN) this.open(conn, req);
      else this.protocolError(conn, `op ${req.op} before HELLO/OPEN`);
      return;
    }
    if (conn.kind === 'object') {
      this.protocolError(conn, `op ${req.op} on an object connection`);
      return;
    }
    switch (req.op) {
      case Op.LOOKUP:
        this.lookup(conn, req);
        return;
      case Op.CLOSE:
        this.closeBarrier(conn, req);
        return;
      case Op.IOCTL:
        this.ioctl(conn, req);
        return;
      case Op.READ:
        this.read(conn, req);
        return;
      case Op.WRITE:
        this.write(conn, req);
        return;
      case Op.MMAP:
        this.mmap(conn, req);
        return;
      case Op.STAT:
        this.stat(conn, req);
        return;
      case Op.POLL:
        this.poll(conn, req);
        return;
      case Op.SYNC:
        this.sync(conn, req);
        return;
      case Op.SEEK:
        this.seek(conn, req);
        return;
      default:
        this.protocolError(conn, `unknown op ${req.op}`);
    }
  }

  // -- per-call context --------------------------------------------------------------------------

  /**
   * The caller's memory for one call: its address space's ProcMemory (or one opened for this call
   * only) seen through a CallMemory, with the prefetched ioctl window if there is one. done()
   * ends the call.
   */
  private memoryFor(
    creds: WireCreds,
    window?: { readonly start: bigint; readonly bytes: Uint8Array; readonly writable: boolean },
  ): { memory: CallMemory; done: () => void } {
    const entry = this.memories.get(memoryKey(creds));
    const proc = entry?.memory ?? this.openMemory(creds);
    const memory = new CallMemory(proc, window?.start ?? 0n, window?.bytes ?? new Uint8Array(0), {
      windowWritable: window?.writable ?? true,
      mapRanges: () => proc.mapRanges(),
    });
    return {
      memory,
      done: () => {
        memory.finish();
        if (entry === undefined) proc.retire();
      },
    };
  }

  private openMemory(creds: WireCreds): ProcMemory {
    const memory = new ProcMemory(creds.pid, memoryKey(creds));
    if (memory.openError !== undefined) {
      this.kernel.events.log(
        'warn',
        `cannot open /proc/${creds.pid}/mem (${memory.openError}): its user copies will fail with EFAULT`,
      );
    }
    return memory;
  }

  private resolver(pid: number, tid: number): FdResolver {
    const dir = `/proc/${pid}/task/${tid}/fd/`;
    return {
      fileOf: (fd: number): File | undefined => {
        if (!Number.isInteger(fd) || fd < 0) return undefined;
        let link: string;
        try {
          link = fs.readlinkSync(`${dir}${fd}`);
        } catch {
          return undefined;
        }
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m === null) return undefined;
        return this.byIno.get(BigInt(m[1]!))?.file;
      },
      isOpen: (fd: number): boolean => {
        if (!Number.isInteger(fd) || fd < 0) return false;
        try {
          fs.lstatSync(`${dir}${fd}`);
          return true;
        } catch {
          return false;
        }
      },
      eventfd: (fd: number): EventfdRef | number => this.eventfd(pid, `${dir}${fd}`, fd),
    };
  }

  /**
   * eventfd_ctx_fdget() on a client's fd: the server takes its own duplicate (pidfd_getfd, via
   * the native addon), so it can signal the eventfd later, whatever the client does with its fd.
   */
  private eventfd(pid: number, link: string, fd: number): EventfdRef | number {
    if (!Number.isInteger(fd) || fd < 0) return -Errno.EBADF;
    let target: string;
    try {
      target = fs.readlinkSync(link);
    } catch {
      return -Errno.EBADF;
    }
    if (target !== 'anon_inode:[eventfd]') return -Errno.EINVAL;
    const addon = fdAddon();
    const ours = addon === undefined ? -Errno.ENOSYS : addon.getfd(pid, fd);
    if (ours < 0) {
      this.kernel.events.log(
        'warn',
        `cannot take eventfd ${fd} of pid ${pid} (${addon === undefined ? 'fd addon not built' : `errno ${-ours}`}): failing the call with EINVAL`,
      );
      return -Errno.EINVAL;
    }
    let open = true;
    const one = new Uint8Array(8);
    one[0] = 1;
    return {
      signal: (): void => {
        if (!open) return;
        try {
          fs.writeSync(ours, one);
        } catch {
          // EAGAIN at the counter's maximum: the kernel's eventfd_signal() saturates too.
        }
      },
      release: (): void => {
        if (!open) return;
        open = false;
        fs.closeSync(ours);
      },
    };
  }

  private task(creds: WireCreds, memory: UserMemory): Task {
    return { creds: this.clientCreds.of(creds), memory, fds: this.resolver(creds.pid, creds.tid) };
  }

  /**
   * Runs one handler as the calling thread (its fail-nth counter current). An exception is an
   * emulator bug: logged with its stack, and the call fails with EIO (runSyscall).
   */
  private guarded<T>(what: string, creds: WireCreds, fn: () => T | number): T | number {
    return runSyscall(this.kernel.events, what, this.failNth(creds.pid, creds.tid), fn);
  }

  /** A handler's numeric result, or EIO (and a bug report) when it is not a valid one. */
  private result(what: string, value: unknown, max: number): number {
    if (
      typeof value !== 'number' ||
      !Number.isInteger(value) ||
      value > max ||
      value < -MAX_ERRNO
    ) {
      this.bug(what, new Error(`returned ${String(value)}, not a result or a negative errno`));
      return -Errno.EIO;
    }
    return value;
  }

  private bug(what: string, err: unknown): void {
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.kernel.events.log('bug', `${what}: ${text}`);
    process.stderr.write(
      `iommufd-emu: emulator bug in ${what}; the call fails with EIO\n${text}\n`,
    );
  }

  private trace(creds: WireCreds, call: string, detail: string, ret: number): void {
    if (!this.kernel.events.active) return;
    this.kernel.events.publish({
      kind: 'syscall',
      pid: creds.pid,
      tid: creds.tid,
      call,
      detail,
      ret,
    });
  }

  /** The live object a request names, or undefined after replying STALE. */
  private live(conn: Connection, req: Request): OpenObject | undefined {
    const object = this.objects.get(req.obj);
    if (object === undefined) this.reply(conn, req, -Errno.EBADF, { flags: ReplyFlag.STALE });
    return object;
  }

  // -- operations --------------------------------------------------------------------------------

  private hello(conn: Connection, req: Request): void {
    if (req.a0 !== BigInt(PROTOCOL_VERSION)) {
      this.reply(conn, req, -EPROTO, { v0: BigInt(PROTOCOL_VERSION) });
      return;
    }
    const key = memoryKey(req.creds);
    let entry = this.memories.get(key);
    if (entry === undefined) {
      entry = { memory: this.openMemory(req.creds), transports: 0 };
      this.memories.set(key, entry);
    }
    entry.transports++;
    conn.kind = 'transport';
    conn.thread = { pid: req.creds.pid, tid: req.creds.tid, memoryKey: key };
    this.reply(conn, req, 0, {
      v0: BigInt(PROTOCOL_VERSION),
      payload: encodeCStrings([this.testbed.root, ...this.kernel.emulatedPrefixes()]),
    });
  }

  private open(conn: Connection, req: Request): void {
    const path = decodeCString(req.payload);
    if (path === undefined) {
      this.protocolError(conn, 'OPEN without a path');
      return;
    }
    conn.kind = 'object';
    const flags = Number(req.a0 & 0xffffffffn);
    const resolved = this.resolvePath(path, true);
    const { memory, done } = this.memoryFor(req.creds);
    const task = this.task(req.creds, memory);
    const node = typeof resolved === 'number' ? resolved : this.statPath(task, resolved);
    let ret: number;
    let extra: ReplyExtra = {};
    let snapshot: Uint8Array | undefined;
    if (typeof resolved === 'number') ret = resolved;
    else if (typeof node !== 'number' && (flags & (O_CREAT | O_EXCL)) === (O_CREAT | O_EXCL)) {
      ret = -Errno.EEXIST;
    } else if (typeof node !== 'number' && (node.mode & S_IFMT) === S_IFDIR) {
      // Directories are the testbed's: the shim opens them there (readdir, fchdir, openat).
      ret = -Errno.EISDIR;
    } else if (typeof node !== 'number' && (flags & O_DIRECTORY) !== 0) {
      ret = -Errno.ENOTDIR;
    } else {
      const opened = this.guarded(`open ${path}`, req.creds, () =>
        this.kernel.open(task, resolved, flags),
      );
      if (opened instanceof File) {
        const object: OpenObject = {
          id: this.nextObjectId++,
          file: opened,
          path: resolved,
          mode: typeof node === 'number' ? S_IFCHR | 0o600 : node.mode,
          ino: req.a1,
          pos: 0n,
          released: false,
          creds: req.creds,
        };
        this.objects.set(object.id, object);
        this.byIno.set(object.ino, object);
        conn.object = object;
        ret = object.id;
        extra = { v0: BigInt(object.mode), v1: encodeRdev(opened.rdev) };
        snapshot = this.snapshot(object, flags, task);
      } else {
        ret = this.result(`open ${path}`, opened, -1);
      }
    }
    done();
    // A directory is opened in the testbed by the shim (EISDIR here): not a call on a file.
    if (this.kernel.events.active && ret !== -Errno.EISDIR) {
      const fd = req.obj;
      const shown = ret > 0 && fd !== FD_UNKNOWN ? fd : ret;
      this.trace(req.creds, 'open', `"${path}", ${openFlags(flags)}`, shown);
    }
    this.reply(conn, req, ret, extra);
    if (snapshot !== undefined) {
      // After the reply: what a read that bypasses the shim finds, then end of file.
      conn.socket.write(snapshot);
      conn.socket.end();
    }
  }

  /**
   * The contents of a regular file (sysfs attribute, debugfs knob, fail-nth) opened for reading,
   * as of the open: the server sends them down the object connection and half-closes it, so that
   * glibc's stdio reading the fd with its internal read() (`sed < /sys/...`, fgets(stdin)),
   * which the shim cannot see, gets them and then EOF, as from the file. The shim's own reads
   * never look there.
   */
  private snapshot(object: OpenObject, flags: number, task: Task): Uint8Array | undefined {
    const { file } = object;
    const { fops } = file;
    const read = fops.read;
    if ((object.mode & S_IFMT) !== S_IFREG || (flags & 3) === O_WRONLY || read === undefined) {
      return undefined;
    }
    const data = this.guarded(`read on ${object.path}`, object.creds, () =>
      read.call(fops, file, task, RW_MAX, 0n),
    );
    return data instanceof Uint8Array ? data : undefined;
  }

  private lookup(conn: Connection, req: Request): void {
    const object = this.byIno.get(req.a0);
    if (object === undefined) {
      this.reply(conn, req, -Errno.ENOENT);
      return;
    }
    this.reply(conn, req, object.id, {
      v0: BigInt(object.mode),
      v1: encodeRdev(object.file.rdev),
    });
  }

  /**
   * The process closed an fd of object `obj`. If that was the last copy, its EOF is already
   * readable here: let the event loop take one more poll phase (which reads it and releases)
   * before answering, so release is synchronous with close() as in the kernel.
   */
  private closeBarrier(conn: Connection, req: Request): void {
    conn.deferred = true;
    setImmediate(() => {
      setImmediate(() => {
        conn.deferred = false;
        this.reply(conn, req, 0);
        this.pump(conn);
      });
    });
  }

  private ioctl(conn: Connection, req: Request): void {
    const object = this.live(conn, req);
    if (object === undefined) return;
    const windowed = (req.flags & ReqFlag.WINDOW) !== 0;
    if (windowed && (req.payload.byteLength < WINDOW_MIN || req.payload.byteLength > WINDOW_MAX)) {
      this.protocolError(conn, `ioctl window of ${req.payload.byteLength} bytes`);
      return;
    }
    const { memory, done } = this.memoryFor(
      req.creds,
      windowed
        ? {
            start: req.a1,
            bytes: req.payload,
            writable: (req.flags & ReqFlag.WINDOW_RO) === 0,
          }
        : undefined,
    );
    const task = this.task(req.creds, memory);
    const cmd = Number(req.a0 & 0xffffffffn);
    const { file } = object;
    const what = `ioctl ${hex(cmd)} on ${object.path}`;
    const tracing = this.kernel.events.active;
    const input = tracing ? ioctlStruct(file, cmd, req.a1, memory) : undefined;
    const value = this.guarded(what, req.creds, () =>
      file.fops.ioctl === undefined ? -Errno.ENOTTY : file.fops.ioctl(file, task, cmd, req.a1),
    );
    const ret = this.result(what, value, 0x7fffffff);
    if (tracing) {
      const shown = ret >= 0 ? (ioctlStruct(file, cmd, req.a1, memory) ?? input) : input;
      const label = fdLabel(requestFd(req.a0), object.path);
      this.trace(req.creds, 'ioctl', `${label}, ${describeIoctl(file, cmd, req.a1, shown)}`, ret);
    }
    done();
    this.reply(conn, req, ret, {
      payload: windowed ? encodeSegments(memory.written()) : undefined,
    });
  }

  private position(object: OpenObject, req: Request): bigint | undefined {
    if ((req.flags & ReqFlag.POSITIONAL) === 0) return object.pos;
    const pos = BigInt.asIntN(64, req.a1);
    return pos < 0n ? undefined : pos;
  }

  private read(conn: Connection, req: Request): void {
    const object = this.live(conn, req);
    if (object === undefined) return;
    const requested = req.a0 & 0xffffffffn;
    const count = Number(requested < BigInt(RW_MAX) ? requested : BigInt(RW_MAX));
    const pos = this.position(object, req);
    const { file } = object;
    const what = `read on ${object.path}`;
    let ret: number;
    let payload: Uint8Array | undefined;
    const { fops } = file;
    const read = fops.read;
    if (pos === undefined) ret = -Errno.EINVAL;
    else if (read === undefined) ret = -Errno.EINVAL;
    else {
      const { memory, done } = this.memoryFor(req.creds);
      const task = this.task(req.creds, memory);
      const data = this.guarded(what, req.creds, () => read.call(fops, file, task, count, pos));
      done();
      if (data instanceof Uint8Array) {
        if (data.byteLength > count) {
          this.bug(what, new Error(`returned ${data.byteLength} bytes for a ${count}-byte read`));
          ret = -Errno.EIO;
        } else {
          ret = data.byteLength;
          payload = data;
          if ((req.flags & ReqFlag.POSITIONAL) === 0) object.pos += BigInt(ret);
        }
      } else {
        ret = this.result(what, data, -1);
      }
    }
    if (this.kernel.events.active) {
      const positional = (req.flags & ReqFlag.POSITIONAL) !== 0;
      const label = fdLabel(requestFd(req.a0), object.path);
      const detail = describeIo(label, file, count, positional ? pos : undefined, payload, ret);
      this.trace(req.creds, positional ? 'pread' : 'read', detail, ret);
    }
    this.reply(conn, req, ret, { payload });
  }

  private write(conn: Connection, req: Request): void {
    const object = this.live(conn, req);
    if (object === undefined) return;
    const data = req.payload;
    const pos = this.position(object, req);
    const { file } = object;
    const what = `write on ${object.path}`;
    let ret: number;
    const { fops } = file;
    const write = fops.write;
    if (pos === undefined) ret = -Errno.EINVAL;
    else if (write === undefined) ret = -Errno.EINVAL;
    else {
      const { memory, done } = this.memoryFor(req.creds);
      const task = this.task(req.creds, memory);
      const n = this.guarded(what, req.creds, () => write.call(fops, file, task, data, pos));
      done();
      ret = this.result(what, n, data.byteLength);
      if (ret > 0 && (req.flags & ReqFlag.POSITIONAL) === 0) object.pos += BigInt(ret);
    }
    if (this.kernel.events.active) {
      const positional = (req.flags & ReqFlag.POSITIONAL) !== 0;
      const label = fdLabel(requestFd(req.a0), object.path);
      const detail = describeIo(
        label,
        file,
        data.byteLength,
        positional ? pos : undefined,
        data,
        ret,
      );
      this.trace(req.creds, positional ? 'pwrite' : 'write', detail, ret);
    }
    this.reply(conn, req, ret);
  }

  private mmap(conn: Connection, req: Request): void {
    const object = this.live(conn, req);
    if (object === undefined) return;
    const how = decodeMmapRequest(req.payload);
    if (how === undefined) {
      this.protocolError(conn, 'MMAP without prot/flags');
      return;
    }
    const length = req.a0;
    const offset = req.a1;
    const { file } = object;
    const what = `mmap on ${object.path}`;
    let ret: number;
    let extra: ReplyExtra = {};
    const { fops } = file;
    const mmap = fops.mmap;
    if (mmap === undefined) ret = -Errno.ENODEV;
    else {
      const { memory, done } = this.memoryFor(req.creds);
      const task = this.task(req.creds, memory);
      const backing = this.guarded(what, req.creds, () =>
        mmap.call(fops, file, task, length, offset / PAGE_SIZE),
      );
      done();
      if (typeof backing === 'object' && backing.kind === 'trapped') {
        // The shim traps every access and sends it back as READ/WRITE at regionOffset + offset.
        ret = 0;
        extra = { v0: backing.regionOffset, v1: BigInt(MmapKind.TRAPPED) };
      } else if (typeof backing === 'object') {
        if (backing.fileOffset < 0n || backing.fileOffset % PAGE_SIZE !== 0n) {
          this.bug(what, new Error(`backing offset ${backing.fileOffset} is not page aligned`));
          ret = -Errno.EIO;
        } else {
          ret = 0;
          extra = {
            v0: backing.fileOffset,
            v1: BigInt(MmapKind.FILE),
            payload: encodeCStrings([backing.path]),
          };
        }
      } else {
        ret = this.result(what, backing, -1);
      }
    }
    this.trace(
      req.creds,
      'mmap',
      `${object.path}, ${hex(length)}, prot ${hex(how.prot)}, flags ${hex(how.flags)}, ${hex(offset)}`,
      ret,
    );
    this.reply(conn, req, ret, extra);
  }

  private stat(conn: Connection, req: Request): void {
    const path = decodeCString(req.payload);
    if (path === undefined) {
      this.protocolError(conn, 'STAT without a path');
      return;
    }
    const resolved = this.resolvePath(path, (req.flags & ReqFlag.NOFOLLOW) === 0);
    let node: PathStat | number;
    if (typeof resolved === 'number') node = resolved;
    else {
      const { memory, done } = this.memoryFor(req.creds);
      node = this.statPath(this.task(req.creds, memory), resolved);
      done();
    }
    if (typeof node === 'number') this.reply(conn, req, node);
    else this.reply(conn, req, 0, { v0: BigInt(node.mode), v1: node.rdev });
  }

  /**
   * namei() over the emulated tree: follows sysfs symlinks in every component (and in the last
   * one when followLast). The path, or -ELOOP.
   */
  private resolvePath(path: string, followLast: boolean): string | number {
    let parts = path.split('/').filter((p) => p !== '' && p !== '.');
    let done: string[] = [];
    let links = 0;
    while (parts.length > 0) {
      const part = parts.shift()!;
      if (part === '..') {
        done.pop();
        continue;
      }
      const here = `/${[...done, part].join('/')}`;
      const entry = this.kernel.sysfs.lookup(here);
      if (entry?.kind === 'link' && (parts.length > 0 || followLast)) {
        if (++links > MAX_SYMLINKS) return -ELOOP;
        const target = entry.target.split('/').filter((p) => p !== '' && p !== '.');
        if (entry.target.startsWith('/')) done = [];
        parts = [...target, ...parts];
        continue;
      }
      done.push(part);
    }
    return `/${done.join('/')}`;
  }

  /** stat() of a resolved emulated path: device node, sysfs file or link, or implied directory. */
  private statPath(task: Task, path: string): PathStat | number {
    const node = this.kernel.stat(path);
    if (typeof node !== 'number') return { mode: node.mode, rdev: encodeRdev(node.rdev) };
    const entry = this.kernel.sysfs.lookup(path);
    if (entry?.kind === 'attr') return { mode: S_IFREG | entry.mode, rdev: 0n };
    if (entry?.kind === 'link') return { mode: S_IFLNK | 0o777, rdev: 0n };
    if (this.isDirectory(path)) return { mode: S_IFDIR | 0o755, rdev: 0n };
    // Files the kernel makes up on lookup (fail-nth, debugfs knobs): openable means present.
    const probe = runSyscall(this.kernel.events, `stat ${path}`, undefined, () =>
      this.kernel.open(task, path, O_RDONLY),
    );
    if (probe instanceof File) {
      probe.put();
      return { mode: S_IFREG | 0o644, rdev: 0n };
    }
    return -Errno.ENOENT;
  }

  /** The directories that hold emulated files (/dev/vfio, /sys/bus/pci/devices...). */
  private isDirectory(path: string): boolean {
    return this.testbed.isDirectory(path);
  }

  /**
   * Bytes the program wrote straight to an object connection: glibc's stdio writes with its
   * internal write(), which the shim cannot see (bash's `echo 1 > /sys/...` flushes stdout that
   * way). They are written to the file at its position, with the opener's credentials; the
   * writer never learns of an error, so a failure is logged.
   */
  private rawWrite(conn: Connection, chunk: Uint8Array): void {
    const object = conn.object;
    if (object === undefined || object.released || chunk.byteLength === 0) return;
    const { file } = object;
    const { fops } = file;
    const write = fops.write;
    const what = `write on ${object.path} (bypassing the shim)`;
    let ret: number;
    if (write === undefined) ret = -Errno.EINVAL;
    else {
      const { pid, tid } = object.creds;
      const task: Task = {
        creds: this.clientCreds.of(object.creds),
        memory: NO_MEMORY,
        fds: this.resolver(pid, tid),
      };
      const n = this.guarded(what, object.creds, () =>
        write.call(fops, file, task, chunk, object.pos),
      );
      ret = this.result(what, n, chunk.byteLength);
      if (ret > 0) object.pos += BigInt(ret);
    }
    if (ret < 0) {
      this.kernel.events.log(
        'warn',
        `a write to ${object.path} that bypassed the shim (stdio) failed: ${errnoName(ret)}`,
      );
    }
    if (this.kernel.events.active) {
      const detail = describeIo(
        fdLabel(FD_UNKNOWN, object.path),
        file,
        chunk.byteLength,
        undefined,
        chunk,
        ret,
      );
      this.trace(object.creds, 'write', detail, ret);
    }
  }

  /** The shim is about to use the testbed for a call on a path: bring it up to date. */
  private sync(conn: Connection, req: Request): void {
    this.testbed.sync();
    const call = SyncCall[Number(req.a0 & 0xffn)];
    const path = decodeCString(req.payload);
    if (call !== undefined && path !== undefined) this.trace(req.creds, call, `"${path}"`, 0);
    this.reply(conn, req, 0);
  }

  /** lseek() of an object's file position: SEEK_SET and SEEK_CUR (SEEK_END: EINVAL). */
  private seek(conn: Connection, req: Request): void {
    const object = this.live(conn, req);
    if (object === undefined) return;
    const offset = BigInt.asIntN(64, req.a0);
    let pos: bigint;
    if (req.a1 === BigInt(Whence.SET)) pos = offset;
    else if (req.a1 === BigInt(Whence.CUR)) pos = object.pos + offset;
    else pos = -1n;
    if (pos < 0n || pos > 0x7fffffffffffffffn) {
      this.reply(conn, req, -Errno.EINVAL);
      return;
    }
    object.pos = pos;
    this.reply(conn, req, 0, { v0: pos });
  }

  private poll(conn: Connection, req: Request): void {
    const entries = decodePollEntries(req.payload);
    if (entries === undefined) {
      this.protocolError(conn, 'POLL with a partial entry');
      return;
    }
    const { memory, done } = this.memoryFor(req.creds);
    const task = this.task(req.creds, memory);
    const revents = entries.map((entry) => {
      const object = this.objects.get(entry.obj);
      if (object === undefined) return POLLNVAL;
      const { file } = object;
      const fops = file.fops as MaybePollable;
      if (fops.poll === undefined) return DEFAULT_POLLMASK;
      const poll = fops.poll;
      const mask = this.guarded(`poll on ${object.path}`, req.creds, () =>
        poll.call(fops, file, task),
      );
      return Number.isInteger(mask) && mask >= 0 ? mask : POLLERR;
    });
    done();
    this.reply(conn, req, 0, { payload: encodeU32s(revents) });
  }
}

interface PathStat {
  readonly mode: number;
  /** On the wire: major << 32 | minor. */
  readonly rdev: bigint;
}

interface FdAddon {
  getfd(pid: number, fd: number): number;
}

let addon: FdAddon | null | undefined;
/** Where the CLI built the addon (an installed package builds it in a per-user cache). */
let addonFile: string | undefined;

/** Load the fd addon from file rather than from native/build (call before serving). */
export function useFdAddon(file: string): void {
  addonFile = file;
  addon = undefined;
}

/** native/build/iommufd-emu-fd.node, looked for upward from this module; undefined if not built. */
function fdAddon(): FdAddon | undefined {
  if (addon !== undefined) return addon ?? undefined;
  addon = null;
  const require = createRequire(import.meta.url);
  if (addonFile !== undefined) {
    addon = require(addonFile) as FdAddon;
    return addon;
  }
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'native', 'build', 'iommufd-emu-fd.node');
    if (fs.existsSync(candidate)) {
      addon = require(candidate) as FdAddon;
      return addon;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

interface ReplyExtra {
  readonly flags?: number;
  readonly v0?: bigint;
  readonly v1?: bigint;
  readonly payload?: Uint8Array | undefined;
}
