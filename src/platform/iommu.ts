/**
 * IOMMU hardware units, their translation domains and IOMMU groups.
 *
 * A domain is one I/O address space: a radix page table in simulated RAM plus the facts iommufd
 * needs (kind, page sizes, aperture). Hardware units hand out 'paging' domains that devices
 * translate through. The 'noiommu' domain is the kernel's software-only table for devices without
 * an IOMMU: it has the same ops, but no device ever translates through it; it only answers
 * IOVA-to-PA lookups (IOMMU_IOAS_NOIOMMU_GET_PA).
 */
import { shouldFail } from '../fault/fault.ts';
import type { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { DmaWalker } from './dma-walk.ts';
import { IoPagetable, type PagetableWalk, Prot, type PtLeaf, RADIX_PGSIZES } from './io-pgtable.ts';
import type { PciDevice } from './pci.ts';
import type { PhysMemory } from './phys-memory.ts';
import { U64_MAX } from './sizes.ts';

/** An inclusive IOVA range a domain can translate. */
export interface Aperture {
  readonly start: bigint;
  readonly last: bigint;
}

/** The kernel's reserved-region types (enum iommu_resv_type), spelled as strings. */
export type ReservedRegionType = 'direct' | 'direct-relaxable' | 'reserved' | 'msi' | 'sw-msi';

/** An IOVA range a device must not have mapped (iommu_get_resv_regions). */
export interface ReservedRegion {
  readonly start: bigint;
  /** Inclusive. */
  readonly last: bigint;
  readonly type: ReservedRegionType;
}

/** The vendor hardware info a unit reports through IOMMU_GET_HW_INFO. */
export type IommuHwInfoKind = 'none' | 'intel-vtd';

/** What the IOMMU can do (iommu_capable / GET_HW_INFO). */
export interface IommuCaps {
  readonly dirtyTracking: boolean;
  /** IOMMU_CAP_CACHE_COHERENCY: iommufd refuses to bind devices without it. */
  readonly cacheCoherent: boolean;
}

/** How a DMA access failed to translate. */
export type IommuFaultReason = 'not-present' | 'no-write' | 'no-read' | 'outside-aperture';

/** The direction of a device access: 'read' reads memory, 'write' writes it. */
export type DmaAccess = 'read' | 'write';

/** A successful translation (`span` bytes are contiguous from `pa`), or the fault. */
export type Translation =
  | { readonly pa: bigint; readonly span: bigint }
  | { readonly fault: IommuFaultReason };

/** An I/O translation domain (struct iommu_domain). */
export interface IommuDomain {
  /** Unique within the machine (0 for a domain made without a registry). */
  readonly id: number;
  readonly kind: 'paging' | 'noiommu';
  /** The hardware unit that made it; undefined for the software no-IOMMU domain. */
  readonly unit: IommuUnit | undefined;
  readonly pgsizeBitmap: bigint;
  readonly aperture: Aperture;
  readonly freed: boolean;
  /** BDFs of the devices translating through this domain now. */
  readonly devices: ReadonlySet<string>;
  /** Maps [iova, iova+size) to [pa, pa+size); 0 or -EINVAL / -ERANGE / -EADDRINUSE / -ENOMEM. */
  map(iova: bigint, pa: bigint, size: bigint, prot: number): number;
  /** Unmaps whole leaves inside the range; returns the bytes unmapped. */
  unmap(iova: bigint, size: bigint): bigint;
  /** The PA of iova including the in-page offset, or undefined when not mapped. */
  iovaToPhys(iova: bigint): bigint | undefined;
  /**
   * Translation as the hardware does it for a DMA access; a write while dirty tracking is on
   * sets the leaf's DIRTY bit.
   */
  translate(iova: bigint, access: DmaAccess): Translation;
  /**
   * translate() of one 4 KiB page for the DMA path, in numbers: the PA of the page `iova`
   * (below 2^52) falls in, or -1 for any fault, which translate() then reports with its reason.
   * The same checks and the same DIRTY bit, without a bigint or an object per page.
   */
  translatePage(iova: number, access: DmaAccess): number;
  /** Dirty tracking of this domain (the unit must have the capability; off when allocated). */
  readonly dirtyTracking: boolean;
  setDirtyTracking(enable: boolean): void;
  /** Reports (and clears, unless `noClear`) the dirty leaves of [iova, iova + size). */
  readAndClearDirty(
    iova: bigint,
    size: bigint,
    noClear: boolean,
    record: ((iova: bigint, length: bigint) => void) | undefined,
  ): void;
  walk(iova: bigint): PagetableWalk;
  leaves(): PtLeaf[];
  tablePages(): bigint;
  /** Whether the frame at `pa` is one of this domain's table pages. */
  hasTablePage(pa: bigint): boolean;
  /** Table entries whose value in RAM differs from what the kernel wrote (decision 200). */
  divergentEntries(): number;
  readonly mappedBytes: bigint;
  /** Releases the page table. Freeing with devices still attached is reported as a bug. */
  free(): void;
}

/** Hands out domain ids and lists the live domains of a machine. */
export class DomainRegistry {
  private nextId = 1;
  private readonly domains = new Map<number, IommuDomain>();

  /** @internal */
  allocId(): number {
    return this.nextId++;
  }

  /** @internal */
  add(domain: IommuDomain): void {
    this.domains.set(domain.id, domain);
  }

  /** @internal */
  remove(domain: IommuDomain): void {
    this.domains.delete(domain.id);
  }

  get(id: number): IommuDomain | undefined {
    return this.domains.get(id);
  }

  /** Live domains in id order. */
  live(): IommuDomain[] {
    return [...this.domains.values()];
  }
}

/** Static description of an IOMMU unit (from the platform file). */
export interface IommuUnitConfig {
  readonly name: string;
  /** Page sizes the hardware supports, a subset of 4K | 2M | 1G. */
  readonly pgsizeBitmap: bigint;
  readonly aperture: Aperture;
  /** Page-table levels: 4 for a 48-bit IOVA space. */
  readonly levels: number;
  readonly caps: IommuCaps;
  /**
   * Interrupt remapping isolates the MSIs of devices behind this unit: a DMA write of a device
   * cannot raise another device's interrupt (the irq domain's IRQ_DOMAIN_FLAG_ISOLATED_MSI).
   */
  readonly isolatedMsi: boolean;
  /**
   * What IOMMU_GET_HW_INFO reports for devices behind this unit: 'none' (no vendor blob), or
   * 'intel-vtd' (the VT-d blob of QEMU's intel-iommu; see docs/platform.md).
   */
  readonly hwInfo: IommuHwInfoKind;
  /** Regions every device behind this unit reports (the x86 MSI window). */
  readonly reservedRegions: readonly ReservedRegion[];
}

/** An IOMMU hardware unit (like an Intel DMAR unit). */
export class IommuUnit {
  readonly name: string;
  readonly pgsizeBitmap: bigint;
  readonly aperture: Aperture;
  readonly levels: number;
  readonly caps: IommuCaps;
  readonly isolatedMsi: boolean;
  readonly hwInfo: IommuHwInfoKind;
  readonly phys: PhysMemory;
  readonly registry: DomainRegistry;
  /** Groups of devices this unit cannot isolate from each other, by group id. */
  readonly groups = new Map<number, IommuGroup>();

  private readonly regions: readonly ReservedRegion[];
  private readonly deviceRegions = new Map<string, readonly ReservedRegion[]>();

  constructor(phys: PhysMemory, config: IommuUnitConfig, registry = new DomainRegistry()) {
    this.phys = phys;
    this.registry = registry;
    this.name = config.name;
    this.pgsizeBitmap = config.pgsizeBitmap;
    this.aperture = config.aperture;
    this.levels = config.levels;
    this.caps = config.caps;
    this.isolatedMsi = config.isolatedMsi;
    this.hwInfo = config.hwInfo;
    this.regions = config.reservedRegions;
  }

  /** Adds regions only this device reports (an RMRR, say). */
  setDeviceRegions(bdf: string, regions: readonly ReservedRegion[]): void {
    this.deviceRegions.set(bdf, regions);
  }

  /** The reserved regions of one device behind this unit (iommu_get_resv_regions). */
  reservedRegions(bdf: string): ReservedRegion[] {
    return [...this.regions, ...(this.deviceRegions.get(bdf) ?? [])];
  }

  /** Live domains made by this unit. */
  domains(): IommuDomain[] {
    return this.registry.live().filter((d) => d.unit === this);
  }
}

/** Devices an IOMMU cannot isolate from each other; VFIO assigns them together. */
export class IommuGroup {
  readonly id: number;
  readonly unit: IommuUnit;
  readonly devices: PciDevice[] = [];

  constructor(id: number, unit: IommuUnit) {
    this.id = id;
    this.unit = unit;
  }
}

/**
 * A new, empty paging domain of `unit` (iommu_paging_domain_alloc). -ENOMEM at the
 * 'domain-alloc' or 'pagetable-alloc' injection sites.
 */
export function allocDomain(unit: IommuUnit): IommuDomain | number {
  if (shouldFail('domain-alloc')) return -Errno.ENOMEM;
  const pt = IoPagetable.create(unit.phys, {
    levels: unit.levels,
    pgsizeBitmap: unit.pgsizeBitmap,
  });
  if (typeof pt === 'number') return pt;
  return new PagingDomain('paging', unit, pt, unit.aperture, unit.registry, unit.phys.events);
}

/**
 * The software no-IOMMU domain: a 6-level table over the full 64-bit IOVA space with 4 KiB
 * minimum pages and no hardware behind it. -ENOMEM at the injection sites.
 */
export function allocNoiommuDomain(
  phys: PhysMemory,
  registry?: DomainRegistry,
): IommuDomain | number {
  if (shouldFail('domain-alloc')) return -Errno.ENOMEM;
  const pt = IoPagetable.create(phys, { levels: 6, pgsizeBitmap: RADIX_PGSIZES });
  if (typeof pt === 'number') return pt;
  const aperture = { start: 0n, last: U64_MAX };
  return new PagingDomain('noiommu', undefined, pt, aperture, registry, phys.events);
}

/**
 * Records that device `bdf` now translates through `domain` (attached = true) or no longer does.
 * Called by the device's DMA port; it is what `domain.devices` reports.
 */
export function trackDomainUser(domain: IommuDomain, bdf: string, attached: boolean): void {
  if (!(domain instanceof PagingDomain)) return;
  if (attached) domain.devices.add(bdf);
  else domain.devices.delete(bdf);
}

/** Both domain kinds: a radix table plus an aperture. */
class PagingDomain implements IommuDomain {
  readonly id: number;
  readonly kind: 'paging' | 'noiommu';
  readonly unit: IommuUnit | undefined;
  readonly aperture: Aperture;
  readonly devices = new Set<string>();
  private readonly pt: IoPagetable;
  /** The IOMMU's walk of `pt` for DMA, with its IOTLB. */
  private readonly walker: DmaWalker;
  private readonly registry: DomainRegistry | undefined;
  private readonly events: EventBus;
  private isFreed = false;
  private tracking = false;
  /** The aperture as numbers for translatePage (exact below 2^53, and it only takes such IOVAs). */
  private readonly apertureStart: number;
  private readonly apertureLast: number;

  constructor(
    kind: 'paging' | 'noiommu',
    unit: IommuUnit | undefined,
    pt: IoPagetable,
    aperture: Aperture,
    registry: DomainRegistry | undefined,
    events: EventBus,
  ) {
    this.kind = kind;
    this.events = events;
    this.unit = unit;
    this.pt = pt;
    this.walker = new DmaWalker(pt.phys, pt);
    this.aperture = aperture;
    this.apertureStart = Number(aperture.start);
    this.apertureLast = Number(aperture.last);
    this.registry = registry;
    this.id = registry?.allocId() ?? 0;
    registry?.add(this);
  }

  get pgsizeBitmap(): bigint {
    return this.pt.pgsizeBitmap;
  }

  get freed(): boolean {
    return this.isFreed;
  }

  get mappedBytes(): bigint {
    return this.pt.mappedBytes;
  }

  map(iova: bigint, pa: bigint, size: bigint, prot: number): number {
    if (this.isFreed) return -Errno.EINVAL;
    if (size > 0n && (iova < this.aperture.start || iova + size - 1n > this.aperture.last)) {
      return -Errno.ERANGE;
    }
    return this.pt.map(iova, pa, size, prot);
  }

  unmap(iova: bigint, size: bigint): bigint {
    return this.pt.unmap(iova, size);
  }

  iovaToPhys(iova: bigint): bigint | undefined {
    return this.pt.iovaToPhys(iova);
  }

  translate(iova: bigint, access: DmaAccess): Translation {
    if (iova < this.aperture.start || iova > this.aperture.last)
      return { fault: 'outside-aperture' };
    // The IOMMU walks the table in RAM: after a device's write over it, wherever that leads.
    const leaf = this.pt.hardwareLookup(iova);
    if (leaf === undefined) return { fault: 'not-present' };
    if (access === 'write' && (leaf.prot & Prot.WRITE) === 0) return { fault: 'no-write' };
    if (access === 'read' && (leaf.prot & Prot.READ) === 0) return { fault: 'no-read' };
    if (access === 'write' && this.tracking) this.pt.setDirty(iova);
    return { pa: leaf.pa + (iova - leaf.iova), span: leaf.iova + leaf.size - iova };
  }

  translatePage(iova: number, access: DmaAccess): number {
    if (iova < this.apertureStart || iova > this.apertureLast) return -1;
    if (this.isFreed) return -1;
    const page = this.walker.page(iova);
    if (page < 0) return -1;
    const prot = page % 4096;
    if ((prot & (access === 'write' ? Prot.WRITE : Prot.READ)) === 0) return -1;
    if (access === 'write' && this.tracking) this.pt.setDirty(BigInt(iova));
    return page - prot;
  }

  get dirtyTracking(): boolean {
    return this.tracking;
  }

  setDirtyTracking(enable: boolean): void {
    if (enable && this.unit?.caps.dirtyTracking !== true)
      throw new Error(`domain ${this.id}: dirty tracking on a unit without it`);
    this.tracking = enable;
  }

  readAndClearDirty(
    iova: bigint,
    size: bigint,
    noClear: boolean,
    record: ((iova: bigint, length: bigint) => void) | undefined,
  ): void {
    this.pt.readAndClearDirty(iova, size, noClear, record);
  }

  walk(iova: bigint): PagetableWalk {
    return this.pt.walk(iova);
  }

  leaves(): PtLeaf[] {
    return this.pt.leaves();
  }

  tablePages(): bigint {
    return this.pt.tablePages();
  }

  hasTablePage(pa: bigint): boolean {
    return this.pt.hasTablePage(pa);
  }

  divergentEntries(): number {
    return this.pt.divergentEntries();
  }

  free(): void {
    if (this.isFreed) return;
    if (this.devices.size > 0) {
      const users = [...this.devices].join(', ');
      this.events.log('bug', `domain ${this.id} freed while ${users} still translate through it`);
    }
    this.isFreed = true;
    this.pt.free();
    this.walker.forget();
    this.registry?.remove(this);
  }
}
