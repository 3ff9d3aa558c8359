/**
 * The invariants of the emulated kernel, checked between calls and at every teardown. Each is a
 * fact the kernel relies on and that an unwinding bug breaks:
 *
 * - refcounts equal the edges of the object graph: every object's `users` is 1 (the table's)
 *   plus one per HWPT on an IOAS, one per device attached to a HWPT (at its RID or a PASID), a
 *   bound device's driver and attachment references, an access's driver reference and its hold
 *   on its IOAS, and the references of nested translation's objects (nestedEdges); nobody holds
 *   a short-term reference between calls; every id in a table is a published object;
 * - nothing outlives its owner: every igroup, domain, pinned page, page-table frame and charged
 *   page belongs to a live object (so once every process has exited, nothing is left);
 * - IOVA trees, page tables and pins agree: every area of an IOAS with domains is mapped in each
 *   of them, page by page, to the frame pinned for its user page, and nothing else is mapped;
 *   the pins and the RLIMIT_MEMLOCK charges are exactly those of the filled areas;
 * - reserved ranges, the IOVA alignment and the hardware's attached domains follow the devices
 *   and domains that imply them;
 * - the counters VFIO keeps are the open files: a device's registration references are 1 plus
 *   its open cdev and group device files, its open count is its bound cdev files and group
 *   device files, its group is blocked once per bound cdev file, open exactly when a group file
 *   is, and holds a container only while open; every iommufd context is an open file.
 *
 * `checkInvariants(kernel)` returns one line per broken invariant, empty when all is well.
 */
import type { Kernel } from '../boot/kernel.ts';
import { iommuGetResvRegions, isNestedDomain } from '../iommu/iommu.ts';
import { isMockDevice, MockDomain } from '../iommu/mock-driver.ts';
import { hwDomainOf } from '../iommu/pt-domain.ts';
import { IommufdDevice } from '../iommufd/device.ts';
import { IommufdEventq } from '../iommufd/eventq.ts';
import {
  findHwptPaging,
  HwPagetable,
  HwptNested,
  type HwptPaging,
  type IommuDomain,
} from '../iommufd/hw-pagetable.ts';
import { IommufdHwQueue } from '../iommufd/hw-queue.ts';
import type { Ioas } from '../iommufd/ioas.ts';
import type { IommufdObject } from '../iommufd/object.ts';
import { SelftestObj } from '../iommufd/selftest.ts';
import { IommufdVeventq } from '../iommufd/veventq.ts';
import { IommufdVdevice, IommufdViommu } from '../iommufd/viommu.ts';
import { PAGE_SIZE, ULONG_MAX } from '../uapi/iommufd.ts';
import { VfioDeviceFile } from '../vfio/device-cdev.ts';
import type { VfioGroup } from '../vfio/group.ts';
import type { VfioDevice } from '../vfio/vfio-main.ts';
import { checkMappingsAndPins } from './invariant-pins.ts';
import { describeObj, Findings, gather, hex, isAttached, type World } from './invariant-world.ts';
import { domainId } from './snapshot.ts';

export interface InvariantOptions {
  /**
   * True (the default) between calls: no short-term references, no reserved-but-unpublished
   * objects, no area half built. False for a look from inside a call.
   */
  readonly betweenCalls?: boolean;
  /** Stop after this many findings (default 20). */
  readonly limit?: number;
}

/**
 * users = 1 + the edges of the graph; between calls no short-term users but the table's, and
 * nothing unpublished.
 */
