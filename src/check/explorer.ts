/**
 * The randomized model-based explorer: fast-check generates sequences of iommufd and VFIO cdev
 * calls (IOAS_ALLOC, MAP fixed/auto, UNMAP, COPY, DESTROY, ALLOW_IOVAS, IOVA_RANGES, HWPT_ALLOC,
 * GET_PA, and open/bind/attach/detach/close of the default platform's devices, the no-IOMMU one
 * included), runs each against a fresh kernel and against a small reference model (which ids
 * exist, which IOVA ranges each IOAS maps, which HWPT each device is attached to, and the errno
 * of the obvious failures), and after every call checks the result, that the kernel's state
 * matches the model, the invariants, and that no emulator bug was logged. Optionally arms
 * fail-nth before random calls: a call that fails by injection must leave the state as it was
 * (where the kernel promises that). Failures shrink to a minimal sequence; the seed is printed.
 */
import fc from 'fast-check';
import { Kernel } from '../boot/kernel.ts';
import { activeMutant } from '../fault/mutant.ts';
import { CAP_FULL_SET, CAP_IPC_LOCK } from '../host/credentials.ts';
import { SimProcess } from '../host/sim-process.ts';
import type { IommufdDevice } from '../iommufd/device.ts';
import { HwptPaging } from '../iommufd/hw-pagetable.ts';
import { isNoiommuDomain } from '../iommufd/hwpt-noiommu.ts';
import { Ioas } from '../iommufd/ioas.ts';
import { Errno, errnoName } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import { ctxObjects } from './_internals.ts';
import { FIXED, IommufdOps, RW, VfioDeviceOps } from './_ops.ts';
import { checkInvariants } from './invariants.ts';
import type { CallKind } from './scenario.ts';
import { diffSnapshots, snapshotKernel } from './snapshot.ts';
import { promisesUnchanged } from './sweep.ts';

const PAGE = u.PAGE_SIZE;
/** Pages of the user buffer every mapping comes from. */
const BUF_PAGES = 32;
/** Fixed IOVAs come from 16 slots 4 pages apart, so mappings of up to 8 pages collide. */
const SLOT_BASE = 0x100000n;
const SLOT_STRIDE = 4n * PAGE;
const SLOTS = 16;
/** An id no object has (the explorer never makes this many). */
const BOGUS_ID = 999;
/** Allowed-IOVA candidates: disjoint, far from the MSI window and the apertures' ends. */
const ALLOW_CANDIDATES: readonly Range[] = [
  { start: 0x100000n, last: 0x11ffffn },
  { start: 0x200000n, last: 0x2fffffn },
  { start: 0x400000n, last: 0x7fffffn },
];
const MSI_WINDOW: Range = { start: 0xfee00000n, last: 0xfeefffffn };
const IOMMU_APERTURE_LAST = (1n << 48n) - 1n;

interface Range {
  readonly start: bigint;
  readonly last: bigint;
}

type DevKind = 'iommu' | 'noiommu';

/** The default platform's devices, in no-IOMMU mode. */
const DEVICES: readonly { readonly path: string; readonly bdf: string; readonly kind: DevKind }[] =
  [
    { path: '/dev/vfio/devices/vfio0', bdf: '0000:00:04.0', kind: 'iommu' },
    { path: '/dev/vfio/devices/vfio1', bdf: '0000:00:05.0', kind: 'iommu' },
    { path: '/dev/vfio/devices/noiommu-vfio2', bdf: '0000:00:06.0', kind: 'noiommu' },
  ];

// ---- the reference model ---------------------------------------------------------------------

interface MArea {
  readonly iova: bigint;
  readonly length: bigint;
  /** The user VA the area's first byte maps. */
  readonly va: bigint;
}

interface MIoas {
  readonly id: number;
  areas: MArea[];
  allowed: Range[];
  /** The HWPTs on it, in the order their domains joined (the first stores the pins). */
  hwpts: number[];
}

