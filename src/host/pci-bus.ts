/**
 * The PCI bus's half of the driver core (drivers/base/bus.c, dd.c, drivers/pci/pci-driver.c):
 * which driver each device is bound to, each device's driver_override, each driver's dynamic
 * ids, and the sysfs files userspace binds and unbinds with: the bus's `drivers_probe` and
 * `drivers_autoprobe`, each driver's `bind`, `unbind`, `new_id` and `remove_id`, each device's
 * `driver_override` and its `driver` link (present exactly while it is bound, with the driver's
 * link back). It knows no driver: drivers register a PciDriver (vfio-pci, from src/boot).
 */
import type { PciDevice } from '../platform/pci.ts';
import type { EventBus } from '../trace/events.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import type { BlockedCall } from './file.ts';
import type { SysFs } from './sysfs.ts';
import type { Task } from './task.ts';

/** PCI_ANY_ID: a field of an id that matches any value. */
export const PCI_ANY_ID = 0xffffffff;
/** A driver_override value must be shorter than this (driver_set_override: PAGE_SIZE - 1). */
const OVERRIDE_MAX = 4095;

/** struct pci_device_id, as matched by pci_match_one_device(). */
export interface PciDeviceId {
  readonly vendor: number;
  readonly device: number;
  readonly subvendor: number;
  readonly subdevice: number;
  readonly class: number;
  readonly classMask: number;
  readonly driverData: number;
}

/** An entry of a driver's static id table. */
export interface PciIdTableEntry extends PciDeviceId {
  /** Matches only a device whose driver_override names the driver (PCI_DRIVER_OVERRIDE_DEVICE_VFIO). */
  readonly overrideOnly: boolean;
}

/** struct pci_driver, as far as binding goes. */
export interface PciDriver {
  readonly name: string;
  /** The module the driver belongs to (the target of its `module` link). */
  readonly module: string;
  readonly idTable: readonly PciIdTableEntry[];
  /** probe(): 0 once the driver has the device, or a negative errno. */
  probe(dev: PciDevice): SyscallResult;
  /** remove(): cannot fail; 0, or a call that blocks until the device's users let go. */
  remove(dev: PciDevice): 0 | BlockedCall;
}

/** What the driver core keeps of one device. */
interface DeviceState {
  readonly dev: PciDevice;
  /** dev->driver: set from a successful probe until remove returns. */
  driver: PciDriver | undefined;
  /** dev->driver_override. */
  override: string | undefined;
  /**
   * The unbind in progress while remove() waits for the device's users. It holds the device
   * lock: binds and probes of the device wait for it (driver_override takes no device lock).
   */
  unbinding: Promise<SyscallResult> | undefined;
}

const DEVICES = '/sys/devices/pci0000:00';
const BUS = '/sys/bus/pci';

/** The id fields of a device, as pci_match_one_device() compares them. */
function idOf(dev: PciDevice): Omit<PciDeviceId, 'classMask' | 'driverData'> {
  return {
    vendor: dev.configRead(0x00, 2),
    device: dev.configRead(0x02, 2),
    subvendor: dev.configRead(0x2c, 2),
    subdevice: dev.configRead(0x2e, 2),
    class: dev.configRead(0x09, 1) | (dev.configRead(0x0a, 2) << 8),
  };
}

/** pci_match_one_device(). */
function matchOne(id: PciDeviceId, dev: Omit<PciDeviceId, 'classMask' | 'driverData'>): boolean {
  return (
    (id.vendor === PCI_ANY_ID || id.vendor === dev.vendor) &&
    (id.device === PCI_ANY_ID || id.device === dev.device) &&
    (id.subvendor === PCI_ANY_ID || id.subvendor === dev.subvendor) &&
    (id.subdevice === PCI_ANY_ID || id.subdevice === dev.subdevice) &&
    ((id.class ^ dev.class) & id.classMask) >>> 0 === 0
  );
}

/**
 * sscanf(buf, "%x %x ...") as the kernel's vsscanf reads hex fields: the values converted before
 * the first field that is not a hex number.
 */