function checkRefcounts(w: World, f: Findings, betweenCalls: boolean): void {
  const expected = new Map<IommufdObject, number>();
  const edge = (obj: IommufdObject, why: string, from: string) => {
    if (!w.objects.has(obj)) {
      f.add(`${from} ${why} ${describeObj(obj)}, which is in no object table`);
      return;
    }
    expected.set(obj, (expected.get(obj) ?? 1) + 1);
  };
  for (const hwpt of w.hwpts) edge(hwpt.ioas, 'holds', describeObj(hwpt));
  // A map call pinning batch by batch holds its IOAS until it ends (short-term too).
  const inFlight = new Map<IommufdObject, number>();
  for (const ioas of w.ioases) {
    if (ioas.iopt.mapsInFlight === 0) continue;
    inFlight.set(ioas, ioas.iopt.mapsInFlight);
    expected.set(ioas, (expected.get(ioas) ?? 1) + ioas.iopt.mapsInFlight);
  }
  for (const access of w.accesses) {
    // Its driver holds it until iommufd_access_destroy(); it holds the IOAS it is on.
    expected.set(access, (expected.get(access) ?? 1) + 1);
    if (access.ioas !== undefined) edge(access.ioas, 'is accessed by', describeObj(access));
  }
  for (const [igroup] of w.igroups) {
    if (igroup.hwpt !== undefined)
      for (const idev of igroup.devices) edge(igroup.hwpt, 'is attached to', describeObj(idev));
    for (const attach of igroup.pasidAttach.values())
      for (const idev of attach.devices) edge(attach.hwpt, 'is attached to', describeObj(idev));
  }
  nestedEdges(w, edge);
  for (const idev of w.devices) {
    // A mock device's binding is its selftest object's edge (nestedEdges).
    if (w.boundByVfio.has(idev)) expected.set(idev, (expected.get(idev) ?? 1) + 1);
    if (isAttached(idev)) expected.set(idev, (expected.get(idev) ?? 1) + 1);
    if (idev.igroup?.pasidAttach !== undefined) {
      for (const attach of idev.igroup.pasidAttach.values())
        if (attach.devices.includes(idev)) expected.set(idev, (expected.get(idev) ?? 1) + 1);
    }
  }
  for (const [obj] of w.objects) {
    const want = expected.get(obj) ?? 1;
    const users = obj.users.read();
    if (users !== want)
      f.add(`${describeObj(obj)} has users ${users}, the object graph implies ${want}`);
    // The table's own short-term reference is the only one between calls.
    // A device's vDEVICE holds it short-term as well (the kernel's wait_cnt), until it goes.
    const byVdev = obj instanceof IommufdDevice && obj.vdev !== undefined ? 1 : 0;
    const shortterm = obj.shorttermUsers.read() - 1 - byVdev - (inFlight.get(obj) ?? 0);
    if (betweenCalls && shortterm !== 0)
      f.add(`${describeObj(obj)} has ${shortterm} short-term users between calls`);
    if (betweenCalls && !obj.published)
      f.add(`${describeObj(obj)} holds an id but was never published (an unwound create?)`);
  }
  for (const ictx of w.contexts) {
    const compat = ictx.vfioIoas;
    if (compat !== undefined && w.objects.get(compat) !== ictx)
      f.add(`the VFIO compat IOAS ${compat.id} is not in its context's table`);
  }
}

/**
 * The references of nested translation's objects (docs/nested.md): a nested HWPT holds its
 * parent or its vIOMMU, a vIOMMU its parent, a vDEVICE its vIOMMU and its device, a vEVENTQ its
 * vIOMMU, a HW queue its vIOMMU and the queue it depends on, a HWPT its fault queue, an event queue's open file its queue; a mock device is held by
 * its selftest object's binding.
 */
function nestedEdges(w: World, edge: (obj: IommufdObject, why: string, from: string) => void) {
  // A mapping of a vIOMMU's region holds the vIOMMU (decision 231).
  for (const m of w.kernel.iommufd.mappings) edge(m.region.owner, 'is mapped by', m.mm);
  for (const [obj] of w.objects) {
    const from = describeObj(obj);
    if (obj instanceof HwptNested) {
      if (obj.viommu !== undefined) edge(obj.viommu, 'holds', from);
      else edge(obj.parent, 'holds', from);
    }
    if (obj instanceof HwPagetable && obj.fault !== undefined) edge(obj.fault, 'holds', from);
    if (obj instanceof IommufdViommu) edge(obj.hwpt, 'holds', from);
    if (obj instanceof IommufdVdevice) {
      edge(obj.viommu, 'holds', from);
      edge(obj.idev, 'holds', from);
    }
    if (obj instanceof IommufdVeventq) edge(obj.viommu, 'holds', from);
    if (obj instanceof IommufdHwQueue) {
      if (obj.viommu !== undefined) edge(obj.viommu, 'holds', from);
      const prev = (obj.driverData as { prev?: IommufdObject } | undefined)?.prev;
      if (prev !== undefined) edge(prev, 'depends on', from);
    }
    if (obj instanceof IommufdEventq && obj.file !== undefined && obj.file.refCount > 0)
      edge(obj, 'is held by', 'its file');
    if (obj instanceof SelftestObj && obj.idev !== undefined) edge(obj.idev, 'binds', from);
  }
}

