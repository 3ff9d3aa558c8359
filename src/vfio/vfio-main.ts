/**
 * The VFIO core for the device cdev path (drivers/vfio/vfio_main.c): the module parameter
 * enable_unsafe_noiommu_mode, registration of devices bound to vfio-pci with their index, name
 * and cdev node, and the taint a no-IOMMU device brings. The parameter is read when a device
 * registers, so changing it affects only devices registered (bound) later.
 */

import type { DevFs } from '../host/devfs.ts';
import { type BlockedCall, S_IFCHR } from '../host/file.ts';
import type { SysFs } from '../host/sysfs.ts';
import type { EventfdRef } from '../host/task.ts';
import {
  type Device,
  deviceIommuCapable,
  type IommuSubsystem,
  iommuGroupDmaOwnerClaimed,
} from '../iommu/iommu.ts';
import type { IommufdDevice } from '../iommufd/device.ts';
import { Counter, Refcount } from '../lib/refcount.ts';
import type { PciDevice } from '../platform/pci.ts';
import type { EventBus } from '../trace/events.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { openVfioCdev } from './device-cdev.ts';
import { openVfioGroup, VFIO_GROUP_MAJOR, VfioGroup } from './group.ts';
import { pciCoreRequest } from './pci-core.ts';

/** The char major of vfio-dev cdevs (dynamically allocated in Linux; fixed here). */
export const VFIO_DEV_MAJOR = 236;
/** How often a waiting unbind signals the device's REQ interrupt again (HZ * 10). */
const REQUEST_INTERVAL_MS = 10_000;
/** TAINT_USER: the kernel is tainted by a userspace action (no-IOMMU mode). */
export const TAINT_USER = 6;

/** What VFIO needs from the rest of the emulated kernel. */
export interface VfioEnv {
  readonly devfs: DevFs;
  readonly sysfs: SysFs;
  readonly events: EventBus;
  addTaint(bit: number): void;
  /** The iommu core: the struct device of each PCI device, and its IOMMU group. */
  readonly iommu: IommuSubsystem;
  /** Whether an iommu_group id is taken by the machine's IOMMU groups. */
  isIommuGroupId(id: number): boolean;
  /** Every PCI device of the machine, bound to vfio-pci or not. */
  pciDevices(): Iterable<PciDevice>;
}

/**
 * struct vfio_device_set: the devices one reset reaches together. vfio-pci puts a device on the
 * root bus in a set of its own and the devices of any other bus in one set per bus
 * (vfio_assign_device_set with pdev->bus), whatever their reset methods.
 */
export class VfioDeviceSet {
  /** "0000:11" for a bus's set, the device's address for a root-bus device's own. */
  readonly key: string;
  readonly devices: VfioDevice[] = [];
  /** The PCI devices a bus reset of this set's bus reaches, vfio-pci's or not. */
  readonly busDevices: () => PciDevice[];

  constructor(key: string, busDevices: () => PciDevice[]) {
    this.key = key;
    this.busDevices = busDevices;
  }
}

/** Interrupt wiring of one device, owned by vfio-pci (pci-core.ts). */
export interface VfioIrqState {
  /** 'none', 'intx' or 'msi': the active interrupt mode (vdev->irq_type). */
  mode: 'none' | 'intx' | 'msi';
  intxTrigger: EventfdRef | undefined;
  intxMasked: boolean;
  msiTrigger: EventfdRef | undefined;
  /** The ERR index's eventfd (every device has one since the ERR index lost its PCIe check). */
  errTrigger: EventfdRef | undefined;
  reqTrigger: EventfdRef | undefined;
}

