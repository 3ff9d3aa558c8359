import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FailNth, shouldFail, withFailNth } from './fault.ts';
import { isMutantName, MUTANTS, mutant, setMutantForTest } from './mutant.ts';

describe('fail-nth', () => {
  it('fails exactly the n-th injection point, once, and records where', () => {
    const nth = new FailNth();
    nth.arm(3);
    nth.trail = [];
    const got = withFailNth(nth, () => [
      shouldFail('kmalloc'),
      shouldFail('object-lookup'),
      shouldFail('copy-to-user'),
      shouldFail('kmalloc'),
    ]);
    assert.deepEqual(got, [false, false, true, false]);
    assert.equal(nth.remaining, 0);
    assert.equal(nth.lastFired, 'copy-to-user');
    assert.match(nth.lastFiredStack ?? '', /injected failure at copy-to-user/);
    assert.deepEqual(nth.trail, ['kmalloc', 'object-lookup', 'copy-to-user', 'kmalloc']);
  });

  it('counts down without failing while the point is not reached, and is inert outside a task', () => {
    const nth = new FailNth();
    nth.arm(5);
    withFailNth(nth, () => shouldFail('kmalloc'));
    assert.equal(nth.remaining, 4);
    assert.equal(nth.lastFired, undefined);
    assert.equal(shouldFail('kmalloc'), false);
    nth.arm(0);
    assert.equal(
      withFailNth(nth, () => shouldFail('kmalloc')),
      false,
    );
  });
});

describe('mutants', () => {
  it('are off unless switched on, one at a time', () => {
    const saved = setMutantForTest(undefined);
    try {
      assert.equal(mutant('halfbuilt-destroy'), false);
      setMutantForTest('halfbuilt-destroy');
      assert.equal(mutant('halfbuilt-destroy'), true);
      assert.equal(mutant('hwpt-ioas-ref'), false);
      assert.ok(isMutantName('map-leaves-area'));
      assert.ok(!isMutantName('toString'));
      assert.ok(Object.keys(MUTANTS).length >= 3);
    } finally {
      setMutantForTest(saved);
    }
  });
});
