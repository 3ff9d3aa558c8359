/**
 * The composition root, as init/main.c: builds the machine, the kernel core and the drivers
 * (iommufd, VFIO, the PCI core's sysfs) and wires them together. Every front end (the server,
 * the library API, the checker, the CLI) starts a kernel here; nothing below imports it.
 */

import { KernelCore } from '../host/core.ts';
import type { UdevRule } from '../host/devfs.ts';
import { addMockBusSysfs, addMockDeviceSysfs, removeMockDeviceSysfs } from '../host/mock-sysfs.ts';
import { Pagemap } from '../host/pagemap.ts';
import { PCI_ANY_ID, PciBus, type PciDriver } from '../host/pci-bus.ts';
import { addPciRootBusSysfs, addPciSysfs } from '../host/pci-sysfs.ts';
import { IommuSubsystem, iommuGetResvRegions } from '../iommu/iommu.ts';
import { MockBus } from '../iommu/mock-driver.ts';
import { unitIommuOps } from '../iommu/unit-driver.ts';
import { Accounting } from '../iommufd/accounting.ts';
import { IommufdSubsystem } from '../iommufd/main.ts';
import type { PagePinner } from '../iommufd/pages.ts';
import { Machine } from '../platform/machine.ts';
import {
  type DeviceNodeOwner,
  defaultPlatform,
  loadPlatformFile,
  type PlatformConfig,
  PlatformConfigError,
} from '../platform/platform-config.ts';
import { Errno } from '../uapi/errno.ts';
import { VfioSubsystem } from '../vfio/vfio-main.ts';

export interface KernelOptions {
  /** vfio.enable_unsafe_noiommu_mode at boot (overrides the platform's setting when given). */
  readonly enableUnsafeNoiommuMode?: boolean;
  /** The machine; the built-in default platform when absent. */
  readonly platform?: PlatformConfig;
}

/** TAINT_BAD_PAGE ('B'): memory the kernel owns was found corrupted (decision 200). */
export const TAINT_BAD_PAGE = 5;

/**
 * The emulated kernel instance: the machine it runs on, iommufd, VFIO, and the /dev, /sys and
 * /proc files they expose. At boot every PCI device is bound to vfio-pci.
 */
export class Kernel extends KernelCore {
  readonly machine: Machine;
  readonly iommu: IommuSubsystem;
  readonly iommufd: IommufdSubsystem;
  readonly vfio: VfioSubsystem;
  /** The PCI bus's driver core: bindings, driver_override, the bind/unbind files. */
  readonly pci: PciBus;

  constructor(options: KernelOptions = {}) {
    super();
    this.machine = new Machine(options.platform ?? defaultPlatform(), { events: this.events });
    this.iommu = new IommuSubsystem(this.machine, unitIommuOps);
    // A device's write over kernel memory is what bad_page() finds: the kernel is tainted 'B'.
    this.machine.corruption.onCorruption(() => this.addTaint(TAINT_BAD_PAGE));
    this.devfs.udevRule = deviceNodeRule(this.machine.deviceNodeOwner);
    const pinned = this.machine.pinned;
    const pinner: PagePinner = {
      pin: (mem, va, npages, write) => pinned.pin(mem, va, npages, write),
      faultOf: (mem, va, npages, write) => pinned.faultOf(mem, va, npages, write),
      unpin: (mem, va, npages) => {
        pinned.unpin(mem.mm, va, npages);
      },
      lookup: (mm, va) => {
        const pfn = pinned.lookup(mm, va);
        return pfn === undefined ? undefined : { pfn, pins: pinned.frameOwner(pfn)?.pins ?? 0 };
      },
    };
    this.iommufd = new IommufdSubsystem(this.events, new Accounting(), pinner, this.machine.phys);
    // VmPin and VmLck of /proc/<pid>/status count iommufd's pinned_vm and locked_vm.
    const accounting = this.iommufd.accounting;
    this.mmCounters.push((which) => ({
      pinned: sumOf(accounting.pinnedVmByMm, which),
      locked: sumOf(accounting.lockedVmByMm, which),
    }));
    this.pagemap = new Pagemap(pinned);
    if (this.machine.iommufdTest) {
      addMockBusSysfs(this.sysfs);
      this.iommufd.mockBus = new MockBus(this.iommu, this.machine, {
        groupIdTaken: (id) => this.vfio.groups.has(id),
        added: (dev, group) => addMockDeviceSysfs(this.sysfs, dev.name, group),
        removed: (dev, group) => removeMockDeviceSysfs(this.sysfs, dev.name, group),
      });
    }
    this.devfs.add(this.iommufd.devNode());
    // iommufd provides the VFIO container (CONFIG_IOMMUFD_VFIO_CONTAINER).
    this.devfs.add(this.iommufd.vfioDevNode());

    const noiommuMode = options.enableUnsafeNoiommuMode ?? this.machine.enableUnsafeNoiommuMode;
    this.vfio = new VfioSubsystem(
      {
        devfs: this.devfs,
        sysfs: this.sysfs,
        events: this.events,
        addTaint: (bit) => this.addTaint(bit),
        iommu: this.iommu,
        isIommuGroupId: (id) => this.iommu.groups.has(id),
        pciDevices: () => this.machine.devices.values(),
      },
      noiommuMode,
    );
    this.addKernelFiles();
    this.pci = new PciBus(this.sysfs, this.events);
    addPciRootBusSysfs(this.sysfs);
    for (const dev of this.machine.devices.values()) {
      // Every device boots with driver_override=vfio-pci, as driverctl's saved overrides leave
      // a VFIO machine (and as the Linux lane's /init binds): vfio-pci takes them all.
      this.pci.addDevice(dev, 'vfio-pci');
      addPciSysfs(this.sysfs, dev, {
        driverOf: () => this.pci.driverOf(dev.bdf)?.name,
        aloneOnBus: () =>
          [...this.machine.devices.values()].filter(
            (d) => d.bdf.slice(0, 7) === dev.bdf.slice(0, 7),
          ).length === 1,
        warn: (line) => this.events.log('warn', `pci ${dev.bdf}: ${line}`),
        groupReservedRegions: () => {
          const group = this.iommu.device(dev.bdf)?.group;
          return group === undefined ? [] : group.devices.flatMap((d) => iommuGetResvRegions(d));
        },
      });
    }
    // vfio-pci: its static table matches any device whose driver_override names it.
    this.pci.registerDriver(this.vfioPciDriver());
  }

