/**
 * The emulated /sys and /proc files a driver reads to find its device and that tools write to
 * (module parameters, fail-nth): attributes with read/write handlers, directories and symlinks.
 * Opening an attribute gives a File whose reads produce the attribute's text at that moment.
 */
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { type Credentials, copyCredentials } from './credentials.ts';
import { type BlockedCall, File, type FileOperations } from './file.ts';
import type { InodeOwner } from './permission.ts';
import type { Task } from './task.ts';

export interface SysAttr {
  readonly kind: 'attr';
  readonly path: string;
  /** Permission bits, e.g. 0o444 or 0o644. */
  readonly mode: number;
  /** Owner and group; root's when absent (every sysfs file; a procfs file is its task's). */
  readonly owner?: InodeOwner;
  show(task: Task): string;
  /**
   * A binary attribute (bin_attribute, e.g. a PCI device's `config`): its bytes as the file's
   * opener may read them (f_cred), used instead of `show`; or a negative errno (a resourceN file
   * of a memory BAR has no read method: EIO).
   */
  readBytes?(opener: Credentials): Uint8Array | number;
  /** undefined: read-only (EACCES on open for write, like a 0444 file). May block the writer. */
  store?(task: Task, text: string): SyscallResult | BlockedCall;
  /**
   * A binary attribute's write at `pos` (sysfs_kf_bin_write), used instead of `store`: the bytes
   * written, or a negative errno. `size` is the attribute's size (EFBIG at or past it).
   */
  writeBytes?(data: Uint8Array, pos: number): SyscallResult;
  readonly size?: number;
}

export interface SysLink {
  readonly kind: 'link';
  readonly path: string;
  /** Relative or absolute target, as readlink returns it. */
  readonly target: string;
}

export type SysEntry = SysAttr | SysLink;

const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;

interface OpenAttr {
  readonly attr: SysAttr;
  /** The credentials of the task that opened the file (the file's f_cred). */
  readonly opener: Credentials;
}

const attrFops: FileOperations = {
  name: 'sysfs',
  read(file, task, length, pos) {
    const { attr, opener } = file.privateData as OpenAttr;
    const bytes =
      attr.readBytes === undefined
        ? new TextEncoder().encode(attr.show(task))
        : attr.readBytes(opener);
    if (typeof bytes === 'number') return bytes;
    const start = Number(pos < BigInt(bytes.length) ? pos : BigInt(bytes.length));
    return bytes.subarray(start, Math.min(bytes.length, start + length));
  },
  write(file, task, data, pos) {
    const { attr } = file.privateData as OpenAttr;
    if (attr.writeBytes !== undefined) {
      // sysfs_kf_bin_write(): clipped to the attribute's size; nothing to write is 0.
      let bytes = data;
      if (attr.size !== undefined) {
        if (pos >= BigInt(attr.size)) return -Errno.EFBIG;
        bytes = data.subarray(0, Math.min(data.length, attr.size - Number(pos)));
      }
      if (bytes.length === 0) return 0;
      return attr.writeBytes(bytes, Number(pos));
    }
    if (attr.store === undefined) return -Errno.EACCES;
    // sysfs_kf_write(): a write of nothing never reaches the store.
    if (data.length === 0) return 0;
    const rc = attr.store(task, new TextDecoder().decode(data));
    if (typeof rc !== 'number')
      return { blocked: rc.blocked.then((r) => (r < 0 ? r : data.length)) };
    return rc < 0 ? rc : data.length;
  },
  release() {},
};

/**
 * kernfs_fop_open(): a write open needs a write bit and a store, a read open a read bit, whoever
 * the opener (root opening a 0200 `unbind` for reading gets EACCES). The owner's permission was
 * checked before (may_open).
 */
export function openAttr(task: Task, attr: SysAttr, flags: number): File | number {
  const access = flags & O_ACCMODE;
  const writes = access === O_WRONLY || access === O_RDWR;
  const reads = access === O_RDONLY || access === O_RDWR;
  const writable = attr.store !== undefined || attr.writeBytes !== undefined;
  if (writes && ((attr.mode & 0o222) === 0 || !writable)) return -Errno.EACCES;
  if (reads && (attr.mode & 0o444) === 0) return -Errno.EACCES;
  // f_cred: the opener's credentials as they are at the open.
  const data: OpenAttr = { attr, opener: copyCredentials(task.creds) };
  return new File('sysfs', attrFops, data, { major: 0, minor: 0 });
}

export class SysFs {
  private readonly entries = new Map<string, SysEntry>();
  /** Bumped by every add and remove: lets a mirror of the tree (the server's testbed) resync. */
  generation = 0;

  add(entry: SysEntry): void {
    // Vfs answers whether a directory under /dev exists from devfs alone.
    if (entry.path.startsWith('/dev/')) throw new Error(`sysfs entry under /dev: ${entry.path}`);
    this.entries.set(entry.path, entry);
    this.generation++;
  }

  remove(path: string): void {
    if (this.entries.delete(path)) this.generation++;
  }

  /** Removes every entry at or below `prefix`. */
  removeTree(prefix: string): void {
    for (const path of [...this.entries.keys()]) {
      if (path === prefix || path.startsWith(`${prefix}/`)) {
        this.entries.delete(path);
        this.generation++;
      }
    }
  }

  lookup(path: string): SysEntry | undefined {
    return this.entries.get(path);
  }

  /** Every entry's path, in no order. */
  paths(): IterableIterator<string> {
    return this.entries.keys();
  }

  /** Every entry, sorted by path (directories are implied by the paths below them). */
  list(): SysEntry[] {
    return [...this.entries.values()].sort((a, b) =>
      a.path < b.path ? -1 : a.path > b.path ? 1 : 0,
    );
  }

  open(task: Task, path: string, flags: number): File | number {
    const entry = this.entries.get(path);
    if (entry === undefined || entry.kind !== 'attr') return -Errno.ENOENT;
    return openAttr(task, entry, flags);
  }
}
