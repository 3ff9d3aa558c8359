/**
 * Fail-nth sweep throughput: the whole in-process sweep of the no-IOMMU flow (the counting run,
 * then one run per injection point, each on a fresh kernel with the per-call invariant checks
 * `iommufd-emu check` uses), as runs per second of a long sweep.
 *
 * A sweep runs most of the emulator's code, and V8 takes seconds of CPU on a loaded 2-core
 * machine to optimise it all (the rate doubles over the first few seconds). The figure is the
 * rate of a sweep that has run for a while, as the long sweeps users run are; the cold rate,
 * over the first warm-up sweeps, is printed beside it.
 */
import { noiommuFlow } from '../src/check/scenarios.ts';
import { scenarioTarget, sweep } from '../src/check/sweep.ts';
import { type Budget, cpuNow, type Figure, timeOne } from './harness.ts';

/** CPU time (ms) spent sweeping before the timed rounds, and the span the cold rate covers. */
const WARM_MS = { quick: 3000, full: 6000 } as const;
const COLD_MS = 1000;

export async function failNthFigures(budget: Budget): Promise<Figure[]> {
  const target = scenarioTarget(noiommuFlow);
  const started = cpuNow();
  const first = await sweep(target);
  if (!first.ok)
    throw new Error(`the no-IOMMU sweep is not clean: ${first.violations[0]?.message}`);
  // The counting run plus one run per injection point reached.
  const runs = first.iterations + 1;
  let coldRuns = runs;
  let coldMs = cpuNow() - started;
  const warmMs = budget.quick ? WARM_MS.quick : WARM_MS.full;
  while (cpuNow() - started < warmMs) {
    await sweep(target);
    if (coldMs < COLD_MS) {
      coldRuns += runs;
      coldMs = cpuNow() - started;
    }
  }
  const ns = await timeOne(budget, {
    name: 'sweep of noiommu-flow',
    batch: runs,
    fn: async () => {
      await sweep(target);
    },
  });
  const cold = (coldRuns * 1000) / coldMs;
  return [
    {
      name: 'fail_nth_runs_per_s',
      value: 1e9 / ns,
      unit: 'runs/s',
      target: { op: '>=', value: 1000 },
      detail:
        `${(ns / 1000).toFixed(0)} us per run, ${runs} runs per sweep, after ` +
        `${(warmMs / 1000).toFixed(0)} s CPU of warm-up; cold ${cold.toFixed(0)} runs/s`,
    },
  ];
}
