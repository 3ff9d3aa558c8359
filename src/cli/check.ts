/**
 * `iommufd-emu check`: the fault-injection sweep over the built-in scenarios, the replay of one
 * swept run, and the randomized model-based explorer.
 *
 *   iommufd-emu check [--scenario NAME|all] [--max-iterations N] [--mutant NAME]
 *     Sweeps fail-nth over every injection point of each scenario; prints every violation with
 *     the command that replays it. Exit 1 if there was any.
 *   iommufd-emu check --scenario NAME --nth N
 *     Replays one run with fail-nth armed to N: its call log, where the fault was injected,
 *     and what broke.
 *   iommufd-emu check --explore [--seed S] [--runs R] [--faults] [--path P --replay-path RP]
 *     Random call sequences against a reference model, shrunk to a minimal one on failure.
 *   iommufd-emu check --list
 *
 * On a terminal the sweep shows a one-line progress bar on stderr; elsewhere it prints one
 * summary line per scenario.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { type ExecForSweep, programTarget } from '../check/program-sweep.ts';
import { findScenario, SCENARIOS } from '../check/scenarios.ts';
import { formatRun, formatViolation, scenarioTarget, sweep } from '../check/sweep.ts';
import { isMutantName, MUTANTS, setMutantForTest } from '../fault/mutant.ts';

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

/** A one-line progress bar, redrawn in place with \r. */
function progressLine(name: string, n: number, total: number): string {
  const width = 30;
  const done = total === 0 ? width : Math.min(width, Math.round((n / total) * width));
  return `\r${name} [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${n}/${total}`;
}

function usage(io: CheckIo, message: string): number {
  io.err(`iommufd-emu check: ${message}\n`);
  return 2;
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
    return result.violations.length > 0 ? 1 : 0;
  }
  const started = Date.now();
  const report = await sweep(target, {
    ...(options.maxIterations === undefined ? {} : { maxIterations: options.maxIterations }),
    onProgress: (n, total) => {
      if (io.progressBar) io.err(progressLine(target.name, n, total + 1));
    },
  });
  if (io.progressBar) io.err('\r\x1b[K');
  io.out(
    `${target.name}: ${report.points} injection points, ${report.iterations} runs, ` +
      `${report.violations.length} violations (${Date.now() - started} ms)\n`,
  );
  for (const v of report.violations) io.out(`${formatViolation(v)}\n`);
  return report.violations.length > 0 ? 1 : 0;
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

  if (command.length > 0) return checkProgram(command, options, io);

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
    return 1;
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
    return result.violations.length > 0 ? 1 : 0;
  }

  let points = 0;
  let violations = 0;
  for (const scenario of scenarios) {
    const started = Date.now();
    const report = await sweep(scenarioTarget(scenario), {
      ...(options.maxIterations === undefined ? {} : { maxIterations: options.maxIterations }),
      onProgress: (n, total) => {
        if (io.progressBar) io.err(progressLine(scenario.name, n, total + 1));
      },
    });
    if (io.progressBar) io.err('\r\x1b[K');
    points += report.points;
    violations += report.violations.length;
    io.out(
      `${scenario.name}: ${report.points} injection points, ${report.iterations} runs, ` +
        `${report.violations.length} violations (${Date.now() - started} ms)\n`,
    );
    for (const v of report.violations) io.out(`${formatViolation(v)}\n`);
  }
  io.out(
    `check: ${scenarios.length} scenarios, ${points} injection points, ${violations} violations\n`,
  );
  return violations > 0 ? 1 : 0;
}

/**
 * Adds `check` to the `iommufd-emu` program. The action sets process.exitCode (1 when
 * violations were found, 2 for bad usage) rather than exiting.
 */
export function registerCheckCommand(program: Command, exec?: ExecForSweep): Command {
  // `check [options] -- PROGRAM` passes PROGRAM's own options through untouched.
  program.enablePositionalOptions();
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
    .option('--scenario <name>', 'a built-in scenario, or "all"', 'all')
    .option('--nth <n>', 'replay one run of --scenario with fail-nth armed to N', parseCount)
    .option(
      '--max-iterations <n>',
      'fail when a scenario has this many injection points',
      parseCount,
    )
    .option('--explore', 'run the randomized model-based explorer')
    .option('--seed <s>', 'explorer seed (printed when not given)', parseSeed)
    .option('--runs <r>', 'explorer: number of call sequences (default 100)', parseCount)
    .option(
      '--path <p>',
      "explorer: replay this counterexample path (from a failure's replay line)",
    )
    .option('--replay-path <rp>', 'explorer: the replayPath hint that goes with --path')
    .option('--faults', 'explorer: also arm fail-nth before random calls')
    .option('--mutant <name>', 'activate a mutant, like IOMMUFD_EMU_MUTANT=<name> (see --list)')
    .option('--list', 'list the scenarios and the mutants')
    .action(async (command: string[], options: CheckOptions) => {
      const code = await runCheck(
        options,
        {
          out: (text) => process.stdout.write(text),
          err: (text) => process.stderr.write(text),
          progressBar: process.stderr.isTTY === true,
          ...(exec === undefined ? {} : { exec }),
        },
        command,
      );
      if (code !== 0) process.exitCode = code;
    });
}
