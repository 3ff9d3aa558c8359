/**
 * `iommufd-emu exec`: runs a program (and its children) against a private emulator through the
 * shim, with what the kernel would log on stderr, an optional trace, invariant checks after every
 * call, and fail-nth armed over the whole run.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createKernel, type Kernel } from '../boot/kernel.ts';
import { checkInvariants } from '../check/invariants.ts';
import { FailNth, setFailNthForEveryTask } from '../fault/fault.ts';
import { parseCapSet } from '../host/credentials.ts';
import { useFaultIn } from '../server/fault-in.ts';
import { useFdAddon } from '../server/fd-addon.ts';
import { Recorder } from '../server/recorder.ts';
import { type EmuServer, type ServerOptions, startServer } from '../server/server.ts';
import { scratchBase } from '../server/testbed.ts';
import { attachTrace, formatEvent, type TraceFilter } from '../trace/writer.ts';
import {
  DEFAULT_ERROR_EXITCODE,
  describeErrno,
  EXIT_CANNOT_RUN,
  EXIT_EMULATOR_FAILED,
  EXIT_NOT_FOUND,
  fail,
} from './exit-status.ts';
import { holdInspector, type InspectFlag, startInspectorFor } from './inspect.ts';
import {
  ensureNative,
  type NativeParts,
  PackageError,
  packageVersion,
  SHIM_NAME,
} from './native.ts';
import { checkProgram } from './program-check.ts';

/** How long exec waits, after PROGRAM exits, for its emulated fds to be closed everywhere. */
const IDLE_WAIT_MS = 2000;

/**
 * A new directory only its owner can enter, whatever the umask: it holds the socket, so only the
 * emulator's user reaches the server (the socket itself is 0600 too). It is made on a memory file
 * system when there is one and TMPDIR does not say otherwise (scratchBase).
 */
export function privateDirectory(): string {
  const dir = fs.mkdtempSync(path.join(scratchBase(), 'iommufd-emu-'));
  fs.chmodSync(dir, 0o700);
  return dir;
}

export interface KernelFlags {
  /** --trace FILE; `-` for stderr. */
  readonly trace?: string;
  /** --trace-json FILE: the same events as JSON lines; `-` for stderr. */
  readonly traceJson?: string;
  readonly traceTime?: boolean;
  readonly tracePid?: boolean;
  /** --trace-filter, parsed (main.ts). */
  readonly traceFilter?: TraceFilter;
  readonly platform?: string;
  readonly enableUnsafeNoiommuMode?: boolean;
  /** --cap, once per use: capabilities every client holds for capable() whatever its own. */
  readonly cap?: readonly string[];
  /** --inspect[=HOST:PORT]: the inspector's web page (src/inspector). */
  readonly inspect?: InspectFlag;
}

export interface ExecFlags extends KernelFlags {
  /** Check the emulator's invariants after every call. */
  readonly check?: boolean;
  /** Fail the n-th injection point of the run (counted over every task), and say where. */
  readonly failNth?: number;
  /** The status for the emulator's findings (leaks, broken invariants). */
  readonly errorExitcode?: number;
  /** --record FILE: the run in the record format, for `iommufd-emu replay`. */
  readonly record?: string;
}

/** Writes a message of the emulator's own (the kernel's log, leaks, usage problems). */
export type Say = (text: string) => void;

/** The default: the CLI's stderr. */
function sayOnStderr(text: string): void {
  process.stderr.write(text);
}

/**
 * Where a run's output goes when not to the CLI's own stdout and stderr: descriptors the caller
 * opened (a test running exec in its own process). The program writes its stdout and stderr
 * there, and the emulator writes its messages to `stderr` too, in order with the program's.
 */
export interface RunOutput {
  readonly stdout: number;
  readonly stderr: number;
}

// -- native parts ------------------------------------------------------------------------------

/** What programs are started with: the shim to preload and the guard to start them through. */
export interface ShimParts {
  readonly shim: string;
  readonly guard: string;
}

/**
 * The shim's and the guard's paths, built first if needed (see native.ts); the fd addon is handed
 * to the server.
 */
export function ensureShim(say: Say = sayOnStderr): ShimParts {
  let parts: NativeParts;
  try {
    parts = ensureNative((text) => say(`iommufd-emu: ${text}`));
  } catch (err) {
    if (err instanceof PackageError) fail(err.message);
    throw err;
  }
  if (parts.addon !== undefined) useFdAddon(parts.addon);
  useFaultIn(parts.faultin);
  return { shim: parts.shim, guard: parts.guard };
}

