/**
 * The fail-nth sweep, after tools/testing/selftests/iommu/iommufd_fail_nth.c: run a scenario once
 * to count its injection points, then for n = 1, 2, ... run it again on a fresh Kernel with
 * fail-nth armed to n, until a run no longer reaches its n-th point (capped, like the selftest's
 * `iteration < 400`). After every run every process exits, and then the checker looks for:
 *
 * - invariant violations (src/check/invariants.ts), after every call and at teardown;
 * - leaks (objects, pins, domains, charges that outlived their owner);
 * - 'bug' events: an exception inside the emulator (EIO at the syscall boundary) is a bug;
 * - the failing call changed the state, where the kernel promises it does not;
 * - the run diverged from the counting run before the fault was injected.
 *
 * Each violation carries a one-line command that replays it. The target is an interface so a
 * later step can sweep a program run through the shim (arm /proc/<pid>/task/<tid>/fail-nth, run
 * the command, read its exit status) with the same loop.
 */

import { Kernel } from '../boot/kernel.ts';
import type { FaultSite } from '../fault/fault.ts';
import { activeMutant } from '../fault/mutant.ts';
import { errnoName } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import { checkInvariants } from './invariants.ts';
import {
  type CallKind,
  type CallObserver,
  CheckedProcess,
  type Scenario,
  ScenarioCheckError,
  type ScenarioContext,
  ScenarioStop,
  scenarioHelpers,
} from './scenario.ts';
import { diffSnapshots, type KernelSnapshot, snapshotKernel } from './snapshot.ts';

/** What went wrong, by kind. */
export type ViolationKind =
  /** An invariant broke after a call. */
  | 'invariant'
  /** An invariant broke once every process had exited. */
  | 'teardown'
  /** kernel.leaks(): something outlived its owner. */
  | 'leak'
  /** An exception inside the emulator (or another 'bug' event). */
  | 'bug'
  /** The call that failed by injection changed state the kernel promises to leave alone. */
  | 'state-changed'
  /** Before the injected fault the run did something other than the counting run. */
  | 'diverged'
  /** The scenario itself failed: uninjected run, functional check, or an unexpected throw. */
  | 'scenario'
  /** More injection points than the cap. */
  | 'cap';

export interface Violation {
  readonly kind: ViolationKind;
  readonly target: string;
  /** The fail-nth value of the run; undefined for the counting run. */
  readonly nth: number | undefined;
  readonly message: string;
  /** Where the fault was injected in that run, and in which call. */
  readonly site?: FaultSite;
  readonly call?: string;
  /** A command line that replays the run. */
  readonly replay: string;
}

/** One call of a run, as the log shows it. */
export interface CallRecord {
  readonly index: number;
  readonly pid: number;
  readonly label: string;
  readonly ret: number;
  /** The site that failed during this call, if the injected fault fired here. */
  fired?: FaultSite;
}

/** The result of one run of a target. */
export interface RunResult {
  readonly nth: number | undefined;
  /** Injection points passed after fail_nth_enable(). */
  readonly points: number;
  /** Whether the armed point was reached (fail-nth read back 0). */
  readonly reached: boolean;
  readonly site: FaultSite | undefined;
  /** Where in the emulator the fault was injected (a stack trace). */
  readonly siteStack: string | undefined;
  readonly failingCall: CallRecord | undefined;
  /** completed; stopped at a failing call; a functional check failed; something else threw. */
  readonly outcome: 'completed' | 'stopped' | 'check-failed' | 'error';
  readonly outcomeMessage: string | undefined;
  readonly calls: readonly CallRecord[];
  readonly violations: readonly Violation[];
}

/** Something the sweep can run with fail-nth armed: a TS scenario now, a shim command later. */
export interface SweepTarget {
  readonly name: string;
  /** One run on a fresh kernel; nth undefined is the counting run (nothing injected). */
  run(nth: number | undefined): Promise<RunResult>;
  /** The command line that replays the run armed at nth. */
  replay(nth: number | undefined): string;
}

export interface ScenarioTargetOptions {
  /** Check the invariants after every call, not only at teardown (default true). */
  readonly checkEveryCall?: boolean;
}

/**
 * Calls whose failure the kernel does not promise to be free of side effects, when the fault
 * hits the copy of the result back to the user: the mapping or unmapping has happened (MAP,
 * COPY, UNMAP), the option is set (OPTION), or the device ends up detached (ATTACH_PT, which
 * unwinds a replace by detaching).
 */
const NOT_ATOMIC_ON_COPY_OUT = new Set<number>([
  ioctl.IOMMU_IOAS_MAP,
  ioctl.IOMMU_IOAS_COPY,
  ioctl.IOMMU_IOAS_UNMAP,
  ioctl.IOMMU_OPTION,
  ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
]);

