import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { type MutantName, setMutantForTest } from '../fault/mutant.ts';
import { Errno } from '../uapi/errno.ts';
import { IommufdOps } from './_ops.ts';
import type { Scenario } from './scenario.ts';
import { findScenario, SCENARIOS } from './scenarios.ts';
import { formatViolation, scenarioTarget, sweep, type ViolationKind } from './sweep.ts';

afterEach(() => {
  setMutantForTest(undefined);
});

describe('sweep of the built-in scenarios', () => {
  for (const scenario of SCENARIOS) {
    it(`${scenario.name} sweeps clean over every injection point`, async () => {
      const report = await sweep(scenarioTarget(scenario));
      assert.deepEqual(report.violations.map(formatViolation), []);
      assert.ok(report.points > 10, `only ${report.points} injection points`);
      // Every point fired once, then one run past the last point.
      assert.equal(report.iterations, report.points + 1);
    });
  }
});

describe('one swept run', () => {
  it('fails the n-th injection point of the enabled process and logs the failing call', async () => {
    const target = scenarioTarget(findScenario('noiommu-flow')!);
    const base = await target.run(undefined);
    assert.equal(base.outcome, 'completed');
    assert.equal(base.reached, false);
    const result = await target.run(base.points);
    assert.equal(result.reached, true);
    assert.equal(result.outcome, 'stopped');
    assert.ok(result.failingCall !== undefined && result.failingCall.ret < 0);
    assert.equal(result.failingCall.fired, result.site);
    assert.deepEqual(result.violations, []);
    const past = await target.run(base.points + 1);
    assert.equal(past.reached, false);
    assert.equal(past.outcome, 'completed');
  });

  it('replays with the command line the report gives', () => {
    setMutantForTest('hwpt-ioas-ref');
    assert.equal(
      scenarioTarget(findScenario('noiommu-flow')!).replay(17),
      'iommufd-emu check --scenario noiommu-flow --nth 17 --mutant hwpt-ioas-ref',
    );
  });
});

/** The smallest sweep that must catch each mutant, and what it must report. */
const MUTANT_CASES: readonly [MutantName, string, ViolationKind[]][] = [
  ['halfbuilt-destroy', 'noiommu-flow', ['bug', 'leak']],
  ['halfbuilt-destroy', 'iommu-device-flow', ['bug', 'leak']],
  ['hwpt-ioas-ref', 'noiommu-flow', ['state-changed', 'invariant', 'leak']],
  ['map-leaves-area', 'noiommu-flow', ['state-changed', 'invariant', 'bug']],
  ['fill-keeps-pins', 'noiommu-flow', ['state-changed', 'invariant', 'teardown']],
  ['fill-keeps-pins', 'mixed-domains', ['state-changed', 'invariant', 'teardown']],
  ['cdev-open-unwind', 'iommu-device-flow', ['state-changed', 'invariant', 'teardown', 'leak']],
  ['cdev-open-unwind', 'noiommu-flow', ['state-changed', 'invariant', 'teardown', 'leak']],
];

describe('mutants', () => {
  for (const [mutant, scenario, kinds] of MUTANT_CASES) {
    it(`${mutant} is caught by sweeping ${scenario}`, async () => {
      setMutantForTest(mutant);
      const report = await sweep(scenarioTarget(findScenario(scenario)!));
      assert.equal(report.ok, false, `${mutant} went unnoticed`);
      const found = new Set(report.violations.map((v) => v.kind));
      for (const kind of kinds) assert.ok(found.has(kind), `no ${kind} violation: ${[...found]}`);
      for (const v of report.violations) {
        assert.match(v.replay, new RegExp(`--scenario ${scenario} --nth \\d+ --mutant ${mutant}$`));
        assert.ok(v.site !== undefined && v.call !== undefined, formatViolation(v));
      }
    });
  }
});

describe('what the sweep itself reports', () => {
  it('reports a scenario whose uninjected run fails', async () => {
    const broken: Scenario = {
      name: 'broken',
      description: 'fails with nothing injected',
      run(ctx) {
        const proc = ctx.spawn();
        ctx.failNthEnable(proc);
        const ops = new IommufdOps(proc, ctx.ok(proc.open('/dev/iommu'), 'open'));
        ctx.ok(ops.destroy(42), 'DESTROY of nothing');
      },
    };
    const report = await sweep(scenarioTarget(broken));
    assert.deepEqual(
      report.violations.map((v) => v.kind),
      ['scenario'],
    );
    assert.match(report.violations[0]!.message, /DESTROY of nothing failed: ENOENT/);
  });

  it('reports a functional check that fails after an injected fault, and a leak', async () => {
    // The scenario wrongly treats a failed IOAS_ALLOC as success and forgets to close a fork.
    const sloppy: Scenario = {
      name: 'sloppy',
      description: 'ignores a failure',
      run(ctx) {
        const proc = ctx.spawn();
        const ops = new IommufdOps(proc, ctx.ok(proc.open('/dev/iommu'), 'open'));
        ctx.failNthEnable(proc);
        const r = ops.ioasAlloc();
        ctx.check(r.ret === 0 || r.ret === -Errno.ENOMEM || r.ret === -Errno.EFAULT, 'errno');
        ctx.check(r.id === 1, `IOAS id ${r.id}`);
        proc.fork();
      },
    };
    const report = await sweep(scenarioTarget(sloppy));
    const kinds = new Set(report.violations.map((v) => v.kind));
    assert.ok(kinds.has('scenario'), [...kinds].join());
    assert.ok(kinds.has('leak'), [...kinds].join());
  });

  it('stops at the cap, like the selftest asserting fewer than 400 iterations', async () => {
    const report = await sweep(scenarioTarget(findScenario('noiommu-flow')!), {
      maxIterations: 5,
    });
    assert.deepEqual(
      report.violations.map((v) => v.kind),
      ['cap'],
    );
  });

  it('calls onProgress for every run', async () => {
    const seen: number[] = [];
    const report = await sweep(scenarioTarget(findScenario('ioas-basics')!), {
      onProgress: (n) => seen.push(n),
    });
    assert.equal(seen.length, report.iterations);
    assert.equal(seen.at(-1), report.points + 1);
  });
});
