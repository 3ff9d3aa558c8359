/**
 * Sweeping an unmodified program: `iommufd-emu check -- PROGRAM [ARGS...]`. The program knows
 * nothing of fail-nth, so the emulator counts the injection points of every task of the run in one
 * counter, in the order calls arrive, and fails the n-th one. A run is clean when the emulator
 * logged no bug, nothing outlived the program (objects, pins, domains, charges) and the invariants
 * hold once it exited; what the program itself does with the failure is its own business, except
 * that the run with nothing injected must succeed. Every run starts the program with address
 * space randomization off, so that calls whose injection points depend on an address (the
 * page-table pages a map needs) pass as many in every run as in the counting run.
 */

import type { Kernel } from '../boot/kernel.ts';
import { FailNth, setFailNthForEveryTask } from '../fault/fault.ts';
import { activeMutant } from '../fault/mutant.ts';
import { checkInvariants } from './invariants.ts';
import type { CallRecord, RunResult, SweepTarget, Violation } from './sweep.ts';

/** exec as check uses it: a private emulator, the program's stdio discarded. */
export type ExecForSweep = (
  program: string,
  args: readonly string[],
  flags: {
    readonly enableUnsafeNoiommuMode?: boolean;
    readonly platform?: string;
    readonly cap?: readonly string[];
  },
  hooks: {
    readonly attach: (kernel: Kernel) => () => void;
    readonly dmesg: false;
    readonly stdio: 'ignore';
    /** Every run lays the program out at the same addresses (decision 306). */
    readonly fixedLayout: true;
  },
) => Promise<number>;

export interface ProgramTargetOptions {
  readonly enableUnsafeNoiommuMode?: boolean;
  readonly platform?: string;
  /** exec --cap, once per use. */
  readonly cap?: readonly string[];
}

function shellWord(s: string): string {
  return /^[\w./:@%+=,-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

export function programTarget(
  program: string,
  args: readonly string[],
  exec: ExecForSweep,
  options: ProgramTargetOptions = {},
): SweepTarget {
  const name = [program, ...args].map(shellWord).join(' ');
  const flagWords = [
    ...(options.enableUnsafeNoiommuMode === true ? ['--enable-unsafe-noiommu-mode'] : []),
    ...(options.platform === undefined ? [] : ['--platform', shellWord(options.platform)]),
    ...(options.cap ?? []).flatMap((caps) => ['--cap', shellWord(caps)]),
  ];
  // One run replays through exec: the program's own output, the trace and its failing call.
  const replay = (nth: number | undefined): string => {
    const mutant = activeMutant();
    return [
      ...(mutant === undefined ? [] : [`IOMMUFD_EMU_MUTANT=${mutant}`]),
      'iommufd-emu exec',
      ...(nth === undefined ? [] : ['--fail-nth', String(nth)]),
      ...flagWords,
      '--',
      name,
    ].join(' ');
  };

  async function run(nth: number | undefined): Promise<RunResult> {
    const counter = new FailNth();
    counter.trail = [];
    if (nth !== undefined) counter.arm(nth);
    const bugs: string[] = [];
    let failingCall: CallRecord | undefined;
    let kernel: Kernel | undefined;
    const status = await exec(
      program,
      args,
      {
        ...(options.enableUnsafeNoiommuMode === true ? { enableUnsafeNoiommuMode: true } : {}),
        ...(options.platform === undefined ? {} : { platform: options.platform }),
        ...(options.cap === undefined ? {} : { cap: options.cap }),
      },
      {
        dmesg: false,
        stdio: 'ignore',
        fixedLayout: true,
        attach: (k) => {
          kernel = k;
          setFailNthForEveryTask(counter);
          const stop = k.events.subscribe((e) => {
            if (e.kind === 'log' && e.level === 'bug') bugs.push(e.message);
            // The program's call the injected fault failed: the first to end after it fired.
            if (
              e.kind === 'syscall' &&
              failingCall === undefined &&
              counter.lastFired !== undefined
            )
              failingCall = {
                index: counter.trail?.length ?? 0,
                pid: e.pid,
                label: `${e.call}(${e.detail})`,
                ret: e.ret,
                fired: counter.lastFired,
              };
          });
          return () => {
            stop();
            setFailNthForEveryTask(undefined);
          };
        },
      },
    );
    const reached = nth !== undefined && counter.remaining === 0 && counter.lastFired !== undefined;
    const violations: Violation[] = [];
    const at = {
      target: name,
      nth,
      replay: replay(nth),
      ...(counter.lastFired === undefined ? {} : { site: counter.lastFired }),
      ...(failingCall === undefined ? {} : { call: failingCall.label }),
    };
    for (const message of bugs)
      violations.push({ kind: 'bug', message: message.split('\n')[0]!, ...at });
    if (kernel !== undefined) {
      for (const line of kernel.leaks()) violations.push({ kind: 'leak', message: line, ...at });
      for (const line of checkInvariants(kernel))
        violations.push({ kind: 'teardown', message: line, ...at });
    }
    if (nth === undefined && status !== 0) {
      violations.push({
        kind: 'scenario',
        message: `${program} exited with status ${status} with nothing injected`,
        ...at,
      });
    }
    return {
      nth,
      points: counter.trail.length,
      reached,
      site: counter.lastFired,
      // The program's failing call says where; the emulator's stack would not (exec --fail-nth
      // shows the whole trace).
      siteStack: undefined,
      failingCall,
      outcome: status === 0 ? 'completed' : 'stopped',
      outcomeMessage: `exit status ${status}`,
      calls: failingCall === undefined ? [] : [failingCall],
      violations,
    };
  }

  return { name, run, replay };
}
