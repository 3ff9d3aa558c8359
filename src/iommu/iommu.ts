/**
 * The iommu core (drivers/iommu/iommu.c and include/linux/iommu.h), the layer between the drivers
 * that hand devices to userspace (iommufd, VFIO) and the IOMMU hardware: the struct device view
 * of every PCI device, IOMMU groups with their DMA owner and attached domain, the iommu_ops and
 * iommu_domain interfaces IOMMU drivers implement, and the questions the drivers above ask
 * (device_iommu_capable, iommu_group_has_isolated_msi, reserved regions).
 *
 * The state lives in one IommuSubsystem per emulated kernel: Linux keeps it in the groups and
 * devices themselves, and so does this module; nothing is module-global.
 */

import type { Task } from '../host/task.ts';
import { copyFromUser } from '../host/uaccess.ts';
import type { DomainRegistry, IommuUnit, ReservedRegion } from '../platform/iommu.ts';
import type { Machine } from '../platform/machine.ts';
import type { PciDevice } from '../platform/pci.ts';
import type { PhysMemory } from '../platform/phys-memory.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';

/** The iommu_cap values drivers above the core ask about. */
export type IommuCap =
  | 'cache-coherency'
  | 'enforce-cache-coherency'
  | 'dirty-tracking'
  | 'pci-ats-supported';

/** What a driver's hw_info() gives: the vendor type and its data blob. */
export interface IommuHwInfo {
  readonly type: number;
  readonly data: Uint8Array;
}

/** Access rights of a mapping (IOMMU_READ / IOMMU_WRITE). */
export interface IommuProt {
  readonly read: boolean;
  readonly write: boolean;
}

/**
 * struct iommu_ops: what an IOMMU driver offers for the devices it probed. `owner` of every
 * domain it allocates is the ops object itself, which is how the core tells drivers apart.
 */
export interface IommuOps {
  /** For traces and messages. */
  readonly name: string;
  /**
   * domain_alloc_paging_flags(): a new empty paging domain for `dev`, or a negative errno.
   * `userData` is the driver data of IOMMU_HWPT_ALLOC, when userspace gave some.
   */
  domainAllocPaging(
    dev: Device,
    flags: number,
    userData: IommuUserData | undefined,
  ): IommuDomain | number;
  /**
   * domain_alloc_nested(): a stage-1 domain described by `userData`, translating through the
   * paging domain `parent`. Absent: the driver cannot nest (EOPNOTSUPP).
   */
  domainAllocNested?(
    dev: Device,
    parent: IommuDomain,
    flags: number,
    userData: IommuUserData,
  ): IommuNestedDomain | number;
  /** capable(); a driver without it has no capabilities. */
  capable?(dev: Device, cap: IommuCap): boolean;
  /**
   * hw_info(): the vendor blob for IOMMU_GET_HW_INFO, asked for `type` (0 = the driver's
   * default), or a negative errno. Without it (or when it answers undefined: the unit has no
   * vendor info to give) the type is IOMMU_HW_INFO_TYPE_NONE.
   */
  hwInfo?(dev: Device, type: number): IommuHwInfo | number | undefined;
  /**
   * attach_dev() of the driver's domains: points the device at `domain`, undefined for the
   * blocking domain. Absent for a driver with no hardware behind it.
   */
  attachDev?(dev: Device, domain: IommuAnyDomain | undefined): SyscallResult;
  /** The PASID width of the device (max_pasids as log2); absent means no PASID. */
  pasidBits?(dev: Device): number;
  /**
   * set_dev_pasid() of the driver's domains (and of its blocking domain, `domain` undefined):
   * `pasid` of `dev` translates through `domain` instead of `old`. Absent: no PASID attach.
   */
  setDevPasid?(
    dev: Device,
    domain: IommuAnyDomain | undefined,
    pasid: number,
    old: IommuAnyDomain | undefined,
  ): SyscallResult;
}

/**
 * struct iommu_user_data: driver data userspace passed with a command (`type` names its layout),
 * read from the caller's memory by iommuCopyStructFromUser().
 */
export interface IommuUserData {
  readonly type: number;
  readonly uptr: bigint;
  readonly len: number;
  readonly task: Task;
}

/** struct iommu_user_data_array: `entryNum` records of `entryLen` bytes each at `uptr`. */
export interface IommuUserDataArray {
  readonly type: number;
  readonly uptr: bigint;
  readonly entryLen: number;
  /** In: the records given; out: the records the driver handled. */
  entryNum: number;
  readonly task: Task;
}