  /** The module parameters and the vfio_pci module's directory. */
  private addKernelFiles(): void {
    this.sysfs.add({
      kind: 'attr',
      path: '/sys/module/iommufd/parameters/allow_unsafe_interrupts',
      mode: 0o644,
      show: () => (this.iommufd.allowUnsafeInterrupts ? 'Y\n' : 'N\n'),
      store: (_task, text) => {
        const value = parseBoolParam(text);
        if (value === undefined) return -Errno.EINVAL;
        this.iommufd.allowUnsafeInterrupts = value;
        return 0;
      },
    });
    this.sysfs.add({
      kind: 'attr',
      path: '/sys/module/vfio/parameters/enable_unsafe_noiommu_mode',
      mode: 0o644,
      show: () => (this.vfio.enableUnsafeNoiommuMode ? 'Y\n' : 'N\n'),
      store: (_task, text) => {
        const value = parseBoolParam(text);
        if (value === undefined) return -Errno.EINVAL;
        this.vfio.enableUnsafeNoiommuMode = value;
        return 0;
      },
    });
    // vfio-pci's parameters that sysfs shows (read-only once loaded); all at their defaults.
    for (const name of ['disable_idle_d3', 'disable_vga', 'nointxmask', 'disable_denylist']) {
      this.sysfs.add({
        kind: 'attr',
        path: `/sys/module/vfio_pci/parameters/${name}`,
        mode: 0o444,
        show: () => 'N\n',
      });
    }
    this.sysfs.add({
      kind: 'attr',
      path: '/sys/module/vfio_pci/parameters/enable_sriov',
      mode: 0o644,
      show: () => 'N\n',
      store: (_task, text) => (parseBoolParam(text) === undefined ? -Errno.EINVAL : 0),
    });
  }

  /**
   * vfio-pci as a PCI driver: its probe registers the device with VFIO (which re-reads
   * enable_unsafe_noiommu_mode, as in Linux), its remove unregisters it, waiting for the
   * device's users (decision 11).
   */
  private vfioPciDriver(): PciDriver {
    return {
      name: 'vfio-pci',
      module: 'vfio_pci',
      idTable: [
        {
          vendor: PCI_ANY_ID,
          device: PCI_ANY_ID,
          subvendor: PCI_ANY_ID,
          subdevice: PCI_ANY_ID,
          class: 0,
          classMask: 0,
          driverData: 0,
          overrideOnly: true,
        },
      ],
      probe: (dev) => {
        const vdev = this.vfio.registerDevice(dev);
        return typeof vdev === 'number' ? vdev : 0;
      },
      remove: (dev) => this.vfio.unregisterDevice(dev.bdf),
    };
  }