/** Devices, igroups, the VFIO devices that bound them, and what the hardware is attached to. */
function checkDevices(w: World, f: Findings): void {
  for (const idev of w.devices) {
    const what = `${describeObj(idev)} (${idev.dev.name})`;
    if (!idev.published) continue;
    if (idev.igroup === undefined) f.add(`${what} is published without an igroup`);
    if (idev.ownsDma === idev.isNoiommu)
      f.add(`${what} ${idev.ownsDma ? 'claims' : 'lacks'} DMA ownership`);
    // A mock device lives inside the iommufd (its selftest object binds it): its binding holds
    // no file, and no VFIO device bound it.
    if (isMockDevice(idev.dev)) continue;
    if (!idev.holdsCtx) f.add(`${what} does not hold its iommufd file`);
    if (!w.boundByVfio.has(idev)) f.add(`${what} is bound by no VFIO device`);
  }
  for (const vdev of w.kernel.vfio.devices.values()) {
    const idev = vdev.iommufdDevice;
    if (idev === undefined) {
      // A no-IOMMU device opened through its group is open and bound to nothing
      // (checkOpenFiles counts those opens against its group device files).
      const opens = vdev.openCount.read();
      if (opens !== 0 && !vdev.noiommu) f.add(`${vdev.name} is open ${opens} times but unbound`);
      if (vdev.iommufdAttached) f.add(`${vdev.name} is marked attached but unbound`);
      continue;
    }
    if (!w.objects.has(idev)) f.add(`${vdev.name} is bound to device ${idev.id}, which is gone`);
    if (vdev.openCount.read() < 1)
      f.add(`${vdev.name} is bound with open count ${vdev.openCount.read()}`);
    if (vdev.iommufdAttached !== isAttached(idev))
      f.add(
        `${vdev.name} is marked ${vdev.iommufdAttached ? '' : 'not '}attached, device ${idev.id} ` +
          `is${isAttached(idev) ? '' : ' not'}`,
      );
  }
  for (const [igroup, ictx] of w.igroups) {
    const name = igroup.group === undefined ? 'no-IOMMU igroup' : `igroup ${igroup.group.id}`;
    const members = w.devices.filter((d) => d.igroup === igroup && d.published);
    if (igroup.refs !== members.length)
      f.add(`${name} has refs ${igroup.refs} for ${members.length} bound devices`);
    if (igroup.group === undefined) {
      if ([...ictx.groups.values()].includes(igroup)) f.add(`${name} is in the group table`);
    } else if (ictx.groups.get(igroup.group.id) !== igroup) {
      f.add(`${name} is not the context's igroup for its group`);
    }
    for (const d of igroup.devices) {
      if (d.igroup !== igroup) f.add(`${name} lists device ${d.id}, which is in another igroup`);
    }
    if ((igroup.hwpt === undefined) !== (igroup.devices.length === 0))
      f.add(`${name} has hwpt ${igroup.hwpt?.id ?? 'none'} and ${igroup.devices.length} attached`);
  }
  // What the hardware translates through follows the igroup's HWPT.
  const hwByGroup = new Map<number, unknown>();
  for (const [igroup] of w.igroups) {
    if (igroup.group === undefined) continue;
    hwByGroup.set(
      igroup.group.id,
      igroup.hwpt?.domain === undefined || isNestedDomain(igroup.hwpt.domain)
        ? undefined
        : hwDomainOf(igroup.hwpt.domain),
    );
  }
  for (const pci of w.kernel.machine.devices.values()) {
    if (pci.group === undefined) continue;
    const want = hwByGroup.get(pci.group.id);
    if (pci.domain !== want)
      f.add(
        `${pci.bdf} translates through domain ${pci.domain?.id ?? 'none'}, its igroup implies ` +
          `${(want as { id?: number } | undefined)?.id ?? 'none'}`,
      );
  }
}

