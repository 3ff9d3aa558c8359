/**
 * The inspector's view of an emulated kernel as JSON-ready data (state-types.ts): the contexts
 * and their objects with both refcounts and the references between them, each IOAS's map, the
 * machine's domains, devices and pinned pages; and one IOVA walked through one domain's table.
 * Built from the checker's snapshots (check/snapshot.ts) and the machine's, with every u64
 * turned into a hex string.
 */
import type { Kernel } from '../boot/kernel.ts';
import { ctxObjects } from '../check/_internals.ts';
import { domainId, snapshotContext } from '../check/snapshot.ts';
import type { IommufdCtx } from '../iommufd/context.ts';
import { IommufdDevice } from '../iommufd/device.ts';
import { HwptNested, HwptPaging } from '../iommufd/hw-pagetable.ts';
import { IommufdHwQueue } from '../iommufd/hw-queue.ts';
import type { IommufdObject } from '../iommufd/object.ts';
import { IommufdVeventq } from '../iommufd/veventq.ts';
import { IommufdVdevice, IommufdViommu } from '../iommufd/viommu.ts';
import { Prot, Pte } from '../platform/io-pgtable.ts';
import type { IommuDomain } from '../platform/iommu.ts';
import { hex, PAGE_SHIFT } from '../platform/sizes.ts';
import type {
  ContextState,
  DeviceState,
  DomainState,
  InspectorState,
  NodeKey,
  PinnedState,
  ProgramState,
  RefState,
  ReplayState,
  WalkState,
} from './state-types.ts';

export function contextKey(index: number): NodeKey {
  return `ctx:${index}`;
}

export function objectKey(context: number, id: number): NodeKey {
  return `obj:${context}:${id}`;
}

export function domainKey(id: number): NodeKey {
  return `domain:${id}`;
}

export function deviceKey(bdf: string): NodeKey {
  return `dev:${bdf}`;
}

/** The references an object holds on other nodes: the edges its `users` counts stand for. */
function refsOf(obj: IommufdObject, context: number): RefState[] {
  if (obj instanceof HwptPaging) {
    const refs: RefState[] = [{ to: objectKey(context, obj.ioas.id), label: 'ioas' }];
    const id = domainId(obj.domain);
    if (id >= 0) refs.push({ to: domainKey(id), label: 'domain' });
    if (obj.fault !== undefined)
      refs.push({ to: objectKey(context, obj.fault.id), label: 'fault' });
    return refs;
  }
  if (obj instanceof IommufdDevice) {
    const hwpt = obj.igroup?.hwpt;
    return hwpt === undefined ? [] : [{ to: objectKey(context, hwpt.id), label: 'attached' }];
  }
  return nestedRefsOf(obj, context);
}

/** The references of nested translation's objects (docs/nested.md). */
function nestedRefsOf(obj: IommufdObject, context: number): RefState[] {
  const to = (o: IommufdObject, label: string): RefState => ({
    to: objectKey(context, o.id),
    label,
  });
  if (obj instanceof HwptNested) {
    const refs = [obj.viommu === undefined ? to(obj.parent, 'parent') : to(obj.viommu, 'viommu')];
    if (obj.fault !== undefined) refs.push(to(obj.fault, 'fault'));
    return refs;
  }
  if (obj instanceof IommufdViommu) return [to(obj.hwpt, 'parent')];
  if (obj instanceof IommufdVdevice) return [to(obj.viommu, 'viommu'), to(obj.idev, 'device')];
  if (obj instanceof IommufdVeventq) return [to(obj.viommu, 'viommu')];
  if (obj instanceof IommufdHwQueue) {
    const refs = obj.viommu === undefined ? [] : [to(obj.viommu, 'viommu')];
    if (obj.access !== undefined) refs.push(to(obj.access, 'pins'));
    return refs;
  }
  return [];
}

function contextState(ictx: IommufdCtx, index: number): ContextState {
  const snap = snapshotContext(ictx);
  const objects = ctxObjects(ictx);
  return {
    key: contextKey(index),
    index,
    fileRefs: snap.fileRefs,
    accountMode: snap.accountMode,
    objects: snap.objects.map((o) => {
      const obj = objects.get(o.id);
      return {
        key: objectKey(index, o.id),
        id: o.id,
        type: o.type,
        users: o.users,
        shorttermUsers: o.shorttermUsers,
        published: o.published,
        detail: o.detail,
        refs: obj === undefined ? [] : refsOf(obj, index),
      };
    }),
    ioas: snap.ioas.map((ioas) => ({
      key: objectKey(index, ioas.id),
      id: ioas.id,
      areas: ioas.areas.map((a) => ({
        iova: hex(a.iova),
        last: hex(a.last),
        prot: a.prot,
        va: a.va === null ? null : hex(a.va),
        filled: a.filled,
      })),
      reserved: ioas.reserved.map((r) => ({
        start: hex(r.start),
        last: hex(r.last),
        owner: r.owner,
      })),
      allowed: ioas.allowed.map((r) => ({ start: hex(r.start), last: hex(r.last) })),
      iovaAlignment: hex(ioas.iovaAlignment),
      domains: ioas.domains,
    })),
  };
}

/** The number of levels of a domain's table (the root step of any walk is levels-1). */
function levelsOf(domain: IommuDomain): number {
  const root = domain.walk(domain.aperture.start).steps[0];
  return root === undefined ? 0 : root.level + 1;
}