export function preloadWith(shim: string, existing: string | undefined): string {
  const parts = (existing ?? '').split(/[ :]/).filter((p) => p !== '');
  if (parts.some((p) => path.basename(p) === SHIM_NAME)) return parts.join(':');
  return [shim, ...parts].join(':');
}

/** A Unix socket's address holds 107 bytes of path and a NUL; Node binds a longer one cut short. */
const SOCKET_PATH_MAX = 107;

/** The emulator served on socketPath, or a usage error saying why it cannot listen there. */
export async function listenOn(
  kernel: Kernel,
  socketPath: string,
  options: ServerOptions,
): Promise<EmuServer> {
  const cannot = (why: string): never => fail(`cannot serve on ${socketPath}: ${why}`);
  if (Buffer.byteLength(socketPath) > SOCKET_PATH_MAX) {
    cannot(
      `a Unix socket's path holds at most ${SOCKET_PATH_MAX} bytes (set TMPDIR or --socket to a shorter one)`,
    );
  }
  if (!fs.existsSync(path.dirname(socketPath)))
    cannot(`${path.dirname(socketPath)} does not exist`);
  try {
    return await startServer(kernel, socketPath, options);
  } catch (err) {
    return cannot(describeErrno(err));
  }
}

/**
 * AddressSanitizer refuses to start when its runtime is not the first library, and the shim is:
 * the order does not matter to it otherwise (docs/shim.md), so the check is turned off unless
 * the user chose.
 */
export function asanOptions(existing: string | undefined): string {
  if (existing === undefined || existing === '') return 'verify_asan_link_order=0';
  return existing.includes('verify_asan_link_order')
    ? existing
    : `${existing}:verify_asan_link_order=0`;
}

/**
 * A process running under the shim must not serve: its own file calls would be forwarded to
 * itself and deadlock.
 */
export function refuseIfShimmed(): void {
  const preload = process.env.LD_PRELOAD ?? '';
  if (preload.includes(SHIM_NAME)) {
    fail(
      `LD_PRELOAD contains ${SHIM_NAME}: unset it (and IOMMUFD_EMU_SOCKET) before starting an emulator`,
    );
  }
}

// -- the kernel and its trace ------------------------------------------------------------------

/** The capabilities --cap grants (none without it). */
export function grantedCaps(flags: KernelFlags): bigint {
  let set = 0n;
  for (const text of flags.cap ?? []) {
    const caps = parseCapSet(text);
    if (typeof caps !== 'bigint') fail(`--cap ${text}: ${caps.unknown} is not a capability`);
    set |= caps;
  }
  return set;
}

export function bootKernel(flags: KernelFlags): Kernel {
  const kernel = createKernel({
    ...(flags.platform === undefined ? {} : { platformFile: flags.platform }),
    ...(flags.enableUnsafeNoiommuMode === true ? { enableUnsafeNoiommuMode: true } : {}),
  });
  if (typeof kernel === 'string') fail(kernel);
  return kernel;
}

/**
 * What the kernel would put in dmesg goes to stderr: warnings (taint), IOMMU faults and unsafe
 * no-IOMMU DMA. Emulator bugs are reported where they happen (runSyscall).
 */
export function startDmesg(kernel: Kernel, write: Say = sayOnStderr): () => void {
  // What boot logged (a no-IOMMU device tainting the kernel) comes first.
  for (const line of kernel.dmesg) write(`iommufd-emu: [${line.replace(': ', '] ')}\n`);
  return kernel.events.subscribe((event) => {
    const loud =
      event.kind === 'unsafe-dma' ||
      event.kind === 'iommu-fault' ||
      (event.kind === 'log' && event.level !== 'info');
    if (loud) write(`iommufd-emu: ${formatEvent(event)}\n`);
  });
}

/**
 * exec --check: the invariants after every call (not while a call holds its context between two
 * of its batches, decision 291); returns the stopper and what was found.
 */
