import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FailNth, withFailNth } from '../fault/fault.ts';
import { Errno } from '../uapi/errno.ts';
import { DmaWalker } from './dma-walk.ts';
import { IoPagetable, Prot, Pte, RADIX_PGSIZES } from './io-pgtable.ts';
import { PhysMemory } from './phys-memory.ts';
import { PAGE_SIZE, SZ_1G, SZ_2M, SZ_4K, U64_MAX } from './sizes.ts';

const RW = Prot.READ | Prot.WRITE;

function table(phys: PhysMemory, levels = 4, pgsizeBitmap = RADIX_PGSIZES): IoPagetable {
  const pt = IoPagetable.create(phys, { levels, pgsizeBitmap });
  assert.ok(pt instanceof IoPagetable, `create failed with errno ${pt}`);
  return pt;
}

describe('IoPagetable', () => {
  it('maps 4K pages and translates with the sub-page offset', () => {
    const phys = new PhysMemory();
    const pt = table(phys);
    assert.equal(pt.map(0x1000n, 0x5000n, 0x2000n, RW), 0);
    assert.equal(pt.iovaToPhys(0x1234n), 0x5234n);
    assert.equal(pt.iovaToPhys(0x2fffn), 0x6fffn);
    assert.equal(pt.iovaToPhys(0x3000n), undefined);
    assert.equal(pt.iovaToPhys(0n), undefined);
    assert.equal(pt.mappedBytes, 0x2000n);
  });

  it('keeps its entries in simulated RAM: a walk reads real PTEs, one per level', () => {
    const phys = new PhysMemory();
    const pt = table(phys);
    pt.map(0x7f1234567000n, 0x9abc000n, PAGE_SIZE, Prot.READ);
    const walk = pt.walk(0x7f1234567abcn);
    assert.equal(walk.steps.length, 4);
    assert.equal(walk.steps[0]!.tablePa, pt.root);
    for (const step of walk.steps) assert.equal(phys.readU64(step.ptePa), step.pte);
    assert.deepEqual(walk.result, {
      kind: 'leaf',
      pa: 0x9abcabcn,
      pageSize: SZ_4K,
      prot: Prot.READ,
    });
    const leafPte = walk.steps[3]!.pte;
    assert.equal(leafPte & Pte.ADDR_MASK, 0x9abc000n);
    assert.equal(leafPte & Pte.WRITE, 0n);
    assert.equal(pt.tablePages(), 4n);
    assert.equal(phys.stats().byPurpose['page-table'], 4n);
  });

  it('uses the largest leaf the alignment and the page-size bitmap allow', () => {
    const phys = new PhysMemory();
    const pt = table(phys);
    pt.map(SZ_1G, 2n * SZ_1G, SZ_1G + SZ_2M + PAGE_SIZE, RW);
    assert.deepEqual(
      pt.leaves().map((l) => l.size),
      [SZ_1G, SZ_2M, SZ_4K],
    );
    const big = pt.walk(SZ_1G + 0x123456n);
    assert.equal(big.steps.length, 2, 'a 1 GiB leaf sits at level 2');
    assert.equal(big.result.kind === 'leaf' && big.result.pa, 2n * SZ_1G + 0x123456n);

    // Misaligned PA: only 4K leaves fit.
    const pt2 = table(phys);
    pt2.map(0n, PAGE_SIZE, SZ_2M, RW);
    assert.equal(pt2.leaves().length, 512);

    // No 2M in the bitmap: 4K leaves even when aligned.
    const pt3 = table(phys, 4, SZ_4K);
    pt3.map(0n, 0n, SZ_2M, RW);
    assert.equal(pt3.leaves().length, 512);
  });

  it('rejects bad requests with the kernel errnos', () => {
    const phys = new PhysMemory();
    const pt = table(phys);
    assert.equal(pt.map(0x1001n, 0x1000n, PAGE_SIZE, RW), -Errno.EINVAL);
    assert.equal(pt.map(0x1000n, 0x1000n, 0n, RW), -Errno.EINVAL);
    assert.equal(pt.map(0x1000n, 0x1000n, PAGE_SIZE, 0), -Errno.EINVAL);
    assert.equal(pt.map(1n << 48n, 0x1000n, PAGE_SIZE, RW), -Errno.ERANGE);
    assert.equal(pt.map(0n, 1n << 52n, PAGE_SIZE, RW), -Errno.ERANGE);
    assert.equal(pt.map(0n, 0x1000n, SZ_2M, RW), 0);
    assert.equal(pt.map(SZ_2M - PAGE_SIZE, 0n, 2n * PAGE_SIZE, RW), -Errno.EADDRINUSE);
    assert.equal(pt.iovaToPhys(SZ_2M), undefined, 'a failed map leaves nothing behind');
    assert.equal(IoPagetable.create(phys, { levels: 7, pgsizeBitmap: SZ_4K }), -Errno.EINVAL);
    assert.equal(IoPagetable.create(phys, { levels: 4, pgsizeBitmap: 1n << 16n }), -Errno.EINVAL);
  });

  it('covers the full 64-bit space with 6 levels', () => {
    const phys = new PhysMemory();
    const pt = table(phys, 6);
    assert.equal(pt.lastIova, U64_MAX);
    const top = U64_MAX - PAGE_SIZE + 1n;
    assert.equal(pt.map(top, 0x42000n, PAGE_SIZE, RW), 0);
    assert.equal(pt.iovaToPhys(U64_MAX), 0x42fffn);
    assert.equal(pt.walk(U64_MAX).steps.length, 6);
    assert.equal(pt.unmap(top, PAGE_SIZE), PAGE_SIZE);
    assert.equal(pt.tablePages(), 1n);
  });

  it('unmaps whole leaves, skips holes, leaves straddling large leaves alone', () => {
    const phys = new PhysMemory();
    const pt = table(phys);
    pt.map(0n, 0n, SZ_2M, RW);
    pt.map(4n * SZ_2M, 0x10000n, 4n * PAGE_SIZE, RW);
    assert.equal(pt.unmap(PAGE_SIZE, SZ_2M), 0n, 'half of a 2M leaf is not unmapped');
    assert.equal(pt.iovaToPhys(0n), 0n);
    assert.equal(pt.unmap(0n, 8n * SZ_2M), SZ_2M + 4n * PAGE_SIZE);
    assert.equal(pt.leaves().length, 0);
    assert.equal(pt.tablePages(), 1n, 'empty tables are freed');
    assert.equal(pt.unmap(0n, U64_MAX - PAGE_SIZE + 1n), 0n);
  });

  it('undoes a map when a table page cannot be allocated', () => {
    const phys = new PhysMemory();
    const pt = table(phys);
    const nth = new FailNth();
    nth.arm(3);
    // The chunks on either side of 1 GiB need separate level-1 tables: the 3rd allocation fails.
    const rc = withFailNth(nth, () => pt.map(SZ_1G - SZ_2M, 0n, 2n * SZ_2M, RW));
    assert.equal(rc, -Errno.ENOMEM);
    assert.equal(nth.lastFired, 'pagetable-alloc');
    assert.equal(pt.leaves().length, 0);
    assert.equal(pt.tablePages(), 1n);
    assert.equal(phys.stats().byPurpose['page-table'], 1n);
  });

  it('free() returns every table page', () => {
    const phys = new PhysMemory();
    const pt = table(phys);
    pt.map(0n, 0n, 3n * SZ_2M + 5n * PAGE_SIZE, RW);
    pt.map(0x7f0000000000n, 0n, PAGE_SIZE, RW);
    assert.ok(phys.stats().byPurpose['page-table'] > 3n);
    pt.free();
    assert.equal(phys.stats().framesInUse, 0n);
    assert.equal(pt.iovaToPhys(0n), undefined);
    assert.equal(pt.map(0n, 0n, PAGE_SIZE, RW), -Errno.EINVAL);
  });
});

