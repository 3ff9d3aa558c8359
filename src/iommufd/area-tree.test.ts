import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AreaTree, type IovaRange, iovaKey } from './area-tree.ts';

const U64_MAX = (1n << 64n) - 1n;

function range(iova: bigint, last: bigint): IovaRange {
  return { iova, last };
}

/** The model: the same entries in a plain array, searched linearly. */
function modelFirst(model: IovaRange[], start: bigint, last: bigint): IovaRange | undefined {
  return model.find((r) => r.iova <= last && r.last >= start);
}

function modelAll(model: IovaRange[], start: bigint, last: bigint): IovaRange[] {
  return model.filter((r) => r.iova <= last && r.last >= start);
}

/** Walks [start, last] with iterFirst/iterNext, as kernel code does. */
function walk(tree: AreaTree<IovaRange>, start: bigint, last: bigint): IovaRange[] {
  const out: IovaRange[] = [];
  for (let r = tree.iterFirst(start, last); r !== undefined; r = tree.iterNext(r, start, last)) {
    out.push(r);
  }
  return out;
}

describe('iovaKey', () => {
  test('exact below 2^53, never out of order above', () => {
    for (const v of [0n, 1n, 0xfffn, 0x1000n, (1n << 32n) + 5n, (1n << 53n) - 1n]) {
      assert.equal(iovaKey(v), Number(v));
    }
    const big = [(1n << 53n) + 1n, (1n << 63n) - 1n, 1n << 63n, U64_MAX - 1n, U64_MAX];
    for (let i = 1; i < big.length; i++) assert.ok(iovaKey(big[i - 1]!) <= iovaKey(big[i]!));
    // Two distinct starts that share a key: the tree must order them on the bigint.
    assert.equal(iovaKey(U64_MAX - 1n), iovaKey(U64_MAX));
  });
});

describe('AreaTree unit cases', () => {
  test('empty tree', () => {
    const t = new AreaTree<IovaRange>();
    assert.equal(t.size, 0);
    assert.equal(t.first(), undefined);
    assert.equal(t.iterFirst(0n, U64_MAX), undefined);
    assert.deepEqual([...t.iter()], []);
    t.checkInvariants();
  });

  test('rejects malformed and overlapping ranges, and foreign removes', () => {
    const t = new AreaTree<IovaRange>();
    assert.throws(() => t.insert(range(5n, 4n)), RangeError);
    assert.throws(() => t.insert(range(0n, U64_MAX + 1n)), RangeError);
    assert.throws(() => t.iterFirst(2n, 1n), RangeError);
    const a = range(0x1000n, 0x1fffn);
    t.insert(a);
    assert.throws(() => t.insert(range(0x1fffn, 0x2fffn)), /overlaps/);
    assert.throws(() => t.insert(range(0n, 0x1000n)), /overlaps/);
    assert.throws(() => t.remove(range(0x1000n, 0x1fffn)), /not in this tree/);
    assert.throws(() => t.iterNext(range(0x1000n, 0x1fffn), 0n, U64_MAX), /not in this tree/);
    assert.equal(t.size, 1);
    t.remove(a);
    assert.throws(() => t.remove(a), /not in this tree/);
    t.checkInvariants();
  });

  test('byte ranges at the top of u64 space, where starts share keys', () => {
    const t = new AreaTree<IovaRange>();
    const top = range(U64_MAX, U64_MAX);
    const below = range(U64_MAX - 2n, U64_MAX - 1n);
    const lower = range(U64_MAX - 3n, U64_MAX - 3n);
    t.insert(top);
    t.insert(lower);
    t.insert(below);
    t.checkInvariants();
    assert.deepEqual([...t.iter()], [lower, below, top]);
    assert.equal(t.iterFirst(U64_MAX, U64_MAX), top);
    assert.equal(t.iterFirst(U64_MAX - 1n, U64_MAX - 1n), below);
    assert.equal(t.iterFirst(U64_MAX - 3n, U64_MAX), lower);
    assert.equal(t.iterFirst(0n, U64_MAX - 4n), undefined);
    assert.deepEqual(walk(t, U64_MAX - 2n, U64_MAX), [below, top]);
    t.remove(below);
    assert.deepEqual([...t.iter()], [lower, top]);
  });

  test('iter tolerates removing the entry it just gave', () => {
    const t = new AreaTree<IovaRange>();
    const all: IovaRange[] = [];
    for (let i = 0n; i < 2000n; i++) {
      const r = range(i * 0x2000n, i * 0x2000n + 0xfffn);
      all.push(r);
      t.insert(r);
    }
    const seen: IovaRange[] = [];
    for (const r of t.iter()) {
      seen.push(r);
      t.remove(r);
    }
    assert.deepEqual(seen, all);
    assert.equal(t.size, 0);
    t.checkInvariants();
  });
});

