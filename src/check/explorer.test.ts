import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { MUTANTS, type MutantName, setMutantForTest } from '../fault/mutant.ts';
import { explore } from './explorer.ts';

afterEach(() => {
  setMutantForTest(undefined);
});

describe('explorer', () => {
  it('finds the kernel and the reference model in agreement (fixed seed)', () => {
    const report = explore({ seed: 1, runs: 150 });
    assert.ok(report.ok, `${report.error}\n${report.message}\n${report.replay}`);
    // The sequences reach the device calls, not only IOAS ones.
    for (const call of ['BIND', 'ATTACH', 'DETACH', 'HWPT_ALLOC', 'COPY', 'GET_PA', 'close'])
      assert.ok((report.stats.byCall[call] ?? 0) > 5, `${call}: ${JSON.stringify(report.stats)}`);
  });

  it('stays clean with fail-nth armed before random calls (random seed, printed on failure)', () => {
    const report = explore({ runs: 150, faults: true });
    assert.ok(report.ok, `${report.error}\n${report.message}\n${report.replay}`);
    assert.ok(report.stats.failedByInjection > 20, JSON.stringify(report.stats));
  });

  for (const mutant of Object.keys(MUTANTS) as MutantName[]) {
    it(`catches the ${mutant} mutant and shrinks it to a short sequence`, () => {
      setMutantForTest(mutant);
      const report = explore({ seed: 7, runs: 400, faults: true });
      assert.equal(report.ok, false, `${mutant} went unnoticed by the explorer`);
      assert.match(report.replay, new RegExp(`--seed 7 .*--mutant ${mutant} --path \\S+`));
      const shown = /Counterexample: \[(.*)\]/.exec(report.message ?? '')?.[1] ?? '';
      assert.ok(shown.split('),').length <= 8, `not shrunk: ${shown}`);
    });
  }

  it('replays a counterexample from its path', () => {
    setMutantForTest('hwpt-ioas-ref');
    const first = explore({ seed: 7, runs: 400, faults: true });
    const m = /--path (\S+) --replay-path '([^']*)'/.exec(first.replay);
    assert.ok(m !== null, first.replay);
    const again = explore({ seed: 7, runs: 400, faults: true, path: m[1]!, replayPath: m[2]! });
    assert.equal(again.ok, false);
    assert.equal(again.error, first.error);
  });
});
