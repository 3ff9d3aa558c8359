/**
 * The simulated machine: physical memory, the pin store, IOMMU units and their groups, and the
 * PCI devices, built from a PlatformConfig. iommufd and VFIO reach the hardware only through
 * this object.
 */
import { EventBus } from '../trace/events.ts';
import { CorruptionMonitor, type CorruptionSnapshot } from './corruption.ts';
import { DirectDmaPort, type DmaPort, IommuDmaPort } from './dma-port.ts';
import { EduDevice } from './edu.ts';
import {
  type Aperture,
  allocNoiommuDomain,
  DomainRegistry,
  type IommuCaps,
  type IommuDomain,
  IommuGroup,
  type IommuHwInfoKind,
  IommuUnit,
  type ReservedRegion,
} from './iommu.ts';
import type { PciDevice, PciDeviceSnapshot } from './pci.ts';
import { PhysMemory, type PhysStats } from './phys-memory.ts';
import { type MmPinSnapshot, PinnedPages, type PinnedStats } from './pinned-pages.ts';
import {
  checkPlatform,
  type DeviceConfig,
  type DeviceNodeOwner,
  defaultPlatform,
  type PlatformConfig,
} from './platform-config.ts';

export interface MachineOptions {
  /** The emulator's event stream (the Kernel's); a private one when absent. */
  readonly events?: EventBus;
}

/** Plain data describing the machine now: for invariant checks and the inspector. */
export interface MachineSnapshot {
  readonly enableUnsafeNoiommuMode: boolean;
  readonly memory: PhysStats;
  readonly pinned: { readonly stats: PinnedStats; readonly mms: readonly MmPinSnapshot[] };
  readonly iommus: readonly {
    readonly name: string;
    readonly pgsizeBitmap: bigint;
    readonly aperture: Aperture;
    readonly levels: number;
    readonly caps: IommuCaps;
    readonly isolatedMsi: boolean;
    readonly hwInfo: IommuHwInfoKind;
    readonly groups: readonly { readonly id: number; readonly devices: readonly string[] }[];
  }[];
  readonly domains: readonly {
    readonly id: number;
    readonly kind: 'paging' | 'noiommu';
    readonly unit: string | null;
    readonly tablePages: bigint;
    readonly mappedBytes: bigint;
    readonly devices: readonly string[];
    /** Table entries a device's write changed from what the kernel wrote (decision 200). */
    readonly corruptEntries: number;
  }[];
  readonly devices: readonly PciDeviceSnapshot[];
  /** Device writes over kernel-owned memory since boot (the machine is corrupted when any). */
  readonly corruption: CorruptionSnapshot;
}

/** Where the firmware starts placing BARs. */
export const MMIO_WINDOW_START = 0xfe000000n;

/** A machine built from a platform description. */
export class Machine {
  readonly config: PlatformConfig;
  readonly events: EventBus;
  readonly phys: PhysMemory;
  readonly pinned: PinnedPages;
  /** Every live domain, hardware and no-IOMMU. */
  readonly domains = new DomainRegistry();
  readonly iommus = new Map<string, IommuUnit>();
  /** All IOMMU groups by id (ids are machine-wide, like /sys/kernel/iommu_groups/N). */
  readonly groups = new Map<number, IommuGroup>();
  /** PCI devices by BDF, in platform order. */
  readonly devices = new Map<string, PciDevice>();
  /** Device writes over kernel-owned memory (I/O page tables): reported, kept, counted. */
  readonly corruption: CorruptionMonitor;

  /**
   * Builds the machine. Throws the PlatformConfigError of an invalid config: configs from files
   * are validated by loadPlatformFile first, so this only catches programming errors.
   */
  constructor(config: PlatformConfig = defaultPlatform(), options: MachineOptions = {}) {
    const error = checkPlatform(config);
    if (error !== undefined) throw error;
    this.config = config;
    this.events = options.events ?? new EventBus();
    this.phys = new PhysMemory({ size: config.memorySize, events: this.events });
    this.pinned = new PinnedPages(this.phys);
    this.corruption = new CorruptionMonitor(this.phys, this.domains, this.events);
    for (const unit of config.iommus) {
      this.iommus.set(unit.name, new IommuUnit(this.phys, unit, this.domains));
    }
    const explicit = new Set(
      config.devices.flatMap((d) => (d.group === undefined ? [] : [d.group])),
    );
    let nextGroup = 0;
    for (const dev of config.devices) {
      let group: IommuGroup | undefined;
      const unit = dev.iommu === undefined ? undefined : this.iommus.get(dev.iommu);
      if (unit !== undefined) {
        let id = dev.group;
        if (id === undefined) {
          while (explicit.has(nextGroup) || this.groups.has(nextGroup)) nextGroup++;
          id = nextGroup;
        }
        group = this.groups.get(id);
        if (group === undefined) {
          group = new IommuGroup(id, unit);
          this.groups.set(id, group);
          unit.groups.set(id, group);
        }
        unit.setDeviceRegions(dev.bdf, dev.reservedRegions);
      }
      this.devices.set(dev.bdf, this.createDevice(dev, unit, group));
    }
    this.assignBars();
  }

