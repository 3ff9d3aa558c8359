/**
 * IOAS map+unmap at scale, at the io_pagetable (iopt_map_user_pages / iopt_unmap_iova), which is
 * what IOMMU_IOAS_MAP and IOMMU_IOAS_UNMAP run after their argument checks. No domain is attached,
 * so nothing is pinned: the figures measure the area bookkeeping, the part that grows with the
 * number of live areas.
 *
 * Live areas are one page each, on even page numbers; every measured operation maps one page in
 * a random odd slot between them (fixed IOVA) and unmaps it again, so the tree is searched,
 * grown and shrunk at a random place each time and the two tables see the same operation.
 */
import { walkNow } from '../src/host/resched.ts';
import type { Task } from '../src/host/task.ts';
import { createEmulator } from '../src/index.ts';
import { Accounting } from '../src/iommufd/accounting.ts';
import { IoPagetable, type Ref } from '../src/iommufd/io-pagetable.ts';
import { Errno } from '../src/uapi/errno.ts';
import { PAGE_SIZE } from '../src/uapi/iommufd.ts';
import {
  type Budget,
  collectGarbage,
  type Figure,
  Rng,
  timeOne,
  timePair,
  type Workload,
} from './harness.ts';

const RW = { read: true, write: true } as const;
/** Operations per tinybench sample. */
const BATCH = 1000;
/** Distinct keys cycled through by the measured operations. */
const KEYS = 1 << 14;

/** An io_pagetable with `live` one-page areas at pages 2, 4, ..., 2*live. */
interface Table {
  readonly iopt: IoPagetable;
  readonly task: Task;
  readonly live: number;
}

function newTable(): { iopt: IoPagetable; task: Task } {
  const proc = createEmulator().spawn();
  // No domain is ever attached here, so the pinner is never reached.
  const pinner = {
    pin: () => -Errno.ENOMEM,
    faultOf: () => 0,
    unpin: () => {},
    lookup: () => undefined,
  };
  return { iopt: new IoPagetable({ pinner, accounting: new Accounting() }), task: proc.task() };
}

function mapPage(t: { iopt: IoPagetable; task: Task }, page: number): void {
  const va = BigInt(page) * PAGE_SIZE;
  const iova: Ref<bigint> = { value: va };
  const rc = walkNow(t.iopt.mapUserPagesWalk(t.task, 'user', iova, va, PAGE_SIZE, RW, false));
  if (rc !== 0) throw new Error(`map of page ${page}: ${rc}`);
}

function unmapPage(t: { iopt: IoPagetable }, page: number): void {
  const out: Ref<bigint> = { value: 0n };
  const rc = walkNow(t.iopt.unmapIovaWalk(BigInt(page) * PAGE_SIZE, PAGE_SIZE, out));
  if (rc !== 0) throw new Error(`unmap of page ${page}: ${rc}`);
}

function build(live: number): Table {
  const t = newTable();
  for (let i = 1; i <= live; i++) mapPage(t, 2 * i);
  return { ...t, live };
}

/** One map+unmap per key, in a random odd slot between live areas. */
function mapUnmapWorkload(table: Table, seed: number): Workload {
  const rng = new Rng(seed);
  const keys = new Float64Array(KEYS);
  for (let i = 0; i < KEYS; i++) keys[i] = 2 * rng.below(table.live + 1) + 1;
  let k = 0;
  return {
    name: `map+unmap, ${table.live} live areas`,
    batch: BATCH,
    fn: () => {
      for (let i = 0; i < BATCH; i++) {
        const page = keys[k]!;
        k = (k + 1) & (KEYS - 1);
        mapPage(table, page);
        unmapPage(table, page);
      }
    },
  };
}

function heapBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

export async function ioptFigures(budget: Budget): Promise<Figure[]> {
  const bigLive = 1_000_000;
  collectGarbage();
  const before = heapBytes();
  const t0 = performance.now();
  const big = build(bigLive);
  const buildMs = performance.now() - t0;
  collectGarbage();
  const perArea = (heapBytes() - before) / bigLive;
  const small = build(1_000);

  const { a: smallNs, b: bigNs } = await timePair(
    budget,
    mapUnmapWorkload(small, 0x10a5),
    mapUnmapWorkload(big, 0x10a5),
  );
  const aloneNs = await timeOne(budget, mapUnmapWorkload(small, 0x5eed));
  if (big.iopt.areas.size !== bigLive || small.iopt.areas.size !== 1_000) {
    throw new Error('the tables changed size while measured');
  }
  return [
    {
      name: 'map_unmap_1e6_over_1e3',
      value: bigNs / smallNs,
      unit: 'ratio',
      target: { op: '<=', value: 2.0 },
      detail: `${bigNs.toFixed(0)} ns / ${smallNs.toFixed(0)} ns per map+unmap`,
    },
    {
      name: 'map_unmap_ops_per_s',
      value: 1e9 / aloneNs,
      unit: 'ops/s',
      target: { op: '>=', value: 200_000 },
      detail: `${aloneNs.toFixed(0)} ns per map+unmap, 1e3 live areas`,
    },
    {
      name: 'bytes_per_area',
      value: perArea,
      unit: 'bytes',
      target: { op: '<=', value: 512 },
      detail: `heap+buffers over 1e6 MAPs (built in ${buildMs.toFixed(0)} ms)`,
    },
  ];
}