function scanHex(text: string, max: number): number[] {
  const out: number[] = [];
  let rest = text;
  while (out.length < max) {
    const m = /^\s*(?:0[xX])?([0-9a-fA-F]+)/.exec(rest);
    if (m === null) break;
    out.push(Number(BigInt(`0x${m[1]}`) & 0xffffffffn));
    rest = rest.slice(m[0].length);
  }
  return out;
}

/** sysfs_streq(): equal, ignoring one trailing newline on either side. */
function sysfsStreq(a: string, b: string): boolean {
  const trim = (s: string) => (s.endsWith('\n') ? s.slice(0, -1) : s);
  return trim(a) === trim(b);
}

export class PciBus {
  private readonly sysfs: SysFs;
  private readonly events: EventBus;
  private readonly devices = new Map<string, DeviceState>();
  private readonly drivers: PciDriver[] = [];
  /** Each driver's dynamic ids (new_id, and the ids module parameter of vfio-pci). */
  private readonly dynids = new Map<PciDriver, PciDeviceId[]>();
  /** The bus's drivers_autoprobe: whether devices added later are probed (none are, yet). */
  private autoprobe = true;

  constructor(sysfs: SysFs, events: EventBus) {
    this.sysfs = sysfs;
    this.events = events;
    sysfs.add({
      kind: 'attr',
      path: `${BUS}/drivers_probe`,
      mode: 0o200,
      show: () => '',
      store: (_task, text) => this.driversProbe(text),
    });
    sysfs.add({
      kind: 'attr',
      path: `${BUS}/drivers_autoprobe`,
      mode: 0o644,
      show: () => (this.autoprobe ? '1\n' : '0\n'),
      store: (_task, text) => {
        this.autoprobe = !text.startsWith('0');
        return 0;
      },
    });
  }

  /**
   * device_add() of a PCI device, with the driver_override it starts with (set before any driver
   * probes it, as a boot-time udev rule does): its driver_override file. Drivers registered
   * later probe it.
   */
  addDevice(dev: PciDevice, override?: string): void {
    const state: DeviceState = { dev, driver: undefined, override, unbinding: undefined };
    this.devices.set(dev.bdf, state);
    this.sysfs.add({
      kind: 'attr',
      path: `${DEVICES}/${dev.bdf}/driver_override`,
      mode: 0o644,
      show: () => `${state.override ?? '(null)'}\n`,
      // __device_set_driver_override() takes a spinlock only: it never waits for an unbind.
      store: (_task, text) => this.setOverride(state, text),
    });
  }

  /** The driver a device is bound to (dev->driver), if any. */
  driverOf(bdf: string): PciDriver | undefined {
    return this.devices.get(bdf)?.driver;
  }

  /** The device's driver_override, if set. */
  overrideOf(bdf: string): string | undefined {
    return this.devices.get(bdf)?.override;
  }

  /**
   * pci_register_driver(): the driver's directory and files, its dynamic ids (`ids`, as vfio-pci
   * reads its ids= module parameter before registering), then driver_attach().
   */
  registerDriver(drv: PciDriver, ids: readonly PciDeviceId[] = []): void {
    this.drivers.push(drv);
    this.dynids.set(drv, [...ids]);
    const dir = `${BUS}/drivers/${drv.name}`;
    const wo = (name: string, store: (task: Task, text: string) => SyscallResult | BlockedCall) =>
      this.sysfs.add({ kind: 'attr', path: `${dir}/${name}`, mode: 0o200, show: () => '', store });
    wo('bind', (_task, text) => this.bind(drv, text));
    wo('unbind', (_task, text) => this.unbind(drv, text));
    wo('new_id', (_task, text) => this.newId(drv, text));
    wo('remove_id', (_task, text) => this.removeId(drv, text));
    wo('uevent', () => 0);
    this.sysfs.add({
      kind: 'link',
      path: `${dir}/module`,
      target: `../../../../module/${drv.module}`,
    });
    this.driverAttach(drv);
  }

  /**
   * pci_match_device(): a driver_override naming another driver matches nothing; then the
   * dynamic ids, then the static table (override-only entries need the override), and a
   * driver_override naming this driver matches whatever the tables say.
   */
  private matches(drv: PciDriver, state: DeviceState): boolean {
    if (state.override !== undefined && state.override !== drv.name) return false;
    const id = idOf(state.dev);
    if ((this.dynids.get(drv) ?? []).some((d) => matchOne(d, id))) return true;
    for (const entry of drv.idTable) {
      if (matchOne(entry, id) && (!entry.overrideOnly || state.override !== undefined)) return true;
    }
    return state.override !== undefined;
  }