export function startInvariantChecks(
  kernel: Kernel,
  say: Say = sayOnStderr,
): { stop: () => void; found: string[] } {
  const found: string[] = [];
  const stop = kernel.events.subscribe((event) => {
    if (event.kind !== 'syscall' || found.length >= 20) return;
    // A call holding its context is between two batches: the next call after it checks.
    if (kernel.iommufd.held()) return;
    for (const line of checkInvariants(kernel)) {
      const report = `after ${event.call}(${event.detail}) = ${event.ret}: ${line}`;
      found.push(report);
      say(`iommufd-emu: invariant: ${report}\n`);
    }
  });
  return { stop, found };
}

/**
 * exec --fail-nth N: one counter over every task of the run, armed to N, as `check -- PROGRAM`
 * sweeps it. The trace goes to stderr (with a mark on the call the fault failed), and at the end
 * one line says which call of the program failed, or that the run had fewer injection points.
 */
function startFailNth(
  kernel: Kernel,
  nth: number,
  say: Say,
): { stop: () => void; report: () => void } {
  const counter = new FailNth();
  counter.trail = [];
  counter.arm(nth);
  setFailNthForEveryTask(counter);
  let failingCall: string | undefined;
  const unsubscribe = kernel.events.subscribe((event) => {
    let line = formatEvent(event);
    if (event.kind === 'syscall' && failingCall === undefined && counter.lastFired !== undefined) {
      failingCall = line;
      line += `   <- fail-nth ${nth}: injected ${counter.lastFired}`;
    }
    say(`iommufd-emu: | ${line}\n`);
  });
  return {
    stop: () => {
      unsubscribe();
      setFailNthForEveryTask(undefined);
    },
    report: () => {
      if (failingCall !== undefined) {
        say(`iommufd-emu: fail-nth ${nth}: ${counter.lastFired} failed in ${failingCall}\n`);
      } else {
        say(
          `iommufd-emu: fail-nth ${nth}: nothing injected: the run passed only ${counter.trail?.length ?? 0} injection points\n`,
        );
      }
    },
  };
}

/** A trace destination: a file (created or truncated), or stderr for `-`; returns a closer. */
function openTraceOutput(
  file: string,
  say: Say,
): { write: (text: string) => void; close: () => void } {
  if (file === '-') return { write: say, close: () => {} };
  let fd: number;
  try {
    fd = fs.openSync(file, 'w');
  } catch (err) {
    fail(`cannot write the trace to ${file}: ${describeErrno(err)}`);
  }
  return {
    write: (text) => {
      fs.writeSync(fd, text);
    },
    close: () => fs.closeSync(fd),
  };
}

/**
 * --trace and --trace-json: every event of the kernel, the boot log first (the taint a no-IOMMU
 * device caused), as text lines and/or JSON lines; returns the closer.
 */
export function startTrace(
  kernel: Kernel,
  flags: KernelFlags,
  say: Say = sayOnStderr,
): (() => void) | undefined {
  const outputs: { file: string; json: boolean }[] = [];
  if (flags.trace !== undefined) outputs.push({ file: flags.trace, json: false });
  if (flags.traceJson !== undefined) outputs.push({ file: flags.traceJson, json: true });
  if (outputs.length === 0) return undefined;
  const stops = outputs.map(({ file, json }) => {
    const out = openTraceOutput(file, say);
    const unsubscribe = attachTrace(kernel.events, kernel.dmesg, out.write, {
      json,
      ...(flags.traceTime === true ? { time: true } : {}),
      ...(flags.tracePid === true ? { pid: true } : {}),
      ...(flags.traceFilter === undefined ? {} : { filter: flags.traceFilter }),
    });
    return () => {
      unsubscribe();
      out.close();
    };
  });
  return () => {
    for (const stop of stops) stop();
  };
}

/** Leaks the kernel reports once every client is gone. */
export function leaksOf(kernel: Kernel): string[] {
  const hook = (kernel as Kernel & { leaks?: () => string[] }).leaks;
  return typeof hook === 'function' ? hook.call(kernel) : [];
}

export function shutdownKernel(kernel: Kernel): void {
  const hook = (kernel as Kernel & { shutdown?: () => void }).shutdown;
  if (typeof hook === 'function') hook.call(kernel);
}

export function reportLeaks(leaks: readonly string[], say: Say = sayOnStderr): void {
  say(`iommufd-emu: leaks after the program exited:\n`);
  for (const leak of leaks) say(`  ${leak}\n`);
}

