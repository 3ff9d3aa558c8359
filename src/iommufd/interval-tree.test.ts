import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type IntervalNode, IntervalTree, type Span, spans } from './interval-tree.ts';

const U64_MAX = (1n << 64n) - 1n;

/** Walks [start, last] with iterFirst/iterNext the way kernel code does, not through iter(). */
function walk<T>(tree: IntervalTree<T>, start: bigint, last: bigint): IntervalNode<T>[] {
  const out: IntervalNode<T>[] = [];
  for (let n = tree.iterFirst(start, last); n !== undefined; n = tree.iterNext(n, start, last)) {
    out.push(n);
  }
  return out;
}

function used(start: bigint, last: bigint): Span {
  return { isHole: false, start, last };
}

function hole(start: bigint, last: bigint): Span {
  return { isHole: true, start, last };
}

function spanList(trees: readonly IntervalTree<unknown>[], first: bigint, last: bigint): Span[] {
  return [...spans(trees, first, last)];
}

describe('IntervalTree unit cases', () => {
  test('empty tree', () => {
    const t = new IntervalTree<string>();
    assert.equal(t.size, 0);
    assert.equal(t.first(), undefined);
    assert.equal(t.iterFirst(0n, U64_MAX), undefined);
    assert.deepEqual([...t.iter()], []);
    assert.deepEqual(spanList([t], 0n, U64_MAX), [hole(0n, U64_MAX)]);
    assert.deepEqual(spanList([], 5n, 5n), [hole(5n, 5n)]);
    t.checkInvariants();
  });

  test('rejects malformed ranges', () => {
    const t = new IntervalTree<number>();
    assert.throws(() => t.insert(5n, 4n, 0), RangeError);
    assert.throws(() => t.insert(-1n, 4n, 0), RangeError);
    assert.throws(() => t.insert(0n, U64_MAX + 1n, 0), RangeError);
    assert.throws(() => t.iterFirst(2n, 1n), RangeError);
    assert.throws(() => spanList([t], 2n, 1n), RangeError);
    assert.equal(t.size, 0);
  });

  test('single node at the top of u64 space', () => {
    const t = new IntervalTree<string>();
    const n = t.insert(U64_MAX, U64_MAX, 'top');
    assert.equal(t.size, 1);
    assert.equal(t.first(), n);
    assert.equal(t.iterFirst(0n, U64_MAX), n);
    assert.equal(t.iterFirst(U64_MAX, U64_MAX), n);
    assert.equal(t.iterFirst(0n, U64_MAX - 1n), undefined);
    assert.equal(t.iterNext(n, 0n, U64_MAX), undefined);
    assert.deepEqual(spanList([t], 0n, U64_MAX), [hole(0n, U64_MAX - 1n), used(U64_MAX, U64_MAX)]);
    assert.deepEqual(spanList([t], U64_MAX, U64_MAX), [used(U64_MAX, U64_MAX)]);
    assert.deepEqual(spanList([t], U64_MAX - 1n, U64_MAX - 1n), [hole(U64_MAX - 1n, U64_MAX - 1n)]);
    t.remove(n);
    assert.equal(t.size, 0);
    assert.deepEqual(spanList([t], 0n, U64_MAX), [hole(0n, U64_MAX)]);
  });

  test('a node covering all of u64 and one at 0', () => {
    const t = new IntervalTree<string>();
    t.insert(0n, U64_MAX, 'all');
    assert.deepEqual(spanList([t], 0n, U64_MAX), [used(0n, U64_MAX)]);
    assert.deepEqual(spanList([t], 7n, 9n), [used(7n, 9n)]);
    const z = new IntervalTree<string>();
    z.insert(0n, 0n, 'zero');
    assert.deepEqual(spanList([z], 0n, U64_MAX), [used(0n, 0n), hole(1n, U64_MAX)]);
  });

  test('overlapping reserved ranges from two owners', () => {
    const reserved = new IntervalTree<string>();
    const a = reserved.insert(0x1000n, 0x1fffn, 'owner-a');
    const b = reserved.insert(0x1000n, 0x1fffn, 'owner-b');
    const c = reserved.insert(0x1800n, 0x27ffn, 'owner-c');
    reserved.checkInvariants();
    assert.equal(reserved.size, 3);
    // Equal starts come back in insertion order.
    assert.deepEqual(
      walk(reserved, 0x1fffn, 0x1fffn).map((n) => n.value),
      ['owner-a', 'owner-b', 'owner-c'],
    );
    assert.deepEqual(spanList([reserved], 0n, 0x3fffn), [
      hole(0n, 0xfffn),
      used(0x1000n, 0x27ffn),
      hole(0x2800n, 0x3fffn),
    ]);
    // Dropping one owner's reservation leaves the other's in force.
    reserved.remove(a);
    assert.equal(reserved.iterFirst(0x1000n, 0x1000n), b);
    reserved.remove(c);
    assert.deepEqual(spanList([reserved], 0n, 0x3fffn), [
      hole(0n, 0xfffn),
      used(0x1000n, 0x1fffn),
      hole(0x2000n, 0x3fffn),
    ]);
    reserved.remove(b);
    assert.deepEqual(spanList([reserved], 0n, 0x3fffn), [hole(0n, 0x3fffn)]);
    reserved.checkInvariants();
  });

  test('adjacent nodes join in spans, a one-index gap does not', () => {
    const t = new IntervalTree<number>();
    t.insert(0n, 4n, 0);
    t.insert(5n, 9n, 1);
    assert.deepEqual(spanList([t], 0n, 20n), [used(0n, 9n), hole(10n, 20n)]);
    t.insert(11n, 12n, 2);
    assert.deepEqual(spanList([t], 0n, 20n), [
      used(0n, 9n),
      hole(10n, 10n),
      used(11n, 12n),
      hole(13n, 20n),
    ]);
    // Clipped windows start and end inside used spans.
    assert.deepEqual(spanList([t], 3n, 11n), [used(3n, 9n), hole(10n, 10n), used(11n, 11n)]);
  });

  test('spans over two trees join reserved and areas like double_span holes', () => {
    const reserved = new IntervalTree<string>();
    const areas = new IntervalTree<string>();
    reserved.insert(0n, 4n, 'rsv');
    areas.insert(5n, 9n, 'area');
    areas.insert(U64_MAX - 9n, U64_MAX, 'high-area');
    reserved.insert(U64_MAX - 19n, U64_MAX - 10n, 'high-rsv');
    assert.deepEqual(spanList([reserved, areas], 0n, U64_MAX), [
      used(0n, 9n),
      hole(10n, U64_MAX - 20n),
      used(U64_MAX - 19n, U64_MAX),
    ]);
  });

  test('iterFirst finds a long node that starts far to the left', () => {
    const t = new IntervalTree<number>();
    for (let i = 0n; i < 100n; i++) t.insert(i * 10n, i * 10n + 1n, Number(i));
    const long = t.insert(3n, 5000n, -1);
    t.checkInvariants();
    // Found only through the subtree maximum: every other node ends by 991.
    assert.equal(t.iterFirst(2000n, 2000n), long);
    assert.deepEqual(
      walk(t, 985n, 992n).map((n) => n.value),
      [-1, 99],
    );
    assert.deepEqual(
      walk(t, 5n, 20n).map((n) => n.value),
      [-1, 1, 2],
    );
    assert.equal(t.iterFirst(5001n, U64_MAX), undefined);
  });

  test('iter() lets the caller remove the node it was handed', () => {
    const t = new IntervalTree<number>();
    for (let i = 0; i < 50; i++) t.insert(BigInt(i), BigInt(i), i);
    const seen: number[] = [];
    for (const n of t.iter(10n, 29n)) {
      seen.push(n.value);
      t.remove(n);
    }
    assert.deepEqual(
      seen,
      Array.from({ length: 20 }, (_, i) => i + 10),
    );
    assert.equal(t.size, 30);
    t.checkInvariants();
  });

  test('remove refuses foreign and already removed nodes', () => {
    const a = new IntervalTree<number>();
    const b = new IntervalTree<number>();
    const n = a.insert(1n, 2n, 0);
    assert.throws(() => b.remove(n), /not in this tree/);
    a.remove(n);
    assert.throws(() => a.remove(n), /not in this tree/);
    assert.throws(() => a.iterNext(n, 0n, 9n), /not in this tree/);
    assert.equal(a.size, 0);
  });

  test('stays balanced under sorted inserts and bulk removal', () => {
    // A plain BST would degrade to a list here; checkInvariants() enforces the red-black rules,
    // which bound the height by 2*log2(n+1).
    const t = new IntervalTree<number>();
    const nodes: IntervalNode<number>[] = [];
    const n = 100_000;
    for (let i = 0; i < n; i++)
      nodes.push(t.insert(BigInt(i) * 4096n, BigInt(i) * 4096n + 4095n, i));
    t.checkInvariants();
    for (let i = 0; i < n; i += 2) t.remove(nodes[i]!);
    t.checkInvariants();
    assert.equal(t.size, n / 2);
    assert.equal(t.first()!.value, 1);
    assert.equal(t.iterFirst(0n, U64_MAX)!.value, 1);
    assert.equal(t.iterFirst(4096n * 500n, 4096n * 500n), undefined);
    assert.equal(t.iterFirst(4096n * 500n, 4096n * 501n)!.value, 501);
    const s = spanList([t], 0n, U64_MAX);
    assert.equal(s.length, n + 1);
    assert.deepEqual(s.at(-1), hole(BigInt(n) * 4096n, U64_MAX));
  });
});