/** struct vfio_device: a device bound to vfio-pci. */
export class VfioDevice {
  readonly index: number;
  /** "vfioN", or "noiommu-vfioN" for a device in no-IOMMU mode. */
  readonly name: string;
  readonly pci: PciDevice;
  /** The struct device iommufd binds. */
  readonly dev: Device;
  /** device->noiommu: decided once, at registration. */
  readonly noiommu: boolean;
  readonly group: VfioGroup;
  readonly devSet: VfioDeviceSet;
  /** device->cdev_opened: open through its cdev (bound with BIND_IOMMUFD), not through a group. */
  cdevOpened = false;
  /**
   * vfio_device->refcount: 1 for the registration itself, plus one per open cdev file (bound or
   * not), so the device cannot be unregistered while a file is open. 0 once unregistered.
   */
  readonly registration = new Refcount(1, () => `${this.name} registration`);
  /** device->open_count: opens through a bound cdev fd (only one is allowed). */
  readonly openCount = new Counter(() => `${this.name} open count`);
  /** An unbind waiting for the open cdev files to close; settles with its result. */
  unbinding: Promise<SyscallResult> | undefined;
  /** Completes a waiting unbind when the last registration reference goes (device->comp). */
  released: (() => void) | undefined;
  iommufdDevice: IommufdDevice | undefined;
  iommufdAttached = false;
  /** vdev->pasids: the PASIDs attached through VFIO_DEVICE_ATTACH_IOMMUFD_PT. */
  readonly pasids = new Set<number>();
  /** vdev->reset_works: whether the function reset worked at the first open. */
  resetWorks = false;
  readonly irq: VfioIrqState = {
    mode: 'none',
    intxTrigger: undefined,
    intxMasked: false,
    msiTrigger: undefined,
    errTrigger: undefined,
    reqTrigger: undefined,
  };

  constructor(index: number, dev: Device, group: VfioGroup, devSet: VfioDeviceSet) {
    this.index = index;
    this.pci = dev.pci;
    this.dev = dev;
    this.group = group;
    this.devSet = devSet;
    this.noiommu = group.noiommu;
    this.name = `${this.noiommu ? 'noiommu-' : ''}vfio${index}`;
  }

  get registered(): boolean {
    return this.registration.read() > 0;
  }

  get cdevPath(): string {
    return `/dev/vfio/devices/${this.name}`;
  }
}

export class VfioSubsystem {
  /** vfio.enable_unsafe_noiommu_mode. */
  enableUnsafeNoiommuMode: boolean;
  readonly devices = new Map<string, VfioDevice>();
  /** Groups with at least one registered device, by iommu_group id. */
  readonly groups = new Map<number, VfioGroup>();
  /** Device sets with at least one registered device, by key. */
  private readonly devSets = new Map<string, VfioDeviceSet>();
  private readonly env: VfioEnv;
  /** The 10 s REQ reminders of unbinds waiting for their device's users. */
  private readonly requestTimers = new Set<ReturnType<typeof setInterval>>();

  constructor(env: VfioEnv, enableUnsafeNoiommuMode: boolean) {
    this.env = env;
    this.enableUnsafeNoiommuMode = enableUnsafeNoiommuMode;
  }

  /** The lowest free device index (the vfio device IDA). */
  private allocIndex(): number {
    const used = new Set([...this.devices.values()].map((d) => d.index));
    let i = 0;
    while (used.has(i)) i++;
    return i;
  }