/** VFIO's counters and the iommufd contexts against the kernel's registry of open files. */
function checkOpenFiles(w: World, f: Findings): void {
  const files = w.kernel.openFiles;
  const cdevFiles = new Map<VfioDevice, VfioDeviceFile[]>();
  const groupDeviceFiles = new Map<VfioDevice, VfioDeviceFile[]>();
  for (const file of files.ofKind('vfio-device')) {
    const df = file.privateData;
    if (!(df instanceof VfioDeviceFile) || df.group === undefined || !df.accessGranted) {
      f.add('an open vfio-device file is not an opened group device file');
      continue;
    }
    if (w.kernel.vfio.devices.get(df.device.pci.bdf) !== df.device)
      f.add(`an open group device file of ${df.device.name} outlived the device's registration`);
    groupDeviceFiles.set(df.device, [...(groupDeviceFiles.get(df.device) ?? []), df]);
  }
  for (const file of files.ofKind('vfio-cdev')) {
    const df = file.privateData;
    if (!(df instanceof VfioDeviceFile)) {
      f.add('an open vfio-cdev file has no VFIO device file behind it');
      continue;
    }
    if (w.kernel.vfio.devices.get(df.device.pci.bdf) !== df.device)
      f.add(`an open cdev file of ${df.device.name} outlived the device's registration`);
    cdevFiles.set(df.device, [...(cdevFiles.get(df.device) ?? []), df]);
  }
  const blocks = new Map<VfioGroup, number>();
  for (const vdev of w.kernel.vfio.devices.values()) {
    const open = cdevFiles.get(vdev) ?? [];
    const fromGroup = (groupDeviceFiles.get(vdev) ?? []).length;
    const bound = open.filter((df) => df.accessGranted).length;
    const refs = vdev.registration.read();
    // A device being unbound has dropped the registration's own reference (decision 11).
    const own = vdev.unbinding === undefined ? 1 : 0;
    if (refs !== own + open.length + fromGroup)
      f.add(
        `${vdev.name} has registration refcount ${refs} for ${open.length} open cdev files and ` +
          `${fromGroup} group device files`,
      );
    if (vdev.openCount.read() !== bound + fromGroup)
      f.add(
        `${vdev.name} has open count ${vdev.openCount.read()} for ${bound} bound cdev files and ` +
          `${fromGroup} group device files`,
      );
    // Opened through its group, a device with an IOMMU is bound and attached; no-IOMMU, neither.
    if (fromGroup > 0 && (vdev.iommufdDevice !== undefined) === vdev.noiommu)
      f.add(`${vdev.name} is open through its group but ${vdev.noiommu ? '' : 'not '}bound`);
    blocks.set(vdev.group, (blocks.get(vdev.group) ?? 0) + bound);
  }
  const groupFiles = files.ofKind('vfio-group');
  for (const group of w.kernel.vfio.groups.values()) {
    const want = blocks.get(group) ?? 0;
    if (group.cdevDeviceOpenCount.read() !== want)
      f.add(
        `vfio group ${group.id} is blocked ${group.cdevDeviceOpenCount.read()} times for ${want} ` +
          'bound cdev files',
      );
    const open = groupFiles.filter((file) => file.privateData === group);
    const opened = group.openedFile;
    // A container is held only by an open group, and is a live iommufd context.
    if (group.iommufd !== undefined && opened === undefined)
      f.add(`vfio group ${group.id} holds a container but is not open`);
    if (group.iommufd !== undefined && !w.contexts.includes(group.iommufd))
      f.add(`vfio group ${group.id} holds a released iommufd context`);
    if (group.noiommu && group.iommufd !== undefined && !group.iommufd.noIommuMode)
      f.add(`no-IOMMU vfio group ${group.id} is in a container not in no-IOMMU mode`);
    if (open.length > 1) f.add(`vfio group ${group.id} is open through ${open.length} files`);
    if ((opened === undefined) !== (open.length === 0) || (opened && !open.includes(opened)))
      f.add(
        `vfio group ${group.id} is ${opened ? '' : 'not '}marked open with ${open.length} open files`,
      );
  }
  const ctxFiles = [...files.ofKind('iommufd'), ...files.ofKind('vfio-container')];
  for (const ictx of w.contexts) {
    if (ictx.file === undefined || !ctxFiles.includes(ictx.file))
      f.add('an iommufd context has no open file');
  }
  if (ctxFiles.length !== w.contexts.length)
    f.add(`${ctxFiles.length} iommufd files are open for ${w.contexts.length} contexts`);
}