// ---------------------------------------------------------------------------------------------
// Model-based property test: two trees (think reserved + areas) against plain arrays.

interface Entry {
  readonly tree: number;
  readonly start: bigint;
  readonly last: bigint;
  readonly seq: number;
  readonly node: IntervalNode<number>;
}

type Op =
  | { kind: 'insert'; tree: number; start: bigint; last: bigint }
  | { kind: 'remove'; pick: number }
  | { kind: 'query'; tree: number; start: bigint; last: bigint }
  | { kind: 'spans'; start: bigint; last: bigint };

/** Model answer for a query: entries intersecting [start, last], by start then insertion. */
function modelQuery(entries: readonly Entry[], tree: number, start: bigint, last: bigint): Entry[] {
  return entries
    .filter((e) => e.tree === tree && e.start <= last && e.last >= start)
    .sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : x.seq - y.seq));
}

/** Model spans: clip, sort, merge overlapping or touching ranges, then fill the gaps. */
function modelSpans(entries: readonly Entry[], first: bigint, last: bigint): Span[] {
  const clipped = entries
    .filter((e) => e.start <= last && e.last >= first)
    .map((e) => ({ start: e.start < first ? first : e.start, last: e.last > last ? last : e.last }))
    .sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  const merged: { start: bigint; last: bigint }[] = [];
  for (const r of clipped) {
    const top = merged.at(-1);
    if (top !== undefined && r.start <= top.last + 1n) {
      if (r.last > top.last) top.last = r.last;
    } else {
      merged.push({ ...r });
    }
  }
  const out: Span[] = [];
  let pos = first;
  for (const m of merged) {
    if (m.start > pos) out.push(hole(pos, m.start - 1n));
    out.push(used(m.start, m.last));
    pos = m.last + 1n;
  }
  if (pos <= last) out.push(hole(pos, last));
  return out;
}