interface MHwpt {
  readonly id: number;
  readonly ioas: number;
  readonly kind: DevKind;
  readonly auto: boolean;
  /** Indexes into DEVICES of the attached devices, ascending. */
  devices: number[];
}

interface MDevice {
  open: boolean;
  devid: number | undefined;
  hwpt: number | undefined;
}

/** What the model says exists. Plain data, compared with modelOf(real). */
interface Model {
  ids: number[];
  ioas: MIoas[];
  hwpts: MHwpt[];
  devices: MDevice[];
}

/** The system under test. */
interface Real {
  readonly kernel: Kernel;
  readonly proc: SimProcess;
  readonly ops: IommufdOps;
  readonly buf: bigint;
  readonly devFds: (number | undefined)[];
  readonly bugs: string[];
  /** Calls made, for the report. */
  readonly stats: ExploreStats;
}

/** How much the explorer did. */
export interface ExploreStats {
  calls: number;
  /** Calls by name (IOAS_ALLOC, MAP, ...). */
  byCall: Record<string, number>;
  injected: number;
  failedByInjection: number;
}

function initialModel(): Model {
  return {
    ids: [],
    ioas: [],
    hwpts: [],
    devices: DEVICES.map(() => ({ open: false, devid: undefined, hwpt: undefined })),
  };
}

function sortAreas(areas: MArea[]): MArea[] {
  return areas.sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
}

function lowestFreeId(m: Model): number {
  let id = 1;
  while (m.ids.includes(id)) id++;
  return id;
}

function addId(m: Model, id: number): void {
  m.ids.push(id);
  m.ids.sort((a, b) => a - b);
}

function removeId(m: Model, id: number): void {
  m.ids = m.ids.filter((x) => x !== id);
}

function ioasOf(m: Model, id: number): MIoas | undefined {
  return m.ioas.find((x) => x.id === id);
}

function hwptOf(m: Model, id: number): MHwpt | undefined {
  return m.hwpts.find((x) => x.id === id);
}

function overlaps(a: Range, b: Range): boolean {
  return a.start <= b.last && b.start <= a.last;
}

function areaRange(a: MArea): Range {
  return { start: a.iova, last: a.iova + a.length - 1n };
}

function removeHwpt(m: Model, hwpt: MHwpt): void {
  m.hwpts = m.hwpts.filter((h) => h !== hwpt);
  const ioas = ioasOf(m, hwpt.ioas);
  if (ioas !== undefined) ioas.hwpts = ioas.hwpts.filter((h) => h !== hwpt.id);
  removeId(m, hwpt.id);
}

/** A device leaves its HWPT; an automatic one goes with its last device. */
function detachModel(m: Model, index: number): void {
  const dev = m.devices[index]!;
  if (dev.hwpt === undefined) return;
  const hwpt = hwptOf(m, dev.hwpt)!;
  hwpt.devices = hwpt.devices.filter((d) => d !== index);
  dev.hwpt = undefined;
  if (hwpt.auto && hwpt.devices.length === 0) removeHwpt(m, hwpt);
}

/** A device joins `hwpt` (attach, or replace away from its current one). */
function joinModel(m: Model, index: number, hwpt: MHwpt): void {
  const dev = m.devices[index]!;
  if (dev.hwpt === hwpt.id) return;
  detachModel(m, index);
  hwpt.devices = [...hwpt.devices, index].sort((a, b) => a - b);
  dev.hwpt = hwpt.id;
}

/** The HWPT a device is attached to, if any. */
function attachedHwptId(idev: IommufdDevice): number | undefined {
  const igroup = idev.igroup;
  return igroup?.devices.includes(idev) ? igroup.hwpt?.id : undefined;
}