/** Every live domain belongs to exactly one HWPT, which is on its IOAS, or is being torn down. */
function checkDomains(w: World, f: Findings): void {
  const owned = new Map<number, HwptPaging>();
  for (const hwpt of w.hwpts) {
    if (!hwpt.published) continue;
    if (hwpt.domain === undefined) {
      f.add(`hwpt-paging ${hwpt.id} has no domain`);
      continue;
    }
    // A mock domain has no table in the machine's memory to hold.
    if (hwpt.domain instanceof MockDomain) {
      if (!hwpt.onIoas || !hwpt.ioas.hwptList.includes(hwpt))
        f.add(`hwpt-paging ${hwpt.id} is not on its IOAS ${hwpt.ioas.id}`);
      continue;
    }
    const hw = hwDomainOf(hwpt.domain);
    if (hw === undefined || hw.freed) {
      f.add(`hwpt-paging ${hwpt.id} holds a freed or unknown domain`);
      continue;
    }
    const other = owned.get(hw.id);
    if (other !== undefined) f.add(`domain ${hw.id} is held by hwpt ${other.id} and ${hwpt.id}`);
    owned.set(hw.id, hwpt);
    if (!hwpt.onIoas || !hwpt.ioas.hwptList.includes(hwpt))
      f.add(`hwpt-paging ${hwpt.id} is not on its IOAS ${hwpt.ioas.id}`);
  }
  // A domain that left its IOAS is freed once torn down (area-unfill.ts).
  const tornDown = new Set<number>();
  for (const t of w.teardowns) {
    const hw = hwDomainOf(t.domain as IommuDomain);
    if (hw !== undefined) tornDown.add(hw.id);
  }
  for (const d of w.kernel.machine.domains.live()) {
    if (!owned.has(d.id) && !tornDown.has(d.id))
      f.add(`${d.kind} domain ${d.id} is allocated but no HWPT holds it`);
  }
}

