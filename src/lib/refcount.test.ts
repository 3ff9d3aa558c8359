import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Counter, Refcount, RefcountError } from './refcount.ts';

type Op = 'inc' | 'incNotZero' | 'dec' | 'decAndTest' | 'decIfOne' | 'decNotOne';

/** Applies `op` to `r`, checks it against the integer model `n`, and returns the new model. */
function step(r: Refcount, n: number, op: Op): number {
  switch (op) {
    case 'inc':
      if (n === 0) {
        assert.throws(() => r.inc(), RefcountError);
        return n;
      }
      r.inc();
      return n + 1;
    case 'incNotZero':
      assert.equal(r.incNotZero(), n !== 0);
      return n === 0 ? n : n + 1;
    case 'dec':
      if (n <= 1) {
        assert.throws(() => r.dec(), RefcountError);
        return n;
      }
      r.dec();
      return n - 1;
    case 'decAndTest':
      if (n === 0) {
        assert.throws(() => r.decAndTest(), RefcountError);
        return n;
      }
      assert.equal(r.decAndTest(), n === 1);
      return n - 1;
    case 'decIfOne':
      assert.equal(r.decIfOne(), n === 1);
      return n === 1 ? 0 : n;
    case 'decNotOne':
      if (n === 0) {
        assert.throws(() => r.decNotOne(), RefcountError);
        return n;
      }
      assert.equal(r.decNotOne(), n > 1);
      return n > 1 ? n - 1 : n;
  }
}

describe('Refcount', () => {
  it('counts holders and says which put was the last', () => {
    const r = new Refcount(1, 'obj');
    r.inc();
    r.add(2);
    assert.equal(r.read(), 4);
    r.dec();
    assert.equal(r.decAndTest(), false);
    assert.equal(r.subAndTest(1), false);
    assert.equal(r.read(), 1);
    assert.equal(r.decAndTest(), true);
    assert.equal(r.read(), 0);
  });

  it('refuses an increment from zero (use after free) and never goes below zero', () => {
    const r = new Refcount(0, () => 'ioas 3 users');
    assert.throws(() => r.inc(), /ioas 3 users: addition on 0; use-after-free/);
    assert.throws(() => r.add(5), RefcountError);
    assert.throws(() => r.decAndTest(), /underflow/);
    assert.throws(() => r.dec(), /underflow/);
    assert.throws(() => r.decNotOne(), /underflow/);
    assert.equal(r.incNotZero(), false);
    assert.equal(r.read(), 0);
    const two = new Refcount(2, 'x');
    assert.throws(() => two.subAndTest(3), /underflow/);
    assert.equal(two.read(), 2, 'a refused subtraction changes nothing');
  });

  it('refuses a plain dec() that drops the last reference (whoever does must free)', () => {
    const r = new Refcount(1, 'hwpt 2 users');
    assert.throws(() => r.dec(), /decrement hit 0; leaking memory/);
    assert.equal(r.read(), 1);
  });

  it('decIfOne and decNotOne change the count only when they say so', () => {
    const r = new Refcount(2, 'x');
    assert.equal(r.decIfOne(), false);
    assert.equal(r.read(), 2);
    assert.equal(r.decNotOne(), true);
    assert.equal(r.decNotOne(), false);
    assert.equal(r.read(), 1);
    assert.equal(r.decIfOne(), true);
    assert.equal(r.read(), 0);
    assert.equal(r.decIfOne(), false);
  });

  it('incNotZero takes a reference only from a live count', () => {
    const r = new Refcount(1, 'x');
    assert.equal(r.incNotZero(), true);
    assert.equal(r.read(), 2);
  });

  it('rejects a count that is not one', () => {
    assert.throws(() => new Refcount(-1, 'x'), RefcountError);
    assert.throws(() => new Refcount(1.5, 'x'), RefcountError);
    assert.throws(() => new Refcount(1, 'x').set(-2), RefcountError);
  });

  it('matches a plain integer model under any sequence of operations', () => {
    const op = fc.constantFrom<Op>(
      'inc',
      'incNotZero',
      'dec',
      'decAndTest',
      'decIfOne',
      'decNotOne',
    );
    fc.assert(
      fc.property(fc.nat(3), fc.array(op, { maxLength: 40 }), (start, ops) => {
        const r = new Refcount(start, 'x');
        let n = start;
        for (const o of ops) {
          n = step(r, n, o);
          assert.equal(r.read(), n);
        }
      }),
    );
  });
});

describe('Counter', () => {
  it('counts up from zero and back, never below zero or above its maximum', () => {
    const c = new Counter(() => 'vfio0 open count', 1);
    assert.throws(() => c.dec(), /vfio0 open count: count underflow/);
    c.inc();
    assert.equal(c.read(), 1);
    assert.throws(() => c.inc(), /above its maximum 1/);
    c.dec();
    assert.equal(c.read(), 0);
    const many = new Counter('group opens');
    for (let i = 0; i < 5; i++) many.inc();
    assert.equal(many.read(), 5);
  });
});