// ---- property: the table agrees with a plain model ------------------------------------------

interface ModelRange {
  readonly iova: bigint;
  readonly pa: bigint;
  readonly size: bigint;
}

type Op =
  | {
      readonly kind: 'map4k';
      readonly page: number;
      readonly npages: number;
      readonly paPage: number;
    }
  | {
      readonly kind: 'map2m';
      readonly slot: number;
      readonly count: number;
      readonly paSlot: number;
    }
  | { readonly kind: 'unmap'; readonly pick: number; readonly span: number };

/** IOVAs live in a 64 MiB window placed somewhere interesting, so ranges collide often. */
const WINDOW_PAGES = 16384;
const bases = [0n, 0x7fffc000000n, (1n << 47n) - (64n << 20n)];

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('map4k' as const),
    // Sometimes 2M-aligned and long enough for 2M leaves in the middle of a 4K-granular map.
    page: fc.oneof(
      fc.integer({ min: 0, max: WINDOW_PAGES - 1200 }),
      fc.integer({ min: 0, max: 28 }).map((slot) => slot * 512),
    ),
    npages: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 500, max: 1100 })),
    paPage: fc.oneof(
      fc.integer({ min: 0, max: 1 << 20 }),
      fc.integer({ min: 0, max: 2000 }).map((slot) => slot * 512),
    ),
  }),
  fc.record({
    kind: fc.constant('map2m' as const),
    slot: fc.integer({ min: 0, max: 29 }),
    count: fc.integer({ min: 1, max: 2 }),
    paSlot: fc.integer({ min: 0, max: 2000 }),
  }),
  fc.record({
    kind: fc.constant('unmap' as const),
    pick: fc.nat(),
    span: fc.integer({ min: 0, max: 2 }),
  }),
);

