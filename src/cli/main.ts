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
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { startServer } from '../server/server.ts';
import { registerCheckCommand } from './check.ts';
import { DemoError, demoCommand } from './demo.ts';
import {
  bootKernel,
  type ExecFlags,
  ensureShim,
  execCommand,
  grantedCaps,
  type KernelFlags,
  leaksOf,
  preloadWith,
  refuseIfShimmed,
  reportLeaks,
  shutdownKernel,
  startTrace,
} from './exec.ts';
import {
  DEFAULT_ERROR_EXITCODE,
  describeErrno,
  EXIT_EMULATOR_FAILED,
  EXIT_STATUS_HELP,
  fail,
  parseErrorExitcode,
  UsageError,
} from './exit-status.ts';
import { PackageError, packageRoot, packageVersion } from './native.ts';

interface ServeFlags extends KernelFlags {
  readonly socket?: string;
  readonly errorExitcode?: number;
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
    return flags.errorExitcode ?? DEFAULT_ERROR_EXITCODE;
  }
  return 0;
}

// -- command line --------------------------------------------------------------------------------

/** Options every command that boots an emulator takes. */
function kernelOptions(cmd: Command): Command {
  return cmd
    .option('--trace <file>', 'write every emulated call and emulator event to FILE')
    .option('--platform <file>', 'the machine to emulate (default: the built-in platform)')
    .option('--enable-unsafe-noiommu-mode', 'boot with vfio.enable_unsafe_noiommu_mode=1')
    .option(
      '--cap <caps>',
      'run every program as if it held CAPS (e.g. CAP_SYS_RAWIO; comma separated, repeatable, or "all") for the emulated kernel',
      (value: string, previous: readonly string[] | undefined) => [...(previous ?? []), value],
    )
    .addOption(errorExitcodeOption());
}

export function errorExitcodeOption(): Option {
  return new Option(
    '--error-exitcode <n>',
    `exit status when the emulator finds something wrong (default ${DEFAULT_ERROR_EXITCODE})`,
  ).argParser(parseErrorExitcode);
}

function parseNth(value: string): number {
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError('must be a positive integer');
  return Number(value);
}

/** Errors go to stderr with one prefix, `iommufd-emu: `, commander's own included. */
function outputConfiguration() {
  return {
    outputError: (text: string, write: (text: string) => void) => {
      write(`iommufd-emu: ${text.replace(/^error: /, '')}`);
    },
  };
}

function buildProgram(run: (work: Promise<number>) => void): Command {
  const program = new Command('iommufd-emu')
    .description('A userspace emulator of Linux iommufd (/dev/iommu) and VFIO device cdevs')
    .version(packageVersion(), '-V, --version', 'print the version')
    .enablePositionalOptions()
    .showHelpAfterError('(iommufd-emu --help, or iommufd-emu help COMMAND, for usage)')
    .configureOutput(outputConfiguration())
    .exitOverride()
    .addHelpText('after', EXIT_STATUS_HELP);

  kernelOptions(
    program
      .command('exec')
      .description(
        'run PROGRAM [ARGS...] against the emulator (a private one unless IOMMUFD_EMU_SOCKET is set)',
      )
      .option('--check', 'check the emulator invariants after every call')
      .addOption(
        new Option(
          '--fail-nth <n>',
          'fail the N-th injection point of the run (as `check -- PROGRAM` numbers them); the trace and the failing call go to stderr',
        ).argParser(parseNth),
      )
      .argument('<program>', 'the program to run')
      .argument('[args...]', 'its arguments')
      .passThroughOptions(),
  )
    .addHelpText('after', EXIT_STATUS_HELP)
    .action((prog: string, args: string[], flags: ExecFlags) => {
      run(execCommand(prog, args, flags));
    });

  kernelOptions(
    program
      .command('serve')
      .description('serve one emulator for several programs; prints the environment they need')
      .option('--socket <path>', 'the socket to serve on (default: in a new private directory)'),
  )
    .addHelpText('after', EXIT_STATUS_HELP)
    .action((flags: ServeFlags) => {
      run(serveCommand(flags));
    });

  registerCheckCommand(program, execCommand, run).addHelpText('after', EXIT_STATUS_HELP);

  program
    .command('demo')
    .description(
      'build examples/noiommu-edu-dma.c with gcc and run it in no-IOMMU mode, with a readable trace',
    )
    .action(() => {
      refuseIfShimmed();
      run(demoCommand({ root: packageRoot(), exec: execCommand }));
    });

  return program;
}

/** A message for the user and exit 125, for everything that is the emulator's own failure. */
function emulatorFailed(err: unknown): never {
  if (err instanceof UsageError || err instanceof DemoError || err instanceof PackageError) {
    process.stderr.write(`iommufd-emu: ${err.message}\n`);
  } else {
    process.stderr.write(
      `iommufd-emu: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
  }
  process.exit(EXIT_EMULATOR_FAILED);
}

/**
 * `npm run cli -- ...` runs in the package's directory; paths the user typed are relative to the
 * directory npm was started in (INIT_CWD), so work from there.
 */
function enterUserDirectory(): void {
  const event = process.env.npm_lifecycle_event;
  const userDir = process.env.INIT_CWD;
  if ((event === 'cli' || event === 'demo') && userDir !== undefined && userDir !== '') {
    try {
      process.chdir(userDir);
    } catch (err) {
      fail(`cannot enter ${userDir}, the directory npm was run from: ${describeErrno(err)}`);
    }
  }
}

/**
 * A reader that stops early (`check --list | head`) closes the pipe: stop writing to it, finish the
 * work, and exit with its status rather than die on EPIPE.
 */
function toleratePipeClose(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') emulatorFailed(err);
  });
}

function main(argv: readonly string[]): void {
  const finish = (work: Promise<number>): void => {
    work.then((status) => process.exit(status), emulatorFailed);
  };
  toleratePipeClose();
  try {
    enterUserDirectory();
    buildProgram(finish).parse(argv as string[]);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT_EMULATOR_FAILED);
    emulatorFailed(err);
  }
}

main(process.argv);