/**
 * __iommu_copy_struct_from_user(): the driver's struct of `size` bytes from user data of `type`
 * that is at least `minLen` and at most `size` long (EINVAL otherwise), zero-extended; EFAULT
 * when it cannot be read.
 */
export function iommuCopyStructFromUser(
  data: IommuUserData,
  type: number,
  size: number,
  minLen: number,
): Uint8Array | number {
  if (data.type !== type) return -Errno.EINVAL;
  if (data.len < minLen || size < data.len) return -Errno.EINVAL;
  const bytes = copyFromUser(data.task, data.uptr, data.len);
  if (bytes === undefined) return -Errno.EFAULT;
  const out = new Uint8Array(size);
  out.set(bytes);
  return out;
}

/**
 * __iommu_copy_struct_from_user_array(): record `index` of `array`, as a struct of `size`
 * bytes whose first version was `minLen` long.
 */
export function iommuCopyStructFromUserArray(
  array: IommuUserDataArray,
  type: number,
  index: number,
  size: number,
  minLen: number,
): Uint8Array | number {
  if (index >= array.entryNum) throw new Error(`user array index ${index} past its end`);
  const uptr = array.uptr + BigInt(array.entryLen) * BigInt(index);
  const one = { type: array.type, uptr, len: array.entryLen, task: array.task };
  return iommuCopyStructFromUser(one, type, size, minLen);
}

/**
 * struct iommu_domain of type IOMMU_DOMAIN_NESTED: a stage-1 table userspace (a guest) owns,
 * translating through a paging parent. It maps nothing itself; devices attach to it like to a
 * paging domain.
 */
export interface IommuNestedDomain {
  readonly kind: 'nested';
  /** domain->owner: the iommu_ops that allocated it. */
  readonly owner: IommuOps;
  /**
   * cache_invalidate_user(): handle the records of `array`, setting array.entryNum to the
   * number handled. Absent: IOMMU_HWPT_INVALIDATE is EOPNOTSUPP.
   */
  cacheInvalidateUser?(array: IommuUserDataArray): SyscallResult;
  free(): void;
}

/** Any struct iommu_domain a device can be attached to. */
export type IommuAnyDomain = IommuDomain | IommuNestedDomain;

/** domain->type == IOMMU_DOMAIN_NESTED. */
export function isNestedDomain(domain: IommuAnyDomain | undefined): domain is IommuNestedDomain {
  return domain !== undefined && 'kind' in domain && domain.kind === 'nested';
}

/** struct iommu_domain: one I/O page table and the driver that made it. */
export interface IommuDomain {
  /** domain->owner: the iommu_ops that allocated it. */
  readonly owner: IommuOps;
  /** Page sizes the domain can map, bit N = 2^N bytes. */
  readonly pgsizeBitmap: bigint;
  /** domain->geometry: the IOVA range it can translate. */
  readonly aperture: { readonly start: bigint; readonly last: bigint };
  map(iova: bigint, pa: bigint, size: bigint, prot: IommuProt): SyscallResult;
  /** Returns the bytes unmapped. */
  unmap(iova: bigint, size: bigint): bigint;
  iovaToPhys(iova: bigint): bigint | undefined;
  free(): void;
  /** domain->dirty_ops: only a domain allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING has them. */
  readonly dirtyOps?: IommuDirtyOps | undefined;
}

/** struct iommu_dirty_ops: dirty tracking of a domain's IOPTEs. */
export interface IommuDirtyOps {
  setDirtyTracking(enable: boolean): SyscallResult;
  /**
   * read_and_clear_dirty(): calls `record` for each dirty granule of [iova, iova+size), clearing
   * its dirty bit unless `noClear`. Without `record` (no bitmap) it only clears, which is what
   * enabling tracking does first; with one, EINVAL when tracking is off.
   */
  readAndClearDirty(
    iova: bigint,
    size: bigint,
    noClear: boolean,
    record: ((iova: bigint, length: bigint) => void) | undefined,
  ): SyscallResult;
}

/** struct dev_iommu: what the core keeps for a device an IOMMU driver probed. */
export interface DevIommu {
  readonly ops: IommuOps;
  /** iommu_dev: the platform unit in front of the device; undefined for the mock IOMMU. */
  readonly unit: IommuUnit | undefined;
}

/**
 * Where I/O page tables come from (iommu-pages.h): the machine's RAM, and the list of live
 * domains the checker and the inspector read.
 */
export interface IommuPages {
  readonly phys: PhysMemory;
  readonly domains: DomainRegistry;
}

