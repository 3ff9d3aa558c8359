/**
 * Nothing a client sends may take the server down: random and malformed frames from clients that
 * speak the protocol badly (or not at all), after which a well-behaved client is still served and
 * the emulator holds nothing for the hostile ones.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Kernel } from '../boot/kernel.ts';
import { CAP_FULL_SET } from '../host/credentials.ts';
import { hello, Peer, type PeerConnection } from './_test-peer.ts';
import { encodeRequest, HEADER_BYTES, Op, type WireCreds } from './protocol.ts';
import { startServer } from './server.ts';

const creds: WireCreds = {
  pid: process.pid,
  tid: process.pid,
  uid: 0,
  euid: 0,
  gid: 0,
  egid: 0,
  capEff: (1n << 41n) - 1n,
  memlock: 1n << 30n,
  mmCookie: 42n,
};

/** Connects, writes the chunks, and resolves with what came back once the server is done with us. */
function talk(socketPath: string, chunks: readonly Uint8Array[]): Promise<Buffer> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    const got: Buffer[] = [];
    socket.on('data', (d) => got.push(d));
    socket.on('error', () => {});
    socket.on('connect', () => {
      for (const c of chunks) socket.write(c);
      // Give the server a moment, then hang up (like a client that dies).
      setTimeout(() => socket.destroy(), 20);
    });
    socket.on('close', () => resolve(Buffer.concat(got)));
  });
}

const anyOp = fc.oneof(fc.constantFrom(...Object.values(Op)), fc.integer({ min: 0, max: 0xffff }));

const wellFramed = fc
  .record({
    op: anyOp,
    flags: fc.integer({ min: 0, max: 0xffff }),
    seq: fc.nat(),
    obj: fc.nat(),
    a0: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    a1: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    payload: fc.uint8Array({ maxLength: 64 }),
  })
  .map((r) => encodeRequest({ ...r, creds }));

/** Frames whose length field lies, and plain noise. */
const malformed = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 80 }),
  wellFramed.chain((frame) =>
    fc.integer({ min: 0, max: 0xffffffff }).map((len) => {
      const bad = frame.slice();
      new DataView(bad.buffer).setUint32(0, len, true);
      return bad;
    }),
  ),
  wellFramed.map((frame) => frame.subarray(0, Math.max(1, HEADER_BYTES - 3))),
);

/**
 * A client process of its own (the server checks the pid a client claims against the kernel's
 * word), so that random pointers in random ioctls reach that process's memory, not ours.
 */
function ghostOf(peer: Peer): WireCreds {
  return { ...creds, pid: peer.pid, tid: peer.pid, mmCookie: 7n };
}

/** An object connection of `peer` that opened `path`; resolves with its object id. */
async function openObject(
  peer: Peer,
  socketPath: string,
  path: string,
): Promise<{ id: number; conn: PeerConnection }> {
  const conn = await peer.connect(socketPath);
  conn.send(
    encodeRequest({
      op: Op.OPEN,
      flags: 0,
      seq: 1,
      obj: 0,
      a0: 2n,
      a1: conn.ino,
      creds: ghostOf(peer),
      payload: new TextEncoder().encode(`${path}\0`),
    }),
  );
  const reply = await conn.bytes(HEADER_BYTES);
  return { id: reply.readInt32LE(12), conn };
}

/** talk() from another process. */
async function peerTalk(
  peer: Peer,
  socketPath: string,
  chunks: readonly Uint8Array[],
): Promise<void> {
  const conn = await peer.connect(socketPath);
  for (const c of chunks) conn.send(c);
  await new Promise((resolve) => setTimeout(resolve, 20));
  conn.close();
  await conn.whenClosed();
}

describe('a hostile client', () => {
  it('sending random ioctls with random windows to real objects is answered, never fatal', async () => {
    const kernel = new Kernel({ enableUnsafeNoiommuMode: true });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-fuzz-'));
    // Whoever runs the test, grant every capability, so that the no-IOMMU node opens.
    const server = await startServer(kernel, path.join(dir, 'emu.sock'), {
      testbedDir: path.join(dir, 'root'),
      grantedCaps: CAP_FULL_SET,
    });
    const peer = await Peer.start();
    const ghost = ghostOf(peer);
    const bugs: string[] = [];
    kernel.events.subscribe((e) => {
      if (e.kind === 'log' && e.level === 'bug') bugs.push(e.message);
    });
    try {
      const objects = await Promise.all(
        ['/dev/iommu', '/dev/vfio/devices/vfio0', '/dev/vfio/devices/noiommu-vfio2'].map((p) =>
          openObject(peer, server.socketPath, p),
        ),
      );
      for (const o of objects) assert.ok(o.id > 0, 'open failed');
      const cmd = fc.oneof(
        fc.integer({ min: 0x3b64, max: 0x3b78 }),
        fc.integer({ min: 0x3b80, max: 0x3ba0 }),
        fc.integer({ min: 0, max: 0xffffffff }),
      );
      const ioctl = fc
        .record({
          which: fc.integer({ min: 0, max: objects.length - 1 }),
          cmd,
          window: fc.uint8Array({ minLength: 4, maxLength: 128 }),
          size: fc.integer({ min: 0, max: 200 }),
        })
        .map(({ which, cmd, window, size }) => {
          // Often a plausible size field, so the handlers get past the framing checks.
          new DataView(window.buffer).setUint32(0, size, true);
          return encodeRequest({
            op: Op.IOCTL,
            flags: 0x1,
            seq: 2,
            obj: objects[which]!.id,
            a0: BigInt(cmd),
            a1: 0x10000n,
            creds: ghost,
            payload: window,
          });
        });
      const helloFrame = hello(ghost);
      await fc.assert(
        fc.asyncProperty(fc.array(ioctl, { minLength: 1, maxLength: 20 }), async (calls) => {
          await peerTalk(peer, server.socketPath, [helloFrame, ...calls]);
        }),
        { numRuns: 150 },
      );
      assert.deepEqual(bugs, [], 'an emulator exception (EIO) during random ioctls');
      for (const o of objects) o.conn.close();
      await server.whenIdle();
      assert.deepEqual(kernel.leaks(), []);
    } finally {
      await peer.kill();
      await server.close();
      kernel.shutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('cannot take the server down or leave anything behind', async () => {
    const kernel = new Kernel();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-fuzz-'));
    const server = await startServer(kernel, path.join(dir, 'emu.sock'), {
      testbedDir: path.join(dir, 'root'),
    });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.oneof(wellFramed, malformed), { minLength: 1, maxLength: 8 }),
          async (chunks) => {
            await talk(server.socketPath, chunks);
          },
        ),
        { numRuns: 150 },
      );
      await server.whenIdle();
      // A client that does everything right is still answered: HELLO gets a reply frame.
      const greeting = encodeRequest({
        op: Op.HELLO,
        flags: 0,
        seq: 1,
        obj: 0,
        a0: 0n,
        a1: 0n,
        creds,
      });
      const reply = await talk(server.socketPath, [greeting]);
      assert.ok(reply.length >= HEADER_BYTES, 'the server no longer answers HELLO');
      await server.whenIdle();
      assert.deepEqual(kernel.leaks(), []);
      assert.equal(kernel.iommufd.contexts.size, 0);
    } finally {
      await server.close();
      kernel.shutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
