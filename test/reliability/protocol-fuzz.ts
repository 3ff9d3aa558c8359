/**
 * A bounded, seeded fuzzer of the server's wire protocol, for `npm test` and `npm run soak`. A run
 * is a list of plain steps a client process (another process, as the server requires) plays over
 * several connections at once: HELLOs, OPENs that make object connections, requests of every op
 * with arguments drawn from the values that matter (the objects it opened, small and huge
 * numbers, addresses nothing is mapped at), frames whose length lies, noise, half a frame and a
 * hang-up. Afterwards: no emulator bug, nothing left once the client's connections are gone, and
 * the server still answers a HELLO.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { Kernel } from '../../src/boot/kernel.ts';
import { checkInvariants } from '../../src/check/invariants.ts';
import { CAP_FULL_SET } from '../../src/host/credentials.ts';
import { credsOf, Peer, type PeerConnection } from '../../src/server/_test-peer.ts';
import {
  encodeRequest,
  HEADER_BYTES,
  Op,
  PROTOCOL_VERSION,
  type WireCreds,
} from '../../src/server/protocol.ts';
import { startServer } from '../../src/server/server.ts';

const PATHS = [
  '/dev/iommu',
  '/dev/vfio/devices/vfio0',
  '/dev/vfio/devices/noiommu-vfio2',
  '/dev/vfio/0',
  '/dev/vfio/vfio',
  '/sys/bus/pci/devices/0000:00:04.0/config',
  '/nonexistent',
];
const CONNS = 4;

/** Values for a0/a1: small, huge, ioctl numbers, and addresses no Node process maps. */
const arg = fc.oneof(
  fc.constantFrom(0n, 1n, 2n, 4096n, 0x3b80n, 0x3b81n, 0x3b84n, 0x3b8bn, 0x3b8cn, 0x3b75n),
  fc.bigInt({ min: 0x10000n, max: 0x200000n }),
  fc.bigInt({ min: 1n << 47n, max: (1n << 64n) - 1n }),
);

export type ProtoStep =
  | { readonly kind: 'hello'; readonly conn: number }
  | { readonly kind: 'open'; readonly path: number; readonly flags: number }
  | {
      readonly kind: 'frame';
      readonly conn: number;
      readonly op: number;
      readonly flags: number;
      /** An object this run opened (index), or a made-up id. */
      readonly obj: number;
      readonly a0: bigint;
      readonly a1: bigint;
      readonly payload: Uint8Array;
    }
  | { readonly kind: 'lie'; readonly conn: number; readonly len: number }
  | { readonly kind: 'noise'; readonly conn: number; readonly bytes: Uint8Array }
  | { readonly kind: 'half'; readonly conn: number }
  | { readonly kind: 'hangup'; readonly conn: number };

const conn = fc.nat(CONNS - 1);

export const protoStep: fc.Arbitrary<ProtoStep> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('hello' as const), conn }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('open' as const),
      path: fc.nat(PATHS.length - 1),
      flags: fc.constantFrom(0, 2, 0o2000002),
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant('frame' as const),
      conn,
      op: fc.oneof(fc.constantFrom(...Object.values(Op)), fc.nat(0xffff)),
      flags: fc.oneof(fc.constant(0), fc.constant(1), fc.nat(0xffff)),
      obj: fc.nat(12),
      a0: arg,
      a1: arg,
      payload: fc.uint8Array({ maxLength: 96 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('lie' as const),
      conn,
      len: fc.oneof(fc.nat(64), fc.constant(0xffffffff), fc.nat()),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('noise' as const),
      conn,
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('half' as const), conn }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('hangup' as const), conn }) },
);

/** One kernel and server the runs share, with the client process and what went wrong. */
export class ProtocolRig {
  readonly kernel = new Kernel({ enableUnsafeNoiommuMode: true });
  readonly bugs: string[] = [];
  frames = 0;
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-proto-'));
  private server: Awaited<ReturnType<typeof startServer>> | undefined;
  private peer: Peer | undefined;

  async start(): Promise<void> {
    this.kernel.events.subscribe(
      (e) => {
        if (e.kind === 'log' && e.level === 'bug') this.bugs.push(e.message);
      },
      ['log'],
    );
    this.server = await startServer(this.kernel, path.join(this.dir, 'emu.sock'), {
      testbedDir: path.join(this.dir, 'root'),
      grantedCaps: CAP_FULL_SET,
    });
  }

  private creds(peer: Peer): WireCreds {
    return { ...credsOf(peer.pid), mmCookie: 7n };
  }

  private frame(peer: Peer, op: number, fields: Partial<Parameters<typeof encodeRequest>[0]>) {
    this.frames++;
    return encodeRequest({
      op,
      flags: 0,
      seq: this.frames,
      obj: 0,
      a0: 0n,
      a1: 0n,
      creds: this.creds(peer),
      ...fields,
    });
  }