/** The bus a device sits on: PCI, or the test interface's own bus for mock devices. */
export type DeviceBus = 'pci' | 'iommufd_mock';

/** struct device, as the iommu core and the drivers above it see a device. */
export class Device {
  /** dev_name(): the BDF of a PCI device, iommufd_mockN of a mock one. */
  readonly name: string;
  readonly bus: DeviceBus;
  /** dev->iommu: undefined for a device behind no IOMMU (no-IOMMU mode's devices). */
  readonly iommu: DevIommu | undefined;
  /** dev->iommu_group: undefined with no IOMMU (VFIO's placeholder groups are VFIO's). */
  readonly group: IommuGroup | undefined;
  /** The page allocator for this device's domains (a software one has no unit to ask). */
  readonly pages: IommuPages;
  private readonly pciDevice: PciDevice | undefined;

  constructor(
    name: string,
    pci: PciDevice | undefined,
    iommu: DevIommu | undefined,
    group: IommuGroup | undefined,
    pages: IommuPages,
  ) {
    this.name = name;
    this.bus = pci === undefined ? 'iommufd_mock' : 'pci';
    this.pciDevice = pci;
    this.iommu = iommu;
    this.group = group;
    this.pages = pages;
    group?.devices.push(this);
  }

  /** to_pci_dev(): only VFIO and the units' driver ask, and only of PCI devices. */
  get pci(): PciDevice {
    if (this.pciDevice === undefined) throw new Error(`${this.name} is not a PCI device`);
    return this.pciDevice;
  }
}

/**
 * struct iommu_group: devices the IOMMU cannot tell apart. The core keeps who owns their DMA
 * (a kernel driver may not use them meanwhile) and the domain attached through a handle.
 */
export class IommuGroup {
  readonly id: number;
  readonly devices: Device[] = [];
  /** group->owner and owner_cnt: the DMA owner (an iommufd context) and its claims. */
  owner: object | undefined;
  ownerCount = 0;
  /** group->domain when it is not the core's: undefined means DMA is blocked. */
  domain: IommuAnyDomain | undefined;
  /** An attach handle is installed (pasid_array[IOMMU_NO_PASID]). */
  hasHandle = false;
  /** pasid_array for every PASID but IOMMU_NO_PASID: the domain each one translates through. */
  readonly pasidDomains = new Map<number, IommuAnyDomain>();

  constructor(id: number) {
    this.id = id;
  }
}

/**
 * The iommu core of one emulated kernel: probes the machine's PCI devices at boot (every device
 * behind an IOMMU unit gets dev->iommu and joins its group) and keeps the groups.
 */
export class IommuSubsystem {
  readonly groups = new Map<number, IommuGroup>();
  private readonly devices = new Map<string, Device>();

  /** `ops` drives every IOMMU unit of the machine (one IOMMU driver, as on x86). */
  constructor(machine: Machine, ops: IommuOps) {
    for (const pci of machine.devices.values()) {
      let group: IommuGroup | undefined;
      if (pci.group !== undefined) {
        group = this.groups.get(pci.group.id);
        if (group === undefined) {
          group = new IommuGroup(pci.group.id);
          this.groups.set(group.id, group);
        }
      }
      const unit = pci.iommu;
      const iommu = unit === undefined ? undefined : { ops, unit };
      this.devices.set(pci.bdf, new Device(pci.bdf, pci, iommu, group, machine));
    }
  }

  /** The struct device of a PCI device of the machine. */
  device(bdf: string): Device | undefined {
    return this.devices.get(bdf);
  }

  /**
   * iommu_group_alloc(): a new empty group with the lowest free id; `taken` names ids in use
   * outside this subsystem (VFIO's no-IOMMU groups share the kernel's one group IDA).
   */
  allocGroup(taken: (id: number) => boolean = () => false): IommuGroup {
    let id = 0;
    while (this.groups.has(id) || taken(id)) id++;
    const group = new IommuGroup(id);
    this.groups.set(id, group);
    return group;
  }

  /** Removes a device added after boot (a mock device) and its group once empty. */
  removeDevice(dev: Device): void {
    const group = dev.group;
    if (group === undefined) return;
    group.devices.splice(group.devices.indexOf(dev), 1);
    if (group.devices.length === 0) this.groups.delete(group.id);
  }
}

/** device_iommu_capable(): false for a device with no IOMMU or a driver without capable(). */
export function deviceIommuCapable(dev: Device, cap: IommuCap): boolean {
  if (dev.iommu === undefined) return false;
  return dev.iommu.ops.capable?.(dev, cap) ?? false;
}