  /**
   * What the BIOS does before the OS boots: each memory BAR gets an address in the 32-bit MMIO
   * window from 0xfe000000 up (where QEMU's q35 firmware puts them), devices in bus order, each
   * BAR aligned to its size.
   */
  private assignBars(): void {
    let next = MMIO_WINDOW_START;
    const byBdf = [...this.devices.values()].sort((a, b) => (a.bdf < b.bdf ? -1 : 1));
    for (const dev of byBdf) {
      for (const bar of dev.bars) {
        if (bar.size === 0n) continue;
        next = (next + bar.size - 1n) & ~(bar.size - 1n);
        dev.assignBar(bar.index, next);
        next += bar.size;
      }
    }
  }

  /** CONFIG_IOMMUFD_TEST: the test interface and its mock bus are built in. */
  get iommufdTest(): boolean {
    return this.config.iommufdTest ?? true;
  }

  /** Who owns /dev/iommu and the VFIO nodes (the platform's udev rule). */
  get deviceNodeOwner(): DeviceNodeOwner {
    return this.config.deviceNodeOwner ?? 'invoking-user';
  }

  /** vfio.enable_unsafe_noiommu_mode as configured at boot. */
  get enableUnsafeNoiommuMode(): boolean {
    return this.config.enableUnsafeNoiommuMode;
  }

  device(bdf: string): PciDevice | undefined {
    return this.devices.get(bdf);
  }

  /** The reserved regions of a device: [] for a device with no IOMMU or an unknown BDF. */
  reservedRegions(bdf: string): ReservedRegion[] {
    return this.devices.get(bdf)?.iommu?.reservedRegions(bdf) ?? [];
  }

  /** A software no-IOMMU domain, tracked in this machine's domain list. */
  allocNoiommuDomain(): IommuDomain | number {
    return allocNoiommuDomain(this.phys, this.domains);
  }

  /** Resolves when no device has asynchronous work pending. */
  async whenIdle(): Promise<void> {
    await Promise.all([...this.devices.values()].map((d) => d.whenIdle()));
  }

  /** Cancels every device timer (DMA, factorial), so the process can exit. */
  shutdown(): void {
    for (const device of this.devices.values()) device.shutdown();
  }

  snapshot(): MachineSnapshot {
    return {
      enableUnsafeNoiommuMode: this.config.enableUnsafeNoiommuMode,
      memory: this.phys.stats(),
      pinned: { stats: this.pinned.stats(), mms: this.pinned.snapshot() },
      iommus: [...this.iommus.values()].map((unit) => ({
        name: unit.name,
        pgsizeBitmap: unit.pgsizeBitmap,
        aperture: unit.aperture,
        levels: unit.levels,
        caps: unit.caps,
        isolatedMsi: unit.isolatedMsi,
        hwInfo: unit.hwInfo,
        groups: [...unit.groups.values()].map((g) => ({
          id: g.id,
          devices: g.devices.map((d) => d.bdf),
        })),
      })),
      domains: this.domains.live().map((d) => ({
        id: d.id,
        kind: d.kind,
        unit: d.unit?.name ?? null,
        tablePages: d.tablePages(),
        mappedBytes: d.mappedBytes,
        devices: [...d.devices],
        // Comparing RAM with the kernel's copy costs a read per table page: only once corrupted.
        corruptEntries: this.corruption.corrupted ? d.divergentEntries() : 0,
      })),
      devices: [...this.devices.values()].map((d) => d.snapshot()),
      corruption: this.corruption.snapshot(),
    };
  }

  /**
   * Accounting that must always hold; returns the violations (empty when consistent). Frames
   * held for user pages match the pin store, table frames match the live domains, and every
   * device's domain is live.
   */
  invariantViolations(): string[] {
    const problems: string[] = [];
    const mem = this.phys.stats();
    const pinnedFrames = this.pinned.stats().frames;
    if (mem.byPurpose['user-page'] !== pinnedFrames) {
      problems.push(
        `user-page frames ${mem.byPurpose['user-page']} != frames held for pins ${pinnedFrames}`,
      );
    }
    const tables = this.domains.live().reduce((sum, d) => sum + d.tablePages(), 0n);
    if (mem.byPurpose['page-table'] !== tables) {
      problems.push(
        `page-table frames ${mem.byPurpose['page-table']} != live domains' table pages ${tables}`,
      );
    }
    for (const device of this.devices.values()) {
      const domain = device.domain;
      if (domain !== undefined && (domain.freed || !domain.devices.has(device.bdf))) {
        problems.push(
          `${device.bdf} translates through ${domain.freed ? 'freed ' : 'untracked '}domain ${domain.id}`,
        );
      }
    }
    return problems;
  }

  private createDevice(
    dev: DeviceConfig,
    unit: IommuUnit | undefined,
    group: IommuGroup | undefined,
  ): PciDevice {
    const dma: DmaPort =
      unit === undefined
        ? new DirectDmaPort(dev.bdf, this.phys, this.pinned, this.events, this.corruption)
        : new IommuDmaPort(dev.bdf, unit, this.events, this.corruption);
    switch (dev.type) {
      case 'edu':
        return new EduDevice({
          bdf: dev.bdf,
          events: this.events,
          dma,
          ...(group === undefined ? {} : { group }),
          dmaMask: dev.dmaMask,
          dmaCompletion: dev.dmaCompletion,
          resetMethods: dev.resetMethods,
        });
    }
  }
}
