/**
 * The server as a trust boundary: a client is who the kernel says it is (SO_PEERCRED), not who
 * it claims to be; it reaches only the objects it holds an fd on and files it opened itself.
 * Clients are other processes here (_test-peer.ts), since the peer's pid is what is checked.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Kernel } from '../boot/kernel.ts';
import { CAP_FULL_SET } from '../host/credentials.ts';
import { Errno } from '../uapi/errno.ts';
import { hello, Peer, type PeerConnection } from './_test-peer.ts';
import { checkClaim, holdsSocket, memlockLimitOf, type PeerIdentity } from './client-identity.ts';
import { fdAddon } from './fd-addon.ts';
import { encodeRequest, HEADER_BYTES, Op, ReplyFlag, ReqFlag, type WireCreds } from './protocol.ts';
import { type EmuServer, startServer } from './server.ts';

const IOMMU_DESTROY = 0x3b80n;
const NOBODY = 65534;

function credsOf(pid: number, extra: Partial<WireCreds> = {}): WireCreds {
  return {
    pid,
    tid: pid,
    uid: 0,
    euid: 0,
    gid: 0,
    egid: 0,
    capEff: 0n,
    memlock: 1n << 30n,
    mmCookie: 1n,
    ...extra,
  };
}

/** The status line values of our own main thread, as checkClaim reads them. */
function ownStatus(): { uid: number; gid: number; capEff: bigint } {
  const text = fs.readFileSync('/proc/self/status', 'utf8');
  return {
    uid: Number(/^Uid:\s+(\d+)/m.exec(text)![1]),
    gid: Number(/^Gid:\s+(\d+)/m.exec(text)![1]),
    capEff: BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(text)![1]}`),
  };
}

describe('checkClaim', () => {
  const me = ownStatus();
  const peer: PeerIdentity = { pid: process.pid, uid: me.uid, gid: me.gid };
  const plain = credsOf(process.pid, { uid: me.uid, euid: me.uid, gid: me.gid, egid: me.gid });

  it("refuses another process's pid and a tid that is not one of the peer's threads", () => {
    const other = process.pid === 1 ? 2 : 1;
    assert.match(String(checkClaim(peer, { ...plain, pid: other }, undefined)), /claims pid/);
    assert.match(
      String(checkClaim(peer, { ...plain, tid: 4_194_305 }, undefined)),
      /not a thread of/,
    );
  });

  it('takes a plain claim as it is, without reading /proc', () => {
    const r = checkClaim(peer, plain, undefined);
    assert.ok(typeof r === 'object');
    assert.equal(r.creds, plain);
  });

  it('never grants more than the thread holds: ids are the real ones, capabilities masked', () => {
    const forged = { ...plain, uid: 4242, euid: 4242, capEff: CAP_FULL_SET | (1n << 63n) };
    const r = checkClaim(peer, forged, undefined);
    assert.ok(typeof r === 'object');
    assert.equal(r.creds.uid, me.uid);
    assert.equal(r.creds.euid, me.uid);
    assert.equal(r.creds.capEff, forged.capEff & me.capEff);
    assert.equal(r.creds.capEff & (1n << 63n), 0n);
  });

  it('a claim can lower the capabilities it has', () => {
    const r = checkClaim(peer, { ...plain, capEff: 1n << 17n }, undefined);
    assert.ok(typeof r === 'object');
    assert.equal(r.creds.capEff, (1n << 17n) & me.capEff);
  });

  it('reuses the last result for an unchanged claim and keeps its memlock and mm fresh', () => {
    const forged = { ...plain, capEff: CAP_FULL_SET };
    const first = checkClaim(peer, forged, undefined);
    assert.ok(typeof first === 'object');
    const again = checkClaim(peer, { ...forged, memlock: 5n, mmCookie: 9n }, first);
    assert.ok(typeof again === 'object');
    assert.equal(again.creds.capEff, first.creds.capEff);
    assert.equal(again.creds.memlock, 5n);
    assert.equal(again.creds.mmCookie, 9n);
    // A changed claim is checked again.
    assert.match(String(checkClaim(peer, { ...forged, pid: 1 }, first)), /claims pid/);
  });

  it('reads the real memlock limit of a process', () => {
    const limit = memlockLimitOf(process.pid);
    assert.ok(limit !== undefined && limit > 0n);
    assert.equal(memlockLimitOf(4_194_305), undefined);
  });
});

describe('holdsSocket', () => {
  it('finds a socket only in the process that holds an fd on it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-held-'));
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(dir, 's'), resolve));
    const client = net.connect(path.join(dir, 's'));
    await new Promise((resolve) => client.once('connect', resolve));
    const fd = (client as unknown as { _handle: { fd: number } })._handle.fd;
    const ino = fs.fstatSync(fd, { bigint: true }).ino;
    try {
      assert.equal(holdsSocket(process.pid, ino), true);
      assert.equal(holdsSocket(process.pid, ino + 1_000_000n), false);
      assert.equal(holdsSocket(4_194_305, ino), false);
      const peer = await Peer.start();
      try {
        assert.equal(holdsSocket(peer.pid, ino), false);
      } finally {
        await peer.kill();
      }
    } finally {
      client.destroy();
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// -- end to end: peers in other processes ---------------------------------------------------

/** The n-th reply on a connection (from 0), once it has arrived. */
async function reply(conn: PeerConnection, n = 0): Promise<{ ret: number; flags: number }> {
  let at = 0;
  for (let i = 0; ; i++) {
    await conn.bytes(at + HEADER_BYTES);
    if (i === n) break;
    at += conn.received.readUInt32LE(at);
  }
  const r = conn.received.subarray(at);
  return { ret: r.readInt32LE(12), flags: r.readUInt16LE(6) };
}

function openRequest(creds: WireCreds, ino: bigint, file: string): Uint8Array {
  return encodeRequest({
    op: Op.OPEN,
    flags: 0,
    seq: 1,
    obj: 0xffffffff,
    a0: 2n, // O_RDWR
    a1: ino,
    creds,
    payload: new TextEncoder().encode(`${file}\0`),
  });
}

/** IOMMU_DESTROY of an id no object has: ENOENT on a context the caller holds. */
function destroyRequest(creds: WireCreds, obj: number): Uint8Array {
  const window = new Uint8Array(8);
  new DataView(window.buffer).setUint32(0, 8, true);
  new DataView(window.buffer).setUint32(4, 999, true);
  return encodeRequest({
    op: Op.IOCTL,
    flags: ReqFlag.WINDOW,
    seq: 2,
    obj,
    a0: IOMMU_DESTROY,
    a1: 0x10000n,
    creds,
    payload: window,
  });
}

/** A peer's transport (after HELLO) and an object connection on `file`. */
async function session(
  server: EmuServer,
  peer: Peer,
  file: string,
): Promise<{ transport: PeerConnection; object: PeerConnection; id: number }> {
  const creds = credsOf(peer.pid);
  const transport = await peer.connect(server.socketPath);
  transport.send(hello(creds));
  assert.equal((await reply(transport)).ret, 0, 'HELLO');
  const object = await peer.connect(server.socketPath);
  object.send(openRequest(creds, object.ino, file));
  const id = (await reply(object)).ret;
  assert.ok(id > 0, `open ${file}: ${id}`);
  return { transport, object, id };
}

describe('the server refuses what a client cannot prove', { skip: fdAddon() === undefined }, () => {
  let kernel: Kernel;
  let server: EmuServer;
  let dir: string;
  const warnings: string[] = [];

  before(async () => {
    kernel = new Kernel({ enableUnsafeNoiommuMode: true });
    kernel.events.subscribe((e) => {
      if (e.kind === 'log' && e.level === 'warn') warnings.push(e.message);
    });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-identity-'));
    fs.chmodSync(dir, 0o755);
    const umask = process.umask(0);
    try {
      server = await startServer(kernel, path.join(dir, 'emu.sock'), {
        testbedDir: path.join(dir, 'root'),
      });
    } finally {
      process.umask(umask);
    }
  });

  after(async () => {
    await server.close();
    kernel.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('binds its socket 0600 whatever the umask, so another user cannot connect', async () => {
    assert.equal(fs.statSync(server.socketPath).mode & 0o777, 0o600);
    if (process.getuid?.() !== 0) return; // only root can start a peer as another user
    const other = await Peer.start({ uid: NOBODY });
    try {
      const conn = await other.connect(server.socketPath);
      assert.equal(conn.error, 'EACCES');
    } finally {
      await other.kill();
    }
  });

  it("drops a connection that claims another process's pid", async () => {
    const peer = await Peer.start();
    try {
      const conn = await peer.connect(server.socketPath);
      conn.send(hello(credsOf(process.pid)));
      await conn.whenClosed();
      assert.equal(conn.received.length, 0, 'a reply to a forged HELLO');
      assert.ok(
        warnings.some((w) => w.includes(`claims pid ${process.pid} but is pid ${peer.pid}`)),
      );
    } finally {
      await peer.kill();
    }
  });

  it('takes capabilities from the thread, not the claim', async (t) => {
    if (spawnSync('setpriv', ['--version']).status !== 0) {
      t.skip('needs setpriv (util-linux)');
      return;
    }
    // Root without a single capability (an empty bounding set at exec): it owns the nodes, so
    // only the capability check can refuse it.
    const peer = await Peer.start({ wrap: ['setpriv', '--bounding-set=-all'] });
    try {
      const status = fs.readFileSync(`/proc/${peer.pid}/status`, 'utf8');
      assert.match(status, /^CapEff:\s+0+$/m, 'the peer holds no capability');
      const forged = credsOf(peer.pid, { capEff: CAP_FULL_SET });
      const conn = await peer.connect(server.socketPath);
      // Opening a no-IOMMU node needs CAP_SYS_RAWIO: claimed, not held.
      conn.send(openRequest(forged, conn.ino, '/dev/vfio/devices/noiommu-vfio2'));
      assert.equal((await reply(conn)).ret, -Errno.EPERM);
    } finally {
      await peer.kill();
    }
  });

  it('refuses an object id the caller holds no fd on, and its file, and its inode', async () => {
    const owner = await Peer.start();
    const intruder = await Peer.start();
    try {
      const a = await session(server, owner, '/dev/iommu');
      a.transport.send(destroyRequest(credsOf(owner.pid), a.id));
      assert.equal((await reply(a.transport, 1)).ret, -Errno.ENOENT, "the owner's own call");

      const b = await session(server, intruder, '/dev/iommu');
      // A call naming the owner's object: the intruder holds no fd on it.
      b.transport.send(destroyRequest(credsOf(intruder.pid), a.id));
      const refused = await reply(b.transport, 1);
      assert.equal(refused.ret, -Errno.EBADF);
      assert.equal(refused.flags & ReplyFlag.STALE, ReplyFlag.STALE);
      // LOOKUP of the owner's socket inode names nothing for the intruder.
      b.transport.send(
        encodeRequest({
          op: Op.LOOKUP,
          flags: 0,
          seq: 3,
          obj: 0,
          a0: a.object.ino,
          a1: 0n,
          creds: credsOf(intruder.pid),
        }),
      );
      assert.equal((await reply(b.transport, 2)).ret, -Errno.ENOENT);
      // OPEN claiming the owner's socket inode: the connection is dropped.
      const hijack = await intruder.connect(server.socketPath);
      hijack.send(openRequest(credsOf(intruder.pid), a.object.ino, '/dev/iommu'));
      await hijack.whenClosed();
      assert.equal(hijack.received.length, 0);
      // The owner's object is untouched.
      a.transport.send(destroyRequest(credsOf(owner.pid), a.id));
      assert.equal((await reply(a.transport, 2)).ret, -Errno.ENOENT);
    } finally {
      await owner.kill();
      await intruder.kill();
    }
    await server.whenIdle();
    assert.deepEqual(kernel.leaks(), []);
  });
});
