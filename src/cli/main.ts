#!/usr/bin/env node
/**
 * The `iommufd-emu` command: option parsing, exit statuses and error reporting for its commands.
 *
 *   iommufd-emu exec [options] -- PROGRAM [ARGS...]   run PROGRAM against a private emulator (exec.ts)
 *   iommufd-emu serve [options] [-- CMD [ARGS...]]    one emulator several programs share (serve.ts)
 *   iommufd-emu check [options] [-- PROGRAM ...]      fault-injection sweeps, the explorer (check.ts)
 *   iommufd-emu replay FILE                           a recorded run against a fresh emulator (replay.ts)
 *   iommufd-emu demo                                  the bundled no-IOMMU driver, traced (demo.ts)
 *
 * Exit statuses: exit-status.ts (and --help).
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ignoredMutantName } from '../fault/mutant.ts';
import { type InspectorAddress, parseInspectAddress } from '../inspector/server.ts';
import {
  defaultPlatform,
  loadPlatformFile,
  PlatformConfigError,
  platformToJson,
} from '../platform/platform-config.ts';
import { platformJsonSchema } from '../platform/platform-schema.ts';
import { EVENT_KINDS, parseTraceFilter, type TraceFilter } from '../trace/writer.ts';
import { registerCheckCommand } from './check.ts';
import { DemoError, demoCommand } from './demo.ts';
import { type ExecFlags, execCommand, refuseIfShimmed } from './exec.ts';
import {
  DEFAULT_ERROR_EXITCODE,
  describeErrno,
  EXIT_EMULATOR_FAILED,
  EXIT_STATUS_HELP,
  fail,
  parseErrorExitcode,
  UsageError,
} from './exit-status.ts';
import { type InspectFlag, joinInspectValue } from './inspect.ts';
import { PackageError, packageRoot, packageVersion } from './native.ts';
import { type ReplayFlags, replayCommand } from './replay.ts';
import { type ServeFlags, serveCommand } from './serve.ts';

// -- command line --------------------------------------------------------------------------------

/** Options every command that boots an emulator takes. */
function kernelOptions(cmd: Command): Command {
  return cmd
    .option('--trace <file>', 'write every emulated call and device event to FILE (- for stderr)')
    .option(
      '--trace-json <file>',
      'the same as JSON lines, u64 values as hex strings (- for stderr)',
    )
    .option('--trace-time', 'prefix each trace line with the seconds since the start')
    .option('--trace-pid', 'prefix each traced call with [pid P]')
    .addOption(
      new Option(
        '--trace-filter <kinds>',
        `only these calls and events: "calls", "events", call names (ioctl, mmio, close, ...) or event kinds (${EVENT_KINDS.join(', ')}), comma separated`,
      ).argParser(parseFilter),
    )
    .option('--platform <file>', 'the machine to emulate (default: the built-in platform)')
    .option('--enable-unsafe-noiommu-mode', 'boot with vfio.enable_unsafe_noiommu_mode=1')
    .option(
      '--cap <caps>',
      'run every program as if it held CAPS (e.g. CAP_SYS_RAWIO; comma separated, repeatable, or "all") for the emulated kernel',
      (value: string, previous: readonly string[] | undefined) => [...(previous ?? []), value],
    )
    .addOption(errorExitcodeOption())
    .addOption(inspectOption());
}

function inspectOption(
  description = 'serve the inspector, a live web page of the emulated kernel (default 127.0.0.1 and a free port; the URL goes to stderr)',
): Option {
  return new Option('--inspect [host:port]', description).argParser(parseInspect);
}

function parseInspect(value: string): InspectorAddress {
  const address = parseInspectAddress(value);
  if (typeof address === 'string') throw new InvalidArgumentError(address);
  return address;
}

export function errorExitcodeOption(): Option {
  return new Option(
    '--error-exitcode <n>',
    `exit status when the emulator finds something wrong (default ${DEFAULT_ERROR_EXITCODE})`,
  ).argParser(parseErrorExitcode);
}

function parseFilter(value: string): TraceFilter {
  const filter = parseTraceFilter(value);
  if (typeof filter === 'string') throw new InvalidArgumentError(filter);
  return filter;
}