  /**
   * Plays one run with a fresh client process, then checks: no bug, nothing left once its
   * connections are gone, HELLO still answered. Returns the problems.
   */
  async play(steps: readonly ProtoStep[]): Promise<string[]> {
    const server = this.server!;
    const peer = await Peer.start();
    this.peer = peer;
    const problems: string[] = [];
    const bugsBefore = this.bugs.length;
    const conns: (PeerConnection | undefined)[] = new Array(CONNS).fill(undefined);
    const objects: number[] = [];
    const connAt = async (i: number): Promise<PeerConnection> => {
      let c = conns[i];
      if (c === undefined || c.closed) {
        c = await peer.connect(server.socketPath);
        conns[i] = c;
      }
      return c;
    };
    const extra: PeerConnection[] = [];
    try {
      for (const s of steps) {
        if (peer.child.exitCode !== null || peer.child.signalCode !== null) break;
        switch (s.kind) {
          case 'hello':
            (await connAt(s.conn)).send(
              this.frame(peer, Op.HELLO, { a0: BigInt(PROTOCOL_VERSION) }),
            );
            break;
          case 'open': {
            // OPEN is the first frame of an object connection; its reply's ret is the id.
            const c = await peer.connect(server.socketPath);
            extra.push(c);
            const p = new TextEncoder().encode(`${PATHS[s.path]}\0`);
            c.send(this.frame(peer, Op.OPEN, { a0: BigInt(s.flags), payload: p }));
            const reply = await c.bytes(HEADER_BYTES).catch(() => undefined);
            if (reply !== undefined && reply.readInt32LE(12) > 0)
              objects.push(reply.readInt32LE(12));
            break;
          }
          case 'frame': {
            const obj = s.obj < objects.length ? objects[s.obj]! : s.obj * 7919;
            (await connAt(s.conn)).send(
              this.frame(peer, s.op, {
                flags: s.flags,
                obj,
                a0: s.a0,
                a1: s.a1,
                payload: s.payload,
              }),
            );
            break;
          }
          case 'lie': {
            const f = this.frame(peer, Op.IOCTL, { a0: 0x3b80n, payload: new Uint8Array(16) });
            new DataView(f.buffer, f.byteOffset).setUint32(0, s.len, true);
            (await connAt(s.conn)).send(f);
            break;
          }
          case 'noise':
            (await connAt(s.conn)).send(s.bytes);
            break;
          case 'half': {
            const c = await connAt(s.conn);
            const f = this.frame(peer, Op.HELLO, { a0: BigInt(PROTOCOL_VERSION) });
            c.send(f.subarray(0, Math.max(1, f.length >> 1)));
            c.close();
            break;
          }
          case 'hangup':
            conns[s.conn]?.close();
            break;
        }
      }
    } catch (err) {
      problems.push(`the client could not play its run: ${String(err)}`);
    } finally {
      // The client dies with everything it held open.
      await peer.kill();
    }
    await server.whenIdle();
    await this.kernel.machine.whenIdle();
    for (const b of this.bugs.slice(bugsBefore)) problems.push(`emulator bug: ${b.split('\n')[0]}`);
    for (const leak of this.kernel.leaks()) problems.push(`leak: ${leak}`);
    for (const v of checkInvariants(this.kernel)) problems.push(`invariant: ${v}`);
    if (problems.length === 0) problems.push(...(await this.stillServes()));
    return problems;
  }

  /** A fresh client's HELLO is answered. */
  private async stillServes(): Promise<string[]> {
    const peer = await Peer.start();
    try {
      const c = await peer.connect(this.server!.socketPath);
      c.send(this.frame(peer, Op.HELLO, { a0: BigInt(PROTOCOL_VERSION) }));
      const reply = await c.bytes(HEADER_BYTES).catch((err: unknown) => String(err));
      return typeof reply === 'string' ? [`HELLO no longer answered: ${reply}`] : [];
    } finally {
      await peer.kill();
      await this.server!.whenIdle();
    }
  }

  async stop(): Promise<void> {
    await this.peer?.kill();
    await this.server?.close();
    this.kernel.shutdown();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `runs` seeded runs of up to `length` steps against one server; throws on the first problem. */
export async function protocolFuzz(options: {
  readonly seed: number;
  readonly runs: number;
  readonly length: number;
}): Promise<{ frames: number }> {
  const rig = new ProtocolRig();
  await rig.start();
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.array(protoStep, {
          minLength: Math.ceil(options.length / 2),
          maxLength: options.length,
        }),
        async (steps) => {
          const problems = await rig.play(steps);
          if (problems.length > 0) throw new Error(problems.join('\n'));
        },
      ),
      { seed: options.seed, numRuns: options.runs, endOnFailure: true },
    );
    return { frames: rig.frames };
  } finally {
    await rig.stop();
  }
}