/** exec/serve --record FILE: a recorder writing to FILE (created or truncated). */
export function openRecord(
  file: string,
  program: readonly string[],
  grant: bigint,
): { recorder: Recorder; close: () => void } {
  if (file === '-') {
    fail('--record -: a record goes to a file (on stdout or stderr it would mix with the program)');
  }
  let fd: number;
  try {
    fd = fs.openSync(file, 'w');
  } catch (err) {
    fail(`cannot write the record to ${file}: ${describeErrno(err)}`);
  }
  const recorder = new Recorder(
    (text) => {
      fs.writeSync(fd, text);
    },
    { program, grantedCaps: grant, emulator: packageVersion() },
  );
  return { recorder, close: () => fs.closeSync(fd) };
}

// -- running a program ---------------------------------------------------------------------------

const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/** The program's stdio: the CLI's own, none, or the caller's descriptors (stdin none). */
export type ProgramStdio = 'inherit' | 'ignore' | RunOutput;

/**
 * Runs program with env through the guard; resolves with its exit status (128+signal when
 * killed). A program the shim cannot reach (program-check.ts) is not started: 126. The guard
 * runs without env's LD_PRELOAD and hands it to the program, and with `fixedLayout` starts it
 * with address space randomization off.
 */
export function runProgram(
  program: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  options: {
    readonly guard: string;
    readonly stdio?: ProgramStdio;
    readonly say?: Say;
    /** Turn off address space randomization for the program (and its children). */
    readonly fixedLayout?: boolean;
  },
): Promise<number> {
  const say = options.say ?? sayOnStderr;
  const found = checkProgram(program, env);
  const cannot = (why: string, status: number): Promise<number> => {
    say(`iommufd-emu: cannot run ${program}: ${why}\n`);
    return Promise.resolve(status);
  };
  switch (found.kind) {
    case 'missing':
      return cannot(
        `no such file or directory${program.includes('/') ? '' : ' (looked for in PATH)'}`,
        EXIT_NOT_FOUND,
      );
    case 'not-runnable':
      return cannot(found.why, EXIT_CANNOT_RUN);
    case 'refused':
      return cannot(
        `it ${found.why}; it would use the host's devices, not the emulator's (see "Programs the shim cannot serve" in the README)`,
        EXIT_CANNOT_RUN,
      );
    case 'served':
      break;
  }
  const { LD_PRELOAD: preload, ...rest } = env;
  const guardEnv: NodeJS.ProcessEnv = { ...rest, ASAN_OPTIONS: asanOptions(env.ASAN_OPTIONS) };
  if (preload !== undefined) guardEnv.IOMMUFD_EMU_PRELOAD = preload;
  // Only when asked: never from the caller's own environment.
  if (options.fixedLayout === true) guardEnv.IOMMUFD_EMU_FIXED_LAYOUT = '1';
  else delete guardEnv.IOMMUFD_EMU_FIXED_LAYOUT;
  return new Promise((resolve) => {
    const stdio = options.stdio ?? 'inherit';
    const child = spawn(options.guard, [found.path, program, ...args], {
      stdio: typeof stdio === 'string' ? stdio : ['ignore', stdio.stdout, stdio.stderr],
      env: guardEnv,
    });
    const forward = (signal: NodeJS.Signals): void => {
      child.kill(signal);
    };
    for (const s of FORWARDED_SIGNALS) process.on(s, forward);
    const done = (status: number): void => {
      for (const s of FORWARDED_SIGNALS) process.off(s, forward);
      resolve(status);
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      say(`iommufd-emu: cannot start the guard ${options.guard}: ${describeErrno(err)}\n`);
      done(EXIT_EMULATOR_FAILED);
    });
    child.on('exit', (code, signal) => {
      if (signal !== null) done(128 + (os.constants.signals[signal] ?? 0));
      else done(code ?? 0);
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms).unref();
  });
}

function hasKernelFlags(flags: KernelFlags): boolean {
  return (
    flags.trace !== undefined ||
    flags.traceJson !== undefined ||
    flags.platform !== undefined ||
    flags.enableUnsafeNoiommuMode === true ||
    (flags.cap?.length ?? 0) > 0 ||
    (flags as ExecFlags).record !== undefined ||
    flags.inspect !== undefined
  );
}