/** iommu_group_has_isolated_msi(): every device's interrupts are remapped. */
export function iommuGroupHasIsolatedMsi(group: IommuGroup): boolean {
  return group.devices.every((dev) => dev.iommu?.unit?.isolatedMsi === true);
}

/** iommu_get_resv_regions(): what the device's IOMMU says it must not have mapped. */
export function iommuGetResvRegions(dev: Device): readonly ReservedRegion[] {
  return dev.iommu?.unit?.reservedRegions(dev.name) ?? [];
}

/** iommu_group_dma_owner_claimed(). */
export function iommuGroupDmaOwnerClaimed(group: IommuGroup): boolean {
  return group.ownerCount > 0;
}

/**
 * iommu_device_claim_dma_owner(): one owner per group at a time, claimed once per device. A
 * second owner is EPERM; the first claim needs the group on the core's domain (EBUSY otherwise).
 */
export function iommuDeviceClaimDmaOwner(dev: Device, owner: object): SyscallResult {
  const group = dev.group;
  if (group === undefined) return -Errno.ENODEV;
  if (group.ownerCount > 0) {
    if (group.owner !== owner) return -Errno.EPERM;
    group.ownerCount++;
    return 0;
  }
  if (group.domain !== undefined) return -Errno.EBUSY;
  group.owner = owner;
  group.ownerCount = 1;
  return 0;
}

/** iommu_device_release_dma_owner(): the last release returns the group to the core. */
export function iommuDeviceReleaseDmaOwner(dev: Device): void {
  const group = dev.group;
  if (group === undefined || group.ownerCount === 0)
    throw new Error(`DMA owner release of ${dev.name}, which has no owner`);
  if (group.ownerCount > 1) {
    group.ownerCount--;
    return;
  }
  // The last owner's devices must all be detached by now (the kernel WARNs).
  if (group.hasHandle) throw new Error(`DMA owner release of ${dev.name} with a domain attached`);
  group.ownerCount = 0;
  group.owner = undefined;
}

/**
 * The domain-owner rule: a domain only goes to devices of the driver that made it (the core
 * checks the group's first device). EINVAL otherwise.
 */
function checkDomainOwner(domain: IommuAnyDomain, group: IommuGroup): SyscallResult {
  const first = group.devices[0];
  if (first?.iommu === undefined || first.iommu.ops !== domain.owner) return -Errno.EINVAL;
  return 0;
}

/**
 * __iommu_attach_device(): the domain's own attach_dev programs the device (the driver's for
 * the blocking domain). A domain whose ops have none, like iommufd's no-IOMMU domain, is ENODEV.
 */
function attachDevice(dev: Device, domain: IommuAnyDomain | undefined): SyscallResult {
  const ops = domain === undefined ? dev.iommu?.ops : domain.owner;
  return ops?.attachDev?.(dev, domain) ?? -Errno.ENODEV;
}

/**
 * __iommu_group_set_domain(): every device of the group follows, or none does (a device that
 * fails puts the ones already moved back).
 */
function groupSetDomain(group: IommuGroup, domain: IommuAnyDomain | undefined): SyscallResult {
  const done: Device[] = [];
  for (const dev of group.devices) {
    const rc = attachDevice(dev, domain);
    if (rc) {
      for (const back of done) attachDevice(back, group.domain);
      return rc;
    }
    done.push(dev);
  }
  group.domain = domain;
  return 0;
}

/**
 * iommu_attach_group_handle(): the group's devices translate through `domain`. EBUSY if a handle
 * or another domain is there already; EINVAL for a domain of another driver.
 */
export function iommuAttachGroupHandle(domain: IommuAnyDomain, group: IommuGroup): SyscallResult {
  if (group.hasHandle || group.domain !== undefined) return -Errno.EBUSY;
  const rc = checkDomainOwner(domain, group) || groupSetDomain(group, domain);
  if (rc) return rc;
  group.hasHandle = true;
  return 0;
}

/**
 * iommu_replace_group_handle(): swap the attached domain for `domain` without a blocked moment;
 * on failure the old one stays. Unlike attach there is no owner check: the domain's attach_dev
 * decides (EINVAL from a unit's driver for a domain of another unit, ENODEV for a domain with
 * none; see docs/decisions.md 31).
 */
export function iommuReplaceGroupHandle(group: IommuGroup, domain: IommuAnyDomain): SyscallResult {
  if (!group.hasHandle) throw new Error(`replace on group ${group.id} with nothing attached`);
  return groupSetDomain(group, domain);
}

