#!/usr/bin/env node
/**
 * The `iommufd-emu` command.
 *
 *   iommufd-emu exec [--trace FILE] [--platform FILE] [--enable-unsafe-noiommu-mode] [--cap CAPS]
 *                    -- PROGRAM [ARGS...]
 *     Runs PROGRAM (and its children) against a private emulator; exits with PROGRAM's status
 *     (128+signal if it was killed), or 3 if the emulator found leaks after it exited. With
 *     IOMMUFD_EMU_SOCKET already set, joins that emulator instead of starting one.
 *   iommufd-emu serve [--socket PATH] [--trace FILE] [--platform FILE] [--enable-unsafe-noiommu-mode]
 *                     [--cap CAPS]
 *     One emulator several programs share; prints the environment they need.
 *   iommufd-emu check ...
 *     The fault-injection sweep and the explorer (see check.ts).
 *   iommufd-emu demo
 *     Builds examples/noiommu-edu-dma.c and runs it with a readable trace (see demo.ts).
 *
 * Exit status 2: bad usage, or an option this build does not support.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, CommanderError } from 'commander';
import { checkInvariants } from '../check/invariants.ts';
import { parseCapSet } from '../host/credentials.ts';
import { createKernel, type Kernel } from '../host/kernel.ts';
import { type EmuServer, startServer, useFdAddon } from '../server/server.ts';
import { formatEvent } from '../trace/writer.ts';
import { registerCheckCommand } from './check.ts';
import { DemoError, demoCommand } from './demo.ts';
import {
  ensureNative,
  type NativeParts,
  PackageError,
  packageRoot,
  packageVersion,
  SHIM_NAME,
} from './native.ts';

/** How long exec waits, after PROGRAM exits, for its emulated fds to be closed everywhere. */
const IDLE_WAIT_MS = 2000;
const EXIT_USAGE = 2;
const EXIT_LEAKS = 3;
/** exec --check found an invariant broken after some call. */
const EXIT_INVARIANTS = 4;

interface KernelFlags {
  readonly trace?: string;
  readonly platform?: string;
  readonly enableUnsafeNoiommuMode?: boolean;
  /** --cap, once per use: capabilities every client holds for capable() whatever its own. */
  readonly cap?: readonly string[];
}

interface ExecFlags extends KernelFlags {
  /** Check the emulator's invariants after every call. */
  readonly check?: boolean;
}

interface ServeFlags extends KernelFlags {
  readonly socket?: string;
}

class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function fail(message: string): never {
  throw new UsageError(message);
}

// -- native parts ------------------------------------------------------------------------------

/** The shim's path, built first if needed (see native.ts); the fd addon is handed to the server. */
function ensureShim(): string {
  let parts: NativeParts;
  try {
    parts = ensureNative((text) => process.stderr.write(`iommufd-emu: ${text}`));
  } catch (err) {
    if (err instanceof PackageError) fail(err.message);
    throw err;
  }
  if (parts.addon !== undefined) useFdAddon(parts.addon);
  return parts.shim;
}

function preloadWith(shim: string, existing: string | undefined): string {
  const parts = (existing ?? '').split(/[ :]/).filter((p) => p !== '');
  if (parts.some((p) => path.basename(p) === SHIM_NAME)) return parts.join(':');
  return [shim, ...parts].join(':');
}

/**
 * A process running under the shim must not serve: its own file calls would be forwarded to
 * itself and deadlock.
 */
function refuseIfShimmed(): void {
  const preload = process.env.LD_PRELOAD ?? '';
  if (preload.includes(SHIM_NAME)) {
    fail(
      `LD_PRELOAD contains ${SHIM_NAME}: unset it (and IOMMUFD_EMU_SOCKET) before starting an emulator`,
    );
  }
}

// -- the kernel and its trace ------------------------------------------------------------------

