/**
 * What one run of a conformance program said, read from its TAP output (test/conformance/harness.h
 * prints one `ok N - name` / `not ok N - name # got ...` / `ok N - name # SKIP why` line per test
 * case), and the guest's serial log that brackets each program's output with marker lines
 * (scripts/linux-lane/init.sh).
 */

export type CaseOutcome = 'pass' | 'fail' | 'skip';

export interface CaseResult {
  readonly outcome: CaseOutcome;
  /** The text after `#` on the case's line: the first failed check, or why it was skipped. */
  readonly detail: string;
}

/** How a program run ended. */
export type ProgramEnd =
  | { readonly kind: 'exited'; readonly status: number }
  | { readonly kind: 'timeout' }
  /** The guest stopped (or the log ended) while the program was still running. */
  | { readonly kind: 'unfinished' };

export interface ProgramRun {
  readonly cases: ReadonlyMap<string, CaseResult>;
  readonly end: ProgramEnd;
  readonly output: string;
}

const CASE_LINE = /^(ok|not ok) \d+ - (\S+)(?: # (.*))?$/;

/** The test cases of one program's TAP output, in order. A repeated name keeps its first line. */
export function parseTap(output: string): Map<string, CaseResult> {
  const cases = new Map<string, CaseResult>();
  for (const line of output.split('\n')) {
    const m = CASE_LINE.exec(line.trimEnd());
    if (m === null) continue;
    const [, status, name, comment = ''] = m;
    if (cases.has(name!)) continue;
    let outcome: CaseOutcome = status === 'ok' ? 'pass' : 'fail';
    let detail = comment;
    if (status === 'ok' && comment.startsWith('SKIP')) {
      outcome = 'skip';
      detail = comment.slice(4).trim();
    } else if (detail.startsWith('got ')) {
      detail = detail.slice(4);
    }
    cases.set(name!, { outcome, detail });
  }
  return cases;
}

/** What the guest's result port showed: each program's run, and whether /init got to the end. */
export interface GuestLog {
  readonly runs: ReadonlyMap<string, ProgramRun>;
  readonly done: boolean;
}

const BEGIN = /^@@lane begin (\S+)$/;
const END = /^@@lane end (\S+) exit=(\d+)$/;

/**
 * Splits the result port's text into program runs. Exit status 142 is SIGALRM (128 + 14): the
 * harness's own alarm() ended a hung program.
 */
export function parseGuestLog(text: string): GuestLog {
  const runs = new Map<string, ProgramRun>();
  let current: string | null = null;
  let lines: string[] = [];
  let done = false;
  const finish = (end: ProgramEnd): void => {
    if (current === null) return;
    const output = lines.join('\n');
    runs.set(current, { cases: parseTap(output), end, output });
    current = null;
    lines = [];
  };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const begin = BEGIN.exec(line);
    const end = END.exec(line);
    if (begin !== null) {
      finish({ kind: 'unfinished' });
      current = begin[1]!;
    } else if (end !== null && end[1] === current) {
      const status = Number(end[2]);
      finish(status === 142 ? { kind: 'timeout' } : { kind: 'exited', status });
    } else if (line === '@@lane done') {
      finish({ kind: 'unfinished' });
      done = true;
    } else if (current !== null) {
      lines.push(line);
    }
  }
  finish({ kind: 'unfinished' });
  return { runs, done };
}

export function describeEnd(end: ProgramEnd): string {
  switch (end.kind) {
    case 'exited':
      return `exit ${end.status}`;
    case 'timeout':
      return 'timed out';
    case 'unfinished':
      return 'did not finish';
  }
}
