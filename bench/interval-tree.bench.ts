/**
 * Insert+remove cost of one extra node at 10^3 vs 10^6 nodes, measured side by side in one run.
 * O(log n) work alone would give a per-op ratio near log(10^6)/log(10^3) = 2 and a linear
 * structure ~1000. With random keys the big tree also misses cache on nearly every level, so the
 * printed `ratio=` includes memory latency; the hot-path line repeats one key, keeping the path
 * cached, to show the algorithmic part. Prints numbers only; nothing here asserts on time.
 *
 *   node --import tsx bench/interval-tree.bench.ts
 */
import { IntervalTree } from '../src/iommufd/interval-tree.ts';

const PAGE = 4096n;
/** IOVAs drawn from a 48-bit space, like a typical IOMMU aperture. */
const PAGES = 1n << 36n;

/** xorshift32: deterministic, so every run measures the same trees. */
class Rng {
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
  /** A random page-aligned range of 1..16 pages. */
  range(): [bigint, bigint] {
    const page = ((BigInt(this.next()) << 32n) | BigInt(this.next())) % PAGES;
    const start = page * PAGE;
    return [start, start + BigInt((this.next() % 16) + 1) * PAGE - 1n];
  }
}

function build(n: number, rng: Rng): IntervalTree<number> {
  const tree = new IntervalTree<number>();
  for (let i = 0; i < n; i++) {
    const [start, last] = rng.range();
    tree.insert(start, last, i);
  }
  return tree;
}

/** Nanoseconds per insert+remove pair of one extra node, over the given keys. */
function measure(tree: IntervalTree<number>, keys: readonly [bigint, bigint][]): number {
  const t0 = process.hrtime.bigint();
  for (const [start, last] of keys) tree.remove(tree.insert(start, last, -1));
  return Number(process.hrtime.bigint() - t0) / keys.length;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

const rng = new Rng(0x10a5);
let t0 = performance.now();
const small = build(1_000, rng);
const smallMs = performance.now() - t0;
t0 = performance.now();
const big = build(1_000_000, rng);
const bigMs = performance.now() - t0;
console.log(`built n=1e3 in ${smallMs.toFixed(1)} ms, n=1e6 in ${bigMs.toFixed(0)} ms`);

const keys: [bigint, bigint][] = [];
for (let i = 0; i < 20_000; i++) keys.push(rng.range());
const hot = keys.map(() => keys[0]!);

// Alternate the two trees round by round so drift (JIT, GC, CPU clock) hits both alike.
measure(small, keys);
measure(big, keys);
const smallNs: number[] = [];
const bigNs: number[] = [];
const smallHotNs: number[] = [];
const bigHotNs: number[] = [];
for (let round = 0; round < 15; round++) {
  smallNs.push(measure(small, keys));
  bigNs.push(measure(big, keys));
  smallHotNs.push(measure(small, hot));
  bigHotNs.push(measure(big, hot));
}
const s = median(smallNs);
const b = median(bigNs);
const sh = median(smallHotNs);
const bh = median(bigHotNs);
console.log(`random keys, per insert+remove: n=1e3 ${s.toFixed(0)} ns, n=1e6 ${b.toFixed(0)} ns`);
console.log(
  `one key (hot path), per insert+remove: n=1e3 ${sh.toFixed(0)} ns, n=1e6 ${bh.toFixed(0)} ns`,
);
console.log(`hot-path ratio: ${(bh / sh).toFixed(2)}`);
console.log(`ratio=${(b / s).toFixed(2)}`);
if (small.size !== 1_000 || big.size !== 1_000_000) throw new Error('tree size changed');