  /**
   * Everything that outlived its owner (objects, pins, charges, open files, VFIO device and
   * group references): empty when all is well. Asked once every process has exited.
   */
  leaks(): string[] {
    const out = this.iommufd.leaks();
    const open = new Map<string, number>();
    for (const file of this.openFiles.all()) open.set(file.kind, (open.get(file.kind) ?? 0) + 1);
    for (const [kind, n] of open) out.push(`${n} ${kind} files still open`);
    out.push(...this.vfio.leaks());
    if (this.iommufd.contexts.size === 0) {
      // Pages pagemap keeps resident belong to live processes, not to a leak.
      const pins = this.machine.pinned.stats().pins - BigInt(this.pagemap!.residentPages().length);
      if (pins !== 0n) out.push(`${pins} page pins still held`);
      const domains = this.machine.domains.live();
      if (domains.length !== 0) out.push(`${domains.length} IOMMU domains still allocated`);
    }
    return out;
  }

  /**
   * Path prefixes the shim must send to the emulator instead of the real filesystem. Anything
   * else is left to the real kernel, so programs keep their ordinary files.
   */
  emulatedPrefixes(): string[] {
    return [
      '/dev/iommu',
      '/dev/vfio',
      '/sys/bus/pci',
      '/sys/devices/pci0000:00',
      '/sys/class/vfio-dev',
      '/sys/kernel/iommu_groups',
      // The test interface's mock bus. Its devices' own directories (/sys/devices/iommufd_mockN)
      // have no fixed prefix the shim could take without taking all of /sys/devices.
      '/sys/bus/iommufd_mock',
      '/sys/module/vfio',
      '/sys/module/vfio_pci',
      '/sys/module/iommufd',
      '/sys/class/pci_bus',
      '/proc/sys/kernel/tainted',
      '/proc/*/task/*/fail-nth',
      '/proc/thread-self/fail-nth',
      // VmPin and VmLck count what iommufd pins (the rest of the file is the host's).
      '/proc/*/status',
      '/proc/*/task/*/status',
      // Physical addresses for the no-IOMMU group path's drivers ("*" also matches "self").
      '/proc/*/pagemap',
      '/proc/*/task/*/pagemap',
      '/proc/thread-self/pagemap',
      // The emulated machine's debugfs holds only the fault-injection directories.
      '/sys/kernel/debug',
    ];
  }

  /** Stops device timers so the process can exit. */
  shutdown(): void {
    this.vfio.shutdown();
    this.machine.shutdown();
  }
}

/** The pages of the address spaces `which` picks. */
function sumOf(table: ReadonlyMap<string, bigint>, which: (mm: string) => boolean): bigint {
  let sum = 0n;
  for (const [mm, pages] of table) if (which(mm)) sum += pages;
  return sum;
}

/**
 * The udev rule the platform stands for: /dev/iommu and the VFIO group and device nodes go to
 * the platform's owner (by default the user running the emulator, so that user may open them);
 * /dev/vfio/vfio, 0666, stays root's.
 */
function deviceNodeRule(owner: DeviceNodeOwner): UdevRule {
  const ids =
    owner === 'invoking-user'
      ? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }
      : { uid: owner.uid, gid: owner.gid };
  return (node) => {
    if (node.path === '/dev/vfio/vfio') return undefined;
    return node.path === '/dev/iommu' || node.path.startsWith('/dev/vfio/') ? ids : undefined;
  };
}

/** Module bool parameters accept Y/N/1/0 (param_set_bool). */
function parseBoolParam(text: string): boolean | undefined {
  const t = text.trim();
  if (t === 'Y' || t === 'y' || t === '1') return true;
  if (t === 'N' || t === 'n' || t === '0') return false;
  return undefined;
}

/**
 * Builds a kernel from command-line style options: a platform file path is loaded and
 * validated. Returns the kernel, or a message saying what is wrong.
 */
export function createKernel(options: {
  platformFile?: string;
  enableUnsafeNoiommuMode?: boolean;
}): Kernel | string {
  let platform: PlatformConfig | undefined;
  if (options.platformFile !== undefined) {
    const loaded = loadPlatformFile(options.platformFile);
    if (loaded instanceof PlatformConfigError) return loaded.message;
    platform = loaded;
  }
  return new Kernel({
    ...(platform === undefined ? {} : { platform }),
    ...(options.enableUnsafeNoiommuMode === undefined
      ? {}
      : { enableUnsafeNoiommuMode: options.enableUnsafeNoiommuMode }),
  });
}