  /**
   * __driver_probe_device(): EBUSY if the device has a driver, else the driver's probe. A
   * failed probe is logged as really_probe() does (not for ENODEV and ENXIO).
   */
  private probe(drv: PciDriver, state: DeviceState): SyscallResult {
    if (state.driver !== undefined) return -Errno.EBUSY;
    const rc = drv.probe(state.dev);
    if (rc < 0) {
      if (rc !== -Errno.ENODEV && rc !== -Errno.ENXIO) {
        // call_driver_probe()'s dev_err, while dev->driver is the driver being probed.
        const line = `${drv.name} ${state.dev.bdf}: probe with driver ${drv.name} failed with error ${rc}`;
        this.events.log('info', line);
      }
      return rc;
    }
    state.driver = drv;
    // driver_sysfs_add(): the device links to its driver and the driver back to it.
    this.sysfs.add({
      kind: 'link',
      path: `${DEVICES}/${state.dev.bdf}/driver`,
      target: `../../../bus/pci/drivers/${drv.name}`,
    });
    this.sysfs.add({
      kind: 'link',
      path: `${BUS}/drivers/${drv.name}/${state.dev.bdf}`,
      target: `../../../../devices/pci0000:00/${state.dev.bdf}`,
    });
    return 0;
  }

  /**
   * __device_release_driver(): the links go at once (driver_sysfs_remove), then the driver's
   * remove, which may wait for the device's users; the device has its driver until it returns.
   */
  private release(state: DeviceState): SyscallResult | BlockedCall {
    const drv = state.driver;
    if (drv === undefined) return 0;
    const rc = drv.remove(state.dev);
    this.sysfs.remove(`${DEVICES}/${state.dev.bdf}/driver`);
    this.sysfs.remove(`${BUS}/drivers/${drv.name}/${state.dev.bdf}`);
    const done = (): SyscallResult => {
      state.driver = undefined;
      state.unbinding = undefined;
      return 0;
    };
    if (typeof rc === 'number') return done();
    state.unbinding = rc.blocked.then(done);
    return { blocked: state.unbinding };
  }

  /** Runs `fn` under the device lock: at once, or once the unbind holding it has finished. */
  private locked(
    state: DeviceState,
    fn: () => SyscallResult | BlockedCall,
  ): SyscallResult | BlockedCall {
    if (state.unbinding === undefined) return fn();
    return {
      blocked: state.unbinding.then(() => {
        const rc = this.locked(state, fn);
        return typeof rc === 'number' ? rc : rc.blocked;
      }),
    };
  }

  /** device_attach(): the first driver that matches and probes successfully gets the device. */
  private deviceAttach(state: DeviceState): void {
    if (state.driver !== undefined) return;
    for (const drv of this.drivers) {
      if (this.matches(drv, state) && this.probe(drv, state) === 0) return;
    }
  }

  /**
   * driver_attach(): the driver probes every device it matches, one after the other, each under
   * its device lock: a device whose unbind is waiting makes the caller wait for it too, and is
   * then probed (__driver_attach).
   */
  private driverAttach(drv: PciDriver): 0 | BlockedCall {
    return this.driverAttachFrom(drv, [...this.devices.values()]);
  }

  private driverAttachFrom(drv: PciDriver, rest: DeviceState[]): 0 | BlockedCall {
    for (let i = 0; i < rest.length; i++) {
      const state = rest[i]!;
      if (!this.matches(drv, state)) continue;
      const rc = this.locked(state, () => {
        if (state.driver === undefined) this.probe(drv, state);
        return 0;
      });
      if (typeof rc !== 'number') {
        const after = rest.slice(i + 1);
        return {
          blocked: rc.blocked.then(() => {
            const next = this.driverAttachFrom(drv, after);
            return typeof next === 'number' ? next : next.blocked;
          }),
        };
      }
    }
    return 0;
  }

  /** bus_find_device_by_name(). */
  private find(name: string): DeviceState | undefined {
    for (const state of this.devices.values()) if (sysfsStreq(state.dev.bdf, name)) return state;
    return undefined;
  }