describe('AreaTree leaves', () => {
  test('ascending fills, splits in the middle, merges and emptying keep every invariant', () => {
    const t = new AreaTree<IovaRange>();
    const at = (i: bigint) => range(i * 0x1000n, i * 0x1000n + 0xfffn);
    const even: IovaRange[] = [];
    // Ascending appends fill leaves to the brim; inserting between them then splits each one.
    for (let i = 0n; i < 5000n; i += 2n) {
      even.push(at(i));
      t.insert(even[even.length - 1]!);
    }
    t.checkInvariants();
    const odd: IovaRange[] = [];
    for (let i = 1n; i < 5000n; i += 2n) {
      odd.push(at(i));
      t.insert(odd[odd.length - 1]!);
    }
    t.checkInvariants();
    assert.equal(t.size, 5000);
    assert.deepEqual(
      [...t.iter()].map((r) => r.iova),
      Array.from({ length: 5000 }, (_, i) => BigInt(i) * 0x1000n),
    );
    // Thinning every leaf out merges neighbours; removing the rest empties the tree.
    for (const r of even) t.remove(r);
    t.checkInvariants();
    assert.deepEqual([...t.iter()], odd);
    assert.equal(t.iterFirst(0n, 0xfffn), undefined);
    assert.equal(t.iterFirst(0n, 0x1000n), odd[0]);
    for (const r of odd.reverse()) t.remove(r);
    t.checkInvariants();
    assert.equal(t.size, 0);
    assert.equal(t.first(), undefined);
    // The emptied tree is as good as new.
    t.insert(at(7n));
    assert.equal(t.iterFirst(0n, U64_MAX), t.first());
    t.checkInvariants();
  });
});

describe('AreaTree against a model', () => {
  test('random inserts, removes and queries across many chunks', () => {
    // Seeded: the same ranges every run. Enough entries to split and merge chunks many times;
    // a third of them near the top of u64 space, byte granular, where keys are inexact.
    let s = 0x2f6e2b1;
    const rnd = (n: number) => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) % n;
    };
    const slot = (i: number): IovaRange => {
      const base = i % 3 === 0 ? U64_MAX - 0x100000n : 0x10000n;
      const at = base + BigInt(i) * 4n;
      return range(at, at + BigInt(rnd(3)));
    };
    const tree = new AreaTree<IovaRange>();
    const present = new Map<number, IovaRange>();
    for (let step = 0; step < 30_000; step++) {
      const i = rnd(6000);
      const have = present.get(i);
      if (have !== undefined && rnd(3) > 0) {
        tree.remove(have);
        present.delete(i);
      } else if (have === undefined) {
        const r = slot(i);
        tree.insert(r);
        present.set(i, r);
      }
      if (step % 1000 === 0) tree.checkInvariants();
    }
    tree.checkInvariants();
    const model = [...present.values()].sort((a, b) => (a.iova < b.iova ? -1 : 1));
    assert.equal(tree.size, model.length);
    assert.deepEqual([...tree.iter()], model);
    for (let q = 0; q < 2000; q++) {
      const a = slot(rnd(6000)).iova - BigInt(rnd(8));
      const b = a + BigInt(rnd(q % 2 === 0 ? 16 : 4000));
      const last = b > U64_MAX ? U64_MAX : b;
      assert.equal(tree.iterFirst(a, last), modelFirst(model, a, last));
      if (q % 20 === 0) {
        assert.deepEqual(walk(tree, a, last), modelAll(model, a, last));
        assert.deepEqual([...tree.iter(a, last)], modelAll(model, a, last));
      }
    }
  });

  test('property: any sequence of placements and removals', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.bigInt({ min: 0n, max: 200n }), fc.bigInt({ min: 0n, max: 5n }))),
        fc.bigInt({ min: 0n, max: 210n }),
        fc.bigInt({ min: 0n, max: 20n }),
        (ops, qs, ql) => {
          const tree = new AreaTree<IovaRange>();
          let model: IovaRange[] = [];
          for (const [start, len] of ops) {
            const r = range(start, start + len);
            const hit = modelFirst(model, r.iova, r.last);
            if (hit === undefined) {
              tree.insert(r);
              model.push(r);
            } else {
              tree.remove(hit);
              model = model.filter((m) => m !== hit);
            }
          }
          tree.checkInvariants();
          model.sort((a, b) => (a.iova < b.iova ? -1 : 1));
          assert.deepEqual([...tree.iter()], model);
          assert.equal(tree.iterFirst(qs, qs + ql), modelFirst(model, qs, qs + ql));
          assert.deepEqual(walk(tree, qs, qs + ql), modelAll(model, qs, qs + ql));
        },
      ),
    );
  });
});
