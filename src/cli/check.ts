/**
 * `iommufd-emu check`: the fault-injection sweep over the built-in scenarios, the replay of one
 * swept run, and the randomized model-based explorer.
 *
 *   iommufd-emu check [--scenario NAME|all] [--max-iterations N] [--max-runs N] [--format F] [--mutant NAME]
 *     Sweeps fail-nth over every injection point of each scenario; prints every violation with
 *     the command that replays it. Exit 99 (--error-exitcode) if there was any.
 *   iommufd-emu check --scenario NAME --nth N
 *     Replays one run with fail-nth armed to N: its call log, where the fault was injected,
 *     and what broke.
 *   iommufd-emu check --explore [--seed S] [--runs R] [--faults] [--path P --replay-path RP]
 *     Random call sequences against a reference model, shrunk to a minimal one on failure.
 *   iommufd-emu check --list
 *
 *   iommufd-emu check [options] -- PROGRAM [ARGS...]
 *     Sweeps an unmodified program through the shim; each violation replays with
 *     `iommufd-emu exec --fail-nth N -- PROGRAM`.
 *
 * On a terminal the sweep shows a progress bar with rate and ETA on stderr; elsewhere plain
 * progress lines. Results go to stdout as text, JSON or TAP (--format).
 */
import { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type ExecForSweep, programTarget } from '../check/program-sweep.ts';
import { formatJson, formatTap, type ReportFormat } from '../check/report.ts';
import { findScenario, SCENARIOS } from '../check/scenarios.ts';
import {
  formatRun,
  formatViolation,
  type SweepReport,
  scenarioTarget,
  sweep,
} from '../check/sweep.ts';
import { isMutantName, MUTANTS, setMutantForTest } from '../fault/mutant.ts';
import { DEFAULT_ERROR_EXITCODE, EXIT_EMULATOR_FAILED, parseErrorExitcode } from './exit-status.ts';

/** The options of `check`, as commander parses them. */
export interface CheckOptions {
  readonly scenario?: string;
  readonly nth?: number;
  readonly maxIterations?: number;
  readonly explore?: boolean;
  readonly seed?: number;
  readonly runs?: number;
  readonly path?: string;
  readonly replayPath?: string;
  readonly faults?: boolean;
  readonly mutant?: string;
  readonly list?: boolean;
  readonly enableUnsafeNoiommuMode?: boolean;
  readonly platform?: string;
  readonly cap?: readonly string[];
  /** The status for violations (--error-exitcode). */
  readonly errorExitcode?: number;
  /** Stop each sweep after this many runs with fail-nth armed. */
  readonly maxRuns?: number;
  /** How results go to stdout: text for people, JSON or TAP for machines. */
  readonly format?: ReportFormat;
}

/** Where `check` writes: stdout for results, stderr for progress (a bar only on a TTY). */
export interface CheckIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly progressBar: boolean;
  /** How a program is run under the emulator (only for `check -- PROGRAM`). */
  readonly exec?: ExecForSweep;
}

function parseCount(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('not a non-negative integer');
  return Number(value);
}

function parseSeed(value: string): number {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError('not an integer');
  return Number(value) | 0;
}

function rateAndEta(n: number, total: number, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? (n * 1000) / elapsedMs : 0;
  const eta = rate > 0 ? Math.ceil((total - n) / rate) : 0;
  return `${rate.toFixed(1)} runs/s, ETA ${eta} s`;
}

/** How often a sweep not on a terminal prints a progress line, at most. */
const PROGRESS_LINE_MS = 5000;

/**
 * Progress of one target's sweep on stderr: the number of injection points once counted, then a
 * bar with rate and time left on a terminal (cli-progress), or elsewhere (a CI log, a pipe) a plain line at each quarter and at least
 * every few seconds, so a job that kills silent steps sees it alive.
 */
