/**
 * The SIGKILL storm, shared by `npm test` (a dozen kills) and `npm run soak` (a thousand): one
 * emulator server, and one after another an unmodified C program (churn.c) run through the shim
 * and killed with SIGKILL at a random moment once it is busy, most likely in the middle of a
 * call. After each kill, once the server has dropped the dead program's connections: no emulator
 * bug, no leaked object, file, pin, charge or domain, the invariants hold; the next program being
 * served is the proof that the server still serves. No assertion depends on time: the delays only
 * choose where the kill lands.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel } from '../../src/boot/kernel.ts';
import { checkInvariants } from '../../src/check/invariants.ts';
import { ensureNative } from '../../src/cli/native.ts';
import { CAP_FULL_SET } from '../../src/host/credentials.ts';
import { startServer } from '../../src/server/server.ts';
import { buildProgram, runAndKill } from './client-program.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface StormOptions {
  readonly seed: number;
  readonly kills: number;
  /** The kill lands up to this many ms after the program reports it is busy. */
  readonly maxDelayMs: number;
  /** Called after each kill with its number and what was found. */
  readonly onKill?: (n: number, problems: readonly string[]) => void;
}

export interface StormResult {
  readonly kills: number;
  readonly problems: string[];
  /** Calls the server answered over the whole storm (its syscall events). */
  readonly calls: number;
  /** Device writes over kernel-owned memory reported (the unsafe DMA attack, decision 200). */
  readonly corruptions: number;
}

/** mulberry32: the kill delays are a function of the seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function storm(options: StormOptions): Promise<StormResult> {
  const native = ensureNative(() => {});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-storm-'));
  const kernel = new Kernel({ enableUnsafeNoiommuMode: true });
  const bugs: string[] = [];
  let calls = 0;
  kernel.events.subscribe(
    (e) => {
      if (e.kind === 'log' && e.level === 'bug') bugs.push(e.message);
      if (e.kind === 'syscall') calls++;
    },
    ['log', 'syscall'],
  );
  // Every client holds CAP_SYS_RAWIO (the no-IOMMU device opens), as with --cap.
  const server = await startServer(kernel, path.join(dir, 'emu.sock'), {
    testbedDir: path.join(dir, 'root'),
    grantedCaps: CAP_FULL_SET,
  });
  const problems: string[] = [];
  const random = prng(options.seed);
  try {
    const churn = buildProgram(path.join(HERE, 'churn.c'), dir);
    let n = 0;
    for (; n < options.kills && problems.length < 5; n++) {
      const found: string[] = [];
      const delay = Math.floor(random() * options.maxDelayMs);
      const seed = Math.floor(random() * 2 ** 31);
      const bugsBefore = bugs.length;
      // Killed once it says it has made every kind of call: most likely in the middle of one.
      const run = await runAndKill(native, server.socketPath, churn, [String(seed)], {
        word: 'ready',
        delayMs: delay,
      });
      if (!run.saidWord || run.signal !== 'SIGKILL')
        found.push(
          `churn ${seed} was not served: exit ${run.code ?? run.signal}, stdout ${JSON.stringify(run.stdout)}, stderr ${JSON.stringify(run.stderr.slice(-2000))}`,
        );
      // The kernel closes a dead process's sockets: the server drops them and releases its files.
      await server.whenIdle();
      await kernel.machine.whenIdle();
      for (const b of bugs.slice(bugsBefore)) found.push(`emulator bug: ${b.split('\n')[0]}`);
      for (const leak of kernel.leaks()) found.push(`leak: ${leak}`);
      for (const v of checkInvariants(kernel)) found.push(`invariant: ${v}`);
      const frames = kernel.machine.phys.stats().framesInUse;
      if (frames !== 0n) found.push(`leak: ${frames} frames still in use`);
      options.onKill?.(n, found);
      problems.push(...found.map((f) => `kill ${n} (churn ${seed}, ${delay} ms): ${f}`));
    }
    return { kills: n, problems, calls, corruptions: kernel.machine.corruption.snapshot().count };
  } finally {
    await server.close();
    kernel.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
