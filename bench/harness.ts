/**
 * The benchmark harness: tinybench measures, this file pairs. Every figure the suite reports is a
 * ratio of two workloads timed side by side in the same process, or a rate; absolute times on a
 * shared 2-core machine drift by 2x within a minute, ratios of interleaved runs do not.
 *
 * A pair is timed in rounds. Each round is one tinybench Bench holding both workloads, their
 * order flipped every round so that warm-up, GC and clock drift hit both alike; the figure is the
 * median over rounds of each workload's median sample.
 */
import { Bench } from 'tinybench';

/** How long and how often to measure: --quick trades precision for a run under a minute. */
export interface Budget {
  readonly quick: boolean;
  /** Rounds per pair (odd, so the median is a sample). */
  readonly rounds: number;
  /** Milliseconds per workload per round. */
  readonly timeMs: number;
}

/**
 * The clock samples are taken with: CPU time of this process (all its threads, so concurrent GC
 * and compilation count), in milliseconds. Wall time would also count the time other jobs on a
 * shared machine hold the cores, which changes from one second to the next by several times.
 */
export function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export const FULL: Budget = { quick: false, rounds: 9, timeMs: 400 };
export const QUICK: Budget = { quick: true, rounds: 5, timeMs: 120 };

/** A workload: one call does `batch` operations (batches keep the timer out of the samples). */
export interface Workload {
  readonly name: string;
  readonly batch: number;
  readonly fn: () => void | Promise<void>;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** Median nanoseconds per operation of one workload in one Bench run. */
function nsPerOp(bench: Bench, w: Workload): number {
  const result = bench.getTask(w.name)?.result;
  if (result === undefined || !('latency' in result)) {
    const why = result !== undefined && 'error' in result ? String(result.error) : 'no result';
    throw new Error(`bench ${w.name}: ${why}`);
  }
  return (result.latency.p50 * 1e6) / w.batch;
}

/** One round's tinybench: warmed up in the first round only, timed on CPU time. */
function roundBench(budget: Budget, round: number): Bench {
  return new Bench({
    time: budget.timeMs,
    iterations: 5,
    warmup: round === 0,
    warmupIterations: 3,
    warmupTime: 0,
    throws: true,
    now: cpuNow,
  });
}

/** Times two workloads side by side; returns median ns per operation of each. */
export async function timePair(
  budget: Budget,
  a: Workload,
  b: Workload,
): Promise<{ a: number; b: number }> {
  const as: number[] = [];
  const bs: number[] = [];
  for (let round = 0; round < budget.rounds; round++) {
    const bench = roundBench(budget, round);
    for (const w of round % 2 === 0 ? [a, b] : [b, a]) bench.add(w.name, w.fn);
    await bench.run();
    as.push(nsPerOp(bench, a));
    bs.push(nsPerOp(bench, b));
  }
  return { a: median(as), b: median(bs) };
}

/** Times one workload alone; returns median ns per operation. */
export async function timeOne(budget: Budget, w: Workload): Promise<number> {
  const samples: number[] = [];
  for (let round = 0; round < budget.rounds; round++) {
    const bench = roundBench(budget, round);
    bench.add(w.name, w.fn);
    await bench.run();
    samples.push(nsPerOp(bench, w));
  }
  return median(samples);
}

/** One reported number, with the target it is held to. */
export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: 'ratio' | 'ops/s' | 'bytes' | 'runs/s';
  readonly target: { readonly op: '<=' | '>='; readonly value: number };
  /** The raw measurements the figure was computed from, for the docs and the JSON. */
  readonly detail: string;
}

export function meets(f: Figure): boolean {
  return f.target.op === '<=' ? f.value <= f.target.value : f.value >= f.target.value;
}

function formatValue(f: Figure): string {
  if (f.unit === 'ratio') return f.value.toFixed(2);
  return Math.round(f.value).toLocaleString('en-US');
}

/** The terminal table. */
export function formatTable(figures: readonly Figure[]): string {
  const rows = figures.map((f) => [
    f.name,
    formatValue(f),
    f.unit,
    `${f.target.op} ${f.target.value.toLocaleString('en-US')}`,
    meets(f) ? 'ok' : 'MISS',
    f.detail,
  ]);
  const head = ['figure', 'value', 'unit', 'target', '', 'measured'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === 1 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** Forces a full GC when node runs with --expose-gc (npm run bench does); a no-op otherwise. */
export function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined) {
    gc();
    gc();
  }
}

/** xorshift32: deterministic, so every run measures the same keys. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  next(): number {
    let s = this.#s;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.#s = s >>> 0;
    return this.#s;
  }
  /** A uniform integer in [0, n), n <= 2^32. */
  below(n: number): number {
    return this.next() % n;
  }
}
