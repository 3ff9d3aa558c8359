/**
 * Sweep results for machines: JSON (one object for the whole check) and TAP version 14 (one test
 * per run of each target, the counting run first), which CI systems and test reporters read.
 */
import type { SweepReport, Violation } from './sweep.ts';

export type ReportFormat = 'text' | 'json' | 'tap';

function violationJson(v: Violation): Record<string, unknown> {
  return {
    kind: v.kind,
    nth: v.nth ?? null,
    site: v.site ?? null,
    message: v.message,
    replay: v.replay,
  };
}

/** The whole check as one JSON document. */
export function formatJson(reports: readonly SweepReport[]): string {
  const violations = reports.reduce((sum, r) => sum + r.violations.length, 0);
  return `${JSON.stringify(
    {
      ok: violations === 0,
      violations,
      targets: reports.map((r) => ({
        target: r.target,
        injectionPoints: r.points,
        runs: r.iterations + 1,
        stoppedByMaxRuns: r.limited,
        violations: r.violations.map(violationJson),
      })),
    },
    null,
    2,
  )}\n`;
}

/** A string as a YAML double-quoted scalar (JSON's escapes are YAML's). */
function yamlString(s: string): string {
  return JSON.stringify(s);
}

/** One TAP test per run: `ok` when the run broke nothing, else `not ok` with its violations. */
export function formatTap(reports: readonly SweepReport[]): string {
  const lines = ['TAP version 14'];
  let count = 0;
  for (const report of reports) {
    const byRun = new Map<number, Violation[]>();
    for (const v of report.violations) {
      const n = v.nth ?? 0;
      byRun.set(n, [...(byRun.get(n) ?? []), v]);
    }
    // Violations past the runs made (the cap) are reported on a run of their own.
    const last = Math.max(report.iterations, ...byRun.keys());
    for (let n = 0; n <= last; n++) {
      count++;
      const name = n === 0 ? `${report.target}: counting run` : `${report.target}: fail-nth ${n}`;
      const found = byRun.get(n) ?? [];
      if (found.length === 0) {
        lines.push(`ok ${count} - ${name}`);
        continue;
      }
      lines.push(`not ok ${count} - ${name}`, '  ---');
      lines.push(`  site: ${yamlString(found[0]!.site ?? 'none')}`);
      lines.push(`  replay: ${yamlString(found[0]!.replay)}`);
      lines.push('  violations:');
      for (const v of found) lines.push(`    - ${yamlString(`${v.kind}: ${v.message}`)}`);
      lines.push('  ...');
    }
  }
  lines.push(`1..${count}`);
  return `${lines.join('\n')}\n`;
}
