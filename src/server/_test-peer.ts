/**
 * For tests of the server as a trust boundary: a client that is another process (its own pid,
 * and another uid when asked), whose connections the test drives byte by byte. The server takes
 * a client's identity from the kernel (SO_PEERCRED), so a client written in the test process
 * itself could only ever be the test process.
 *
 * The peer is a plain Node child (no loader, quick to start) that obeys messages over IPC:
 * connect, send, close; and reports each connection's inode, data and end.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { encodeRequest, HEADER_BYTES, Op, PROTOCOL_VERSION, type WireCreds } from './protocol.ts';

const CHILD = `
const fs = require('node:fs');
const net = require('node:net');
const uid = Number(process.env.PEER_UID);
if (uid >= 0) { process.setgid(uid); process.setuid(uid); }
const conns = new Map();
process.on('message', (m) => {
  if (m.t === 'connect') {
    const s = net.connect(m.path);
    conns.set(m.id, s);
    s.on('connect', () => {
      const ino = fs.fstatSync(s._handle.fd, { bigint: true }).ino;
      process.send({ t: 'connected', id: m.id, ino: String(ino) });
    });
    s.on('data', (d) => process.send({ t: 'data', id: m.id, data: d.toString('base64') }));
    s.on('error', (e) => process.send({ t: 'error', id: m.id, code: e.code }));
    s.on('close', () => process.send({ t: 'closed', id: m.id }));
  } else if (m.t === 'send') {
    conns.get(m.id)?.write(Buffer.from(m.data, 'base64'));
  } else if (m.t === 'close') {
    conns.get(m.id)?.destroy();
  } else if (m.t === 'pause') {
    conns.get(m.id)?.pause();
  } else if (m.t === 'resume') {
    conns.get(m.id)?.resume();
  }
});
process.send({ t: 'ready' });
`;

interface Message {
  readonly t: string;
  readonly id?: number;
  readonly ino?: string;
  readonly data?: string;
  readonly code?: string;
}

/** One connection of a peer to the server. */
export class PeerConnection {
  readonly peer: Peer;
  readonly id: number;
  /** st_ino of the peer's end (what OPEN and RESERVE name). */
  ino = 0n;
  /** Everything the server sent so far. */
  received = Buffer.alloc(0);
  closed = false;
  /** The errno code of a failed connect (EACCES, ...). */
  error: string | undefined;
  private waiters: (() => void)[] = [];

  constructor(peer: Peer, id: number) {
    this.peer = peer;
    this.id = id;
  }

  send(bytes: Uint8Array): void {
    this.peer.post({ t: 'send', id: this.id, data: Buffer.from(bytes).toString('base64') });
  }

  close(): void {
    this.peer.post({ t: 'close', id: this.id });
  }

  /** Stops reading what the server sends (it piles up in the kernel, then in the server). */
  pause(): void {
    this.peer.post({ t: 'pause', id: this.id });
  }

  resume(): void {
    this.peer.post({ t: 'resume', id: this.id });
  }

  /** Resolves once `predicate` holds (checked at each message), or rejects after `ms`. */
  until(what: string, predicate: () => boolean, ms = 5000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`peer connection ${this.id}: timed out waiting for ${what}`));
      }, ms);
      const check = (): void => {
        if (predicate()) {
          clearTimeout(timer);
          resolve();
        } else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  /** The connection closed (by the server, or after a failed connect). */
  whenClosed(ms?: number): Promise<void> {
    return this.until('the connection to close', () => this.closed, ms);
  }

  /** Resolves with the first `n` bytes received. */
  async bytes(n: number, ms?: number): Promise<Buffer> {
    await this.until(`${n} bytes`, () => this.received.length >= n || this.closed, ms);
    if (this.received.length < n)
      throw new Error(`connection closed after ${this.received.length} bytes`);
    return this.received.subarray(0, n);
  }

  /** @internal */
  onMessage(m: Message): void {
    if (m.t === 'connected') this.ino = BigInt(m.ino!);
    else if (m.t === 'data')
      this.received = Buffer.concat([this.received, Buffer.from(m.data!, 'base64')]);
    else if (m.t === 'error') this.error = m.code;
    else if (m.t === 'closed') this.closed = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** A client process. */
export class Peer {
  readonly child: ChildProcess;
  private readonly conns = new Map<number, PeerConnection>();
  private nextId = 1;

  private constructor(child: ChildProcess) {
    this.child = child;
    child.on('message', (m: Message) => {
      if (m.id !== undefined) this.conns.get(m.id)?.onMessage(m);
    });
  }

  /** Starts a peer, as `uid` (and the same gid) when given; resolves once it listens. */
  static async start(options: { uid?: number; wrap?: readonly string[] } = {}): Promise<Peer> {
    const argv = [...(options.wrap ?? []), process.execPath, '-e', CHILD];
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, PEER_UID: String(options.uid ?? -1) },
    });
    const peer = new Peer(child);
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`peer exited with ${code}`)));
      child.once('message', () => resolve());
    });
    child.removeAllListeners('exit');
    return peer;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** @internal */
  post(m: Message & { path?: string }): void {
    this.child.send(m);
  }

  /** A new connection to the socket at `path`; resolves once connected (or failed). */
  async connect(path: string): Promise<PeerConnection> {
    const conn = new PeerConnection(this, this.nextId++);
    this.conns.set(conn.id, conn);
    this.post({ t: 'connect', id: conn.id, path });
    await conn.until('connect', () => conn.ino !== 0n || conn.error !== undefined || conn.closed);
    return conn;
  }

  kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill('SIGKILL');
    });
  }
}

/** What a peer claims to be: its own pid, the test process's ids, no capabilities. */
export function credsOf(pid: number): WireCreds {
  return {
    pid,
    tid: pid,
    uid: process.getuid?.() ?? 0,
    euid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    egid: process.getgid?.() ?? 0,
    capEff: 0n,
    memlock: 1n << 30n,
    mmCookie: 1n,
  };
}

/** A HELLO frame. */
export function hello(creds: WireCreds): Uint8Array {
  return encodeRequest({
    op: Op.HELLO,
    flags: 0,
    seq: 1,
    obj: 0,
    a0: BigInt(PROTOCOL_VERSION),
    a1: 0n,
    creds,
  });
}

/** A STAT of /dev/iommu: a request any client may make, answered without any object. */
export function statRequest(creds: WireCreds, seq: number): Uint8Array {
  return encodeRequest({
    op: Op.STAT,
    flags: 0,
    seq,
    obj: 0,
    a0: 0n,
    a1: 0n,
    creds,
    payload: new TextEncoder().encode('/dev/iommu\0'),
  });
}

/** A transport of `peer` that said HELLO and got its answer. */
export async function transport(
  server: { readonly socketPath: string },
  peer: Peer,
): Promise<PeerConnection> {
  const conn = await peer.connect(server.socketPath);
  conn.send(hello(credsOf(peer.pid)));
  await conn.bytes(HEADER_BYTES);
  return conn;
}

/** The number of whole replies received on a connection. */
export function replies(conn: PeerConnection): number {
  let n = 0;
  for (let at = 0; at + 4 <= conn.received.length; n++) {
    const len = conn.received.readUInt32LE(at);
    if (at + len > conn.received.length) break;
    at += len;
  }
  return n;
}