/** iommu_detach_group_handle(): back to the core's domain, which blocks DMA for an owned group. */
export function iommuDetachGroupHandle(domain: IommuAnyDomain, group: IommuGroup): void {
  if (!group.hasHandle || group.domain !== domain)
    throw new Error(`detach of a domain group ${group.id} does not have attached`);
  const rc = groupSetDomain(group, undefined);
  if (rc) throw new Error(`blocking DMA of group ${group.id} failed with ${rc}`);
  group.hasHandle = false;
}

/** dev->iommu->max_pasids: 0 for a device that cannot issue PASID transactions. */
export function deviceMaxPasids(dev: Device): number {
  const bits = dev.iommu?.ops.pasidBits?.(dev) ?? 0;
  return bits === 0 ? 0 : 2 ** bits;
}

/**
 * __iommu_set_group_pasid(): every PASID-capable device of the group moves `pasid` to `domain`;
 * on a failure the devices already moved go back to `old` (or are blocked when there was none).
 */
function groupSetPasid(
  group: IommuGroup,
  domain: IommuAnyDomain,
  pasid: number,
  old: IommuAnyDomain | undefined,
): SyscallResult {
  const done: Device[] = [];
  for (const dev of group.devices) {
    if (deviceMaxPasids(dev) === 0) continue;
    const rc = dev.iommu!.ops.setDevPasid!(dev, domain, pasid, old);
    if (rc) {
      for (const back of done) dev.iommu!.ops.setDevPasid!(back, old, pasid, domain);
      return rc;
    }
    done.push(dev);
  }
  return 0;
}

/** The checks iommu_attach_device_pasid() and iommu_replace_device_pasid() share. */
function checkPasidAttach(domain: IommuAnyDomain, dev: Device, pasid: number): SyscallResult {
  if (dev.group === undefined || dev.iommu === undefined) return -Errno.ENODEV;
  if (domain.owner.setDevPasid === undefined) return -Errno.EOPNOTSUPP;
  if (domain.owner !== dev.iommu.ops || pasid === IOMMU_NO_PASID) return -Errno.EINVAL;
  return 0;
}

/** The PASID "no PASID" stands for: the device's requests without one (the RID). */
export const IOMMU_NO_PASID = 0;

/**
 * iommu_attach_device_pasid(): `pasid` of the device's group translates through `domain`. EINVAL
 * for a domain of another driver, no PASID or a PASID beyond what a device of the group can
 * issue; EBUSY when the PASID has a domain already.
 */
export function iommuAttachDevicePasid(
  domain: IommuAnyDomain,
  dev: Device,
  pasid: number,
): SyscallResult {
  let rc = checkPasidAttach(domain, dev, pasid);
  if (rc) return rc;
  const group = dev.group!;
  for (const d of group.devices) {
    const max = deviceMaxPasids(d);
    if (max > 0 && pasid >= max) return -Errno.EINVAL;
  }
  if (group.pasidDomains.has(pasid)) return -Errno.EBUSY;
  rc = groupSetPasid(group, domain, pasid, undefined);
  if (rc) return rc;
  group.pasidDomains.set(pasid, domain);
  return 0;
}

/**
 * iommu_replace_device_pasid(): move an attached `pasid` to `domain` with no blocked moment; on
 * failure it stays where it was. EINVAL when nothing is attached there.
 */
export function iommuReplaceDevicePasid(
  domain: IommuAnyDomain,
  dev: Device,
  pasid: number,
): SyscallResult {
  const rc = checkPasidAttach(domain, dev, pasid);
  if (rc) return rc;
  const group = dev.group!;
  const cur = group.pasidDomains.get(pasid);
  if (cur === undefined) return -Errno.EINVAL;
  if (cur !== domain) {
    const set = groupSetPasid(group, domain, pasid, cur);
    if (set) return set;
  }
  group.pasidDomains.set(pasid, domain);
  return 0;
}

/** iommu_detach_device_pasid(): `pasid` is blocked again on every device of the group. */
export function iommuDetachDevicePasid(domain: IommuAnyDomain, dev: Device, pasid: number): void {
  const group = dev.group!;
  if (group.pasidDomains.get(pasid) !== domain)
    throw new Error(`detach of pasid ${pasid} of group ${group.id} from a domain it lacks`);
  for (const d of group.devices) {
    if (deviceMaxPasids(d) === 0) continue;
    const rc = d.iommu!.ops.setDevPasid!(d, undefined, pasid, domain);
    if (rc) throw new Error(`blocking pasid ${pasid} of ${d.name} failed with ${rc}`);
  }
  group.pasidDomains.delete(pasid);
}
