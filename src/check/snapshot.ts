/**
 * Plain-data snapshots of the emulated kernel's user-visible state, and a diff of two of them:
 * "a failed call left the state as before" is `diffSnapshots(before, after)` being empty.
 * Everything here is data (numbers, bigints, strings, arrays), so snapshots compare by value.
 */
import type { Kernel } from '../boot/kernel.ts';
import { hwDomainOf } from '../iommu/pt-domain.ts';
import type { IommufdCtx } from '../iommufd/context.ts';
import { IommufdDevice } from '../iommufd/device.ts';
import type { IommuDomain } from '../iommufd/hw-pagetable.ts';
import { HwptNested, HwptPaging } from '../iommufd/hw-pagetable.ts';
import { Ioas } from '../iommufd/ioas.ts';
import { IommufdVeventq } from '../iommufd/veventq.ts';
import { IommufdVdevice, IommufdViommu } from '../iommufd/viommu.ts';
import type { PinnedStats } from '../platform/pinned-pages.ts';
import { ctxIdState, ctxObjects } from './_internals.ts';

/** One object of a context's table. */
export interface ObjectSnapshot {
  readonly id: number;
  readonly type: string;
  readonly users: number;
  readonly shorttermUsers: number;
  readonly published: boolean;
  /** Kind-specific facts: the IOAS of a HWPT, the device name of a DEVICE. */
  readonly detail: string;
}

/** One mapping of an IOAS. */
export interface AreaSnapshot {
  readonly iova: bigint;
  readonly last: bigint;
  readonly prot: string;
  /** The user VA of the area's first byte. */
  readonly va: bigint | null;
  /** Whether the area's pages are in the domains (pinned). */
  readonly filled: boolean;
  /** False while the area is being built or torn down. */
  readonly hasPages: boolean;
}

export interface RangeSnapshot {
  readonly start: bigint;
  readonly last: bigint;
}

export interface IoasSnapshot {
  readonly id: number;
  readonly areas: readonly AreaSnapshot[];
  readonly reserved: readonly (RangeSnapshot & { readonly owner: string })[];
  readonly allowed: readonly RangeSnapshot[];
  readonly iovaAlignment: bigint;
  readonly disableLargePages: boolean;
  /** Machine ids of the domains, in io_pagetable order. */
  readonly domains: readonly number[];
}

export interface GroupSnapshot {
  readonly group: number | null;
  readonly refs: number;
  readonly hwpt: number | null;
  readonly devices: readonly number[];
}

/** One iommufd context (one open of /dev/iommu). */
export interface ContextSnapshot {
  readonly accountMode: string;
  readonly nextId: number;
  readonly freeIds: readonly number[];
  readonly objects: readonly ObjectSnapshot[];
  readonly ioas: readonly IoasSnapshot[];
  readonly groups: readonly GroupSnapshot[];
  readonly vfioIoas: number | null;
  readonly fileRefs: number;
}

/** The whole kernel, as far as iommufd, VFIO and the machine's shared resources go. */
export interface KernelSnapshot {
  readonly contexts: readonly ContextSnapshot[];
  readonly leaked: readonly string[];
  readonly accounting: {
    readonly user: readonly (readonly [number, bigint])[];
    readonly mm: readonly (readonly [string, bigint])[];
  };
  readonly pinned: PinnedStats;
  readonly domains: readonly {
    readonly id: number;
    readonly kind: string;
    readonly mappedBytes: bigint;
    readonly tablePages: bigint;
    readonly devices: readonly string[];
  }[];
  readonly frames: { readonly userPage: bigint; readonly pageTable: bigint };
  readonly vfio: readonly {
    readonly name: string;
    readonly registration: number;
    readonly openCount: number;
    readonly devid: number | null;
    readonly attached: boolean;
  }[];
}

/** The machine id of an iommufd domain (-1 for one the platform does not know). */
export function domainId(domain: IommuDomain | undefined): number {
  if (domain === undefined) return -1;
  return hwDomainOf(domain)?.id ?? -1;
}

function protString(prot: { read: boolean; write: boolean }): string {
  return `${prot.read ? 'r' : '-'}${prot.write ? 'w' : '-'}`;
}

