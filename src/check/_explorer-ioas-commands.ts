/**
 * The explorer's commands (see explorer.ts): the base classes, and the IOAS calls with what the
 * model expects of each.
 */
import type fc from 'fast-check';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import {
  ALLOW_CANDIDATES,
  addId,
  areaRange,
  BOGUS_ID,
  DEVICES,
  expectRet,
  fail,
  hex,
  hwptOf,
  IOMMU_APERTURE_LAST,
  ioasOf,
  lowestFreeId,
  type MArea,
  type MDevice,
  type MIoas,
  type Model,
  MSI_WINDOW,
  overlaps,
  PAGE,
  type Range,
  type Real,
  removeHwpt,
  removeId,
  resync,
  SLOT_BASE,
  SLOT_STRIDE,
  SLOTS,
  sortAreas,
  verify,
} from './_explorer-model.ts';
import { FIXED, RW } from './_ops.ts';
import type { CallKind } from './scenario.ts';
import { diffSnapshots, snapshotKernel } from './snapshot.ts';
import { promisesUnchanged } from './sweep.ts';

// ---- the commands ----------------------------------------------------------------------------

/** What a command's call returned: the return value and what the kernel wrote back. */
export interface Outcome {
  readonly ret: number;
  readonly value?: bigint;
  readonly id?: number;
}

/** One call; `nth` arms fail-nth just before it. */
export abstract class ExplorerCommand implements fc.Command<Model, Real> {
  readonly nth: number | undefined;

  constructor(nth: number | null) {
    this.nth = nth ?? undefined;
  }

  abstract check(m: Readonly<Model>): boolean;
  abstract describe(): string;
  /** The call, for the atomicity policy. */
  abstract kind(): CallKind;
  /** Makes the real call. Must not touch the model. */
  abstract call(m: Readonly<Model>, r: Real): Outcome;
  /** Checks the outcome against the model and updates the model. */
  abstract expect(m: Model, r: Real, out: Outcome): void;

  toString(): string {
    return `${this.describe()}${this.nth === undefined ? '' : ` [fail-nth ${this.nth}]`}`;
  }

  run(m: Model, r: Real): void {
    const before = this.nth === undefined ? undefined : snapshotKernel(r.kernel);
    if (this.nth !== undefined) r.proc.failNth.arm(this.nth);
    const out = this.call(m, r);
    const fired = r.proc.failNth.lastFired;
    r.proc.failNth.arm(0);
    r.stats.calls++;
    const name = this.describe().replace(/\(.*$/, '');
    r.stats.byCall[name] = (r.stats.byCall[name] ?? 0) + 1;
    if (fired !== undefined) r.stats.injected++;
    if (fired !== undefined && out.ret < 0) r.stats.failedByInjection++;
    if (fired !== undefined && out.ret < 0) {
      if (promisesUnchanged(this.kind(), fired)) {
        const diff = diffSnapshots(before, snapshotKernel(r.kernel));
        if (diff.length > 0)
          fail(`${this} failed at the injected ${fired} but changed the state: ${diff.join('; ')}`);
      } else {
        // The kernel reports the copy-out failure after the change: take its word for the state.
        resync(m, r);
      }
    } else {
      this.expect(m, r, out);
    }
    verify(this.toString(), m, r);
  }
}

/** Resolves a selector against a list (undefined when the list is empty). */
export function pick<T>(list: readonly T[], sel: number): T | undefined {
  return list.length === 0 ? undefined : list[sel % list.length];
}

/** A call on one of the default platform's devices, chosen among those it applies to. */
export abstract class DeviceCommand extends ExplorerCommand {
  /** Picks among the devices the call applies to. */
  readonly devSel: number;
  /** The device index the last check() chose. */
  dev = 0;

  constructor(devSel: number, nth: number | null) {
    super(nth);
    this.devSel = devSel;
  }