// Endpoints cluster at both ends of u64 space so ranges overlap, touch and hit 0 and U64_MAX.
const nearZero = fc.bigInt({ min: 0n, max: 48n });
const nearTop = fc.bigInt({ min: U64_MAX - 48n, max: U64_MAX });
const anywhere = fc.bigInt({ min: 0n, max: U64_MAX });
const point = fc.oneof(
  { arbitrary: nearZero, weight: 5 },
  { arbitrary: nearTop, weight: 4 },
  { arbitrary: anywhere, weight: 1 },
);
const range = fc
  .tuple(point, point)
  .map(([a, b]) => (a <= b ? { start: a, last: b } : { start: b, last: a }));
const treeIndex = fc.integer({ min: 0, max: 1 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc
      .record({ tree: treeIndex, r: range })
      .map(({ tree, r }): Op => ({ kind: 'insert', tree, ...r })),
    weight: 5,
  },
  { arbitrary: fc.nat().map((pick): Op => ({ kind: 'remove', pick })), weight: 3 },
  {
    arbitrary: fc
      .record({ tree: treeIndex, r: range })
      .map(({ tree, r }): Op => ({ kind: 'query', tree, ...r })),
    weight: 2,
  },
  { arbitrary: range.map((r): Op => ({ kind: 'spans', ...r })), weight: 2 },
);