function ownerString(owner: unknown): string {
  if (owner instanceof IommufdDevice) return `device ${owner.id}`;
  if (typeof owner === 'object' && owner !== null && 'pgsizeBitmap' in owner)
    return `domain ${domainId(owner as IommuDomain)}`;
  return 'unknown';
}

function snapshotIoas(ioas: Ioas): IoasSnapshot {
  const iopt = ioas.iopt;
  return {
    id: ioas.id,
    areas: [...iopt.areas.iter()].map((area) => {
      return {
        iova: area.iova,
        last: area.last,
        prot: protString(area.prot),
        va: area.pages === undefined ? null : area.pages.uptr + area.startByte(area.iova),
        filled: area.storageDomain !== undefined,
        hasPages: area.pages !== undefined,
      };
    }),
    reserved: [...iopt.reserved.iter()].map((node) => ({
      start: node.start,
      last: node.last,
      owner: ownerString(node.value.owner),
    })),
    allowed: [...iopt.allowed.iter()].map((node) => ({ start: node.start, last: node.last })),
    iovaAlignment: iopt.iovaAlignment,
    disableLargePages: iopt.disableLargePages,
    domains: iopt.domains.map((d) => domainId(d as IommuDomain)),
  };
}

function objectDetail(obj: unknown): string {
  if (obj instanceof HwptPaging)
    return `ioas ${obj.ioas.id} domain ${domainId(obj.domain)}${obj.autoDomain ? ' auto' : ''}`;
  if (obj instanceof HwptNested)
    return obj.viommu === undefined
      ? `nested on hwpt ${obj.parent.id}`
      : `nested of viommu ${obj.viommu.id}`;
  if (obj instanceof IommufdViommu)
    return `type 0x${obj.viommuType.toString(16)} on hwpt ${obj.hwpt.id}`;
  if (obj instanceof IommufdVdevice) return `virt_id 0x${obj.virtId.toString(16)}`;
  if (obj instanceof IommufdVeventq)
    return `type 0x${obj.veventqType.toString(16)} depth ${obj.depth}`;
  if (obj instanceof IommufdDevice)
    return `${obj.dev.name}${obj.igroup === undefined ? ' no-igroup' : ''}`;
  return '';
}

/** A context's table, IOASes and igroups as plain data. */
export function snapshotContext(ictx: IommufdCtx): ContextSnapshot {
  const objects = [...ctxObjects(ictx).entries()].sort(([a], [b]) => a - b);
  const ids = ctxIdState(ictx);
  const igroups = new Set(ictx.groups.values());
  for (const [, obj] of objects) {
    if (obj instanceof IommufdDevice && obj.igroup !== undefined) igroups.add(obj.igroup);
  }
  return {
    accountMode: ictx.accountMode,
    nextId: ids.nextId,
    freeIds: ids.freeIds,
    objects: objects.map(([id, obj]) => ({
      id,
      type: obj.type,
      users: obj.users.read(),
      shorttermUsers: obj.shorttermUsers.read(),
      published: obj.published,
      detail: objectDetail(obj),
    })),
    ioas: objects.flatMap(([, obj]) => (obj instanceof Ioas ? [snapshotIoas(obj)] : [])),
    groups: [...igroups]
      .map((g) => ({
        group: g.group?.id ?? null,
        refs: g.refs,
        hwpt: g.hwpt?.id ?? null,
        devices: g.devices.map((d) => d.id).sort((a, b) => a - b),
      }))
      .sort((a, b) => (a.devices[0] ?? 0) - (b.devices[0] ?? 0)),
    vfioIoas: ictx.vfioIoas?.id ?? null,
    fileRefs: ictx.file?.refCount ?? 0,
  };
}

