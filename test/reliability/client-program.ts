/**
 * The C client programs of the reliability runs (churn.c, pin_kill.c, ../soak/churn.c), built
 * against the project's uAPI headers; a server for them on a kernel of its own; and a run of one
 * as an unmodified program runs, through the shim under the guard, against a server, ended by a
 * SIGKILL that lands once the program says it has got where the run wants it (most likely in the
 * middle of a call).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kernel } from '../../src/boot/kernel.ts';
import { ensureNative, type NativeParts } from '../../src/cli/native.ts';
import { CAP_FULL_SET } from '../../src/host/credentials.ts';
import { type EmuServer, startServer } from '../../src/server/server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Compiles the C file `source` into `dir` (the binary named after it); returns the binary. */
export function buildProgram(source: string, dir: string): string {
  const binary = path.join(dir, path.basename(source, '.c'));
  const cc = spawnSync(
    'gcc',
    ['-O1', '-Wall', '-Werror', '-pthread', '-I', path.join(ROOT, 'include'), '-o', binary, source],
    { encoding: 'utf8' },
  );
  if (cc.status !== 0) throw new Error(`building ${path.basename(source)} failed:\n${cc.stderr}`);
  return binary;
}

export interface KillAt {
  /** The killing starts once the program's stdout holds this. */
  readonly word: string;
  /** The SIGKILL lands this many ms after the word. */
  readonly delayMs: number;
  /** Then, if given, only once this holds (asked every 2 ms): a state the server is in. */
  readonly when?: () => boolean;
}

export interface KilledRun {
  /** The program said the word (and so was still running when the kill was set). */
  readonly saidWord: boolean;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `binary ARGS...` through the shim under the guard against the server at `socket`, in a
 * process group of its own, and SIGKILLs the whole group (any children it forked die with it) as
 * `at` says. Resolves once it has exited, killed or not.
 */
export function runAndKill(
  native: NativeParts,
  socket: string,
  binary: string,
  args: readonly string[],
  at: KillAt,
): Promise<KilledRun> {
  // The guard makes IOMMUFD_EMU_PRELOAD the program's LD_PRELOAD; it runs without the shim itself.
  const { LD_PRELOAD: _, ...rest } = process.env;
  const env = { ...rest, IOMMUFD_EMU_PRELOAD: native.shim, IOMMUFD_EMU_SOCKET: socket };
  return new Promise((resolve) => {
    const child = spawn(native.guard, [binary, binary, ...args], {
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let saidWord = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (!saidWord && stdout.includes(at.word)) {
        saidWord = true;
        const kill = (): void => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            // It is already gone.
          }
        };
        const when = at.when;
        if (when === undefined) setTimeout(kill, at.delayMs);
        else {
          const poll = setInterval(() => {
            if (!when()) return;
            clearInterval(poll);
            kill();
          }, 2);
          child.on('exit', () => clearInterval(poll));
        }
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('exit', (code, signal) => resolve({ saidWord, code, signal, stdout, stderr }));
  });
}

/** A kernel, its server in a private directory, and what the run needs of them. */
export interface TestServer {
  readonly native: NativeParts;
  readonly dir: string;
  readonly kernel: Kernel;
  readonly server: EmuServer;
  /** The emulator bugs the kernel logged (each a failure). */
  readonly bugs: string[];
}

/** Runs `fn` with a fresh kernel and server (every capability granted), removed after it. */
export async function withServer(fn: (t: TestServer) => Promise<void>): Promise<void> {
  const native = ensureNative(() => {});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-reliability-'));
  const kernel = new Kernel({});
  const bugs: string[] = [];
  kernel.events.subscribe(
    (e) => {
      if (e.kind === 'log' && e.level === 'bug') bugs.push(e.message);
    },
    ['log'],
  );
  const server = await startServer(kernel, path.join(dir, 'emu.sock'), {
    testbedDir: path.join(dir, 'root'),
    grantedCaps: CAP_FULL_SET,
  });
  try {
    await fn({ native, dir, kernel, server, bugs });
  } finally {
    await server.close();
    kernel.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