/** The kernel's state, read into the model's shape. */
function modelOf(r: Real): Model {
  const m = initialModel();
  const ictx = [...r.kernel.iommufd.contexts].find((c) => c.file !== undefined);
  const devIndex = new Map<IommufdDevice, number>();
  DEVICES.forEach((d, i) => {
    const vdev = r.kernel.vfio.devices.get(d.bdf);
    const idev = vdev?.iommufdDevice;
    m.devices[i] = {
      open: r.devFds[i] !== undefined,
      devid: idev?.id,
      hwpt: idev === undefined ? undefined : attachedHwptId(idev),
    };
    if (idev !== undefined) devIndex.set(idev, i);
  });
  if (ictx === undefined) return m;
  for (const [id, obj] of ctxObjects(ictx)) {
    m.ids.push(id);
    if (obj instanceof Ioas) {
      m.ioas.push({
        id,
        areas: [...obj.iopt.areas.iter()].map((n) => ({
          iova: n.value.iova,
          length: n.value.length,
          va: (n.value.pages?.uptr ?? 0n) + n.value.startByte(n.value.iova),
        })),
        allowed: [...obj.iopt.allowed.iter()].map((n) => ({ start: n.start, last: n.last })),
        hwpts: obj.hwptList.map((h) => h.id),
      });
    } else if (obj instanceof HwptPaging) {
      const devices: number[] = [];
      for (const [idev, i] of devIndex) {
        if (idev.igroup?.hwpt === obj && idev.igroup.devices.includes(idev)) devices.push(i);
      }
      m.hwpts.push({
        id,
        ioas: obj.ioas.id,
        kind: isNoiommuDomain(obj.domain) ? 'noiommu' : 'iommu',
        auto: obj.autoDomain,
        devices: devices.sort((a, b) => a - b),
      });
    }
  }
  m.ids.sort((a, b) => a - b);
  m.ioas.sort((a, b) => a.id - b.id);
  m.hwpts.sort((a, b) => a.id - b.id);
  return m;
}

/** The model in canonical order, for comparing. */
function canonical(m: Model): Model {
  return {
    ids: [...m.ids].sort((a, b) => a - b),
    ioas: [...m.ioas]
      .sort((a, b) => a.id - b.id)
      .map((x) => ({
        ...x,
        areas: sortAreas([...x.areas]),
        allowed: [...x.allowed].sort((a, b) => (a.start < b.start ? -1 : 1)),
      })),
    hwpts: [...m.hwpts].sort((a, b) => a.id - b.id),
    devices: m.devices.map((d) => ({ ...d })),
  };
}

/** Replaces the model's contents with the kernel's (after a failure the kernel may leave half done). */
function resync(m: Model, r: Real): void {
  const fresh = modelOf(r);
  m.ids = fresh.ids;
  m.ioas = fresh.ioas;
  m.hwpts = fresh.hwpts;
  m.devices = fresh.devices;
}

class ExplorerFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExplorerFailure';
  }
}