/** Reserved ranges, alignment, the domain list and the areas of one IOAS. */
function checkIoas(w: World, ioas: Ioas, f: Findings, betweenCalls: boolean): void {
  const iopt = ioas.iopt;
  const name = `ioas ${ioas.id}`;
  const domains = iopt.domains as IommuDomain[];
  if (
    // The same domains in any order: removing one moves the last into its slot.
    domains.length !== ioas.hwptList.length ||
    domains.some((d) => !ioas.hwptList.some((h) => h.domain === d))
  ) {
    f.add(
      `${name} has domains [${domains.map(domainId).join(', ')}] but HWPTs ` +
        `[${ioas.hwptList.map((h) => h.id).join(', ')}]`,
    );
  }
  let alignment = iopt.disableLargePages ? PAGE_SIZE : 1n;
  for (const d of domains) {
    const min = d.pgsizeBitmap & -d.pgsizeBitmap;
    if (min > alignment) alignment = min;
  }
  for (const access of iopt.accesses)
    if (access.iovaAlignment > alignment) alignment = access.iovaAlignment;
  if (iopt.iovaAlignment !== alignment)
    f.add(
      `${name} has IOVA alignment ${iopt.iovaAlignment}, its domains and accesses imply ${alignment}`,
    );

  // Reserved ranges: a domain's outside-the-aperture ranges and its attached devices' regions.
  const attached = w.devices.filter(
    (d) =>
      isAttached(d) &&
      d.igroup?.hwpt !== undefined &&
      findHwptPaging(d.igroup.hwpt).ioas === ioas &&
      !d.isNoiommu,
  );
  const wantReserved: { start: bigint; last: bigint; owner: unknown; what: string }[] = [];
  for (const d of domains) {
    if (d.aperture.start !== 0n)
      wantReserved.push({ start: 0n, last: d.aperture.start - 1n, owner: d, what: 'aperture' });
    if (d.aperture.last !== ULONG_MAX)
      wantReserved.push({
        start: d.aperture.last + 1n,
        last: ULONG_MAX,
        owner: d,
        what: 'aperture',
      });
  }
  for (const idev of attached) {
    for (const r of iommuGetResvRegions(idev.dev)) {
      if (r.type === 'direct-relaxable') continue;
      wantReserved.push({ start: r.start, last: r.last, owner: idev, what: r.type });
    }
  }
  const have = [...iopt.reserved.iter()];
  for (const node of have) {
    // The test interface's ADD_RESERVED has no owner: it stays until the IOAS goes.
    const ok =
      node.value.owner === null ||
      wantReserved.some(
        (r) => r.owner === node.value.owner && r.start === node.start && r.last === node.last,
      );
    if (!ok) f.add(`${name} has a stray reserved range ${hex(node.start)}-${hex(node.last)}`);
  }
  for (const r of wantReserved) {
    const ok = have.some(
      (n) => n.value.owner === r.owner && n.start === r.start && n.last === r.last,
    );
    if (!ok) f.add(`${name} lacks the reserved ${r.what} range ${hex(r.start)}-${hex(r.last)}`);
  }
  for (const node of iopt.allowed.iter()) {
    if (iopt.reserved.iterFirst(node.start, node.last) !== undefined)
      f.add(`${name}: allowed range ${hex(node.start)}-${hex(node.last)} overlaps a reserved one`);
  }

  try {
    iopt.areas.checkInvariants();
  } catch (e) {
    f.add(`${name} areas: ${(e as Error).message}`);
  }
  for (const area of iopt.areas.iter()) {
    const at = `${name} area ${hex(area.iova)}-${hex(area.last)}`;
    if (area.pages === undefined) {
      // A map call filling it batch by batch publishes its pages when it ends.
      const fill = [...iopt.fills].find((fl) => fl.area === area);
      if (betweenCalls && fill === undefined)
        f.add(`${at} has no pages between calls (left half built?)`);
      continue;
    }
    if (iopt.reserved.iterFirst(area.iova, area.last) !== undefined)
      f.add(`${at} overlaps a reserved range`);
    if (domains.length === 0) {
      if (area.storageDomain !== undefined) f.add(`${at} is filled but the IOAS has no domain`);
    } else if (area.storageDomain !== domains[0]) {
      f.add(
        `${at} has storage domain ${domainId(area.storageDomain as IommuDomain | undefined)}, ` +
          `not the first domain ${domainId(domains[0])}`,
      );
    }
  }
}

/**
 * Checks every invariant of the kernel's iommufd and VFIO state against the machine. Returns
 * one line per violation (at most `limit`), empty when all is well. Cheap enough to run after
 * every call of a small scenario.
 */
export function checkInvariants(kernel: Kernel, options: InvariantOptions = {}): string[] {
  const betweenCalls = options.betweenCalls ?? true;
  const f = new Findings(options.limit ?? 20);
  for (const line of kernel.iommufd.leaked) f.add(`leaked at release: ${line}`);
  const w = gather(kernel, f);
  checkRefcounts(w, f, betweenCalls);
  checkDevices(w, f);
  checkOpenFiles(w, f);
  checkDomains(w, f);
  for (const ioas of w.ioases) {
    if (f.full) break;
    checkIoas(w, ioas, f, betweenCalls);
  }
  if (!f.full) checkMappingsAndPins(w, f, betweenCalls);
  return f.lines;
}
