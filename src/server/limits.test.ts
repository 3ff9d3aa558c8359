/**
 * What clients can make the server hold is bounded (limits.ts): connections, handshakes and
 * requests left half sent, requests sent faster than their replies are read. Each hostile
 * client is another process (_test-peer.ts); a bystander is served meanwhile.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Kernel } from '../boot/kernel.ts';
import {
  credsOf,
  hello,
  Peer,
  type PeerConnection,
  replies,
  statRequest,
  transport,
} from './_test-peer.ts';
import type { ServerLimits } from './limits.ts';
import { encodeRequest, HEADER_BYTES, Op } from './protocol.ts';
import { type EmuServer, startServer } from './server.ts';

/** A bystander's STAT is answered, and soon. */
async function bystanderServed(server: EmuServer): Promise<void> {
  const peer = await Peer.start();
  try {
    const conn = await transport(server, peer);
    const before = replies(conn);
    const t0 = Date.now();
    conn.send(statRequest(credsOf(peer.pid), 2));
    await conn.until('the STAT reply', () => replies(conn) > before, 3000);
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    await peer.kill();
  }
}

async function withServer(
  limits: Partial<ServerLimits>,
  fn: (server: EmuServer, kernel: Kernel) => Promise<void>,
): Promise<void> {
  const kernel = new Kernel();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-limits-'));
  const server = await startServer(kernel, path.join(dir, 'emu.sock'), {
    testbedDir: path.join(dir, 'root'),
    limits,
  });
  try {
    await fn(server, kernel);
    await server.whenIdle();
    assert.equal(server.bufferedBytes, 0);
    assert.deepEqual(kernel.leaks(), []);
  } finally {
    await server.close();
    kernel.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('server limits', () => {
  it('refuses connections over the cap, and takes new ones once some close', async () => {
    await withServer({ maxConnections: 6 }, async (server) => {
      const peer = await Peer.start();
      try {
        const conns: PeerConnection[] = [];
        for (let i = 0; i < 10; i++)
          conns.push(await transport(server, peer).catch(() => peer.connect(server.socketPath)));
        await sleep(100);
        const open = conns.filter((c) => !c.closed);
        assert.equal(open.length, 6);
        assert.ok(server.connectionCount <= 6);
        for (const c of open.slice(0, 2)) c.close();
        await Promise.all(open.slice(0, 2).map((c) => c.whenClosed()));
        await sleep(50);
        const again = await transport(server, peer);
        assert.equal(again.closed, false);
        assert.ok(replies(again) >= 1, 'a new connection is served again');
      } finally {
        await peer.kill();
      }
    });
  });

  it('drops a connection that sends nothing, or half a request, in time', async () => {
    await withServer({ handshakeMs: 300, frameMs: 300 }, async (server) => {
      const peer = await Peer.start();
      try {
        const silent = await peer.connect(server.socketPath);
        const talker = await transport(server, peer);
        const frame = statRequest(credsOf(peer.pid), 2);
        talker.send(frame.subarray(0, frame.length - 3));
        await silent.whenClosed(3000);
        await talker.whenClosed(3000);
        // A transport that is merely idle stays.
        const idle = await transport(server, peer);
        await sleep(600);
        assert.equal(idle.closed, false);
        idle.close();
      } finally {
        await peer.kill();
      }
    });
  });

  it('holds at most its budget of half-sent requests, and a bystander is served', async () => {
    const budget = 512 << 10;
    await withServer({ bufferBudget: budget, frameMs: 1500 }, async (server) => {
      const peer = await Peer.start();
      try {
        // Eight transports each send all but the last byte of a 1 MiB request.
        const big = encodeRequest({
          op: Op.WRITE,
          flags: 0,
          seq: 2,
          obj: 1,
          a0: 0n,
          a1: 0n,
          creds: credsOf(peer.pid),
          payload: new Uint8Array(1 << 20),
        });
        const flood: PeerConnection[] = [];
        for (let i = 0; i < 8; i++) {
          const conn = await transport(server, peer);
          conn.send(big.subarray(0, big.length - 1));
          flood.push(conn);
        }
        let most = 0;
        for (let i = 0; i < 10; i++) {
          most = Math.max(most, server.bufferedBytes);
          await sleep(50);
        }
        // The budget, plus at most one socket read (64 KiB) per connection that was paused.
        assert.ok(most <= budget + 8 * (64 << 10), `held ${most} bytes`);
        await bystanderServed(server);
        await Promise.all(flood.map((c) => c.whenClosed(5000)));
      } finally {
        await peer.kill();
      }
    });
  });

  it('keeps one /proc/<pid>/mem per client process, however many HELLOs it sends', async () => {
    await withServer({}, async (server) => {
      const peer = await Peer.start();
      try {
        const memFds = (): number =>
          fs.readdirSync('/proc/self/fd').filter((fd) => {
            try {
              return fs.readlinkSync(`/proc/self/fd/${fd}`) === `/proc/${peer.pid}/mem`;
            } catch {
              return false;
            }
          }).length;
        const conns: PeerConnection[] = [];
        for (let i = 0; i < 20; i++) {
          const conn = await peer.connect(server.socketPath);
          // Each a new address space as far as the claim goes (the mm cookie).
          conn.send(hello({ ...credsOf(peer.pid), mmCookie: BigInt(i + 1) }));
          await conn.bytes(HEADER_BYTES);
          conns.push(conn);
        }
        assert.ok(memFds() <= 1, `${memFds()} views of the peer's memory open`);
        for (const c of conns) c.close();
        await Promise.all(conns.map((c) => c.whenClosed()));
      } finally {
        await peer.kill();
      }
    });
  });

  it('stops reading requests whose replies go unread, and loses none', async () => {
    const backlog = 16 << 10;
    await withServer({ replyBacklog: backlog }, async (server) => {
      const peer = await Peer.start();
      try {
        const conn = await transport(server, peer);
        conn.pause();
        await sleep(50);
        const count = 15_000;
        const creds = credsOf(peer.pid);
        const batch: Uint8Array[] = [];
        for (let i = 0; i < count; i++) batch.push(statRequest(creds, 10 + i));
        conn.send(Buffer.concat(batch));
        let most = 0;
        for (let i = 0; i < 20; i++) {
          most = Math.max(most, server.bufferedBytes);
          await sleep(50);
        }
        // The backlog, one read of requests (64 KiB) and a reply or two over it.
        assert.ok(most <= backlog + (96 << 10), `held ${most} bytes`);
        await bystanderServed(server);
        conn.resume();
        await conn.until('every reply', () => replies(conn) === count + 1, 20_000);
        conn.close();
      } finally {
        await peer.kill();
      }
    });
  });
});