function fail(message: string): never {
  throw new ExplorerFailure(message);
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

function expectRet(what: string, ret: number, want: number): void {
  if (ret !== want) {
    const show = (x: number) => (x < 0 ? `-${errnoName(x)}` : String(x));
    fail(`${what} returned ${show(ret)}, the model expects ${show(want)}`);
  }
}

/** After every call: no bug logged, the invariants hold, and the kernel matches the model. */
function verify(what: string, m: Model, r: Real): void {
  if (r.bugs.length > 0) fail(`emulator bug after ${what}: ${r.bugs[0]}`);
  const broken = checkInvariants(r.kernel);
  if (broken.length > 0) fail(`invariants after ${what}: ${broken.join('; ')}`);
  const diff = diffSnapshots(canonical(m), modelOf(r));
  if (diff.length > 0)
    fail(`after ${what} the kernel differs from the model (model -> kernel): ${diff.join('; ')}`);
}

// ---- the commands ----------------------------------------------------------------------------

/** What a command's call returned: the return value and what the kernel wrote back. */
interface Outcome {
  readonly ret: number;
  readonly value?: bigint;
  readonly id?: number;
}

/** One call; `nth` arms fail-nth just before it. */
abstract class ExplorerCommand implements fc.Command<Model, Real> {
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
function pick<T>(list: readonly T[], sel: number): T | undefined {
  return list.length === 0 ? undefined : list[sel % list.length];
}

/** A call on one of the default platform's devices, chosen among those it applies to. */
abstract class DeviceCommand extends ExplorerCommand {
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

class IoasAllocCmd extends ExplorerCommand {
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
function ioasId(m: Readonly<Model>, sel: number, bogus: boolean): number {
  return bogus ? BOGUS_ID : (pick(m.ioas, sel)?.id ?? BOGUS_ID);
}

class MapCmd extends ExplorerCommand {
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

class UnmapCmd extends ExplorerCommand {
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

class CopyCmd extends ExplorerCommand {
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

type Target = 'ioas' | 'hwpt' | 'device' | 'bogus';

/** An object id of the given kind chosen by `sel`, or BOGUS_ID when there is none. */
function targetId(m: Readonly<Model>, target: Target, sel: number): number {
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

class DestroyCmd extends ExplorerCommand {
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

class AllowIovasCmd extends ExplorerCommand {
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
function expectedIovaRanges(m: Readonly<Model>, ioas: MIoas): Range[] {
  const reserved: Range[] = [];
  const hwpts = ioas.hwpts.map((id) => hwptOf(m, id)!);
  if (hwpts.some((h) => h.kind === 'iommu'))
    reserved.push({ start: IOMMU_APERTURE_LAST + 1n, last: u.ULONG_MAX });
  if (hwpts.some((h) => h.kind === 'iommu' && h.devices.length > 0)) reserved.push(MSI_WINDOW);
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

class IovaRangesCmd extends ExplorerCommand {
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

class OpenDeviceCmd extends DeviceCommand {
  constructor(devSel: number, nth: number | null) {
    super(devSel, nth);
  }
  check(m: Readonly<Model>): boolean {
    return this.choose(m, (d) => !d.open);
  }
  describe(): string {
    return `open(${DEVICES[this.dev]!.path})`;
  }
  kind(): CallKind {
    return { kind: 'open', path: DEVICES[this.dev]!.path };
  }
  call(_m: Model, r: Real): Outcome {
    const fd = r.proc.open(DEVICES[this.dev]!.path);
    if (fd >= 0) r.devFds[this.dev] = fd;
    return { ret: fd };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    if (out.ret < 0) fail(`${this} failed with ${errnoName(out.ret)}`);
    m.devices[this.dev]!.open = true;
  }
}

class BindCmd extends DeviceCommand {
  private devid = 0;

  constructor(devSel: number, nth: number | null) {
    super(devSel, nth);
  }
  check(m: Readonly<Model>): boolean {
    return this.choose(m, (d) => d.open && d.devid === undefined);
  }
  describe(): string {
    return `BIND(${DEVICES[this.dev]!.path})`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.VFIO_DEVICE_BIND_IOMMUFD };
  }
  call(_m: Model, r: Real): Outcome {
    const out = new VfioDeviceOps(r.proc, r.devFds[this.dev]!).bind(r.ops.fd);
    this.devid = out.devid;
    return { ret: out.ret, id: out.devid };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    expectRet(this.describe(), out.ret, 0);
    const want = lowestFreeId(m);
    if (this.devid !== want)
      fail(`${this} gave device id ${this.devid}, the lowest free is ${want}`);
    addId(m, want);
    m.devices[this.dev]!.devid = want;
  }
}

class AttachCmd extends DeviceCommand {
  readonly target: Target;
  readonly sel: number;

  constructor(devSel: number, target: Target, sel: number, nth: number | null) {
    super(devSel, nth);
    this.target = target;
    this.sel = sel;
  }
  check(m: Readonly<Model>): boolean {
    return this.choose(m, (d) => d.devid !== undefined);
  }
  describe(): string {
    return `ATTACH(${DEVICES[this.dev]!.path}, ${this.target}[${this.sel}])`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT };
  }
  call(m: Model, r: Real): Outcome {
    const out = new VfioDeviceOps(r.proc, r.devFds[this.dev]!).attach(
      targetId(m, this.target, this.sel),
    );
    return { ret: out.ret, id: out.ptId };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    const id = targetId(m, this.target, this.sel);
    const kind = DEVICES[this.dev]!.kind;
    let hwpt: MHwpt | undefined = hwptOf(m, id);
    const ioas = ioasOf(m, id);
    if (ioas !== undefined) {
      // iommufd_device_auto_get_domain(): an automatic HWPT of this kind, or a new one.
      hwpt = ioas.hwpts.map((h) => hwptOf(m, h)!).find((h) => h.auto && h.kind === kind);
      if (hwpt === undefined) {
        hwpt = { id: lowestFreeId(m), ioas: ioas.id, kind, auto: true, devices: [] };
        addId(m, hwpt.id);
        m.hwpts.push(hwpt);
        ioas.hwpts.push(hwpt.id);
      }
    } else if (hwpt === undefined) {
      expectRet(this.describe(), out.ret, m.ids.includes(id) ? -Errno.EINVAL : -Errno.ENOENT);
      return;
    } else if (hwpt.kind !== kind) {
      expectRet(this.describe(), out.ret, -Errno.EINVAL);
      return;
    }
    expectRet(this.describe(), out.ret, 0);
    if (out.id !== hwpt.id) fail(`${this} attached to ${out.id}, the model expects ${hwpt.id}`);
    joinModel(m, this.dev, hwpt);
  }
}

class DetachCmd extends DeviceCommand {
  constructor(devSel: number, nth: number | null) {
    super(devSel, nth);
  }
  check(m: Readonly<Model>): boolean {
    return this.choose(m, (d) => d.devid !== undefined);
  }
  describe(): string {
    return `DETACH(${DEVICES[this.dev]!.path})`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.VFIO_DEVICE_DETACH_IOMMUFD_PT };
  }
  call(_m: Model, r: Real): Outcome {
    return { ret: new VfioDeviceOps(r.proc, r.devFds[this.dev]!).detach() };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    expectRet(this.describe(), out.ret, 0);
    detachModel(m, this.dev);
  }
}

class CloseDeviceCmd extends DeviceCommand {
  constructor(devSel: number, nth: number | null) {
    super(devSel, nth);
  }
  check(m: Readonly<Model>): boolean {
    return this.choose(m, (d) => d.open);
  }
  describe(): string {
    return `close(${DEVICES[this.dev]!.path})`;
  }
  kind(): CallKind {
    return { kind: 'close', fd: -1 };
  }
  call(_m: Model, r: Real): Outcome {
    const ret = r.proc.close(r.devFds[this.dev]!);
    r.devFds[this.dev] = undefined;
    return { ret };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    expectRet(this.describe(), out.ret, 0);
    const d = m.devices[this.dev]!;
    detachModel(m, this.dev);
    if (d.devid !== undefined) removeId(m, d.devid);
    d.devid = undefined;
    d.open = false;
  }
}

class HwptAllocCmd extends DeviceCommand {
  readonly target: Target;
  readonly sel: number;

  constructor(devSel: number, target: Target, sel: number, nth: number | null) {
    super(devSel, nth);
    this.target = target;
    this.sel = sel;
  }
  check(m: Readonly<Model>): boolean {
    return this.choose(m, (d) => d.devid !== undefined);
  }
  describe(): string {
    return `HWPT_ALLOC(${DEVICES[this.dev]!.path}, ${this.target}[${this.sel}])`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.IOMMU_HWPT_ALLOC };
  }
  call(m: Model, r: Real): Outcome {
    const out = r.ops.hwptAlloc(m.devices[this.dev]!.devid!, targetId(m, this.target, this.sel));
    return { ret: out.ret, id: out.id };
  }
  expect(m: Model, _r: Real, out: Outcome): void {
    const id = targetId(m, this.target, this.sel);
    const ioas = ioasOf(m, id);
    if (ioas === undefined) {
      // A paging parent would mean nesting (unsupported); anything else is EINVAL.
      const want = hwptOf(m, id) !== undefined ? -Errno.EOPNOTSUPP : -Errno.EINVAL;
      expectRet(this.describe(), out.ret, want);
      return;
    }
    expectRet(this.describe(), out.ret, 0);
    const want = lowestFreeId(m);
    if (out.id !== want) fail(`${this} gave id ${out.id}, the lowest free is ${want}`);
    addId(m, want);
    const kind = DEVICES[this.dev]!.kind;
    m.hwpts.push({ id: want, ioas: ioas.id, kind, auto: false, devices: [] });
    ioas.hwpts.push(want);
  }
}

class GetPaCmd extends ExplorerCommand {
  private phys = 0n;
  readonly sel: number;
  readonly area: number;
  readonly page: number;
  readonly hole: boolean;

  constructor(sel: number, area: number, page: number, hole: boolean, nth: number | null) {
    super(nth);
    this.sel = sel;
    this.area = area;
    this.page = page;
    this.hole = hole;
  }
  check(m: Readonly<Model>): boolean {
    return m.ioas.length > 0;
  }
  describe(): string {
    return `GET_PA(ioas[${this.sel}], ${this.hole ? 'a hole' : `area[${this.area}]+${this.page}p`})`;
  }
  kind(): CallKind {
    return { kind: 'ioctl', cmd: ioctl.IOMMU_IOAS_NOIOMMU_GET_PA };
  }
  private where(m: Readonly<Model>): { ioas: MIoas; iova: bigint; area: MArea | undefined } {
    const ioas = pick(m.ioas, this.sel)!;
    const area = this.hole ? undefined : pick(ioas.areas, this.area);
    if (area === undefined) return { ioas, iova: 0x80000000n, area: undefined };
    const iova = area.iova + (BigInt(this.page) % (area.length / PAGE)) * PAGE;
    return { ioas, iova, area };
  }
  call(m: Model, r: Real): Outcome {
    const w = this.where(m);
    const out = r.ops.getPa(w.ioas.id, w.iova, PAGE);
    this.phys = out.phys;
    return { ret: out.ret };
  }
  expect(m: Model, r: Real, out: Outcome): void {
    const w = this.where(m);
    if (w.area === undefined) {
      expectRet(this.describe(), out.ret, -Errno.ENOENT);
      return;
    }
    const storage = w.ioas.hwpts.length > 0 ? hwptOf(m, w.ioas.hwpts[0]!) : undefined;
    if (storage?.kind !== 'noiommu') {
      expectRet(this.describe(), out.ret, -Errno.EOPNOTSUPP);
      return;
    }
    expectRet(this.describe(), out.ret, 0);
    const va = w.area.va + (w.iova - w.area.iova);
    const pfn = r.kernel.machine.pinned.lookup(r.proc.memory.mm, va);
    if (pfn === undefined || this.phys !== pfn * PAGE)
      fail(
        `${this} gave ${hex(this.phys)}, the page at ${hex(va)} is pinned at ${pfn === undefined ? 'nothing' : hex(pfn * PAGE)}`,
      );
  }
}

// ---- the arbitraries and the run -------------------------------------------------------------

function commandArbitraries(faults: boolean): fc.Arbitrary<fc.Command<Model, Real>>[] {
  const nth = faults ? fc.option(fc.integer({ min: 1, max: 24 }), { freq: 3 }) : fc.constant(null);
  const sel = fc.nat({ max: 7 });
  const rarely = fc.nat({ max: 9 }).map((x) => x === 0);
  const dev = fc.nat({ max: DEVICES.length - 1 });
  const target = fc.constantFrom<Target>('ioas', 'ioas', 'hwpt', 'device', 'bogus');
  return [
    nth.map((n) => new IoasAllocCmd(n)),
    nth.map((n) => new IoasAllocCmd(n)),
    fc
      .tuple(
        sel,
        rarely,
        fc.nat({ max: BUF_PAGES - 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        fc.nat({ max: SLOTS - 1 }),
        nth,
      )
      .map(([s, b, off, pages, fixed, slot, n]) => new MapCmd(s, b, off, pages, fixed, slot, n)),
    fc
      .tuple(
        sel,
        rarely,
        fc.nat({ max: BUF_PAGES - 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        fc.nat({ max: SLOTS - 1 }),
        nth,
      )
      .map(([s, b, off, pages, fixed, slot, n]) => new MapCmd(s, b, off, pages, fixed, slot, n)),
    fc
      .tuple(
        sel,
        rarely,
        fc.constantFrom<'area' | 'all' | 'range'>('area', 'area', 'all', 'range'),
        fc.nat({ max: 15 }),
        fc.integer({ min: 1, max: 12 }),
        nth,
      )
      .map(([s, b, mode, which, pages, n]) => new UnmapCmd(s, b, mode, which, pages, n)),
    fc
      .tuple(
        sel,
        sel,
        fc.nat({ max: 7 }),
        fc.integer({ min: 1, max: 8 }),
        sel,
        rarely,
        fc.boolean(),
        fc.nat({ max: SLOTS - 1 }),
        nth,
      )
      .map(
        ([s, a, skip, pages, d, b, fixed, slot, n]) =>
          new CopyCmd(s, a, skip, pages, d, b, fixed, slot, n),
      ),
    fc.tuple(target, sel, nth).map(([t, s, n]) => new DestroyCmd(t, s, n)),
    fc
      .tuple(sel, rarely, fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }), nth)
      .map(([s, b, which, n]) => new AllowIovasCmd(s, b, which, n)),
    fc.tuple(sel, rarely, nth).map(([s, b, n]) => new IovaRangesCmd(s, b, n)),
    fc.tuple(dev, nth).map(([d, n]) => new OpenDeviceCmd(d, n)),
    fc.tuple(dev, nth).map(([d, n]) => new OpenDeviceCmd(d, n)),
    fc.tuple(dev, nth).map(([d, n]) => new BindCmd(d, n)),
    fc.tuple(dev, nth).map(([d, n]) => new BindCmd(d, n)),
    fc.tuple(dev, target, sel, nth).map(([d, t, s, n]) => new AttachCmd(d, t, s, n)),
    fc.tuple(dev, target, sel, nth).map(([d, t, s, n]) => new AttachCmd(d, t, s, n)),
    fc.tuple(dev, nth).map(([d, n]) => new DetachCmd(d, n)),
    fc.tuple(dev, nth).map(([d, n]) => new CloseDeviceCmd(d, n)),
    fc.tuple(dev, target, sel, nth).map(([d, t, s, n]) => new HwptAllocCmd(d, t, s, n)),
    fc
      .tuple(sel, sel, fc.nat({ max: 7 }), rarely, nth)
      .map(([s, a, p, h, n]) => new GetPaCmd(s, a, p, h, n)),
  ];
}

/** A fresh kernel in no-IOMMU mode and a process (without CAP_IPC_LOCK: pins are charged). */
function setupReal(stats: ExploreStats): Real {
  const kernel = new Kernel({ enableUnsafeNoiommuMode: true });
  const bugs: string[] = [];
  kernel.events.subscribe((e) => {
    if (e.kind === 'log' && e.level === 'bug') bugs.push(e.message);
  });
  const proc = new SimProcess(kernel, { capEff: CAP_FULL_SET & ~(1n << BigInt(CAP_IPC_LOCK)) });
  const fd = proc.open('/dev/iommu');
  if (fd < 0) throw new Error(`open /dev/iommu: ${errnoName(fd)}`);
  const buf = proc.alloc(BigInt(BUF_PAGES) * PAGE);
  return {
    kernel,
    proc,
    ops: new IommufdOps(proc, fd),
    buf,
    devFds: DEVICES.map(() => undefined),
    bugs,
    stats,
  };
}

/** Every process exits: nothing may be left, no bug may be logged. */
function teardown(r: Real): void {
  r.proc.exit();
  const broken = checkInvariants(r.kernel);
  if (broken.length > 0) fail(`invariants after exit: ${broken.join('; ')}`);
  const leaks = r.kernel.leaks();
  if (leaks.length > 0) fail(`leaks after exit: ${leaks.join('; ')}`);
  if (r.bugs.length > 0) fail(`emulator bug during exit: ${r.bugs[0]}`);
}

export interface ExploreOptions {
  /** The fast-check seed; a random one (printed in the report) when absent. */
  readonly seed?: number;
  /** How many command sequences to try (default 100). */
  readonly runs?: number;
  /** Replays one shrunk counterexample (fast-check's path), with the same seed. */
  readonly path?: string;
  /** fast-check's replayPath hint for the command sequence, with `path`. */
  readonly replayPath?: string;
  /** Also arm fail-nth before random calls (default false). */
  readonly faults?: boolean;
  /** The longest sequence (default 40). */
  readonly maxCommands?: number;
}

export interface ExploreReport {
  readonly ok: boolean;
  readonly seed: number;
  readonly runs: number;
  readonly faults: boolean;
  /** fast-check's report of the (shrunk) counterexample, when one was found. */
  readonly message: string | undefined;
  /** What went wrong in the counterexample. */
  readonly error: string | undefined;
  /** The command line that reruns this exploration (and, on failure, the counterexample). */
  readonly replay: string;
  readonly stats: ExploreStats;
}

/** Runs the explorer. Synchronous; a few milliseconds per command. */
export function explore(options: ExploreOptions = {}): ExploreReport {
  const seed = options.seed ?? (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;
  const runs = options.runs ?? 100;
  const faults = options.faults ?? false;
  const arbs = commandArbitraries(faults);
  const stats: ExploreStats = { calls: 0, byCall: {}, injected: 0, failedByInjection: 0 };
  const property = fc.property(
    fc.commands(arbs, {
      maxCommands: options.maxCommands ?? 40,
      size: 'max',
      ...(options.replayPath === undefined ? {} : { replayPath: options.replayPath }),
    }),
    (cmds) => {
      let real: Real | undefined;
      try {
        fc.modelRun(() => {
          real = setupReal(stats);
          return { model: initialModel(), real };
        }, cmds);
        if (real !== undefined) teardown(real);
      } finally {
        real?.kernel.shutdown();
      }
    },
  );
  const details = fc.check(property, {
    seed,
    numRuns: runs,
    ...(options.path === undefined ? {} : { path: options.path }),
  });
  const mutant = activeMutant();
  const base =
    `iommufd-emu check --explore --seed ${seed} --runs ${runs}` +
    (faults ? ' --faults' : '') +
    (mutant === undefined ? '' : ` --mutant ${mutant}`);
  let replay = base;
  if (details.failed && details.counterexamplePath !== null) {
    const hint = /replayPath="([^"]*)"/.exec(String(details.counterexample?.[0] ?? ''));
    replay += ` --path ${details.counterexamplePath}`;
    if (hint !== null) replay += ` --replay-path '${hint[1]}'`;
  }
  const error = details.errorInstance;
  return {
    ok: !details.failed,
    seed,
    runs,
    faults,
    message: details.failed ? (fc.defaultReportMessage(details) ?? 'failed') : undefined,
    error: details.failed ? (error instanceof Error ? error.message : String(error)) : undefined,
    replay,
    stats,
  };
}