function parseFd(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 3)
    throw new InvalidArgumentError('must be a file descriptor number of 3 or more');
  return Number(value);
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
      .addOption(
        new Option(
          '--record <file>',
          'record the run to FILE (every call with its bytes, results, device events) for `iommufd-emu replay`',
        ).conflicts('failNth'),
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
      .description(
        'serve one emulator for several programs and print the environment they need; with -- CMD, run CMD in it',
      )
      .option('--socket <path>', 'the socket to serve on (default: in a new private directory)')
      .option(
        '--write-env <file>',
        'also write the environment to FILE once serving (removed at stop)',
      )
      .addOption(
        new Option('--ready-fd <fd>', 'write READY=1 to file descriptor FD once serving').argParser(
          parseFd,
        ),
      )
      .option(
        '--log <file>',
        'the kernel log (taint, IOMMU faults, unsafe DMA) to FILE, not stderr',
      )
      .option('--check', 'check the emulator invariants after every call')
      .option(
        '--record <file>',
        "record every served program's calls to FILE (bytes, results, device events) for `iommufd-emu replay`",
      )
      .argument(
        '[command...]',
        'a command to run in the served environment; serve stops when it exits',
      )
      .passThroughOptions(),
  )
    .addHelpText('after', EXIT_STATUS_HELP)
    .action((command: string[], flags: ServeFlags) => {
      run(serveCommand(flags, command));
    });

  registerCheckCommand(program, execCommand, run).addHelpText('after', EXIT_STATUS_HELP);

  program
    .command('replay')
    .description(
      'run a recorded run (exec --record) again against a fresh emulator, without the program; report the first call, reply, written-back byte or device event that differs',
    )
    .argument('<file>', 'the record')
    .option('-v, --verbose', 'print the trace of the replayed run as it goes')
    .addOption(errorExitcodeOption())
    .addOption(
      inspectOption(
        'step through the record in the inspector, forward and back, the state after each call (until Ctrl-C), instead of replaying it',
      ),
    )
    .addHelpText('after', EXIT_STATUS_HELP)
    .action((file: string, flags: ReplayFlags) => {
      run(replayCommand(file, flags));
    });

  program
    .command('platform')
    .description(
      'check a platform file and print the machine it describes, defaults filled in; or print the default platform or the JSON Schema of platform files',
    )
    .argument('[file]', 'a platform file to check')
    .addOption(
      new Option('--print-default', 'print the built-in platform as a platform file').conflicts(
        'printSchema',
      ),
    )
    .option('--print-schema', 'print the JSON Schema of platform files (for editors)')
    .action((file: string | undefined, flags: PlatformFlags) => {
      run(Promise.resolve(platformCommand(file, flags)));
    });

  program
    .command('demo')
    .description(
      'build examples/noiommu-edu-dma.c with gcc and run it in no-IOMMU mode, with a readable trace',
    )
    .addOption(inspectOption())
    .action((flags: { inspect?: InspectFlag }) => {
      refuseIfShimmed();
      run(
        demoCommand({
          root: packageRoot(),
          exec: execCommand,
          ...(flags.inspect === undefined ? {} : { inspect: flags.inspect }),
        }),
      );
    });

  return program;
}

interface PlatformFlags {
  readonly printDefault?: boolean;
  readonly printSchema?: boolean;
}

function platformCommand(file: string | undefined, flags: PlatformFlags): number {
  const print = (json: unknown): number => {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return 0;
  };
  if (file !== undefined && (flags.printDefault === true || flags.printSchema === true))
    fail('platform: give a FILE to check, or --print-default, or --print-schema');
  if (flags.printSchema === true) return print(platformJsonSchema());
  if (file === undefined) return print(platformToJson(defaultPlatform()));
  const config = loadPlatformFile(file);
  if (config instanceof PlatformConfigError) fail(config.message);
  return print(platformToJson(config));
}

/** A message for the user and exit 125, for everything that is the emulator's own failure. */
function emulatorFailed(err: unknown): never {
  if (err instanceof UsageError || err instanceof DemoError || err instanceof PackageError) {
    for (const line of err.message.split('\n')) process.stderr.write(`iommufd-emu: ${line}\n`);
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
  const ignored = ignoredMutantName();
  if (ignored !== undefined) {
    process.stderr.write(`iommufd-emu: unknown IOMMUFD_EMU_MUTANT=${ignored}, ignored\n`);
  }
  const finish = (work: Promise<number>): void => {
    work.then((status) => process.exit(status), emulatorFailed);
  };
  toleratePipeClose();
  try {
    enterUserDirectory();
    const program = buildProgram(finish);
    const command = program.commands.find((c) => c.name() === argv[2]);
    const args =
      command === undefined
        ? [...argv]
        : [...argv.slice(0, 3), ...joinInspectValue(command, argv.slice(3))];
    program.parse(args);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT_EMULATOR_FAILED);
    emulatorFailed(err);
  }
}

main(process.argv);