  /**
   * vfio-pci probe + vfio_register_group_dev(): a device with no IOMMU registers only in unsafe
   * no-IOMMU mode (as noiommu-vfioN, tainting the kernel); otherwise the probe fails (-EINVAL)
   * and the device gets no VFIO node at all. So does a device behind an IOMMU without
   * IOMMU_CAP_CACHE_COHERENCY.
   */
  registerDevice(pci: PciDevice): VfioDevice | number {
    if (this.devices.has(pci.bdf)) return -Errno.EBUSY;
    const dev = this.env.iommu.device(pci.bdf);
    if (dev === undefined) return -Errno.ENODEV;
    const noiommu = dev.iommu === undefined;
    if (noiommu && !this.enableUnsafeNoiommuMode) return -Errno.EINVAL;
    // VFIO always maps with IOMMU_CACHE: an IOMMU that cannot enforce it gets no device.
    if (!noiommu && !deviceIommuCapable(dev, 'cache-coherency')) return -Errno.EINVAL;
    const group = this.groupFor(dev, noiommu);
    const devSet = this.devSetFor(pci);
    const vdev = new VfioDevice(this.allocIndex(), dev, group, devSet);
    group.devices.push(vdev);
    group.drivers++;
    devSet.devices.push(vdev);
    this.devices.set(pci.bdf, vdev);
    this.env.devfs.add({
      path: vdev.cdevPath,
      rdev: { major: VFIO_DEV_MAJOR, minor: vdev.index },
      mode: S_IFCHR | 0o600,
      open: (task, _flags) => openVfioCdev(vdev, task),
    });
    const devDir = `/sys/devices/pci0000:00/${pci.bdf}/vfio-dev/${vdev.name}`;
    this.env.sysfs.add({
      kind: 'attr',
      path: `${devDir}/dev`,
      mode: 0o444,
      show: () => `${VFIO_DEV_MAJOR}:${vdev.index}\n`,
    });
    this.env.sysfs.add({
      kind: 'attr',
      path: `${devDir}/uevent`,
      mode: 0o644,
      show: () =>
        `MAJOR=${VFIO_DEV_MAJOR}\nMINOR=${vdev.index}\nDEVNAME=vfio/devices/${vdev.name}\n`,
      store: () => 0,
    });
    this.env.sysfs.add({ kind: 'link', path: `${devDir}/device`, target: `../../../${pci.bdf}` });
    this.env.sysfs.add({
      kind: 'link',
      path: `${devDir}/subsystem`,
      target: '../../../../../class/vfio-dev',
    });
    this.env.sysfs.add({
      kind: 'link',
      path: `/sys/class/vfio-dev/${vdev.name}`,
      target: `../../devices/pci0000:00/${pci.bdf}/vfio-dev/${vdev.name}`,
    });
    if (noiommu) {
      this.env.addTaint(TAINT_USER);
      const line = `vfio-pci ${pci.bdf}: Adding kernel taint for vfio-noiommu cdev`;
      this.env.events.log('warn', line);
    }
    return vdev;
  }

  /**
   * vfio_device_set_group(): the device's iommu_group, or for a no-IOMMU device a placeholder
   * group of its own with the lowest free id (iommu_group_alloc), named "vfio-noiommu".
   */
  private groupFor(dev: Device, noiommu: boolean): VfioGroup {
    const pci = dev.pci;
    if (!noiommu) {
      const hw = dev.group!;
      let group = this.groups.get(hw.id);
      if (group === undefined) {
        group = new VfioGroup(hw.id, false, () => iommuGroupDmaOwnerClaimed(hw));
        this.addGroup(group);
      }
      return group;
    }
    let id = 0;
    while (this.groups.has(id) || this.env.isIommuGroupId(id)) id++;
    const group = new VfioGroup(
      id,
      true,
      () => false,
      (line) => this.env.events.log('warn', line),
    );
    this.addGroup(group);
    // vfio_noiommu_group_alloc()'s caller: the group path taints too, before the cdev does.
    this.env.addTaint(TAINT_USER);
    this.env.events.log(
      'warn',
      `vfio-pci ${pci.bdf}: Adding kernel taint for vfio-noiommu group on device`,
    );
    const dir = `/sys/kernel/iommu_groups/${id}`;
    this.env.sysfs.add({
      kind: 'attr',
      path: `${dir}/name`,
      mode: 0o444,
      show: () => 'vfio-noiommu\n',
    });
    this.env.sysfs.add({
      kind: 'link',
      path: `${dir}/devices/${pci.bdf}`,
      target: `../../../../devices/pci0000:00/${pci.bdf}`,
    });
    this.env.sysfs.add({
      kind: 'link',
      path: `/sys/devices/pci0000:00/${pci.bdf}/iommu_group`,
      target: `../../../kernel/iommu_groups/${id}`,
    });
    return group;
  }

  /** vfio_assign_device_set(): the set of the device's bus, or one of its own on the root bus. */
  private devSetFor(pci: PciDevice): VfioDeviceSet {
    const rootBus = pci.bus.endsWith(':00');
    const key = rootBus ? pci.bdf : pci.bus;
    let set = this.devSets.get(key);
    if (set === undefined) {
      const onBus = () => [...this.env.pciDevices()].filter((d) => d.bus === pci.bus);
      set = new VfioDeviceSet(key, rootBus ? () => [pci] : onBus);
      this.devSets.set(key, set);
    }
    return set;
  }

  private addGroup(group: VfioGroup): void {
    this.groups.set(group.id, group);
    this.env.devfs.add({
      path: group.nodePath,
      rdev: { major: VFIO_GROUP_MAJOR, minor: group.id },
      mode: S_IFCHR | 0o600,
      open: (task, _flags) => openVfioGroup(group, task),
    });
  }

