/**
 * The C client programs of the reliability runs (churn.c, pin_kill.c, ../soak/churn.c), built
 * against the project's uAPI headers; and a run of one as an unmodified program runs, through the
 * shim under the guard, against a server, ended by a SIGKILL that lands once the program says it
 * has got where the run wants it (most likely in the middle of a call).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeParts } from '../../src/cli/native.ts';

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
        setTimeout(() => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            // It is already gone.
          }
        }, at.delayMs);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('exit', (code, signal) => resolve({ saidWord, code, signal, stdout, stderr }));
  });
}
