/**
 * The shim's figures: C programs (bench/shim-rtt.c, bench/foreign-io.c, built by `make -C native
 * bench`) run under the LD_PRELOAD shim against an emulator served from this process.
 *
 * - shim_rtt_over_echo: a forwarded ioctl round trip over a bare Unix-socket echo between the
 *   same C client and a Node echo server in this process, batches of each interleaved in one run
 *   of the client. The cost of a round trip is the CPU time both ends spend on it: the client's
 *   own, plus this process's (its CPU clock, read by the client around each batch), which the
 *   load of a shared machine does not inflate; the wall-clock ratio is in the detail.
 * - foreign_io_overhead: read+write+fstat on an ordinary file through the shim's wrappers over
 *   the same calls straight to libc, interleaved in one shimmed process.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel } from '../src/boot/kernel.ts';
import { startServer } from '../src/server/server.ts';
import { type Budget, type Figure, median } from './harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BUILD = path.join(ROOT, 'native', 'build');
const SHIM = path.join(BUILD, 'libiommufd-emu-shim.so');

/** Operations per batch, batches of each workload per client run. */
function shape(budget: Budget): { batch: number; rounds: number } {
  return budget.quick ? { batch: 2000, rounds: 15 } : { batch: 5000, rounds: 41 };
}

/**
 * The median over rounds of a/b, each round's two batches taken side by side (the k-th line of
 * each): load that drifts over the run moves both batches of a round alike.
 */
function pairedRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((x, k) => x / b[k]!));
}

/** Runs a bench client to its end (this event loop keeps serving meanwhile); its stdout lines. */
function runClient(program: string, args: string[], env: NodeJS.ProcessEnv): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(BUILD, 'bench', program), args, {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      out += s;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(out.split('\n').filter((l) => l !== ''));
      else reject(new Error(`${program} exited with ${code}`));
    });
  });
}

/** The numbers of every line whose first word is `name`. */
function linesOf(lines: readonly string[], name: string): number[][] {
  return lines
    .map((l) => l.split(' '))
    .filter((w) => w[0] === name)
    .map((w) => w.slice(1).map(Number));
}

function echoServer(socketPath: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.on('data', (chunk) => {
        socket.write(chunk);
      });
      socket.on('error', () => {});
    });
    server.once('error', reject);
    server.listen(socketPath, () => {
      resolve(server);
    });
  });
}

export async function shimFigures(budget: Budget): Promise<Figure[]> {
  const made = spawnSync('make', ['-s', '-C', path.join(ROOT, 'native'), 'bench'], {
    stdio: 'inherit',
  });
  if (made.status !== 0) throw new Error('make -C native bench failed');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-bench-'));
  const kernel = new Kernel();
  const emu = await startServer(kernel, path.join(dir, 'emu.sock'), {
    testbedDir: path.join(dir, 'root'),
  });
  const echo = await echoServer(path.join(dir, 'echo.sock'));
  const env = { ...process.env, LD_PRELOAD: SHIM, IOMMUFD_EMU_SOCKET: emu.socketPath };
  try {
    const { batch, rounds } = shape(budget);
    const rtt = await runClient(
      'shim-rtt',
      [path.join(dir, 'echo.sock'), String(process.pid), String(rounds), String(batch)],
      env,
    );
    // Per round trip: [wall, client CPU, server CPU] in ns.
    const ioctlRows = linesOf(rtt, 'ioctl');
    const echoRows = linesOf(rtt, 'echo');
    const cpu = (rows: number[][]) => rows.map((r) => (r[1]! + r[2]!) / batch);
    const wall = (rows: number[][]) => rows.map((r) => r[0]! / batch);
    const client = (rows: number[][]) => median(rows.map((r) => r[1]! / batch));
    const server = (rows: number[][]) => median(rows.map((r) => r[2]! / batch));
    const ioctl = { cpu: median(cpu(ioctlRows)), wall: median(wall(ioctlRows)) };
    const bare = { cpu: median(cpu(echoRows)), wall: median(wall(echoRows)) };
    const rttRatio = pairedRatio(cpu(ioctlRows), cpu(echoRows));
    const wallRatio = pairedRatio(wall(ioctlRows), wall(echoRows));

    const io = await runClient(
      'foreign-io',
      [path.join(dir, 'foreign-io.data'), String(rounds), String(batch)],
      env,
    );
    const shimmedRows = linesOf(io, 'shimmed').map((r) => r[0]! / batch);
    const unshimmedRows = linesOf(io, 'unshimmed').map((r) => r[0]! / batch);
    const shimmed = median(shimmedRows);
    const unshimmed = median(unshimmedRows);
    const ioRatio = pairedRatio(shimmedRows, unshimmedRows);
    const us = (ns: number) => (ns / 1000).toFixed(1);
    return [
      {
        name: 'shim_rtt_over_echo',
        value: rttRatio,
        unit: 'ratio',
        target: { op: '<=', value: 1.2 },
        detail: `${us(ioctl.cpu)} us / ${us(bare.cpu)} us CPU per round trip (both ends); wall ${us(ioctl.wall)} us / ${us(bare.wall)} us, ratio ${wallRatio.toFixed(2)}; client ${us(client(ioctlRows))} / ${us(client(echoRows))} us, server ${us(server(ioctlRows))} / ${us(server(echoRows))} us`,
      },
      {
        name: 'foreign_io_overhead',
        value: ioRatio,
        unit: 'ratio',
        target: { op: '<=', value: 1.05 },
        detail: `${shimmed.toFixed(0)} ns / ${unshimmed.toFixed(0)} ns per write+read+fstat`,
      },
    ];
  } finally {
    await new Promise<void>((resolve) => {
      echo.close(() => {
        resolve();
      });
    });
    await emu.close();
    kernel.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