function checkQuery(
  trees: IntervalTree<number>[],
  entries: Entry[],
  tree: number,
  start: bigint,
  last: bigint,
): void {
  const t = trees[tree]!;
  const want = modelQuery(entries, tree, start, last).map((e) => e.node);
  assert.deepEqual(walk(t, start, last), want);
  assert.deepEqual([...t.iter(start, last)], want);
  assert.equal(t.iterFirst(start, last), want[0]);
}

function checkSpans(
  trees: IntervalTree<number>[],
  entries: Entry[],
  start: bigint,
  last: bigint,
): void {
  assert.deepEqual(spanList(trees, start, last), modelSpans(entries, start, last));
  // Each tree alone must match the model restricted to that tree.
  for (const [i, t] of trees.entries()) {
    const own = entries.filter((e) => e.tree === i);
    assert.deepEqual(spanList([t], start, last), modelSpans(own, start, last));
  }
}

describe('IntervalTree against a model', () => {
  test('long insert-heavy sequences keep every invariant', () => {
    // Grows trees to a few hundred nodes so deep rebalancing paths on both sides get exercised.
    const step = fc.oneof(
      { arbitrary: range.map((r) => ({ remove: false, pick: 0, ...r })), weight: 3 },
      {
        arbitrary: fc.nat().map((pick) => ({ remove: true, pick, start: 0n, last: 0n })),
        weight: 1,
      },
    );
    fc.assert(
      fc.property(fc.array(step, { minLength: 100, maxLength: 500, size: 'max' }), (steps) => {
        const t = new IntervalTree<number>();
        let entries: Entry[] = [];
        for (const [seq, s] of steps.entries()) {
          if (s.remove && entries.length > 0) {
            const victim = entries[s.pick % entries.length]!;
            t.remove(victim.node);
            entries = entries.filter((e) => e !== victim);
          } else if (!s.remove) {
            const node = t.insert(s.start, s.last, seq);
            entries.push({ tree: 0, start: s.start, last: s.last, seq, node });
          }
          t.checkInvariants();
        }
        assert.equal(t.size, entries.length);
        assert.deepEqual(
          [...t.iter()].map((n) => n.value),
          modelQuery(entries, 0, 0n, U64_MAX).map((e) => e.seq),
        );
        for (const e of entries.slice(0, 20)) checkQuery([t], entries, 0, e.last, e.last);
        checkSpans([t], entries, 0n, U64_MAX);
        // The same tree twice must give the same union as once.
        assert.deepEqual(spanList([t, t], 0n, U64_MAX), modelSpans(entries, 0n, U64_MAX));
      }),
      { numRuns: 40 },
    );
  });

  test('random insert/remove/query/spans sequences', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120, size: 'max' }), (ops) => {
        const trees = [new IntervalTree<number>(), new IntervalTree<number>()];
        let entries: Entry[] = [];
        let seq = 0;
        for (const op of ops) {
          switch (op.kind) {
            case 'insert': {
              const node = trees[op.tree]!.insert(op.start, op.last, seq);
              assert.equal(node.start, op.start);
              assert.equal(node.last, op.last);
              entries.push({ tree: op.tree, start: op.start, last: op.last, seq, node });
              seq++;
              break;
            }
            case 'remove': {
              if (entries.length === 0) break;
              const victim = entries[op.pick % entries.length]!;
              trees[victim.tree]!.remove(victim.node);
              entries = entries.filter((e) => e !== victim);
              break;
            }
            case 'query':
              checkQuery(trees, entries, op.tree, op.start, op.last);
              break;
            case 'spans':
              checkSpans(trees, entries, op.start, op.last);
              checkSpans(trees, entries, 0n, op.last);
              checkSpans(trees, entries, op.start, U64_MAX);
              break;
          }
          for (const [i, t] of trees.entries()) {
            t.checkInvariants();
            assert.equal(t.size, entries.filter((e) => e.tree === i).length);
            const values = [...t.iter()].map((n) => n.value);
            assert.deepEqual(
              values,
              modelQuery(entries, i, 0n, U64_MAX).map((e) => e.seq),
            );
            assert.equal(t.first()?.value, values[0]);
          }
        }
        checkSpans(trees, entries, 0n, U64_MAX);
      }),
      { numRuns: 300 },
    );
  });
});