function overlaps(a: ModelRange, iova: bigint, size: bigint): boolean {
  return a.iova < iova + size && iova < a.iova + a.size;
}

function modelPhys(model: readonly ModelRange[], iova: bigint): bigint | undefined {
  const r = model.find((m) => iova >= m.iova && iova < m.iova + m.size);
  return r === undefined ? undefined : r.pa + (iova - r.iova);
}

describe('IoPagetable property', () => {
  it('agrees with a range model under random map/unmap, and free() returns every table frame', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...bases),
        fc.array(opArb, { minLength: 1, maxLength: 25 }),
        fc.array(fc.integer({ min: 0, max: WINDOW_PAGES * 4096 - 1 }), {
          minLength: 20,
          maxLength: 20,
        }),
        (base, ops, probes) => {
          const phys = new PhysMemory();
          const pt = table(phys);
          let model: ModelRange[] = [];
          for (const op of ops) {
            if (op.kind === 'unmap') {
              if (model.length === 0) continue;
              // Unmap the union of 1..3 neighbouring ranges, only when it cuts no range in half.
              const sorted = [...model].sort((a, b) => (a.iova < b.iova ? -1 : 1));
              const first = op.pick % sorted.length;
              const last = Math.min(sorted.length - 1, first + op.span);
              const start = sorted[first]!.iova;
              const end = sorted[last]!.iova + sorted[last]!.size;
              const touched = model.filter((m) => overlaps(m, start, end - start));
              if (touched.some((m) => m.iova < start || m.iova + m.size > end)) continue;
              const expected = touched.reduce((sum, m) => sum + m.size, 0n);
              assert.equal(pt.unmap(start, end - start), expected);
              model = model.filter((m) => !touched.includes(m));
            } else {
              const r: ModelRange =
                op.kind === 'map4k'
                  ? {
                      iova: base + BigInt(op.page) * SZ_4K,
                      pa: BigInt(op.paPage) * SZ_4K,
                      size: BigInt(op.npages) * SZ_4K,
                    }
                  : {
                      iova: base + BigInt(op.slot) * SZ_2M,
                      pa: BigInt(op.paSlot) * SZ_2M,
                      size: BigInt(op.count) * SZ_2M,
                    };
              const clash = model.some((m) => overlaps(m, r.iova, r.size));
              assert.equal(pt.map(r.iova, r.pa, r.size, RW), clash ? -Errno.EADDRINUSE : 0);
              if (!clash) model.push(r);
            }
            for (const p of probes) {
              const iova = base + BigInt(p);
              assert.equal(
                pt.iovaToPhys(iova),
                modelPhys(model, iova),
                `probe ${iova.toString(16)}`,
              );
            }
            for (const m of model) {
              assert.equal(pt.iovaToPhys(m.iova), m.pa);
              assert.equal(pt.iovaToPhys(m.iova + m.size - 1n), m.pa + m.size - 1n);
            }
            const total = model.reduce((sum, m) => sum + m.size, 0n);
            assert.equal(pt.mappedBytes, total);
            assert.equal(
              pt.leaves().reduce((sum, l) => sum + l.size, 0n),
              total,
            );
            assert.equal(phys.stats().byPurpose['page-table'], pt.tablePages());
          }
          pt.free();
          assert.equal(phys.stats().byPurpose['page-table'], 0n);
          assert.equal(phys.stats().framesInUse, 0n);
        },
      ),
      { numRuns: 100 },
    );
  });
});

// ---- property: the DMA walk in numbers sees what the hardware walk sees ------------------------

type HwOp =
  | { readonly kind: 'map'; readonly slot: number; readonly size: bigint; readonly prot: number }
  | { readonly kind: 'unmap'; readonly slot: number; readonly size: bigint }
  | {
      readonly kind: 'corrupt';
      readonly page: number;
      readonly step: number;
      readonly value: bigint;
    };