  /**
   * drivers_probe_store(): ENODEV for no such device; a device no driver takes is not an error.
   * bus_rescan_devices_helper() looks at dev->driver before taking the device lock: a device
   * whose unbind is still waiting has its driver, so nothing is probed and the write returns at
   * once (the device ends unbound).
   */
  private driversProbe(text: string): SyscallResult | BlockedCall {
    const state = this.find(text);
    if (state === undefined) return -Errno.ENODEV;
    if (state.driver !== undefined) return 0;
    return this.locked(state, () => {
      this.deviceAttach(state);
      return 0;
    });
  }

  /** bind_store(): ENODEV unless the device exists and the driver matches it. */
  private bind(drv: PciDriver, text: string): SyscallResult | BlockedCall {
    const state = this.find(text);
    if (state === undefined || !this.matches(drv, state)) return -Errno.ENODEV;
    return this.locked(state, () => this.probe(drv, state));
  }

  /** unbind_store(): ENODEV unless the device is bound to this driver. */
  private unbind(drv: PciDriver, text: string): SyscallResult | BlockedCall {
    const state = this.find(text);
    if (state === undefined || state.driver !== drv) return -Errno.ENODEV;
    // A second unbind while the first waits takes the device lock after it: nothing left to do.
    return this.locked(state, () => this.release(state));
  }

  /** driver_set_override(). */
  private setOverride(state: DeviceState, text: string): SyscallResult {
    if (text.length >= OVERRIDE_MAX) return -Errno.EINVAL;
    const s = text.split('\0')[0]!;
    if (s === '') {
      state.override = undefined;
      return 0;
    }
    const value = s.split('\n')[0]!;
    state.override = value === '' ? undefined : value;
    return 0;
  }

  /**
   * new_id_store(): "vendor device [subvendor subdevice class class_mask driver_data]" in hex.
   * EEXIST when the driver already matches such a device (unless all 7 fields are given),
   * EINVAL for driver_data no static entry has; then the id is added and the driver probes
   * every unbound device it now matches.
   */
  private newId(drv: PciDriver, text: string): SyscallResult | BlockedCall {
    const f = scanHex(text, 7);
    if (f.length < 2) return -Errno.EINVAL;
    const id: PciDeviceId = {
      vendor: f[0]!,
      device: f[1]!,
      subvendor: f[2] ?? PCI_ANY_ID,
      subdevice: f[3] ?? PCI_ANY_ID,
      class: f[4] ?? 0,
      classMask: f[5] ?? 0,
      driverData: f[6] ?? 0,
    };
    if (f.length !== 7) {
      // A made-up device with these ids and no driver_override: does the driver take it already?
      const { classMask: _mask, driverData: _data, ...made } = id;
      const known =
        (this.dynids.get(drv) ?? []).some((d) => matchOne(d, made)) ||
        drv.idTable.some((e) => !e.overrideOnly && matchOne(e, made));
      if (known) return -Errno.EEXIST;
    }
    if (drv.idTable.length > 0 && !drv.idTable.some((e) => e.driverData === id.driverData)) {
      return -Errno.EINVAL;
    }
    this.dynids.get(drv)?.push(id);
    return this.driverAttach(drv);
  }

  /** remove_id_store(): the first dynamic id that matches, or ENODEV. */
  private removeId(drv: PciDriver, text: string): SyscallResult {
    const f = scanHex(text, 6);
    if (f.length < 2) return -Errno.EINVAL;
    const [vendor, device] = [f[0]!, f[1]!];
    const subvendor = f[2] ?? PCI_ANY_ID;
    const subdevice = f[3] ?? PCI_ANY_ID;
    const cls = f[4] ?? 0;
    const classMask = f[5] ?? 0;
    const ids = this.dynids.get(drv) ?? [];
    const i = ids.findIndex(
      (id) =>
        id.vendor === vendor &&
        id.device === device &&
        (subvendor === PCI_ANY_ID || id.subvendor === subvendor) &&
        (subdevice === PCI_ANY_ID || id.subdevice === subdevice) &&
        ((id.class ^ cls) & classMask) >>> 0 === 0,
    );
    if (i < 0) return -Errno.ENODEV;
    ids.splice(i, 1);
    return 0;
  }
}
