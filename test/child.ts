/**
 * Running a child process the way the command-line tests do: its stdout and stderr collected
 * whole, a wall-clock limit that kills it, and `iommufd-emu` run from the CLI bundled once for the
 * tests (cli-runner.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cliScript } from './cli-runner.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The bundled CLI (build/test-cli/cli-HASH.mjs), for node to run with its arguments after it. */
export const CLI = await cliScript();

/** How a child ended and what it wrote. */
export interface ChildRun {
  /** Its exit status; null when a signal ended it. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The limit ran out and the child was killed (SIGKILL). */
  readonly timedOut: boolean;
}

export interface RunOptions {
  /** Kill the child with SIGKILL after this long; no limit when absent. */
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  /** Where it runs: the checkout unless said. */
  readonly cwd?: string;
  /** Close its stdout before it writes anything, as a reader that went away (`| head -0`). */
  readonly closeStdout?: boolean;
}

/** Collects a spawned child's output until it closes, killing it once `timeoutMs` has passed. */
export function collectChild(child: ChildProcess, timeoutMs?: number): Promise<ChildRun> {
  return new Promise((resolvePromise) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    // A stdout the caller closed on purpose stays unread.
    if (child.stdout?.destroyed === false)
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
      });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** Runs `argv[0]` with the rest as its arguments, stdin closed. */
export function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<ChildRun> {
  const [program, ...args] = argv as [string, ...string[]];
  const child = spawn(program, args, {
    cwd: options.cwd ?? ROOT,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (options.closeStdout === true) child.stdout.destroy();
  return collectChild(child, options.timeoutMs);
}

/** Runs `iommufd-emu ARGS` (`node build/test-cli/cli-HASH.mjs ARGS`). */
export function runCli(args: readonly string[], options: RunOptions = {}): Promise<ChildRun> {
  return runCommand([process.execPath, CLI, ...args], options);
}