/** Slots of 2 MiB in a 1 GiB-aligned 2 GiB window: room for 4K runs, 2M and 1G leaves. */
const HW_SLOTS = 1024;

const hwOpArb: fc.Arbitrary<HwOp> = fc.oneof(
  fc.record({
    kind: fc.constant('map' as const),
    slot: fc.integer({ min: 0, max: HW_SLOTS - 1 }),
    size: fc.constantFrom(SZ_4K, 3n * SZ_4K, SZ_2M, SZ_2M + SZ_4K, SZ_1G),
    prot: fc.constantFrom(Prot.READ, Prot.WRITE, RW),
  }),
  fc.record({
    kind: fc.constant('unmap' as const),
    slot: fc.integer({ min: 0, max: HW_SLOTS - 1 }),
    size: fc.constantFrom(SZ_4K, SZ_2M, SZ_1G),
  }),
  // A device's write over one entry of the walk of a page in the window (or of the page a
  // mapping starts at): zero, a leaf or pointer with any low flags (LEAF included) and maybe
  // the bits above the address set (which the format ignores), or any 64-bit value at all.
  fc.record({
    kind: fc.constant('corrupt' as const),
    page: fc.oneof(
      fc.integer({ min: 0, max: HW_SLOTS * 512 - 1 }),
      fc.integer({ min: 0, max: HW_SLOTS - 1 }).map((slot) => slot * 512),
    ),
    step: fc.nat(),
    value: fc.oneof(
      fc.constant(0n),
      fc
        .tuple(
          fc.constantFrom(0n, 0xfffn, 0x800n),
          fc.integer({ min: 0, max: (1 << 20) - 1 }),
          fc.integer({ min: 0, max: 0xff }),
        )
        .map(([high, pfn, flags]) => (high << 52n) | (BigInt(pfn) << 12n) | BigInt(flags)),
      fc.bigInt({ min: 0n, max: U64_MAX }),
    ),
  }),
);

describe('IoPagetable DMA walk', () => {
  it('the DMA walk agrees with walk() page by page, through unmaps and corrupted entries', () => {
    const cases = [
      { levels: 4, base: 0n },
      { levels: 4, base: (1n << 48n) - 2n * SZ_1G },
      { levels: 6, base: (1n << 52n) - 4n * SZ_1G },
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...cases),
        fc.array(hwOpArb, { minLength: 1, maxLength: 30 }),
        ({ levels, base }, ops) => {
          const phys = new PhysMemory();
          const pt = table(phys, levels);
          const walker = new DmaWalker(phys, pt);
          const check = (iova: bigint): void => {
            const walked = pt.walk(iova).result;
            const expected =
              walked.kind === 'leaf' ? Number(walked.pa - (iova & 0xfffn)) + walked.prot : -1;
            assert.equal(walker.page(Number(iova)), expected, `iova ${iova.toString(16)}`);
          };
          // Every page an op touched, probed after every op: streaming through them in order
          // fills the walk cache before the next op changes what it caches.
          const touched: bigint[] = [];
          for (const op of ops) {
            if (op.kind === 'corrupt') {
              const iova = base + BigInt(op.page) * SZ_4K;
              const steps = pt.walk(iova).steps;
              phys.writeU64(steps[op.step % steps.length]!.ptePa, op.value);
              touched.push(iova);
            } else {
              const iova = base + BigInt(op.slot) * SZ_2M;
              if (op.kind === 'map') pt.map(iova, BigInt(op.slot) * SZ_1G, op.size, op.prot);
              else pt.unmap(iova, op.size);
              touched.push(iova, iova + op.size - SZ_4K);
            }
            for (const iova of touched) {
              for (const off of [0n, 0x1abcn, SZ_4K, SZ_2M - SZ_4K]) check(iova + off);
            }
          }
        },
      ),
      { numRuns: 60 },
    );
  });
  it('page() refuses what it cannot walk: outside the table', () => {
    const phys = new PhysMemory();
    const pt = table(phys);
    const walker = new DmaWalker(phys, pt);
    assert.equal(pt.map(0x1000n, 0x5000n, PAGE_SIZE, RW), 0);
    assert.equal(walker.page(0x1abc), 0x5000 + RW);
    assert.equal(walker.page(0x1abc), 0x5000 + RW, 'from the IOTLB');
    assert.equal(walker.page(-4096), -1);
    assert.equal(walker.page(2 ** 48), -1, 'beyond a 4-level table');
    assert.equal(walker.page(2 ** 52), -1, 'beyond the walk in numbers');
  });
});
