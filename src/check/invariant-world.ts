/**
 * What every invariant check shares: the state gathered once (the World), the findings, and the
 * small helpers that name things in them.
 */
import type { Kernel } from '../boot/kernel.ts';
import { IommufdAccess } from '../iommufd/access.ts';
import type { DomainTeardown } from '../iommufd/area-unfill.ts';
import type { IommufdCtx } from '../iommufd/context.ts';
import { IommufdDevice, type IommufdGroup } from '../iommufd/device.ts';
import { HwptPaging } from '../iommufd/hw-pagetable.ts';
import { Ioas } from '../iommufd/ioas.ts';
import type { IoptArea } from '../iommufd/iopt-area.ts';
import type { IommufdObject } from '../iommufd/object.ts';
import { ctxObjects } from './_internals.ts';

export function hex(value: bigint): string {
  return `0x${value.toString(16)}`;
}

export function describeObj(obj: IommufdObject): string {
  return `${obj.type} ${obj.id}`;
}

/** Whether a device is on its igroup's attached list. */
export function isAttached(idev: IommufdDevice): boolean {
  return idev.igroup?.devices.includes(idev) ?? false;
}

/** Pages of one area, as the indexes of its pages object. */
export function areaPageCount(area: IoptArea): bigint {
  return area.lastIndex - area.startIndex + 1n;
}

export class Findings {
  readonly lines: string[] = [];
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  get full(): boolean {
    return this.lines.length >= this.limit;
  }

  add(line: string): void {
    if (this.lines.length < this.limit) this.lines.push(line);
  }
}

/** Everything the checks need, gathered once. */
export interface World {
  readonly kernel: Kernel;
  readonly contexts: readonly IommufdCtx[];
  readonly objects: Map<IommufdObject, IommufdCtx>;
  readonly ioases: Ioas[];
  readonly hwpts: HwptPaging[];
  readonly devices: IommufdDevice[];
  /** Every igroup a context holds or a device points at. */
  readonly igroups: Map<IommufdGroup, IommufdCtx>;
  /** Devices bound by a VFIO device (the driver's reference). */
  readonly boundByVfio: Set<IommufdDevice>;
  /** In-kernel accesses (the test interface's access fds). */
  readonly accesses: IommufdAccess[];
  /** Domains that left their IOAS and are being torn down (released contexts' too). */
  readonly teardowns: readonly DomainTeardown[];
}

export function gather(kernel: Kernel, f: Findings): World {
  const contexts = [...kernel.iommufd.contexts];
  const objects = new Map<IommufdObject, IommufdCtx>();
  const ioases: Ioas[] = [];
  const hwpts: HwptPaging[] = [];
  const devices: IommufdDevice[] = [];
  const accesses: IommufdAccess[] = [];
  const igroups = new Map<IommufdGroup, IommufdCtx>();
  for (const ictx of contexts) {
    for (const [id, obj] of ctxObjects(ictx)) {
      if (obj.id !== id) f.add(`${describeObj(obj)} is filed under id ${id}`);
      if (obj.ictx !== ictx) f.add(`${describeObj(obj)} belongs to another context`);
      objects.set(obj, ictx);
      if (obj instanceof Ioas) ioases.push(obj);
      else if (obj instanceof HwptPaging) hwpts.push(obj);
      else if (obj instanceof IommufdDevice) devices.push(obj);
      else if (obj instanceof IommufdAccess) accesses.push(obj);
    }
    for (const igroup of ictx.groups.values()) igroups.set(igroup, ictx);
  }
  for (const idev of devices) {
    if (idev.igroup !== undefined && !igroups.has(idev.igroup)) igroups.set(idev.igroup, idev.ictx);
  }
  const boundByVfio = new Set<IommufdDevice>();
  for (const vdev of kernel.vfio.devices.values()) {
    if (vdev.iommufdDevice !== undefined) boundByVfio.add(vdev.iommufdDevice);
  }
  const teardowns: DomainTeardown[] = [];
  for (const ictx of new Set([...contexts, ...kernel.iommufd.tearingDown]))
    teardowns.push(...ictx.teardowns);
  return {
    kernel,
    contexts,
    objects,
    ioases,
    hwpts,
    devices,
    igroups,
    boundByVfio,
    accesses,
    teardowns,
  };
}