/** The capabilities --cap grants (none without it). */
function grantedCaps(flags: KernelFlags): bigint {
  let set = 0n;
  for (const text of flags.cap ?? []) {
    const caps = parseCapSet(text);
    if (typeof caps !== 'bigint') fail(`--cap ${text}: ${caps.unknown} is not a capability`);
    set |= caps;
  }
  return set;
}

function bootKernel(flags: KernelFlags): Kernel {
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
function startDmesg(kernel: Kernel): () => void {
  // What boot logged (a no-IOMMU device tainting the kernel) comes first.
  for (const line of kernel.dmesg)
    process.stderr.write(`iommufd-emu: [${line.replace(': ', '] ')}\n`);
  return kernel.events.subscribe((event) => {
    const loud =
      event.kind === 'unsafe-dma' ||
      event.kind === 'iommu-fault' ||
      (event.kind === 'log' && (event.level === 'warn' || event.level === 'error'));
    if (loud) process.stderr.write(`iommufd-emu: ${formatEvent(event)}\n`);
  });
}

/** exec --check: the invariants after every call; returns the stopper and what was found. */
function startInvariantChecks(kernel: Kernel): { stop: () => void; found: string[] } {
  const found: string[] = [];
  const stop = kernel.events.subscribe((event) => {
    if (event.kind !== 'syscall' || found.length >= 20) return;
    for (const line of checkInvariants(kernel)) {
      const report = `after ${event.call}(${event.detail}) = ${event.ret}: ${line}`;
      found.push(report);
      process.stderr.write(`iommufd-emu: invariant: ${report}\n`);
    }
  });
  return { stop, found };
}

/** Writes every event of the kernel to file, one line each; returns the closer. */
function startTrace(kernel: Kernel, file: string): () => void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'w');
  } catch (err) {
    fail(`--trace ${file}: ${(err as Error).message}`);
  }
  const unsubscribe = kernel.events.subscribe((event) => {
    fs.writeSync(fd, `${formatEvent(event)}\n`);
  });
  return () => {
    unsubscribe();
    fs.closeSync(fd);
  };
}

/** Leaks the kernel reports once every client is gone. */
function leaksOf(kernel: Kernel): string[] {
  const hook = (kernel as Kernel & { leaks?: () => string[] }).leaks;
  return typeof hook === 'function' ? hook.call(kernel) : [];
}

function shutdownKernel(kernel: Kernel): void {
  const hook = (kernel as Kernel & { shutdown?: () => void }).shutdown;
  if (typeof hook === 'function') hook.call(kernel);
}

function reportLeaks(leaks: readonly string[]): void {
  process.stderr.write(`iommufd-emu: leaks after the program exited:\n`);
  for (const leak of leaks) process.stderr.write(`  ${leak}\n`);
}

// -- running a program ---------------------------------------------------------------------------

const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/** Runs program with env; resolves with its exit status (128+signal when killed). */
function runProgram(
  program: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  stdio: 'inherit' | 'ignore' = 'inherit',
): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio, env });
    const forward = (signal: NodeJS.Signals): void => {
      child.kill(signal);
    };
    for (const s of FORWARDED_SIGNALS) process.on(s, forward);
    const done = (status: number): void => {
      for (const s of FORWARDED_SIGNALS) process.off(s, forward);
      resolve(status);
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      process.stderr.write(`iommufd-emu: cannot run ${program}: ${err.message}\n`);
      done(err.code === 'ENOENT' ? 127 : 126);
    });
    child.on('exit', (code, signal) => {
      if (signal !== null) done(128 + (os.constants.signals[signal] ?? 0));
      else done(code ?? 0);
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms).unref();
  });
}

function hasKernelFlags(flags: KernelFlags): boolean {
  return (
    flags.trace !== undefined ||
    flags.platform !== undefined ||
    flags.enableUnsafeNoiommuMode === true ||
    (flags.cap?.length ?? 0) > 0
  );
}