/** Whether the kernel promises a call that failed at `site` left the state as it was. */
export function promisesUnchanged(call: CallKind, site: FaultSite): boolean {
  if (call.kind === 'ioctl' && site === 'copy-to-user')
    return !NOT_ATOMIC_ON_COPY_OUT.has(call.cmd);
  return true;
}

/** The replay command line of a built-in scenario run. */
export function scenarioReplay(name: string, nth: number | undefined): string {
  const mutant = activeMutant();
  return (
    `iommufd-emu check --scenario ${name}` +
    (nth === undefined ? '' : ` --nth ${nth}`) +
    (mutant === undefined ? '' : ` --mutant ${mutant}`)
  );
}

function firstLines(text: string, n: number): string {
  return text.split('\n').slice(0, n).join(' | ');
}

/** The per-call hook of one run: call log, snapshots around the failing call, invariants. */
class RunObserver implements CallObserver {
  readonly calls: CallRecord[] = [];
  enabled: CheckedProcess | undefined;
  failingCall: CallRecord | undefined;
  private diverged = false;
  private invariantsBroken = false;
  private readonly kernel: Kernel;
  private readonly nth: number | undefined;
  private readonly baseline: readonly CallRecord[] | undefined;
  private readonly baselinePoints: readonly number[] | undefined;
  /** Injection points the enabled process had passed after each call, for the next run. */
  readonly pointsAfter: number[] = [];
  private readonly checkEveryCall: boolean;
  private readonly report: (kind: ViolationKind, message: string) => void;

  constructor(
    kernel: Kernel,
    nth: number | undefined,
    baseline: { calls: readonly CallRecord[]; points: readonly number[] } | undefined,
    checkEveryCall: boolean,
    report: (kind: ViolationKind, message: string) => void,
  ) {
    this.kernel = kernel;
    this.nth = nth;
    this.baseline = baseline?.calls;
    this.baselinePoints = baseline?.points;
    this.checkEveryCall = checkEveryCall;
    this.report = report;
  }

  observe(proc: CheckedProcess, call: CallKind, label: string, fn: () => number): number {
    const counter = proc.failNth;
    const index = this.calls.length;
    const pending =
      this.nth !== undefined &&
      proc === this.enabled &&
      counter.remaining > 0 &&
      counter.lastFired === undefined;
    // The counting run says which call passes the armed point: the first whose count of points
    // passed reaches nth. Only that call is snapshotted (decision 240).
    const expected =
      pending &&
      (this.baselinePoints === undefined ||
        (this.baselinePoints[index] ?? Number.POSITIVE_INFINITY) >= (this.nth ?? 0));
    const before: KernelSnapshot | undefined = expected ? snapshotKernel(this.kernel) : undefined;
    const ret = fn();
    const record: CallRecord = { index, pid: proc.pid, label, ret };
    this.calls.push(record);
    this.pointsAfter.push(this.enabled?.failNth.trail?.length ?? 0);

    if (pending && counter.lastFired !== undefined) {
      const site = counter.lastFired;
      record.fired = site;
      this.failingCall = record;
      if (before === undefined) {
        this.diverged = true;
        this.report(
          'diverged',
          `injection point ${this.nth} was passed in call #${index} ${label}; the counting run ` +
            'passed it in a later call',
        );
      } else if (ret < 0 && promisesUnchanged(call, site)) {
        const diff = diffSnapshots(before, snapshotKernel(this.kernel));
        if (diff.length > 0)
          this.report(
            'state-changed',
            `${label} failed with ${errnoName(ret)} after the fault at ${site}, but changed ` +
              `the state: ${diff.join('; ')}`,
          );
      }
    } else if (this.failingCall === undefined && this.baseline !== undefined && !this.diverged) {
      const want = this.baseline[record.index];
      if (want === undefined || want.label !== label || want.ret !== ret) {
        this.diverged = true;
        this.report(
          'diverged',
          `before the fault, call #${record.index} ${label} returned ${ret}; the counting run ` +
            (want === undefined ? 'made no such call' : `had ${want.label} = ${want.ret}`),
        );
      }
    }

    // Before the fault, an armed run that has not diverged is the counting run call for call,
    // on a kernel booted the same way: the counting run checked those states (decision 240).
    const sameAsCounted =
      this.baseline !== undefined && this.failingCall === undefined && !this.diverged;
    if (this.checkEveryCall && !this.invariantsBroken && !sameAsCounted) {
      const lines = checkInvariants(this.kernel);
      if (lines.length > 0) {
        this.invariantsBroken = true;
        this.report('invariant', `after ${label} = ${ret}: ${lines.join('; ')}`);
      }
    }
    return ret;
  }
}