  /** Chooses the device (by `devSel`) among those `applies` accepts; false when there is none. */
  protected choose(m: Readonly<Model>, applies: (d: MDevice) => boolean): boolean {
    const eligible = m.devices.flatMap((d, i) => (applies(d) ? [i] : []));
    const chosen = pick(eligible, this.devSel);
    if (chosen === undefined) return false;
    this.dev = chosen;
    return true;
  }
}

export class IoasAllocCmd extends ExplorerCommand {
  check(): boolean {
    return true;
  }
  describe(): string {
    return 'IOAS_ALLOC';
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.IOMMU_IOAS_ALLOC };
  }
  call(_m: Model, r: Real): Outcome {
    const out = r.ops.ioasAlloc();
    return { ret: out.ret, id: out.id };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    expectRet(this.describe(), out.ret, 0);
    const want = lowestFreeId(m);
    if (out.id !== want) fail(`IOAS_ALLOC gave id ${out.id}, the lowest free id is ${want}`);
    addId(m, want);
    m.ioas.push({ id: want, areas: [], allowed: [], hwpts: [] });
  }
}

/** Chooses an IOAS id: one of the model's, or (bogus) one that does not exist. */
export function ioasId(m: Readonly<Model>, sel: number, bogus: boolean): number {
  return bogus ? BOGUS_ID : (pick(m.ioas, sel)?.id ?? BOGUS_ID);
}

export class MapCmd extends ExplorerCommand {
  readonly sel: number;
  readonly bogus: boolean;
  readonly off: number;
  readonly pages: number;
  readonly fixed: boolean;
  readonly slot: number;

  constructor(
    sel: number,
    bogus: boolean,
    off: number,
    pages: number,
    fixed: boolean,
    slot: number,
    nth: number | null,
  ) {
    super(nth);
    this.sel = sel;
    this.bogus = bogus;
    this.off = off;
    this.pages = pages;
    this.fixed = fixed;
    this.slot = slot;
  }
  check(m: Readonly<Model>): boolean {
    return this.bogus || m.ioas.length > 0;
  }
  describe(): string {
    const where = this.fixed ? `fixed ${hex(SLOT_BASE + BigInt(this.slot) * SLOT_STRIDE)}` : 'auto';
    return `MAP(ioas[${this.bogus ? 'bogus' : this.sel}], buf+${this.off}p, ${this.pages}p, ${where})`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.IOMMU_IOAS_MAP };
  }
  private target(m: Readonly<Model>): number {
    return ioasId(m, this.sel, this.bogus);
  }
  call(m: Model, r: Real): Outcome {
    const va = r.buf + BigInt(this.off) * PAGE;
    const iova = SLOT_BASE + BigInt(this.slot) * SLOT_STRIDE;
    const out = r.ops.map(
      this.target(m),
      va,
      BigInt(this.pages) * PAGE,
      this.fixed ? FIXED : RW,
      iova,
    );
    return { ret: out.ret, value: out.iova };
  }
  expect(m: Model, r: Real, out: Outcome): void {
    const ioas = ioasOf(m, this.target(m));
    if (ioas === undefined) {
      expectRet(this.describe(), out.ret, -Errno.ENOENT);
      return;
    }
    const length = BigInt(this.pages) * PAGE;
    const va = r.buf + BigInt(this.off) * PAGE;
    if (this.fixed) {
      const iova = SLOT_BASE + BigInt(this.slot) * SLOT_STRIDE;
      const range = { start: iova, last: iova + length - 1n };
      if (ioas.areas.some((a) => overlaps(areaRange(a), range))) {
        expectRet(this.describe(), out.ret, -Errno.EEXIST);
        return;
      }
      expectRet(this.describe(), out.ret, 0);
      ioas.areas = sortAreas([...ioas.areas, { iova, length, va }]);
      return;
    }
    if (out.ret === -Errno.ENOSPC && ioas.allowed.length > 0) return;
    expectRet(this.describe(), out.ret, 0);
    const iova = out.value!;
    const range = { start: iova, last: iova + length - 1n };
    if (iova % PAGE !== 0n || iova === 0n) fail(`${this} chose the IOVA ${hex(iova)}`);
    if (ioas.areas.some((a) => overlaps(areaRange(a), range)))
      fail(`${this} chose ${hex(iova)}, which overlaps a mapping`);
    if (
      ioas.allowed.length > 0 &&
      !ioas.allowed.some((a) => a.start <= iova && range.last <= a.last)
    )
      fail(`${this} chose ${hex(iova)}, outside the allowed ranges`);
    ioas.areas = sortAreas([...ioas.areas, { iova, length, va }]);
  }
}

export class UnmapCmd extends ExplorerCommand {
  readonly sel: number;
  readonly bogus: boolean;
  /** 'area': exactly one mapping; 'all': unmap-all; 'range': a slot-based range. */
  readonly mode: 'area' | 'all' | 'range';
  readonly which: number;
  readonly pages: number;

