/**
 * The emulated kernel as a whole: the device nodes under /dev, the files they open, and the
 * subsystems behind them. The server (real processes) and the library API (simulated processes)
 * both call into this, never into a subsystem directly.
 */
import { Accounting } from '../iommufd/accounting.ts';
import { IommufdSubsystem } from '../iommufd/main.ts';
import type { PagePinner } from '../iommufd/pages.ts';
import { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import type { File } from './file.ts';
import type { Task } from './task.ts';

export const S_IFCHR = 0o020000;

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

  add(node: CharDevNode): void {
    if (this.nodes.has(node.path)) throw new Error(`${node.path} registered twice`);
    this.nodes.set(node.path, node);
  }

  remove(path: string): void {
    this.nodes.delete(path);
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
  /** vfio.enable_unsafe_noiommu_mode at boot. */
  readonly enableUnsafeNoiommuMode?: boolean;
  /** A platform file to use instead of the built-in default platform. */
  readonly platformFile?: string;
}

/**
 * The emulated kernel instance. Subsystems register their device nodes in `devfs` at construction
 * (iommufd: /dev/iommu; VFIO: /dev/vfio/devices/...).
 */
export class Kernel {
  readonly devfs = new DevFs();
  readonly events = new EventBus();
  readonly options: KernelOptions;
  readonly iommufd: IommufdSubsystem;

  constructor(options: KernelOptions = {}) {
    this.options = options;
    const pinner: PagePinner = {
      pin: () => -Errno.ENODEV,
      unpin: () => {},
    };
    this.iommufd = new IommufdSubsystem(this.events, new Accounting(), pinner);
    this.devfs.add(this.iommufd.devNode());
  }

  /** Everything that outlived its owner (objects, pins, charges): empty when all is well. */
  leaks(): string[] {
    return this.iommufd.leaks();
  }

  /** open(2) of an emulated path: a new File, or a negative errno (-ENOENT if not ours). */
  open(task: Task, path: string, flags: number): File | number {
    return this.devfs.open(task, path, flags);
  }

  /** stat(2) of an emulated path. */
  stat(path: string): NodeStat | number {
    return this.devfs.stat(path);
  }

  /**
   * Path prefixes the shim must send to the emulator instead of the real filesystem. Anything
   * else is left to the real kernel, so programs keep their ordinary files.
   */
  emulatedPrefixes(): string[] {
    return ['/dev/iommu', '/dev/vfio'];
  }
}
