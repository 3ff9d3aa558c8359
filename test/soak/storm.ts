/**
 * The reliability storm: many shimmed clients (churn.c) make real and random calls against one
 * server and are SIGKILLed at random moments, while a bystander's well-formed calls must all
 * succeed; then nothing may be left: no connection, object, pin, accounted page or buffered
 * byte, no emulator bug, every invariant holding. `npm test` runs a small one
 * (storm.test.ts), `npm run soak` a full-size one (main.ts, figures in docs/reliability.md).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel } from '../../src/boot/kernel.ts';
import { checkInvariants } from '../../src/check/invariants.ts';
import { CAP_FULL_SET } from '../../src/host/credentials.ts';
import { startServer } from '../../src/server/server.ts';
import { buildProgram } from '../reliability/client-program.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHIM = path.join(ROOT, 'native', 'build', 'libiommufd-emu-shim.so');

export interface StormOptions {
  /** Clients running at once. */
  readonly clients: number;
  /** SIGKILLs in all; each killed client is replaced until then. */
  readonly kills: number;
  /** A client lives a random time up to this before its SIGKILL. */
  readonly maxLifeMs: number;
  /** Rounds of the bystander's well-formed sequence (4 calls each), run throughout. */
  readonly bystanderRounds: number;
  /** Called with a line of progress now and then. */
  readonly progress?: (line: string) => void;
}

export interface StormResult {
  readonly kills: number;
  /** Calls the killed clients reported making (counted in hundreds as they go). */
  readonly clientCalls: number;
  readonly bystanderRounds: number;
  readonly seconds: number;
  /** The server's own resident set at its largest, in MiB. */
  readonly peakRssMiB: number;
  /** What was wrong at the end; empty when all is well. */
  readonly problems: string[];
}

function cleanEnv(socket: string): NodeJS.ProcessEnv {
  const env = { ...process.env, LD_PRELOAD: SHIM, IOMMUFD_EMU_SOCKET: socket };
  return env;
}

/** Resolves with the child's exit once it is gone. */
function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

export async function storm(options: StormOptions): Promise<StormResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-storm-'));
  const churn = buildProgram(path.join(ROOT, 'test', 'soak', 'churn.c'), dir);
  const kernel = new Kernel({ enableUnsafeNoiommuMode: true });
  const bugs: string[] = [];
  kernel.events.subscribe((e) => {
    if (e.kind === 'log' && e.level === 'bug') bugs.push(e.message.split('\n')[0]!);
  });
  const server = await startServer(kernel, path.join(dir, 'emu.sock'), {
    testbedDir: path.join(dir, 'root'),
    grantedCaps: CAP_FULL_SET,
  });
  const env = cleanEnv(server.socketPath);
  const start = Date.now();
  const problems: string[] = [];
  let kills = 0;
  let started = 0;
  let clientCalls = 0;
  let peakRss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 200);

  const bystander = spawn(churn, ['bystander', String(options.bystanderRounds)], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let bystanderOut = '';
  bystander.stdout!.on('data', (d: Buffer) => {
    bystanderOut += d.toString();
  });
  const bystanderDone = exited(bystander);

  const runClient = async (): Promise<void> => {
    while (started < options.kills) {
      started++;
      const seed = `${Date.now()}${started}`;
      const child = spawn(churn, ['churn', seed], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      let last = 0;
      child.stdout!.on('data', (d: Buffer) => {
        const m = /calls (\d+)\n(?![\s\S]*calls)/.exec(d.toString());
        if (m !== null) last = Number(m[1]);
      });
      const done = exited(child);
      const life = 1 + Math.floor(Math.random() * options.maxLifeMs);
      const timer = setTimeout(() => child.kill('SIGKILL'), life);
      const end = await done;
      clearTimeout(timer);
      clientCalls += last;
      if (end.signal === 'SIGKILL') kills++;
      else problems.push(`a client ended by itself: ${JSON.stringify(end)}`);
      if (kills % 50 === 0 && end.signal === 'SIGKILL')
        options.progress?.(
          `${kills} kills, ${clientCalls} client calls, ${((Date.now() - start) / 1000).toFixed(0)} s`,
        );
    }
  };
  await Promise.all(Array.from({ length: options.clients }, runClient));
  const by = await bystanderDone;
  if (by.code !== 0 || !bystanderOut.includes(`ok ${options.bystanderRounds}`))
    problems.push(`the bystander failed: ${JSON.stringify(by)} ${bystanderOut.trim()}`);

  // Every client is dead: the server must hold nothing of theirs. (The time limit is cleared
  // after: a pending timer would hold the process, and `npm test`'s slot, for its whole 10 s.)
  let idleLimit: NodeJS.Timeout | undefined;
  const idle = await Promise.race([
    server.whenIdle().then(() => true),
    new Promise<boolean>((resolve) => {
      idleLimit = setTimeout(() => resolve(false), 10_000);
    }),
  ]);
  clearTimeout(idleLimit);
  clearInterval(rssTimer);
  if (!idle) problems.push(`${server.connectionCount} connections still open`);
  if (server.bufferedBytes !== 0) problems.push(`${server.bufferedBytes} bytes still buffered`);
  for (const leak of kernel.leaks()) problems.push(`leak: ${leak}`);
  if (kernel.iommufd.accounting.total() !== 0n)
    problems.push(`${kernel.iommufd.accounting.total()} pages still accounted`);
  for (const v of checkInvariants(kernel)) problems.push(`invariant: ${v}`);
  for (const b of new Set(bugs)) problems.push(`emulator bug: ${b}`);
  await server.close();
  kernel.shutdown();
  fs.rmSync(dir, { recursive: true, force: true });
  return {
    kills,
    clientCalls,
    bystanderRounds: options.bystanderRounds,
    seconds: (Date.now() - start) / 1000,
    peakRssMiB: Math.round(peakRss / 2 ** 20),
    problems,
  };
}
