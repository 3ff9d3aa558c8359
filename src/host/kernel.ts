/**
 * The emulated kernel as a whole: the device nodes under /dev, the files they open, and the
 * subsystems behind them. The server (real processes) and the library API (simulated processes)
 * both call into this, never into a subsystem directly.
 */

import { FailNth } from '../fault/fault.ts';
import { IommuSubsystem } from '../iommu/iommu.ts';
import { unitIommuOps } from '../iommu/unit-driver.ts';
import { Accounting } from '../iommufd/accounting.ts';
import { IommufdSubsystem } from '../iommufd/main.ts';
import type { PagePinner } from '../iommufd/pages.ts';
import { Machine } from '../platform/machine.ts';
import {
  defaultPlatform,
  loadPlatformFile,
  type PlatformConfig,
  PlatformConfigError,
} from '../platform/platform-config.ts';
import { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { VfioSubsystem } from '../vfio/vfio-main.ts';
import { CAP_DAC_OVERRIDE, capable } from './credentials.ts';
import type { File } from './file.ts';
import { addPciSysfs } from './pci-sysfs.ts';
import { openAttr, type SysAttr, SysFs } from './sysfs.ts';
import type { Task } from './task.ts';

/** A character device node in the emulated /dev. */
export interface CharDevNode {
  readonly path: string;
  readonly rdev: { major: number; minor: number };
  /** Mode bits including S_IFCHR. */
  readonly mode: number;
  /** The driver's open(): a new File, or a negative errno. */
  open(task: Task, flags: number): File | number;
}

export interface NodeStat {
  readonly mode: number;
  readonly rdev: { major: number; minor: number };
}

export class DevFs {
  private readonly nodes = new Map<string, CharDevNode>();
  /** Bumped by every add and remove (see SysFs.generation). */
  generation = 0;

  add(node: CharDevNode): void {
    if (this.nodes.has(node.path)) throw new Error(`${node.path} registered twice`);
    this.nodes.set(node.path, node);
    this.generation++;
  }

  remove(path: string): void {
    if (this.nodes.delete(path)) this.generation++;
  }

  lookup(path: string): CharDevNode | undefined {
    return this.nodes.get(path);
  }

  /** Whether a path is one this emulator answers for (so the shim forwards it). */
  owns(path: string): boolean {
    return this.nodes.has(path);
  }

  paths(): string[] {
    return [...this.nodes.keys()].sort();
  }

  open(task: Task, path: string, flags: number): File | number {
    const node = this.nodes.get(path);
    if (node === undefined) return -Errno.ENOENT;
    return node.open(task, flags);
  }

  stat(path: string): NodeStat | number {
    const node = this.nodes.get(path);
    if (node === undefined) return -Errno.ENOENT;
    return { mode: node.mode, rdev: node.rdev };
  }
}

export interface KernelOptions {
  /** vfio.enable_unsafe_noiommu_mode at boot (overrides the platform's setting when given). */
  readonly enableUnsafeNoiommuMode?: boolean;
  /** The machine; the built-in default platform when absent. */
  readonly platform?: PlatformConfig;
}

/**
 * The emulated kernel instance: the machine it runs on, iommufd, VFIO, and the /dev, /sys and
 * /proc files they expose. At boot every PCI device is bound to vfio-pci.
 */
export class Kernel {
  readonly devfs = new DevFs();
  readonly sysfs = new SysFs();
  readonly events = new EventBus();
  readonly machine: Machine;
  readonly iommu: IommuSubsystem;
  readonly iommufd: IommufdSubsystem;
  readonly vfio: VfioSubsystem;
  /** /proc/sys/kernel/tainted. */
  tainted = 0;
  /** Every task's fail-nth counter, by "pid/tid" (current->fail_nth). */
  private readonly failNths = new Map<string, FailNth>();
  /** Values written to the debugfs fault-injection knobs (accepted, no other effect). */
  private readonly debugfsKnobs = new Map<string, string>();

  /** The kernel log (dmesg): every warning and error line since boot, oldest first, bounded. */
  readonly dmesg: string[] = [];

  constructor(options: KernelOptions = {}) {
    this.events.subscribe((event) => {
      if (event.kind !== 'log' || event.level === 'info') return;
      this.dmesg.push(`${event.level}: ${event.message}`);
      if (this.dmesg.length > 1000) this.dmesg.shift();
    });
    this.machine = new Machine(options.platform ?? defaultPlatform(), { events: this.events });
    this.iommu = new IommuSubsystem(this.machine, unitIommuOps);
    const pinned = this.machine.pinned;
    const pinner: PagePinner = {
      pin: (mem, va, npages, write) => pinned.pin(mem, va, npages, write),
      unpin: (mem, va, npages) => {
        pinned.unpin(mem.mm, va, npages);
      },
    };
    this.iommufd = new IommufdSubsystem(this.events, new Accounting(), pinner);
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
        isIommuGroupId: (id) => this.machine.groups.has(id),
      },
      noiommuMode,
    );
    this.addKernelFiles();
    for (const dev of this.machine.devices.values()) {
      addPciSysfs(this.sysfs, dev);
      this.vfio.registerDevice(dev);
    }
  }

  addTaint(bit: number): void {
    this.tainted |= 1 << bit;
  }

  /** Module parameters, the taint mask, and the vfio-pci bind/unbind files. */
  private addKernelFiles(): void {
    const root = (task: Task) => task.creds.uid === 0 || capable(task.creds, CAP_DAC_OVERRIDE);
    this.sysfs.add({
      kind: 'attr',
      path: '/sys/module/iommufd/parameters/allow_unsafe_interrupts',
      mode: 0o644,
      show: () => (this.iommufd.allowUnsafeInterrupts ? 'Y\n' : 'N\n'),
      store: (task, text) => {
        if (!root(task)) return -Errno.EACCES;
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
      store: (task, text) => {
        if (!root(task)) return -Errno.EACCES;
        const value = parseBoolParam(text);
        if (value === undefined) return -Errno.EINVAL;
        this.vfio.enableUnsafeNoiommuMode = value;
        return 0;
      },
    });
    this.sysfs.add({
      kind: 'attr',
      path: '/proc/sys/kernel/tainted',
      mode: 0o644,
      show: () => `${this.tainted}\n`,
    });
    // Rebinding a device to vfio-pci re-reads enable_unsafe_noiommu_mode, as in Linux.
    this.sysfs.add({
      kind: 'attr',
      path: '/sys/bus/pci/drivers/vfio-pci/unbind',
      mode: 0o200,
      show: () => '',
      store: (task, text) => {
        if (!root(task)) return -Errno.EACCES;
        return this.vfio.unregisterDevice(text.trim());
      },
    });
    this.sysfs.add({
      kind: 'attr',
      path: '/sys/bus/pci/drivers/vfio-pci/bind',
      mode: 0o200,
      show: () => '',
      store: (task, text) => {
        if (!root(task)) return -Errno.EACCES;
        const dev = this.machine.device(text.trim());
        if (dev === undefined) return -Errno.ENODEV;
        const vdev = this.vfio.registerDevice(dev);
        return typeof vdev === 'number' ? vdev : 0;
      },
    });
  }

  /** The fail-nth counter of task `tid` of process `pid`, made on first use. */
  failNth(pid: number, tid: number): FailNth {
    const key = `${pid}/${tid}`;
    let counter = this.failNths.get(key);
    if (counter === undefined) {
      counter = new FailNth();
      this.failNths.set(key, counter);
    }
    return counter;
  }

  /** A task exited: its counter goes with it. */
  forgetTask(pid: number, tid: number): void {
    this.failNths.delete(`${pid}/${tid}`);
  }

  /**
   * /proc/<pid>/task/<tid>/fail-nth (and the /proc/self and /proc/thread-self spellings):
   * write N to fail the Nth injection point that task reaches; reads give what is left, 0 once
   * it fired.
   */
  private failNthAttr(task: Task, path: string): SysAttr | undefined {
    let pid: number;
    let tid: number;
    const m = /^\/proc\/(self|\d+)\/task\/(\d+)\/fail-nth$/.exec(path);
    if (m !== null) {
      pid = m[1] === 'self' ? task.creds.pid : Number(m[1]);
      tid = Number(m[2]);
    } else if (path === '/proc/thread-self/fail-nth' || path === '/proc/self/fail-nth') {
      pid = task.creds.pid;
      tid = path === '/proc/self/fail-nth' ? task.creds.pid : task.creds.tid;
    } else {
      return undefined;
    }
    return {
      kind: 'attr',
      path,
      mode: 0o644,
      show: () => `${this.failNth(pid, tid).remaining}\n`,
      store: (_task, text) => {
        const n = parseUint(text);
        if (n === undefined) return -Errno.EINVAL;
        this.failNth(pid, tid).arm(n);
        return 0;
      },
    };
  }

  /** /sys/kernel/debug/<fail*>/<knob>: programs written for kernel fault injection set these. */
  private debugfsAttr(path: string): SysAttr | undefined {
    const m = DEBUGFS_KNOB.exec(path);
    if (m === null) return undefined;
    return {
      kind: 'attr',
      path,
      mode: 0o600,
      show: () => this.debugfsKnobs.get(path) ?? (m[2] === 'verbose' ? '2\n' : 'N\n'),
      store: (_task, text) => {
        this.debugfsKnobs.set(path, text.trim().endsWith('\n') ? text.trim() : `${text.trim()}\n`);
        return 0;
      },
    };
  }

  /**
   * The debugfs fault-injection knobs a listing of /sys/kernel/debug/<fail*>/ shows (each of
   * them, and any other name debugfsAttr accepts, opens).
   */
  debugfsFiles(): string[] {
    const common = ['interval', 'probability', 'space', 'task-filter', 'times', 'verbose'];
    const extra: Record<string, string[]> = {
      failslab: ['cache-filter', 'ignore-gfp-wait'],
      fail_page_alloc: ['ignore-gfp-highmem', 'ignore-gfp-wait', 'min-order'],
    };
    return DEBUGFS_DIRS.flatMap((dir) =>
      [...common, ...(extra[dir] ?? [])].map((knob) => `/sys/kernel/debug/${dir}/${knob}`),
    );
  }

  /** Everything that outlived its owner (objects, pins, charges): empty when all is well. */
  leaks(): string[] {
    const out = this.iommufd.leaks();
    if (this.iommufd.contexts.size === 0) {
      const pinned = this.machine.pinned.stats();
      if (pinned.pinnedPages !== 0n) out.push(`${pinned.pinnedPages} pages still pinned`);
      const domains = this.machine.domains.live();
      if (domains.length !== 0) out.push(`${domains.length} IOMMU domains still allocated`);
    }
    return out;
  }

  /** open(2) of an emulated path: a new File, or a negative errno (-ENOENT if not ours). */
  open(task: Task, path: string, flags: number): File | number {
    const file = this.devfs.open(task, path, flags);
    if (file !== -Errno.ENOENT) return file;
    const dynamic = this.failNthAttr(task, path) ?? this.debugfsAttr(path);
    if (dynamic !== undefined) return openAttr(dynamic, flags);
    return this.sysfs.open(task, path, flags);
  }

  /** stat(2) of an emulated device node. */
  stat(path: string): NodeStat | number {
    return this.devfs.stat(path);
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
      '/sys/module/vfio',
      '/sys/module/iommufd',
      '/proc/sys/kernel/tainted',
      '/proc/*/task/*/fail-nth',
      '/proc/thread-self/fail-nth',
      // The emulated machine's debugfs holds only the fault-injection directories.
      '/sys/kernel/debug',
    ];
  }

  /** Stops device timers so the process can exit. */
  shutdown(): void {
    this.machine.shutdown();
  }
}

const DEBUGFS_DIRS = ['failslab', 'fail_page_alloc', 'fail_iommufd', 'fail_usercopy'];
const DEBUGFS_KNOB = new RegExp(`^/sys/kernel/debug/(${DEBUGFS_DIRS.join('|')})/([a-z-]+)$`);

/** kstrtouint(): decimal, 0x hex or 0 octal, with an optional trailing newline. */
function parseUint(text: string): number | undefined {
  const t = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (!/^(0x[0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.test(t)) return undefined;
  const n = Number(
    t.startsWith('0') && !t.startsWith('0x') && t.length > 1 ? Number.parseInt(t, 8) : t,
  );
  return n <= 0xffffffff ? n : undefined;
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
