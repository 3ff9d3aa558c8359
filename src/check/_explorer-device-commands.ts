import { Errno, errnoName } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import {
  DeviceCommand,
  ExplorerCommand,
  type Outcome,
  pick,
  type Target,
  targetId,
} from './_explorer-ioas-commands.ts';
import {
  addId,
  DEVICES,
  detachModel,
  expectRet,
  fail,
  hex,
  hwptOf,
  ioasOf,
  joinModel,
  lowestFreeId,
  type MArea,
  type MHwpt,
  type MIoas,
  type Model,
  PAGE,
  type Real,
  removeId,
} from './_explorer-model.ts';
import { VfioDeviceOps } from './_ops.ts';
import type { CallKind } from './scenario.ts';

export class OpenDeviceCmd extends DeviceCommand {
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

export class BindCmd extends DeviceCommand {
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

export class AttachCmd extends DeviceCommand {
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
    // A device behind dmar0 and a no-IOMMU domain: attach refuses it by the owner rule (EINVAL),
    // replace by the domain's missing attach_dev (ENODEV). A no-IOMMU device joins any HWPT
    // (docs/decisions.md 13).
    const refused = m.devices[this.dev]!.hwpt === undefined ? -Errno.EINVAL : -Errno.ENODEV;
    let hwpt: MHwpt | undefined = hwptOf(m, id);
    const ioas = ioasOf(m, id);
    if (ioas !== undefined) {
      // iommufd_device_auto_get_domain(): the first automatic HWPT the device joins, or a new
      // one. Only EINVAL moves the search on to the next.
      hwpt = undefined;
      for (const h of ioas.hwpts.map((x) => hwptOf(m, x)!).filter((x) => x.auto)) {
        if (kind === 'noiommu' || h.kind === kind) {
          hwpt = h;
          break;
        }
        if (refused !== -Errno.EINVAL) {
          expectRet(this.describe(), out.ret, refused);
          return;
        }
      }
      if (hwpt === undefined) {
        hwpt = { id: lowestFreeId(m), ioas: ioas.id, kind, auto: true, devices: [] };
        addId(m, hwpt.id);
        m.hwpts.push(hwpt);
        ioas.hwpts.push(hwpt.id);
      }
    } else if (hwpt === undefined) {
      expectRet(this.describe(), out.ret, m.ids.includes(id) ? -Errno.EINVAL : -Errno.ENOENT);
      return;
    } else if (kind === 'iommu' && hwpt.kind !== kind) {
      expectRet(this.describe(), out.ret, refused);
      return;
    }
    expectRet(this.describe(), out.ret, 0);
    if (out.id !== hwpt.id) fail(`${this} attached to ${out.id}, the model expects ${hwpt.id}`);
    joinModel(m, this.dev, hwpt);
  }
}

export class DetachCmd extends DeviceCommand {
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

export class CloseDeviceCmd extends DeviceCommand {
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

export class HwptAllocCmd extends DeviceCommand {
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

export class GetPaCmd extends ExplorerCommand {
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