  constructor(
    sel: number,
    bogus: boolean,
    mode: 'area' | 'all' | 'range',
    which: number,
    pages: number,
    nth: number | null,
  ) {
    super(nth);
    this.sel = sel;
    this.bogus = bogus;
    this.mode = mode;
    this.which = which;
    this.pages = pages;
  }
  check(m: Readonly<Model>): boolean {
    return this.bogus || m.ioas.length > 0;
  }
  describe(): string {
    const what =
      this.mode === 'all'
        ? 'all'
        : this.mode === 'area'
          ? `area[${this.which}]`
          : `${hex(SLOT_BASE + BigInt(this.which % SLOTS) * SLOT_STRIDE)}+${this.pages}p`;
    return `UNMAP(ioas[${this.bogus ? 'bogus' : this.sel}], ${what})`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.IOMMU_IOAS_UNMAP };
  }
  private range(m: Readonly<Model>): { iova: bigint; length: bigint } {
    if (this.mode === 'all') return { iova: 0n, length: u.ULONG_MAX };
    const ioas = ioasOf(m, ioasId(m, this.sel, this.bogus));
    const area = ioas === undefined ? undefined : pick(ioas.areas, this.which);
    if (this.mode === 'area' && area !== undefined) return { iova: area.iova, length: area.length };
    return {
      iova: SLOT_BASE + BigInt(this.which % SLOTS) * SLOT_STRIDE,
      length: BigInt(this.pages) * PAGE,
    };
  }
  call(m: Model, r: Real): Outcome {
    const { iova, length } = this.range(m);
    const out = r.ops.unmap(ioasId(m, this.sel, this.bogus), iova, length);
    return { ret: out.ret, value: out.length };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    const ioas = ioasOf(m, ioasId(m, this.sel, this.bogus));
    if (ioas === undefined) {
      expectRet(this.describe(), out.ret, -Errno.ENOENT);
      return;
    }
    const { iova, length } = this.range(m);
    if (this.mode === 'all') {
      const total = ioas.areas.reduce((s, a) => s + a.length, 0n);
      expectRet(this.describe(), out.ret, 0);
      if (out.value !== total) fail(`${this} reported ${out.value} bytes, the model ${total}`);
      ioas.areas = [];
      return;
    }
    // iopt_unmap_iova_range(): whole areas inside the range, lowest first; one sticking out stops
    // the walk with ENOENT, leaving the earlier ones unmapped; nothing at all is ENOENT too.
    const range = { start: iova, last: iova + length - 1n };
    let removed = 0n;
    let rc = 0;
    for (const area of [...ioas.areas]) {
      if (!overlaps(areaRange(area), range)) continue;
      if (area.iova < range.start || areaRange(area).last > range.last) {
        rc = -Errno.ENOENT;
        break;
      }
      ioas.areas = ioas.areas.filter((a) => a !== area);
      removed += area.length;
    }
    if (rc === 0 && removed === 0n) rc = -Errno.ENOENT;
    expectRet(this.describe(), out.ret, rc);
    if (rc === 0 && out.value !== removed)
      fail(`${this} reported ${out.value} bytes, the model ${removed}`);
  }
}

export class CopyCmd extends ExplorerCommand {
  readonly src: number;
  readonly area: number;
  readonly skip: number;
  readonly pages: number;
  readonly dst: number;
  readonly dstBogus: boolean;
  readonly fixed: boolean;
  readonly slot: number;