/** Every context plus accounting, pins, domains, frames and the VFIO devices. */
export function snapshotKernel(kernel: Kernel): KernelSnapshot {
  const machine = kernel.machine;
  const accounting = kernel.iommufd.accounting;
  const frames = machine.phys.stats().byPurpose;
  return {
    contexts: [...kernel.iommufd.contexts].map(snapshotContext),
    leaked: [...kernel.iommufd.leaked],
    accounting: {
      user: [...accounting.lockedVmByUser.entries()].sort(([a], [b]) => a - b),
      mm: [...accounting.lockedVmByMm.entries()].sort(([a], [b]) => (a < b ? -1 : 1)),
    },
    pinned: machine.pinned.stats(),
    domains: machine.domains.live().map((d) => ({
      id: d.id,
      kind: d.kind,
      mappedBytes: d.mappedBytes,
      tablePages: d.tablePages(),
      devices: [...d.devices].sort(),
    })),
    frames: { userPage: frames['user-page'], pageTable: frames['page-table'] },
    vfio: [...kernel.vfio.devices.values()].map((v) => ({
      name: v.name,
      registration: v.registration.read(),
      openCount: v.openCount.read(),
      devid: v.iommufdDevice?.id ?? null,
      attached: v.iommufdAttached,
    })),
  };
}

function show(value: unknown): string {
  if (typeof value === 'bigint') return `0x${value.toString(16)}`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`;
  if (typeof value === 'object' && value !== null) {
    const parts = Object.entries(value).map(([k, v]) => `${k}: ${show(v)}`);
    return `{${parts.join(', ')}}`;
  }
  return String(value);
}

/**
 * The field that identifies the elements of two arrays of records (`id`, else `iova`, else
 * `name`), when every element has a distinct one: such arrays are compared element by element
 * by that key instead of by position, so one insertion reads as one line.
 */
function identityKey(a: readonly unknown[], b: readonly unknown[]): string | undefined {
  const all = [...a, ...b];
  if (all.length === 0) return undefined;
  for (const key of ['id', 'iova', 'name']) {
    const ok = (list: readonly unknown[]) => {
      const seen = new Set<unknown>();
      for (const x of list) {
        if (typeof x !== 'object' || x === null || Array.isArray(x) || !(key in x)) return false;
        const k = (x as Record<string, unknown>)[key];
        if (seen.has(k)) return false;
        seen.add(k);
      }
      return true;
    };
    if (ok(a) && ok(b)) return key;
  }
  return undefined;
}

function diffInto(a: unknown, b: unknown, path: string, out: string[], limit: number): void {
  if (out.length >= limit) return;
  if (Object.is(a, b)) return;
  if (Array.isArray(a) && Array.isArray(b)) {
    const key = identityKey(a, b);
    if (key !== undefined) {
      const before = new Map(a.map((x) => [(x as Record<string, unknown>)[key], x]));
      const after = new Map(b.map((x) => [(x as Record<string, unknown>)[key], x]));
      for (const [k, x] of before) {
        const at = `${path}[${key} ${show(k)}]`;
        if (!after.has(k)) out.push(`${at}: removed ${show(x)}`);
        else diffInto(x, after.get(k), at, out, limit);
        if (out.length >= limit) return;
      }
      for (const [k, y] of after) {
        if (!before.has(k)) out.push(`${path}[${key} ${show(k)}]: added ${show(y)}`);
        if (out.length >= limit) return;
      }
      return;
    }
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i++) {
      if (i >= a.length) out.push(`${path}[${i}]: added ${show(b[i])}`);
      else if (i >= b.length) out.push(`${path}[${i}]: removed ${show(a[i])}`);
      else diffInto(a[i], b[i], `${path}[${i}]`, out, limit);
      if (out.length >= limit) return;
    }
    return;
  }
  if (
    typeof a === 'object' &&
    a !== null &&
    typeof b === 'object' &&
    b !== null &&
    !Array.isArray(a) &&
    !Array.isArray(b)
  ) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const key of keys) {
      diffInto(
        (a as Record<string, unknown>)[key],
        (b as Record<string, unknown>)[key],
        path === '' ? key : `${path}.${key}`,
        out,
        limit,
      );
    }
    return;
  }
  out.push(`${path}: ${show(a)} -> ${show(b)}`);
}

/**
 * What changed between two snapshots, one line per difference ("contexts[0].objects[1].users:
 * 2 -> 3"), at most `limit` lines. Empty when they are equal.
 */
export function diffSnapshots(before: unknown, after: unknown, limit = 8): string[] {
  const out: string[] = [];
  diffInto(before, after, '', out, limit);
  return out;
}