/** What exec can be asked to do besides running the program (the demo's live trace). */
export interface ExecHooks {
  /** Called with the booted kernel before the program starts; returns a detach function. */
  readonly attach?: (kernel: Kernel) => () => void;
  /** Print warnings, IOMMU faults and unsafe DMA to stderr (default true). */
  readonly dmesg?: boolean;
  /** The program's stdio (default: inherited). */
  readonly stdio?: 'inherit' | 'ignore';
}

export async function execCommand(
  program: string,
  args: readonly string[],
  flags: ExecFlags,
  hooks: ExecHooks = {},
): Promise<number> {
  const joined = process.env.IOMMUFD_EMU_SOCKET;
  if (joined !== undefined && joined !== '') {
    if (hasKernelFlags(flags)) {
      fail(
        'IOMMUFD_EMU_SOCKET is set, so exec joins that emulator: --trace/--platform/--enable-unsafe-noiommu-mode/--cap belong to the emulator (iommufd-emu serve)',
      );
    }
    const shim = ensureShim();
    return runProgram(program, args, {
      ...process.env,
      LD_PRELOAD: preloadWith(shim, process.env.LD_PRELOAD),
    });
  }

  refuseIfShimmed();
  const grant = grantedCaps(flags);
  const shim = ensureShim();
  const kernel = bootKernel(flags);
  const stopTrace = flags.trace === undefined ? undefined : startTrace(kernel, flags.trace);
  const stopDmesg = hooks.dmesg === false ? undefined : startDmesg(kernel);
  const checks = flags.check === true ? startInvariantChecks(kernel) : undefined;
  const detach = hooks.attach?.(kernel);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-'));
  let server: EmuServer | undefined;
  try {
    server = await startServer(kernel, path.join(dir, 'emu.sock'), {
      testbedDir: path.join(dir, 'root'),
      grantedCaps: grant,
    });
    let status = await runProgram(
      program,
      args,
      {
        ...process.env,
        LD_PRELOAD: preloadWith(shim, process.env.LD_PRELOAD),
        IOMMUFD_EMU_SOCKET: server.socketPath,
      },
      hooks.stdio ?? 'inherit',
    );
    // Children PROGRAM left behind may still hold emulated fds: give them a moment.
    const idle = await Promise.race([server.whenIdle().then(() => true), sleep(IDLE_WAIT_MS)]);
    if (!idle) {
      process.stderr.write(
        `iommufd-emu: ${server.connectionCount} connections still open ${IDLE_WAIT_MS} ms after ${program} exited (a background process holds emulated fds); not checking for leaks\n`,
      );
    } else {
      const leaks = leaksOf(kernel);
      if (leaks.length > 0) {
        reportLeaks(leaks);
        status = EXIT_LEAKS;
      } else if (checks !== undefined && checks.found.length > 0) {
        status = EXIT_INVARIANTS;
      }
    }
    return status;
  } finally {
    await server?.close();
    shutdownKernel(kernel);
    stopTrace?.();
    stopDmesg?.();
    checks?.stop();
    detach?.();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// -- serve ---------------------------------------------------------------------------------------

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

async function serveCommand(flags: ServeFlags): Promise<number> {
  refuseIfShimmed();
  const grant = grantedCaps(flags);
  const shim = ensureShim();
  let dir: string | undefined;
  let socketPath: string;
  if (flags.socket !== undefined) {
    socketPath = path.resolve(flags.socket);
    if (fs.existsSync(socketPath)) {
      if (!fs.statSync(socketPath).isSocket()) fail(`${socketPath} exists and is not a socket`);
      if (await socketInUse(socketPath)) fail(`an emulator already serves ${socketPath}`);
      fs.unlinkSync(socketPath);
    }
  } else {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-'));
    socketPath = path.join(dir, 'emu.sock');
  }
  const kernel = bootKernel(flags);
  const stopTrace = flags.trace === undefined ? undefined : startTrace(kernel, flags.trace);
  const server = await startServer(
    kernel,
    socketPath,
    dir === undefined
      ? { grantedCaps: grant }
      : { testbedDir: path.join(dir, 'root'), grantedCaps: grant },
  );
  process.stdout.write(
    `export LD_PRELOAD=${shellQuote(preloadWith(shim, undefined))}\nexport IOMMUFD_EMU_SOCKET=${shellQuote(socketPath)}\n`,
  );
  process.stderr.write(`iommufd-emu: serving on ${socketPath}; stop with Ctrl-C\n`);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(s, () => resolve(s));
  });
  process.stderr.write(`iommufd-emu: ${signal}: stopping\n`);
  await server.close();
  const leaks = leaksOf(kernel);
  shutdownKernel(kernel);
  stopTrace?.();
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  if (leaks.length > 0) {
    reportLeaks(leaks);
    return EXIT_LEAKS;
  }
  return 0;
}