/** What exec can be asked to do besides running the program (the demo's live trace). */
export interface ExecHooks {
  /** Called with the booted kernel before the program starts; returns a detach function. */
  readonly attach?: (kernel: Kernel) => () => void;
  /** Print warnings, IOMMU faults and unsafe DMA to stderr (default true). */
  readonly dmesg?: boolean;
  /**
   * The program's stdio (default: inherited). Given descriptors, the emulator's own messages
   * go to their stderr too, not to the CLI's.
   */
  readonly stdio?: ProgramStdio;
  /**
   * Run the program with address space randomization off, as every run of a fail-nth sweep is
   * (and `--fail-nth`, which replays one): the runs then map the same addresses, and so pass
   * the same injection points where an address decides how many (decision 306).
   */
  readonly fixedLayout?: boolean;
}

export async function execCommand(
  program: string,
  args: readonly string[],
  flags: ExecFlags,
  hooks: ExecHooks = {},
): Promise<number> {
  const stdio = hooks.stdio ?? 'inherit';
  const say: Say =
    typeof stdio === 'string'
      ? sayOnStderr
      : (text) => {
          fs.writeSync(stdio.stderr, text);
        };
  const joined = process.env.IOMMUFD_EMU_SOCKET;
  if (joined !== undefined && joined !== '') {
    if (hasKernelFlags(flags)) {
      fail(
        'IOMMUFD_EMU_SOCKET is set, so exec joins that emulator: --trace/--record/--platform/--enable-unsafe-noiommu-mode/--cap/--inspect belong to the emulator (iommufd-emu serve)',
      );
    }
    const { shim, guard } = ensureShim(say);
    return runProgram(
      program,
      args,
      { ...process.env, LD_PRELOAD: preloadWith(shim, process.env.LD_PRELOAD) },
      { guard, stdio, say },
    );
  }

  refuseIfShimmed();
  const grant = grantedCaps(flags);
  const recording =
    flags.record === undefined ? undefined : openRecord(flags.record, [program, ...args], grant);
  const { shim, guard } = ensureShim(say);
  const kernel = bootKernel(flags);
  const stopTrace = startTrace(kernel, flags, say);
  const stopDmesg = hooks.dmesg === false ? undefined : startDmesg(kernel, say);
  const checks = flags.check === true ? startInvariantChecks(kernel, say) : undefined;
  const injection =
    flags.failNth === undefined ? undefined : startFailNth(kernel, flags.failNth, say);
  const detach = hooks.attach?.(kernel);
  const command = [program, ...args];
  const inspector =
    flags.inspect === undefined
      ? undefined
      : await startInspectorFor(kernel, flags.inspect, {
          command,
          state: 'running',
          exitStatus: null,
        });
  const dir = privateDirectory();
  let server: EmuServer | undefined;
  try {
    server = await listenOn(kernel, path.join(dir, 'emu.sock'), {
      testbedDir: path.join(dir, 'root'),
      grantedCaps: grant,
      ...(recording === undefined ? {} : { recorder: recording.recorder }),
    });
    let status = await runProgram(
      program,
      args,
      {
        ...process.env,
        LD_PRELOAD: preloadWith(shim, process.env.LD_PRELOAD),
        IOMMUFD_EMU_SOCKET: server.socketPath,
      },
      { guard, stdio, say, fixedLayout: hooks.fixedLayout === true || flags.failNth !== undefined },
    );
    const exitStatus = status;
    // Children PROGRAM left behind may still hold emulated fds: give them a moment.
    const idle = await Promise.race([server.whenIdle().then(() => true), sleep(IDLE_WAIT_MS)]);
    if (!idle) {
      say(
        `iommufd-emu: ${server.connectionCount} connections still open ${IDLE_WAIT_MS} ms after ${program} exited (a background process holds emulated fds); not checking for leaks\n`,
      );
    } else {
      const leaks = leaksOf(kernel);
      const findings = flags.errorExitcode ?? DEFAULT_ERROR_EXITCODE;
      if (leaks.length > 0) {
        reportLeaks(leaks, say);
        status = findings;
      } else if (checks !== undefined && checks.found.length > 0) {
        status = findings;
      }
    }
    injection?.report();
    recording?.recorder.stop(status);
    if (inspector !== undefined)
      await holdInspector(inspector, { command, state: 'exited', exitStatus });
    return status;
  } finally {
    await inspector?.close();
    await server?.close();
    recording?.close();
    shutdownKernel(kernel);
    stopTrace?.();
    stopDmesg?.();
    checks?.stop();
    injection?.stop();
    detach?.();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