function progressReporter(io: CheckIo, name: string) {
  const started = Date.now();
  let lastLine = started;
  let nextQuarter = 1;
  let bar: cliProgress.SingleBar | undefined;
  return {
    counted(points: number): void {
      io.err(`${name}: ${points} injection points: ${points + 1} runs\n`);
      if (!io.progressBar) return;
      bar = new cliProgress.SingleBar(
        {
          format: `${name} [{bar}] {value}/{total} {rate} runs/s, ETA {eta_formatted}`,
          barCompleteChar: '#',
          barIncompleteChar: '.',
          barsize: 30,
          clearOnComplete: true,
          hideCursor: true,
          // io.err is where the bar goes (stderr, or a test's buffer), as a terminal stream.
          stream: terminalStream(io),
        },
        cliProgress.Presets.legacy,
      );
      bar.start(points + 1, 0, { rate: '0.0' });
    },
    step(n: number, points: number): void {
      const total = points + 1;
      const now = Date.now();
      if (bar !== undefined) {
        bar.update(n, { rate: (now > started ? (n * 1000) / (now - started) : 0).toFixed(1) });
        return;
      }
      const quarter = n >= (nextQuarter * total) / 4;
      if (quarter || now - lastLine >= PROGRESS_LINE_MS) {
        while (n >= (nextQuarter * total) / 4) nextQuarter++;
        lastLine = now;
        io.err(`${name}: run ${n}/${total}, ${rateAndEta(n, total, now - started)}\n`);
      }
    },
    done(): void {
      bar?.stop();
    },
  };
}

/** A writable that cli-progress takes for a terminal, writing through io.err. */
function terminalStream(io: CheckIo): NodeJS.WritableStream {
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      io.err(chunk.toString());
      callback();
    },
  });
  return Object.assign(stream, { isTTY: true, columns: process.stderr.columns ?? 100 });
}

function usage(io: CheckIo, message: string): number {
  io.err(`iommufd-emu: check: ${message}\n`);
  return EXIT_EMULATOR_FAILED;
}

/** The status when violations were found. */
function violationStatus(options: CheckOptions, count: number): number {
  return count > 0 ? (options.errorExitcode ?? DEFAULT_ERROR_EXITCODE) : 0;
}

/** Sweeps (or, with --nth, replays one run of) an unmodified program. */
async function checkProgram(
  command: readonly string[],
  options: CheckOptions,
  io: CheckIo,
): Promise<number> {
  if (io.exec === undefined) return usage(io, 'running programs is not available here');
  const target = programTarget(command[0]!, command.slice(1), io.exec, {
    ...(options.enableUnsafeNoiommuMode === true ? { enableUnsafeNoiommuMode: true } : {}),
    ...(options.platform === undefined ? {} : { platform: options.platform }),
    ...(options.cap === undefined ? {} : { cap: options.cap }),
  });
  if (options.nth !== undefined) {
    const result = await target.run(options.nth === 0 ? undefined : options.nth);
    io.out(`${formatRun(target.name, result)}\n`);
    return violationStatus(options, result.violations.length);
  }
  const started = Date.now();
  const progress = progressReporter(io, target.name);
  const report = await sweep(target, {
    // A program's number of injection points is its own: no cap unless --max-runs asks for one.
    maxIterations: options.maxIterations ?? Number.POSITIVE_INFINITY,
    ...(options.maxRuns === undefined ? {} : { maxRuns: options.maxRuns }),
    onCounted: (points) => progress.counted(points),
    onProgress: (n, points) => progress.step(n, points),
  });
  progress.done();
  return finishReports([report], [Date.now() - started], options, io);
}

/** Prints the reports in the format asked for; returns the exit status. */
function finishReports(
  reports: readonly SweepReport[],
  durationsMs: readonly number[],
  options: CheckOptions,
  io: CheckIo,
  scenarios = false,
): number {
  const violations = reports.reduce((sum, r) => sum + r.violations.length, 0);
  if (options.format === 'json') io.out(formatJson(reports));
  else if (options.format === 'tap') io.out(formatTap(reports));
  else {
    reports.forEach((report, i) => {
      const limit = report.limited
        ? ` (stopped by --max-runs before injection point ${report.iterations + 1} of ${report.points})`
        : '';
      io.out(
        `${report.target}: ${report.points} injection points, ${report.iterations} runs, ` +
          `${report.violations.length} violations (${durationsMs[i]} ms)${limit}\n`,
      );
      for (const v of report.violations) io.out(`${formatViolation(v)}\n`);
    });
    if (scenarios)
      io.out(
        `check: ${reports.length} scenarios, ${reports.reduce((sum, r) => sum + r.points, 0)} injection points, ${violations} violations\n`,
      );
  }
  return violationStatus(options, violations);
}

