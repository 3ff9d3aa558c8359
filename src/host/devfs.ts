/**
 * The emulated /dev (devtmpfs): character-device nodes that drivers register, each with the
 * driver's open(). Path walks reach them through the VFS (vfs.ts); this only keeps the nodes.
 */
import type { File } from './file.ts';
import { type InodeOwner, ROOT_OWNER } from './permission.ts';
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

/**
 * What udev does when a node appears: the owner and group its rules give it, or undefined to
 * leave it root's. Drivers create nodes with their mode only, as in Linux.
 */
export type UdevRule = (node: CharDevNode) => InodeOwner | undefined;

export class DevFs {
  private readonly nodes = new Map<string, { node: CharDevNode; owner: InodeOwner }>();
  /** Bumped by every add and remove (see SysFs.generation). */
  generation = 0;
  /** Set by the composition root from the platform (platform.md, "Device node owners"). */
  udevRule: UdevRule | undefined;

  add(node: CharDevNode): void {
    if (this.nodes.has(node.path)) throw new Error(`${node.path} registered twice`);
    this.nodes.set(node.path, { node, owner: this.udevRule?.(node) ?? ROOT_OWNER });
    this.generation++;
  }

  remove(path: string): void {
    if (this.nodes.delete(path)) this.generation++;
  }

  lookup(path: string): CharDevNode | undefined {
    return this.nodes.get(path)?.node;
  }

  /** The node's owner and group (root's unless a udev rule gave it away). */
  ownerOf(path: string): InodeOwner {
    return this.nodes.get(path)?.owner ?? ROOT_OWNER;
  }

  paths(): string[] {
    return [...this.nodes.keys()].sort();
  }
}
