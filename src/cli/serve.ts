/**
 * `iommufd-emu serve`: one emulator that several programs share.
 *
 *   serve [options]             serves until SIGINT/SIGTERM/SIGHUP; prints the environment
 *                               programs need (LD_PRELOAD, IOMMUFD_EMU_SOCKET) on stdout
 *   serve [options] -- CMD ...  runs CMD in that environment and stops when it exits, with its
 *                               status (a test suite, a shell)
 *
 * Readiness: the environment is printed, the --write-env written (atomically, by rename) and
 * "READY=1" written to --ready-fd only once the socket accepts connections. What the kernel would
 * log goes to stderr, or to --log FILE. stdout carries the environment and nothing else.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  bootKernel,
  ensureShim,
  grantedCaps,
  type KernelFlags,
  leaksOf,
  listenOn,
  openRecord,
  preloadWith,
  privateDirectory,
  refuseIfShimmed,
  reportLeaks,
  runProgram,
  shutdownKernel,
  sleep,
  startDmesg,
  startInvariantChecks,
  startTrace,
} from './exec.ts';
import { DEFAULT_ERROR_EXITCODE, describeErrno, fail } from './exit-status.ts';
import { holdInspector, startInspectorFor } from './inspect.ts';

export interface ServeFlags extends KernelFlags {
  readonly socket?: string;
  /** Write the environment as `export` lines to this file once serving. */
  readonly writeEnv?: string;
  /** Write READY=1 and a newline to this fd once serving, then close it. */
  readonly readyFd?: number;
  /** The kernel log (warnings, IOMMU faults, unsafe DMA) goes here instead of stderr. */
  readonly log?: string;
  /** Check the emulator's invariants after every call. */
  readonly check?: boolean;
  readonly errorExitcode?: number;
  /** --record FILE: every program's calls in the record format, for `iommufd-emu replay`. */
  readonly record?: string;
}

/** How long serve -- CMD waits, after CMD exits, for its emulated fds to be closed everywhere. */
const IDLE_WAIT_MS = 2000;

function shellQuote(s: string): string {
  return /^[\w./:@%+=,-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/** Whether something listens on the AF_UNIX socket at socketPath. */
function socketInUse(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => {
      resolve(false);
    });
  });
}

/** The socket to serve on: --socket (a stale one removed), else one in a new private directory. */
async function chooseSocket(flags: ServeFlags): Promise<{ socketPath: string; dir?: string }> {
  if (flags.socket === undefined) {
    const dir = privateDirectory();
    return { socketPath: path.join(dir, 'emu.sock'), dir };
  }
  const socketPath = path.resolve(flags.socket);
  if (fs.existsSync(socketPath)) {
    if (!fs.statSync(socketPath).isSocket()) fail(`${socketPath} exists and is not a socket`);
    if (await socketInUse(socketPath)) fail(`an emulator already serves ${socketPath}`);
    fs.unlinkSync(socketPath);
  }
  return { socketPath };
}

/** file, written whole or not at all (a reader polling for it never sees half of it). */
function writeAtomically(file: string, text: string): void {
  const target = path.resolve(file);
  const temporary = `${target}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(temporary, text, { mode: 0o600 });
    fs.renameSync(temporary, target);
  } catch (err) {
    fs.rmSync(temporary, { force: true });
    fail(`cannot write the environment to ${file}: ${describeErrno(err)}`);
  }
}

function openLog(file: string): number {
  try {
    return fs.openSync(file, 'a');
  } catch (err) {
    fail(`cannot write the kernel log to ${file}: ${describeErrno(err)}`);
  }
}

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export async function serveCommand(flags: ServeFlags, command: readonly string[]): Promise<number> {
  refuseIfShimmed();
  if (flags.readyFd !== undefined && command.length > 0)
    fail('--ready-fd is for a serve that others wait for; serve -- CMD starts CMD when ready');
  const grant = grantedCaps(flags);
  const recording =
    flags.record === undefined ? undefined : openRecord(flags.record, command, grant);
  const { shim, guard } = ensureShim();
  const { socketPath, dir } = await chooseSocket(flags);
  const kernel = bootKernel(flags);
  const logFd = flags.log === undefined ? undefined : openLog(flags.log);
  const stopDmesg = startDmesg(
    kernel,
    logFd === undefined
      ? undefined
      : (line) => {
          fs.writeSync(logFd, line);
        },
  );
  const stopTrace = startTrace(kernel, flags);
  const checks = flags.check === true ? startInvariantChecks(kernel) : undefined;
  const inspector =
    flags.inspect === undefined
      ? undefined
      : await startInspectorFor(kernel, flags.inspect, {
          command: [...command],
          state: command.length > 0 ? 'running' : 'serving',
          exitStatus: null,
        });
  const server = await listenOn(kernel, socketPath, {
    grantedCaps: grant,
    ...(dir === undefined ? {} : { testbedDir: path.join(dir, 'root') }),
    ...(recording === undefined ? {} : { recorder: recording.recorder }),
  });
  const env = {
    LD_PRELOAD: preloadWith(shim, undefined),
    IOMMUFD_EMU_SOCKET: socketPath,
  };
  const exports = Object.entries(env)
    .map(([k, v]) => `export ${k}=${shellQuote(v)}\n`)
    .join('');
  if (flags.writeEnv !== undefined) writeAtomically(flags.writeEnv, exports);

  let status = 0;
  try {
    if (command.length > 0) {
      status = await runProgram(
        command[0]!,
        command.slice(1),
        {
          ...process.env,
          LD_PRELOAD: preloadWith(shim, process.env.LD_PRELOAD),
          IOMMUFD_EMU_SOCKET: socketPath,
        },
        { guard },
      );
      await Promise.race([server.whenIdle(), sleep(IDLE_WAIT_MS)]);
      if (inspector !== undefined)
        await holdInspector(inspector, {
          command: [...command],
          state: 'exited',
          exitStatus: status,
        });
    } else {
      process.stdout.write(exports);
      if (flags.readyFd !== undefined) {
        try {
          fs.writeSync(flags.readyFd, 'READY=1\n');
          fs.closeSync(flags.readyFd);
        } catch (err) {
          fail(`cannot write to --ready-fd ${flags.readyFd}: ${describeErrno(err)}`);
        }
      }
      process.stderr.write(`iommufd-emu: serving on ${socketPath}; stop with Ctrl-C\n`);
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        for (const s of STOP_SIGNALS) process.once(s, () => resolve(s));
      });
      process.stderr.write(`iommufd-emu: ${signal}: stopping\n`);
    }
  } finally {
    await inspector?.close();
    await server.close();
    // After the close: the files of programs still connected are released in the record too.
    recording?.recorder.stop(status);
    recording?.close();
  }
  const leaks = leaksOf(kernel);
  shutdownKernel(kernel);
  stopTrace?.();
  stopDmesg();
  checks?.stop();
  if (logFd !== undefined) fs.closeSync(logFd);
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  if (flags.writeEnv !== undefined) fs.rmSync(path.resolve(flags.writeEnv), { force: true });
  const findings = flags.errorExitcode ?? DEFAULT_ERROR_EXITCODE;
  if (leaks.length > 0) {
    reportLeaks(leaks);
    return findings;
  }
  if (checks !== undefined && checks.found.length > 0) return findings;
  return status;
}