  constructor(
    src: number,
    area: number,
    skip: number,
    pages: number,
    dst: number,
    dstBogus: boolean,
    fixed: boolean,
    slot: number,
    nth: number | null,
  ) {
    super(nth);
    this.src = src;
    this.area = area;
    this.skip = skip;
    this.pages = pages;
    this.dst = dst;
    this.dstBogus = dstBogus;
    this.fixed = fixed;
    this.slot = slot;
  }
  check(m: Readonly<Model>): boolean {
    return m.ioas.some((x) => x.areas.length > 0);
  }
  describe(): string {
    const where = this.fixed ? `fixed ${hex(SLOT_BASE + BigInt(this.slot) * SLOT_STRIDE)}` : 'auto';
    return (
      `COPY(ioas[${this.src}] area[${this.area}]+${this.skip}p ${this.pages}p -> ` +
      `ioas[${this.dstBogus ? 'bogus' : this.dst}], ${where})`
    );
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.IOMMU_IOAS_COPY };
  }
  /** The source: a page-aligned piece of one mapping. */
  private source(m: Readonly<Model>): { ioas: MIoas; area: MArea; iova: bigint; length: bigint } {
    const ioas = pick(
      m.ioas.filter((x) => x.areas.length > 0),
      this.src,
    )!;
    const area = pick(ioas.areas, this.area)!;
    const npages = area.length / PAGE;
    const skip = BigInt(this.skip) % npages;
    const take = BigInt(this.pages) > npages - skip ? npages - skip : BigInt(this.pages);
    return { ioas, area, iova: area.iova + skip * PAGE, length: take * PAGE };
  }
  private dstId(m: Readonly<Model>): number {
    return ioasId(m, this.dst, this.dstBogus);
  }
  call(m: Model, r: Real): Outcome {
    const s = this.source(m);
    const iova = SLOT_BASE + BigInt(this.slot) * SLOT_STRIDE;
    const out = r.ops.copy(
      s.ioas.id,
      s.iova,
      this.dstId(m),
      s.length,
      this.fixed ? FIXED : RW,
      iova,
    );
    return { ret: out.ret, value: out.iova };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    const s = this.source(m);
    const dst = ioasOf(m, this.dstId(m));
    if (dst === undefined) {
      expectRet(this.describe(), out.ret, -Errno.ENOENT);
      return;
    }
    const va = s.area.va + (s.iova - s.area.iova);
    let iova: bigint;
    if (this.fixed) {
      iova = SLOT_BASE + BigInt(this.slot) * SLOT_STRIDE;
      const range = { start: iova, last: iova + s.length - 1n };
      if (dst.areas.some((a) => overlaps(areaRange(a), range))) {
        expectRet(this.describe(), out.ret, -Errno.EEXIST);
        return;
      }
      expectRet(this.describe(), out.ret, 0);
    } else {
      if (out.ret === -Errno.ENOSPC && dst.allowed.length > 0) return;
      expectRet(this.describe(), out.ret, 0);
      iova = out.value!;
      const range = { start: iova, last: iova + s.length - 1n };
      if (dst.areas.some((a) => overlaps(areaRange(a), range)))
        fail(`${this} chose ${hex(iova)}, which overlaps a mapping`);
    }
    dst.areas = sortAreas([...dst.areas, { iova, length: s.length, va }]);
  }
}

export type Target = 'ioas' | 'hwpt' | 'device' | 'bogus';

/** An object id of the given kind chosen by `sel`, or BOGUS_ID when there is none. */
export function targetId(m: Readonly<Model>, target: Target, sel: number): number {
  switch (target) {
    case 'ioas':
      return pick(m.ioas, sel)?.id ?? BOGUS_ID;
    case 'hwpt':
      return pick(m.hwpts, sel)?.id ?? BOGUS_ID;
    case 'device':
      return (
        pick(
          m.devices.flatMap((d) => (d.devid === undefined ? [] : [d.devid])),
          sel,
        ) ?? BOGUS_ID
      );
    case 'bogus':
      return BOGUS_ID;
  }
}

export class DestroyCmd extends ExplorerCommand {
  readonly target: Target;
  readonly sel: number;

  constructor(target: Target, sel: number, nth: number | null) {
    super(nth);
    this.target = target;
    this.sel = sel;
  }
  check(): boolean {
    return true;
  }
  describe(): string {
    return `DESTROY(${this.target}[${this.sel}])`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.IOMMU_DESTROY };
  }
  call(m: Model, r: Real): Outcome {
    return { ret: r.ops.destroy(targetId(m, this.target, this.sel)) };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    const id = targetId(m, this.target, this.sel);
    const ioas = ioasOf(m, id);
    const hwpt = hwptOf(m, id);
    if (ioas !== undefined) {
      if (ioas.hwpts.length > 0) {
        expectRet(this.describe(), out.ret, -Errno.EBUSY);
        return;
      }
      expectRet(this.describe(), out.ret, 0);
      m.ioas = m.ioas.filter((x) => x !== ioas);
      removeId(m, id);
    } else if (hwpt !== undefined) {
      if (hwpt.devices.length > 0) {
        expectRet(this.describe(), out.ret, -Errno.EBUSY);
        return;
      }
      expectRet(this.describe(), out.ret, 0);
      removeHwpt(m, hwpt);
    } else if (m.ids.includes(id)) {
      // A bound device: the driver holds it.
      expectRet(this.describe(), out.ret, -Errno.EBUSY);
    } else {
      expectRet(this.describe(), out.ret, -Errno.ENOENT);
    }
  }
}