/** A built-in (TypeScript) scenario as a sweep target. */
export function scenarioTarget(
  scenario: Scenario,
  options: ScenarioTargetOptions = {},
): SweepTarget {
  const checkEveryCall = options.checkEveryCall ?? true;
  let baseline: { calls: readonly CallRecord[]; points: readonly number[] } | undefined;

  const run = async (nth: number | undefined): Promise<RunResult> => {
    const violations: Violation[] = [];
    let failingCall: CallRecord | undefined;
    let site: FaultSite | undefined;
    const report = (kind: ViolationKind, message: string): void => {
      violations.push({
        kind,
        target: scenario.name,
        nth,
        message,
        ...(site === undefined ? {} : { site }),
        ...(failingCall === undefined ? {} : { call: failingCall.label }),
        replay: scenarioReplay(scenario.name, nth),
      });
    };

    const kernel = new Kernel(scenario.kernelOptions ?? {});
    const bugs: string[] = [];
    const unsubscribe = kernel.events.subscribe(
      (event) => {
        if (event.kind === 'log' && event.level === 'bug') bugs.push(event.message);
      },
      ['log'],
    );
    const observer = new RunObserver(
      kernel,
      nth,
      nth === undefined ? undefined : baseline,
      checkEveryCall,
      (kind, message) => {
        failingCall = observer.failingCall;
        site = failingCall?.fired;
        report(kind, message);
      },
    );
    const procs: CheckedProcess[] = [];
    const ctx: ScenarioContext = {
      kernel,
      spawn(processOptions = {}) {
        const proc = new CheckedProcess(kernel, observer, processOptions);
        procs.push(proc);
        return proc;
      },
      failNthEnable(proc) {
        if (!(proc instanceof CheckedProcess) || !procs.includes(proc))
          throw new Error('failNthEnable() of a process this scenario did not spawn');
        if (observer.enabled !== undefined) throw new Error('failNthEnable() called twice');
        observer.enabled = proc;
        proc.failNth.trail = [];
        if (nth !== undefined) proc.failNth.arm(nth);
      },
      ...scenarioHelpers(),
    };

    let outcome: RunResult['outcome'] = 'completed';
    let outcomeMessage: string | undefined;
    let points = 0;
    let reached = false;
    let siteError: Error | undefined;
    try {
      try {
        await scenario.run(ctx);
      } catch (err) {
        if (err instanceof ScenarioStop) outcome = 'stopped';
        else if (err instanceof ScenarioCheckError) outcome = 'check-failed';
        else outcome = 'error';
        outcomeMessage =
          err instanceof Error
            ? outcome === 'error'
              ? (err.stack ?? err.message)
              : err.message
            : String(err);
      }
      // Read fail-nth back (0 means the armed point was reached), then disarm before teardown.
      const enabled = observer.enabled;
      if (enabled !== undefined) {
        points = enabled.failNth.trail?.length ?? 0;
        reached = nth !== undefined && enabled.failNth.lastFired !== undefined;
        site = enabled.failNth.lastFired;
        siteError = enabled.failNth.lastFiredAt;
      }
      failingCall = observer.failingCall;
      for (const proc of procs) {
        proc.failNth.arm(0);
        proc.failNth.trail = undefined;
      }
      for (const proc of procs) proc.exit();
      await kernel.machine.whenIdle();

      if (nth === undefined) {
        if (outcome !== 'completed')
          report('scenario', `the run with nothing injected did not complete: ${outcomeMessage}`);
        baseline = { calls: observer.calls, points: observer.pointsAfter };
      } else if (outcome === 'check-failed') {
        report('scenario', `a functional check failed after the injected fault: ${outcomeMessage}`);
      } else if (outcome === 'error') {
        report('scenario', `the scenario threw: ${firstLines(outcomeMessage ?? '', 4)}`);
      }
      const teardown = checkInvariants(kernel);
      if (teardown.length > 0)
        report('teardown', `after every process exited: ${teardown.join('; ')}`);
      const leaks = kernel.leaks();
      if (leaks.length > 0) report('leak', leaks.join('; '));
      for (const bug of [...new Set(bugs)]) report('bug', firstLines(bug, 3));
    } finally {
      unsubscribe();
      kernel.shutdown();
    }
    return {
      nth,
      points,
      reached,
      site,
      // Formatted only if a report reads it.
      get siteStack() {
        return siteError?.stack;
      },
      failingCall,
      outcome,
      outcomeMessage,
      calls: observer.calls,
      violations,
    };
  };

  return {
    name: scenario.name,
    run,
    replay: (nth) => scenarioReplay(scenario.name, nth),
  };
}

