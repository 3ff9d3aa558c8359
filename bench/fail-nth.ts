/**
 * Fail-nth sweep throughput: the whole in-process sweep of the no-IOMMU flow (the counting run,
 * then one run per injection point, each on a fresh kernel with the per-call invariant checks
 * `iommufd-emu check` uses), as runs per second.
 */
import { noiommuFlow } from '../src/check/scenarios.ts';
import { scenarioTarget, sweep } from '../src/check/sweep.ts';
import { type Budget, type Figure, timeOne } from './harness.ts';

export async function failNthFigures(budget: Budget): Promise<Figure[]> {
  const target = scenarioTarget(noiommuFlow);
  const first = await sweep(target);
  if (!first.ok)
    throw new Error(`the no-IOMMU sweep is not clean: ${first.violations[0]?.message}`);
  // The counting run plus one run per injection point reached.
  const runs = first.iterations + 1;
  const ns = await timeOne(budget, {
    name: 'sweep of noiommu-flow',
    batch: runs,
    fn: async () => {
      await sweep(target);
    },
  });
  return [
    {
      name: 'fail_nth_runs_per_s',
      value: 1e9 / ns,
      unit: 'runs/s',
      target: { op: '>=', value: 1000 },
      detail: `${(ns / 1000).toFixed(0)} us per run, ${runs} runs per sweep`,
    },
  ];
}
