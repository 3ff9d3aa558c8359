/**
 * The emulated /dev (devtmpfs): character-device nodes that drivers register, each with the
 * driver's open(). Path walks reach them through the VFS (vfs.ts); this only keeps the nodes.
 */
import type { File } from './file.ts';
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

  paths(): string[] {
    return [...this.nodes.keys()].sort();
  }
}