// -- command line --------------------------------------------------------------------------------

function kernelOptions(cmd: Command): Command {
  return cmd
    .option('--trace <file>', 'write every emulated call and emulator event to FILE')
    .option('--platform <file>', 'the machine to emulate (default: the built-in platform)')
    .option('--enable-unsafe-noiommu-mode', 'boot with vfio.enable_unsafe_noiommu_mode=1')
    .option(
      '--cap <caps>',
      'run every program as if it held CAPS (e.g. CAP_SYS_RAWIO; comma separated, repeatable, or "all") for the emulated kernel',
      (value: string, previous: readonly string[] | undefined) => [...(previous ?? []), value],
    );
}

function buildProgram(run: (work: Promise<number>) => void): Command {
  const program = new Command('iommufd-emu')
    .description('A userspace emulator of Linux iommufd (/dev/iommu) and VFIO device cdevs')
    .version(packageVersion(), '-V, --version', 'print the version')
    .enablePositionalOptions()
    .showHelpAfterError();

  kernelOptions(
    program
      .command('exec')
      .description(
        'run PROGRAM [ARGS...] against the emulator (a private one unless IOMMUFD_EMU_SOCKET is set)',
      )
      .option('--check', 'check the emulator invariants after every call (exit 4 on a violation)')
      .argument('<program>', 'the program to run')
      .argument('[args...]', 'its arguments')
      .passThroughOptions(),
  ).action((prog: string, args: string[], flags: ExecFlags) => {
    run(execCommand(prog, args, flags));
  });

  kernelOptions(
    program
      .command('serve')
      .description('serve one emulator for several programs; prints the environment they need')
      .option('--socket <path>', 'the socket to serve on (default: in a new private directory)'),
  ).action((flags: ServeFlags) => {
    run(serveCommand(flags));
  });

  registerCheckCommand(program, execCommand);

  program
    .command('demo')
    .description(
      'build examples/noiommu-edu-dma.c with gcc and run it in no-IOMMU mode, with a readable trace',
    )
    .action(() => {
      refuseIfShimmed();
      run(demoCommand({ root: packageRoot(), exec: execCommand }));
    });

  program.exitOverride();
  for (const sub of program.commands) sub.exitOverride();
  return program;
}

function main(argv: readonly string[]): void {
  const finish = (work: Promise<number>): void => {
    work.then(
      (status) => process.exit(status),
      (err: unknown) => {
        if (err instanceof UsageError || err instanceof DemoError) {
          process.stderr.write(`iommufd-emu: ${err.message}\n`);
          process.exit(EXIT_USAGE);
        }
        process.stderr.write(
          `iommufd-emu: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
        );
        process.exit(1);
      },
    );
  };
  try {
    buildProgram(finish).parse(argv as string[]);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
    if (err instanceof UsageError) {
      process.stderr.write(`iommufd-emu: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    throw err;
  }
}

main(process.argv);