/** Runs `check` with parsed options; returns the exit status (0 clean, 1 violations, 2 usage). */
export async function runCheck(
  options: CheckOptions,
  io: CheckIo,
  command: readonly string[] = [],
): Promise<number> {
  if (options.list) {
    io.out('scenarios:\n');
    for (const s of SCENARIOS) io.out(`  ${s.name.padEnd(20)} ${s.description}\n`);
    io.out(
      'mutants (IOMMUFD_EMU_MUTANT=NAME or --mutant NAME; they exist only to prove the checker):\n',
    );
    for (const [name, what] of Object.entries(MUTANTS)) io.out(`  ${name.padEnd(20)} ${what}\n`);
    return 0;
  }
  if (options.mutant !== undefined) {
    if (!isMutantName(options.mutant))
      return usage(io, `unknown mutant ${options.mutant} (see --list)`);
    setMutantForTest(options.mutant);
    io.err(`iommufd-emu check: mutant ${options.mutant} is active: violations are expected\n`);
  }

  if (command.length > 0) {
    if (options.explore === true)
      return usage(io, '--explore runs its own calls: it takes no PROGRAM');
    return checkProgram(command, options, io);
  }
  if (
    options.enableUnsafeNoiommuMode === true ||
    options.platform !== undefined ||
    options.cap !== undefined
  )
    return usage(
      io,
      '--enable-unsafe-noiommu-mode, --platform and --cap apply to a PROGRAM (check [options] -- PROGRAM); the built-in scenarios set up their own machine',
    );
  if (options.replayPath !== undefined && options.path === undefined)
    return usage(io, "--replay-path goes with --path (both come from a failure's replay line)");

  if (options.explore) {
    // Loaded on demand: fast-check (and the model) are needed by --explore only.
    const { explore } = await import('../check/explorer.ts');
    const report = explore({
      ...(options.seed === undefined ? {} : { seed: options.seed }),
      ...(options.runs === undefined ? {} : { runs: options.runs }),
      ...(options.path === undefined ? {} : { path: options.path }),
      ...(options.replayPath === undefined ? {} : { replayPath: options.replayPath }),
      faults: options.faults ?? false,
    });
    const s = report.stats;
    const what =
      `explore: seed ${report.seed}, ${report.runs} runs, ${s.calls} calls` +
      (report.faults ? `, ${s.failedByInjection} failed by injection` : '');
    if (report.ok) {
      io.out(`${what}: ok\n`);
      return 0;
    }
    io.out(
      `${what}: FAILED\n${report.error ?? ''}\n${report.message ?? ''}\n  replay: ${report.replay}\n`,
    );
    return violationStatus(options, 1);
  }

  const name = options.scenario ?? 'all';
  const scenarios =
    name === 'all' ? SCENARIOS : [findScenario(name)].filter((s) => s !== undefined);
  if (scenarios.length === 0) return usage(io, `unknown scenario ${name} (see --list)`);

  if (options.nth !== undefined) {
    if (scenarios.length !== 1) return usage(io, '--nth needs one --scenario');
    const scenario = scenarios[0]!;
    const target = scenarioTarget(scenario);
    // The counting run first: it is the baseline the replayed run is compared with.
    const base = await target.run(undefined);
    const result = options.nth === 0 ? base : await target.run(options.nth);
    io.out(`${formatRun(scenario.name, result)}\n`);
    return violationStatus(options, result.violations.length);
  }

  const reports: SweepReport[] = [];
  const durations: number[] = [];
  for (const scenario of scenarios) {
    const started = Date.now();
    const progress = progressReporter(io, scenario.name);
    reports.push(
      await sweep(scenarioTarget(scenario), {
        ...(options.maxIterations === undefined ? {} : { maxIterations: options.maxIterations }),
        ...(options.maxRuns === undefined ? {} : { maxRuns: options.maxRuns }),
        onCounted: (points) => progress.counted(points),
        onProgress: (n, points) => progress.step(n, points),
      }),
    );
    progress.done();
    durations.push(Date.now() - started);
  }
  return finishReports(reports, durations, options, io, true);
}

/** Options only the explorer reads: each implies --explore. */
const EXPLORER_ONLY = ['seed', 'runs', 'path', 'replayPath', 'faults'] as const;

