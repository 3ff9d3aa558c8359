import type { Kernel } from '../boot/kernel.ts';
import type { SimProcess } from '../host/sim-process.ts';
import type { IommufdDevice } from '../iommufd/device.ts';
import { HwptPaging } from '../iommufd/hw-pagetable.ts';
import { isNoiommuDomain } from '../iommufd/hwpt-noiommu.ts';
import { Ioas } from '../iommufd/ioas.ts';
import { errnoName } from '../uapi/errno.ts';
import * as u from '../uapi/iommufd.ts';
import { ctxObjects } from './_internals.ts';
import type { IommufdOps } from './_ops.ts';
import { checkInvariants } from './invariants.ts';
import { diffSnapshots } from './snapshot.ts';

export const PAGE = u.PAGE_SIZE;
/** Pages of the user buffer every mapping comes from. */
export const BUF_PAGES = 32;
/** Fixed IOVAs come from 16 slots 4 pages apart, so mappings of up to 8 pages collide. */
export const SLOT_BASE = 0x100000n;
export const SLOT_STRIDE = 4n * PAGE;
export const SLOTS = 16;
/** An id no object has (the explorer never makes this many). */
export const BOGUS_ID = 999;
/** Allowed-IOVA candidates: disjoint, far from the MSI window and the apertures' ends. */
export const ALLOW_CANDIDATES: readonly Range[] = [
  { start: 0x100000n, last: 0x11ffffn },
  { start: 0x200000n, last: 0x2fffffn },
  { start: 0x400000n, last: 0x7fffffn },
];
export const MSI_WINDOW: Range = { start: 0xfee00000n, last: 0xfeefffffn };
export const IOMMU_APERTURE_LAST = (1n << 48n) - 1n;

export interface Range {
  readonly start: bigint;
  readonly last: bigint;
}

export type DevKind = 'iommu' | 'noiommu';

/** The default platform's devices, in no-IOMMU mode. */
export const DEVICES: readonly {
  readonly path: string;
  readonly bdf: string;
  readonly kind: DevKind;
}[] = [
  { path: '/dev/vfio/devices/vfio0', bdf: '0000:00:04.0', kind: 'iommu' },
  { path: '/dev/vfio/devices/vfio1', bdf: '0000:00:05.0', kind: 'iommu' },
  { path: '/dev/vfio/devices/noiommu-vfio2', bdf: '0000:00:06.0', kind: 'noiommu' },
];

// ---- the reference model ---------------------------------------------------------------------

export interface MArea {
  readonly iova: bigint;
  readonly length: bigint;
  /** The user VA the area's first byte maps. */
  readonly va: bigint;
}

export interface MIoas {
  readonly id: number;
  areas: MArea[];
  allowed: Range[];
  /** The HWPTs on it, in the order their domains joined (the first stores the pins). */
  hwpts: number[];
}

export interface MHwpt {
  readonly id: number;
  readonly ioas: number;
  readonly kind: DevKind;
  readonly auto: boolean;
  /** Indexes into DEVICES of the attached devices, ascending. */
  devices: number[];
}

export interface MDevice {
  open: boolean;
  devid: number | undefined;
  hwpt: number | undefined;
}

/** What the model says exists. Plain data, compared with modelOf(real). */
export interface Model {
  ids: number[];
  ioas: MIoas[];
  hwpts: MHwpt[];
  devices: MDevice[];
}

/** The system under test. */
export interface Real {
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

export function initialModel(): Model {
  return {
    ids: [],
    ioas: [],
    hwpts: [],
    devices: DEVICES.map(() => ({ open: false, devid: undefined, hwpt: undefined })),
  };
}

export function sortAreas(areas: MArea[]): MArea[] {
  return areas.sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
}

export function lowestFreeId(m: Model): number {
  let id = 1;
  while (m.ids.includes(id)) id++;
  return id;
}

export function addId(m: Model, id: number): void {
  m.ids.push(id);
  m.ids.sort((a, b) => a - b);
}

export function removeId(m: Model, id: number): void {
  m.ids = m.ids.filter((x) => x !== id);
}

export function ioasOf(m: Model, id: number): MIoas | undefined {
  return m.ioas.find((x) => x.id === id);
}

export function hwptOf(m: Model, id: number): MHwpt | undefined {
  return m.hwpts.find((x) => x.id === id);
}

export function overlaps(a: Range, b: Range): boolean {
  return a.start <= b.last && b.start <= a.last;
}

export function areaRange(a: MArea): Range {
  return { start: a.iova, last: a.iova + a.length - 1n };
}

export function removeHwpt(m: Model, hwpt: MHwpt): void {
  m.hwpts = m.hwpts.filter((h) => h !== hwpt);
  const ioas = ioasOf(m, hwpt.ioas);
  if (ioas !== undefined) ioas.hwpts = ioas.hwpts.filter((h) => h !== hwpt.id);
  removeId(m, hwpt.id);
}

/** A device leaves its HWPT; an automatic one goes with its last device. */
export function detachModel(m: Model, index: number): void {
  const dev = m.devices[index]!;
  if (dev.hwpt === undefined) return;
  const hwpt = hwptOf(m, dev.hwpt)!;
  hwpt.devices = hwpt.devices.filter((d) => d !== index);
  dev.hwpt = undefined;
  if (hwpt.auto && hwpt.devices.length === 0) removeHwpt(m, hwpt);
}

/** A device joins `hwpt` (attach, or replace away from its current one). */
export function joinModel(m: Model, index: number, hwpt: MHwpt): void {
  const dev = m.devices[index]!;
  if (dev.hwpt === hwpt.id) return;
  detachModel(m, index);
  hwpt.devices = [...hwpt.devices, index].sort((a, b) => a - b);
  dev.hwpt = hwpt.id;
}

/** The HWPT a device is attached to, if any. */
export function attachedHwptId(idev: IommufdDevice): number | undefined {
  const igroup = idev.igroup;
  return igroup?.devices.includes(idev) ? igroup.hwpt?.id : undefined;
}

/** The kernel's state, read into the model's shape. */
export function modelOf(r: Real): Model {
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
        areas: [...obj.iopt.areas.iter()].map((area) => ({
          iova: area.iova,
          length: area.length,
          va: (area.pages?.uptr ?? 0n) + area.startByte(area.iova),
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
export function canonical(m: Model): Model {
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
export function resync(m: Model, r: Real): void {
  const fresh = modelOf(r);
  m.ids = fresh.ids;
  m.ioas = fresh.ioas;
  m.hwpts = fresh.hwpts;
  m.devices = fresh.devices;
}

export class ExplorerFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExplorerFailure';
  }
}

export function fail(message: string): never {
  throw new ExplorerFailure(message);
}

export function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

export function expectRet(what: string, ret: number, want: number): void {
  if (ret !== want) {
    const show = (x: number) => (x < 0 ? `-${errnoName(x)}` : String(x));
    fail(`${what} returned ${show(ret)}, the model expects ${show(want)}`);
  }
}

/** After every call: no bug logged, the invariants hold, and the kernel matches the model. */
export function verify(what: string, m: Model, r: Real): void {
  if (r.bugs.length > 0) fail(`emulator bug after ${what}: ${r.bugs[0]}`);
  const broken = checkInvariants(r.kernel);
  if (broken.length > 0) fail(`invariants after ${what}: ${broken.join('; ')}`);
  const diff = diffSnapshots(canonical(m), modelOf(r));
  if (diff.length > 0)
    fail(`after ${what} the kernel differs from the model (model -> kernel): ${diff.join('; ')}`);
}