function domainState(domain: IommuDomain): DomainState {
  return {
    key: domainKey(domain.id),
    id: domain.id,
    kind: domain.kind,
    unit: domain.unit?.name ?? null,
    levels: levelsOf(domain),
    aperture: { start: hex(domain.aperture.start), last: hex(domain.aperture.last) },
    mappedBytes: hex(domain.mappedBytes),
    tablePages: hex(domain.tablePages()),
    devices: [...domain.devices].sort(),
  };
}

function deviceStates(kernel: Kernel, contexts: readonly IommufdCtx[]): DeviceState[] {
  const vfioByBdf = new Map([...kernel.vfio.devices.values()].map((v) => [v.pci.bdf, v]));
  return [...kernel.machine.devices.values()].map((pci) => {
    const snap = pci.snapshot();
    const vfio = vfioByBdf.get(pci.bdf);
    const idev = vfio?.iommufdDevice;
    const context = idev === undefined ? -1 : contexts.indexOf(idev.ictx);
    return {
      bdf: pci.bdf,
      type: snap.type,
      vfio: vfio === undefined ? null : vfio.cdevPath,
      unsafe: vfio?.noiommu ?? snap.iommu === null,
      iommu: snap.iommu,
      group: snap.group,
      domain: snap.domain,
      busMaster: snap.busMaster,
      bound: idev === undefined || context < 0 ? null : { context, devid: idev.id },
      attached: vfio?.iommufdAttached ?? false,
      openCount: vfio?.openCount.read() ?? 0,
    };
  });
}

/**
 * Extents listed per address space: a program that pins gigabytes of scattered 4 KiB pages has
 * one extent per page, and the page refetches the state many times a second. The totals stay
 * exact; `omitted` says how many runs were left out.
 */
export const MAX_EXTENTS_PER_MM = 4096;

function pinnedState(kernel: Kernel): PinnedState {
  const pinned = kernel.machine.pinned;
  const stats = pinned.stats();
  return {
    pinnedPages: hex(stats.pinnedPages),
    pins: hex(stats.pins),
    frames: hex(stats.frames),
    hugeBlocks: hex(stats.hugeBlocks),
    mms: pinned.extents().map(({ mm, extents }) => {
      const listed = extents.slice(0, MAX_EXTENTS_PER_MM);
      return {
        mm,
        extents: listed.map((e) => ({
          va: hex(e.va),
          pa: hex(e.pfn << PAGE_SHIFT),
          npages: hex(e.npages),
          pins: e.pins,
          huge: e.huge,
        })),
        omitted: extents.length - listed.length,
      };
    }),
  };
}

/** The whole state, as `GET /api/state` returns it. */
export function inspectorState(
  kernel: Kernel,
  program: ProgramState,
  seq: number,
  replay: ReplayState | null = null,
): InspectorState {
  const contexts = [...kernel.iommufd.contexts];
  const accounting = kernel.iommufd.accounting;
  const frames = kernel.machine.phys.stats().byPurpose;
  return {
    version: 1,
    seq,
    program,
    tainted: kernel.tainted,
    unsafeNoiommuMode: kernel.vfio.enableUnsafeNoiommuMode,
    devices: deviceStates(kernel, contexts),
    contexts: contexts.map(contextState),
    domains: kernel.machine.domains.live().map(domainState),
    pinned: pinnedState(kernel),
    frames: { userPage: hex(frames['user-page']), pageTable: hex(frames['page-table']) },
    accounting: {
      user: [...accounting.lockedVmByUser.entries()]
        .sort(([a], [b]) => a - b)
        .map(([uid, bytes]) => ({ uid, bytes: hex(bytes) })),
      mm: [...accounting.lockedVmByMm.entries()]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([mm, bytes]) => ({ mm, bytes: hex(bytes) })),
    },
    leaked: [...kernel.iommufd.leaked],
    replay,
  };
}

/**
 * `iova` translated by machine domain `id`, every entry read on the way, and the pinned page the
 * result stands for; undefined when no live domain has that id.
 */
export function walkState(kernel: Kernel, id: number, iova: bigint): WalkState | undefined {
  const domain = kernel.machine.domains.get(id);
  if (domain === undefined || domain.freed) return undefined;
  const walk = domain.walk(iova);
  const steps = walk.steps.map((s) => {
    const present = (s.pte & Pte.PRESENT) !== 0n;
    const leaf = present && (s.level === 0 || (s.pte & Pte.LEAF) !== 0n);
    return {
      level: s.level,
      tablePa: hex(s.tablePa),
      index: s.index,
      ptePa: hex(s.ptePa),
      pte: hex(s.pte),
      present,
      leaf,
      read: (s.pte & Pte.READ) !== 0n,
      write: (s.pte & Pte.WRITE) !== 0n,
      next: present ? hex(s.pte & Pte.ADDR_MASK) : null,
    };
  });
  let result: WalkState['result'];
  let frame: WalkState['frame'] = null;
  switch (walk.result.kind) {
    case 'leaf': {
      const r = walk.result;
      result = {
        kind: 'leaf',
        pa: hex(r.pa),
        pageSize: hex(r.pageSize),
        read: (r.prot & Prot.READ) !== 0,
        write: (r.prot & Prot.WRITE) !== 0,
      };
      const owner = kernel.machine.pinned.frameOwner(r.pa >> PAGE_SHIFT);
      if (owner !== undefined) frame = { mm: owner.mm, va: hex(owner.va), pins: owner.pins };
      break;
    }
    case 'not-present':
      result = { kind: 'not-present', level: walk.result.level };
      break;
    case 'outside':
      result = { kind: 'outside' };
      break;
  }
  return {
    domain: id,
    iova: hex(iova),
    levels: levelsOf(domain),
    steps,
    result,
    frame,
  };
}