/**
 * Adds `check` to the `iommufd-emu` program. The action hands its work to run when given (the CLI
 * turns it into the exit status), else sets process.exitCode.
 */
export function registerCheckCommand(
  program: Command,
  exec?: ExecForSweep,
  run?: (work: Promise<number>) => void,
): Command {
  // `check [options] -- PROGRAM` passes PROGRAM's own options through untouched.
  program.enablePositionalOptions();
  const explorerOption = (flags: string, description: string) =>
    new Option(flags, description).implies({ explore: true });
  return program
    .command('check')
    .description(
      'sweep fail-nth over every injection point of the built-in scenarios or of PROGRAM, or explore',
    )
    .argument('[command...]', 'an unmodified program (and its arguments) to sweep through the shim')
    .passThroughOptions()
    .option('--enable-unsafe-noiommu-mode', 'PROGRAM: boot with vfio.enable_unsafe_noiommu_mode=1')
    .option('--platform <file>', 'PROGRAM: the machine to emulate')
    .option(
      '--cap <caps>',
      'PROGRAM: run it as if it held CAPS (see exec --cap)',
      (value: string, previous: readonly string[] | undefined) => [...(previous ?? []), value],
    )
    .addOption(
      new Option('--scenario <name>', 'a built-in scenario, or "all"')
        .choices(['all', ...SCENARIOS.map((sc) => sc.name)])
        .default('all'),
    )
    .addOption(
      new Option('--nth <n>', 'replay one run of --scenario with fail-nth armed to N')
        .argParser(parseCount)
        .conflicts(['maxIterations']),
    )
    .addOption(
      new Option(
        '--max-iterations <n>',
        'a violation when a target has this many injection points (default: 400 for scenarios, as the kernel selftest; none for a PROGRAM)',
      ).argParser(parseCount),
    )
    .addOption(
      new Option('--explore', 'run the randomized model-based explorer').conflicts([
        'scenario',
        'nth',
        'maxIterations',
      ]),
    )
    .addOption(
      explorerOption('--seed <s>', 'explorer seed (printed when not given)').argParser(parseSeed),
    )
    .addOption(
      explorerOption('--runs <r>', 'explorer: number of call sequences (default 100)').argParser(
        parseCount,
      ),
    )
    .addOption(
      explorerOption(
        '--path <p>',
        "explorer: replay this counterexample path (from a failure's replay line)",
      ),
    )
    .addOption(
      explorerOption('--replay-path <rp>', 'explorer: the replayPath hint that goes with --path'),
    )
    .addOption(explorerOption('--faults', 'explorer: also arm fail-nth before random calls'))
    .addOption(
      new Option(
        '--mutant <name>',
        'activate a mutant, like IOMMUFD_EMU_MUTANT=<name> (see --list)',
      ).choices(Object.keys(MUTANTS)),
    )
    .addOption(
      new Option('--list', 'list the scenarios and the mutants').conflicts([
        'scenario',
        'nth',
        'maxIterations',
        'explore',
        'mutant',
        ...EXPLORER_ONLY,
      ]),
    )
    .addOption(
      new Option(
        '--max-runs <n>',
        'stop each sweep after N runs with fail-nth armed (default: every injection point)',
      )
        .argParser(parseCount)
        .conflicts(['nth']),
    )
    .addOption(
      new Option('--format <format>', 'results on stdout: text, json or tap (TAP version 14)')
        .choices(['text', 'json', 'tap'])
        .default('text')
        .conflicts(['nth']),
    )
    .addOption(
      new Option(
        '--error-exitcode <n>',
        `exit status when violations are found (default ${DEFAULT_ERROR_EXITCODE})`,
      ).argParser(parseErrorExitcode),
    )
    .action((command: string[], options: CheckOptions) => {
      const work = runCheck(
        options,
        {
          out: (text) => process.stdout.write(text),
          err: (text) => process.stderr.write(text),
          progressBar: process.stderr.isTTY === true,
          ...(exec === undefined ? {} : { exec }),
        },
        command,
      );
      if (run !== undefined) {
        run(work);
        return undefined;
      }
      return work.then((code) => {
        if (code !== 0) process.exitCode = code;
      });
    });
}