  /**
   * vfio_device_remove_group(): the group's driver count drops; with the last, the node goes and
   * the group loses its iommu_group (an open group file then answers ENODEV).
   */
  private removeFromGroup(vdev: VfioDevice): void {
    const group = vdev.group;
    group.drivers--;
    if (group.drivers > 0) return;
    group.iommuGroupGone = true;
    this.groups.delete(group.id);
    this.env.devfs.remove(group.nodePath);
    if (group.noiommu) {
      this.env.sysfs.removeTree(`/sys/kernel/iommu_groups/${group.id}`);
      this.env.sysfs.remove(`/sys/devices/pci0000:00/${vdev.pci.bdf}/iommu_group`);
    }
  }

  /**
   * References and counts that outlive every file: with no file open, each registered device
   * holds only its registration, is open nowhere, and its group is neither open nor blocked.
   */
  leaks(): string[] {
    const out: string[] = [];
    for (const vdev of this.devices.values()) {
      const refs = vdev.registration.read();
      if (refs !== 1) out.push(`${vdev.name} has ${refs - 1} registration references left`);
      const opens = vdev.openCount.read();
      if (opens !== 0) out.push(`${vdev.name} still has open count ${opens}`);
    }
    for (const group of this.groups.values()) {
      const blocked = group.cdevDeviceOpenCount.read();
      if (blocked !== 0) out.push(`vfio group ${group.id} still blocked by ${blocked} cdev opens`);
      if (group.openedFile !== undefined) out.push(`vfio group ${group.id} is still open`);
    }
    return out;
  }

  /**
   * vfio_unregister_group_dev(), which cannot fail. The device leaves its group's list first
   * (vfio_device_group_unregister: GET_DEVICE_FD no longer finds it), then the cdev node goes
   * (vfio_device_del: no new opens) and the registration's own reference is dropped; while files
   * still hold the device, the unbind waits for the last to close, asking the user to let go
   * through the REQ interrupt now and every 10 s (vfio_pci_core_request). The writer blocks
   * meanwhile, and a second unbind of the device waits with it (docs/decisions.md 11). An open
   * group node does not hold the device: when its last device goes, the group loses its
   * iommu_group and the open file gets ENODEV.
   */
  unregisterDevice(bdf: string): 0 | BlockedCall {
    const vdev = this.devices.get(bdf);
    if (vdev === undefined) return 0;
    if (vdev.unbinding !== undefined) return { blocked: vdev.unbinding };
    const list = vdev.group.devices;
    list.splice(list.indexOf(vdev), 1);
    this.env.devfs.remove(vdev.cdevPath);
    this.env.sysfs.removeTree(`/sys/devices/pci0000:00/${bdf}/vfio-dev`);
    this.env.sysfs.remove(`/sys/class/vfio-dev/${vdev.name}`);
    // vfio_device_put_registration(): the last reference completes at once.
    if (vdev.registration.decAndTest()) {
      this.finishUnregister(vdev);
      return 0;
    }
    const log = (level: 'info' | 'warn', line: string): void => this.env.events.log(level, line);
    let count = 0;
    pciCoreRequest(vdev, count++, log);
    const timer = setInterval(() => pciCoreRequest(vdev, count++, log), REQUEST_INTERVAL_MS);
    timer.unref();
    this.requestTimers.add(timer);
    vdev.unbinding = new Promise<0>((resolve) => {
      vdev.released = () => {
        clearInterval(timer);
        this.requestTimers.delete(timer);
        vdev.released = undefined;
        this.finishUnregister(vdev);
        resolve(0);
      };
    });
    return { blocked: vdev.unbinding };
  }

  /** The rest of the unbind, once nothing holds the device. */
  private finishUnregister(vdev: VfioDevice): void {
    this.removeFromGroup(vdev);
    const set = vdev.devSet;
    set.devices.splice(set.devices.indexOf(vdev), 1);
    if (set.devices.length === 0) this.devSets.delete(set.key);
    this.devices.delete(vdev.pci.bdf);
  }

  /** Stops the REQ reminders of unbinds still waiting (the kernel is going away). */
  shutdown(): void {
    for (const timer of this.requestTimers) clearInterval(timer);
    this.requestTimers.clear();
  }
}