export class AllowIovasCmd extends ExplorerCommand {
  readonly sel: number;
  readonly bogus: boolean;
  readonly which: readonly boolean[];

  constructor(sel: number, bogus: boolean, which: readonly boolean[], nth: number | null) {
    super(nth);
    this.sel = sel;
    this.bogus = bogus;
    this.which = which;
  }
  check(m: Readonly<Model>): boolean {
    return this.bogus || m.ioas.length > 0;
  }
  private ranges(): Range[] {
    return ALLOW_CANDIDATES.filter((_, i) => this.which[i]);
  }
  describe(): string {
    const list = this.ranges().map((r) => `${hex(r.start)}-${hex(r.last)}`);
    return `ALLOW_IOVAS(ioas[${this.bogus ? 'bogus' : this.sel}], [${list.join(', ')}])`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.IOMMU_IOAS_ALLOW_IOVAS };
  }
  call(m: Model, r: Real): Outcome {
    return { ret: r.ops.allowIovas(ioasId(m, this.sel, this.bogus), this.ranges()) };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    const ioas = ioasOf(m, ioasId(m, this.sel, this.bogus));
    if (ioas === undefined) {
      expectRet(this.describe(), out.ret, -Errno.ENOENT);
      return;
    }
    expectRet(this.describe(), out.ret, 0);
    ioas.allowed = this.ranges();
  }
}

/** The usable IOVA ranges the model implies: holes between the reserved ranges. */
export function expectedIovaRanges(m: Readonly<Model>, ioas: MIoas): Range[] {
  const reserved: Range[] = [];
  const hwpts = ioas.hwpts.map((id) => hwptOf(m, id)!);
  if (hwpts.some((h) => h.kind === 'iommu'))
    reserved.push({ start: IOMMU_APERTURE_LAST + 1n, last: u.ULONG_MAX });
  const iommuDevice = (i: number): boolean => DEVICES[i]!.kind === 'iommu';
  if (hwpts.some((h) => h.devices.some(iommuDevice))) reserved.push(MSI_WINDOW);
  reserved.sort((a, b) => (a.start < b.start ? -1 : 1));
  const out: Range[] = [];
  let cur = 0n;
  for (const r of reserved) {
    if (r.start > cur) out.push({ start: cur, last: r.start - 1n });
    cur = r.last + 1n;
  }
  if (cur <= u.ULONG_MAX && (reserved.length === 0 || reserved.at(-1)!.last < u.ULONG_MAX))
    out.push({ start: cur, last: u.ULONG_MAX });
  return out;
}

export class IovaRangesCmd extends ExplorerCommand {
  private result: { ranges: Range[]; alignment: bigint; count: number } | undefined;
  readonly sel: number;
  readonly bogus: boolean;

  constructor(sel: number, bogus: boolean, nth: number | null) {
    super(nth);
    this.sel = sel;
    this.bogus = bogus;
  }
  check(m: Readonly<Model>): boolean {
    return this.bogus || m.ioas.length > 0;
  }
  describe(): string {
    return `IOVA_RANGES(ioas[${this.bogus ? 'bogus' : this.sel}])`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.IOMMU_IOAS_IOVA_RANGES };
  }
  call(m: Model, r: Real): Outcome {
    const out = r.ops.iovaRanges(ioasId(m, this.sel, this.bogus), 4);
    this.result = { ranges: out.ranges, alignment: out.alignment, count: out.count };
    return { ret: out.ret };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    const ioas = ioasOf(m, ioasId(m, this.sel, this.bogus));
    if (ioas === undefined) {
      expectRet(this.describe(), out.ret, -Errno.ENOENT);
      return;
    }
    expectRet(this.describe(), out.ret, 0);
    const want = expectedIovaRanges(m, ioas);
    const diff = diffSnapshots(want, this.result?.ranges ?? []);
    if (diff.length > 0) fail(`${this} returned other ranges than the model's: ${diff.join('; ')}`);
    const align = ioas.hwpts.length > 0 ? PAGE : 1n;
    if (this.result?.alignment !== align)
      fail(`${this} gave alignment ${this.result?.alignment}, the model ${align}`);
  }
}