export interface SweepOptions {
  /** The selftest's cap: a scenario must have fewer injection points than this (default 400). */
  readonly maxIterations?: number;
  /** Stop early once this many violations were found (default: sweep everything). */
  readonly maxViolations?: number;
  /** Called after each run with the n just run and the count from the counting run. */
  readonly onProgress?: (n: number, points: number) => void;
  /** Called once the counting run knows how many injection points there are. */
  readonly onCounted?: (points: number) => void;
  /** Stop after this many runs with fail-nth armed (not a violation; the report says so). */
  readonly maxRuns?: number;
}

export interface SweepReport {
  readonly target: string;
  /** Injection points counted by the run with nothing injected. */
  readonly points: number;
  /** Runs with fail-nth armed. */
  readonly iterations: number;
  readonly violations: readonly Violation[];
  readonly ok: boolean;
  /** The sweep stopped at maxRuns before the last injection point. */
  readonly limited: boolean;
}

/**
 * Sweeps `target` over every injection point: the counting run, then n = 1, 2, ... until the
 * n-th point is not reached. Every violation found is reported with its replay line.
 */
export async function sweep(target: SweepTarget, options: SweepOptions = {}): Promise<SweepReport> {
  const maxIterations = options.maxIterations ?? 400;
  const maxViolations = options.maxViolations ?? Number.POSITIVE_INFINITY;
  const violations: Violation[] = [];
  const base = await target.run(undefined);
  violations.push(...base.violations);
  const points = base.points;
  options.onCounted?.(points);
  const maxRuns = options.maxRuns ?? Number.POSITIVE_INFINITY;
  let iterations = 0;
  let limited = false;
  if (base.outcome === 'completed') {
    for (let n = 1; ; n++) {
      if (n > maxRuns) {
        limited = true;
        break;
      }
      if (n >= maxIterations) {
        violations.push({
          kind: 'cap',
          target: target.name,
          nth: n,
          message: `still reaching injection point ${n}: more than the cap of ${maxIterations}`,
          replay: target.replay(n),
        });
        break;
      }
      const result = await target.run(n);
      iterations = n;
      violations.push(...result.violations);
      options.onProgress?.(n, points);
      if (!result.reached) {
        if (n <= points)
          violations.push({
            kind: 'diverged',
            target: target.name,
            nth: n,
            message: `injection point ${n} was not reached; the counting run passed ${points}`,
            replay: target.replay(n),
          });
        else if (result.outcome !== 'completed')
          violations.push({
            kind: 'scenario',
            target: target.name,
            nth: n,
            message: `the final run (past the last injection point) did not complete: ${result.outcomeMessage}`,
            replay: target.replay(n),
          });
        break;
      }
      if (violations.length >= maxViolations) break;
    }
  }
  return {
    target: target.name,
    points,
    iterations,
    violations,
    ok: violations.length === 0,
    limited,
  };
}

/** One violation as two lines: what, and the command that replays it. */
export function formatViolation(v: Violation): string {
  const where =
    v.nth === undefined
      ? 'uninjected run'
      : `nth ${v.nth}${v.site === undefined ? '' : ` (${v.site}${v.call === undefined ? '' : ` in ${v.call}`})`}`;
  return `${v.target}: ${where}: ${v.kind}: ${v.message}\n  replay: ${v.replay}`;
}

/** A run's call log, with the failing call marked, its outcome and violations: for --nth. */
export function formatRun(target: string, result: RunResult): string {
  const lines: string[] = [];
  lines.push(
    `${target} ${result.nth === undefined ? '(nothing injected)' : `with fail-nth ${result.nth}`}: ` +
      `${result.points} injection points passed, ${result.outcome}` +
      (result.outcomeMessage === undefined ? '' : ` (${firstLines(result.outcomeMessage, 1)})`),
  );
  for (const call of result.calls) {
    const ret = call.ret < 0 ? `-${errnoName(call.ret)}` : String(call.ret);
    lines.push(
      `  ${call.fired === undefined ? ' ' : '>'} [${call.pid}] ${call.label} = ${ret}` +
        (call.fired === undefined ? '' : `   <- injected ${call.fired}`),
    );
  }
  if (result.siteStack !== undefined) {
    const frames = result.siteStack
      .split('\n')
      .slice(1)
      .filter((l) => !l.includes('/fault/fault.ts'))
      .slice(0, 6)
      .map((l) => `    ${l.trim()}`);
    lines.push(`  injected at ${result.site}:`, ...frames);
  }
  if (result.nth !== undefined && !result.reached)
    lines.push('  (the armed point was not reached)');
  for (const v of result.violations) lines.push(`  ${v.kind}: ${v.message}`);
  if (result.violations.length === 0) lines.push('  no violations');
  return lines.join('\n');
}
