/**
 * Case-by-case comparison of a program's run on Linux with its run under the emulator, and the
 * expectations file (test/linux-lane/expectations.json) that explains the differences the lane
 * knows about. Any other difference fails the lane.
 */
import { readFileSync } from 'node:fs';
import { type CaseResult, describeEnd, type ProgramRun } from './results.ts';

/** A case name for what is not one test case: the program as a whole, or its exit status. */
export const WHOLE_PROGRAM = '(program)';
export const EXIT_STATUS = '(exit)';

export interface Difference {
  readonly variant: string;
  readonly program: string;
  readonly testCase: string;
  readonly linux: string;
  readonly emulator: string;
}

function describeCase(c: CaseResult | undefined): string {
  if (c === undefined) return 'missing';
  return c.detail === '' || c.outcome === 'pass' ? c.outcome : `${c.outcome}: ${c.detail}`;
}

/**
 * Two outcomes of a case agree when they are the same, and for a failure or a skip when the
 * message is the same too (a check that fails on both sides for different reasons is a
 * difference).
 */
function sameCase(a: CaseResult | undefined, b: CaseResult | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.outcome === b.outcome && (a.outcome === 'pass' || a.detail === b.detail);
}

export function compareRuns(
  variant: string,
  program: string,
  linux: ProgramRun | undefined,
  emulator: ProgramRun,
): Difference[] {
  if (linux === undefined) {
    return [
      {
        variant,
        program,
        testCase: WHOLE_PROGRAM,
        linux: 'not run',
        emulator: describeEnd(emulator.end),
      },
    ];
  }
  const diffs: Difference[] = [];
  const names = [...linux.cases.keys()];
  for (const name of emulator.cases.keys()) if (!linux.cases.has(name)) names.push(name);
  for (const name of names) {
    const l = linux.cases.get(name);
    const e = emulator.cases.get(name);
    if (!sameCase(l, e)) {
      diffs.push({
        variant,
        program,
        testCase: name,
        linux: describeCase(l),
        emulator: describeCase(e),
      });
    }
  }
  const le = describeEnd(linux.end);
  const ee = describeEnd(emulator.end);
  if (diffs.length === 0 && le !== ee) {
    diffs.push({ variant, program, testCase: EXIT_STATUS, linux: le, emulator: ee });
  }
  return diffs;
}

/**
 * `known`: the emulator differs from Linux and is to be fixed (issue 16's second build item);
 * `artefact`: the difference comes from the VM, not from the emulator (QEMU's topology), and
 * stays.
 */
export type ExpectationKind = 'known' | 'artefact';

export interface Expectation {
  readonly kind: ExpectationKind;
  /** A variant name, or `*` for every variant. */
  readonly variant: string;
  readonly program: string;
  /** A test case name, `(program)`, `(exit)`, or `*` for every case of the program. */
  readonly case: string;
  readonly reason: string;
  /** The docs/decisions.md entry that records it. */
  readonly decision: number;
}

export interface NotRun {
  readonly program: string;
  readonly reason: string;
  readonly decision: number;
}

export interface Expectations {
  readonly differences: readonly Expectation[];
  readonly notRun: readonly NotRun[];
}

export function matches(e: Expectation, d: Difference): boolean {
  return (
    (e.variant === '*' || e.variant === d.variant) &&
    e.program === d.program &&
    (e.case === '*' || e.case === d.testCase)
  );
}

function field(o: Record<string, unknown>, name: string, where: string): unknown {
  if (!(name in o)) throw new Error(`${where}: no "${name}"`);
  return o[name];
}

function text(o: Record<string, unknown>, name: string, where: string): string {
  const v = field(o, name, where);
  if (typeof v !== 'string' || v.trim() === '') throw new Error(`${where}.${name}: not a string`);
  return v;
}

function decision(o: Record<string, unknown>, where: string): number {
  const v = field(o, 'decision', where);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new Error(`${where}.decision: not a docs/decisions.md entry number`);
  }
  return v;
}

function entries(o: Record<string, unknown>, name: string): Record<string, unknown>[] {
  const v = o[name];
  if (!Array.isArray(v)) throw new Error(`expectations: "${name}" is not a list`);
  return v as Record<string, unknown>[];
}

/** Reads and checks the expectations file; throws with the offending entry on a malformed one. */
export function loadExpectations(path: string): Expectations {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const differences = entries(raw, 'differences').map((o, i): Expectation => {
    const where = `differences[${i}]`;
    const kind = text(o, 'kind', where);
    if (kind !== 'known' && kind !== 'artefact') throw new Error(`${where}.kind: ${kind}`);
    return {
      kind,
      variant: text(o, 'variant', where),
      program: text(o, 'program', where),
      case: text(o, 'case', where),
      reason: text(o, 'reason', where),
      decision: decision(o, where),
    };
  });
  const notRun = entries(raw, 'notRun').map(
    (o, i): NotRun => ({
      program: text(o, 'program', `notRun[${i}]`),
      reason: text(o, 'reason', `notRun[${i}]`),
      decision: decision(o, `notRun[${i}]`),
    }),
  );
  return { differences, notRun };
}

export interface Verdict {
  readonly explained: readonly { difference: Difference; by: Expectation }[];
  readonly unexplained: readonly Difference[];
  /** Expectations no difference matched: fixed since, or never real. */
  readonly unused: readonly Expectation[];
}

export function judge(diffs: readonly Difference[], expectations: Expectations): Verdict {
  const explained: { difference: Difference; by: Expectation }[] = [];
  const unexplained: Difference[] = [];
  const used = new Set<Expectation>();
  for (const d of diffs) {
    const by = expectations.differences.find((e) => matches(e, d));
    if (by === undefined) {
      unexplained.push(d);
    } else {
      explained.push({ difference: d, by });
      used.add(by);
    }
  }
  const unused = expectations.differences.filter((e) => !used.has(e));
  return { explained, unexplained, unused };
}
