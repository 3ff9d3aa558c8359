/**
 * The testbed: a real directory tree that mirrors the emulated /dev, /sys and /proc files, so that
 * the shim can serve directory listings, symlinks, realpath() and chdir() with the real kernel's
 * own calls (opendir/readdir/readlink/realpath on `<root>/sys/bus/pci/devices`...). It holds real
 * directories, real relative symlinks with the sysfs targets, and regular files standing for
 * attributes and device nodes: reading or writing those still goes to the server (live values),
 * and stat() still asks the server for the type, mode and rdev. Each such file holds only its
 * node's owner and group ("uid gid\n"), which the shim's stat() and access() read (the wire's
 * STAT reply has none). The tree is brought up to date on SYNC, which the shim sends before every
 * use, when the kernel's devfs or sysfs changed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Kernel } from '../boot/kernel.ts';
import { type InodeOwner, ROOT_OWNER } from '../host/permission.ts';

type Node =
  | { readonly kind: 'dir' }
  | { readonly kind: 'file'; readonly owner: InodeOwner }
  | { readonly kind: 'link'; readonly target: string };

function same(a: Node, b: Node): boolean {
  if (a.kind === 'link') return b.kind === 'link' && a.target === b.target;
  if (a.kind === 'file') {
    return b.kind === 'file' && a.owner.uid === b.owner.uid && a.owner.gid === b.owner.gid;
  }
  return a.kind === b.kind;
}

/** Memory file systems a user's private directories can go in, best first. */
const MEMORY_DIRS = ['XDG_RUNTIME_DIR', '/dev/shm'] as const;

/**
 * Where the emulator's private directories (its socket, the testbed) go: TMPDIR when the user set
 * it, else a memory file system, the user's runtime directory (XDG_RUNTIME_DIR) or /dev/shm,
 * else the system's temporary directory. Each run makes and removes the testbed's few hundred
 * files, which on a disk file system (ext4 looking for a free inode among recently deleted ones)
 * costs more system time than the rest of a short run.
 */
export function scratchBase(env: NodeJS.ProcessEnv = process.env): string {
  if ((env.TMPDIR ?? '') !== '') return os.tmpdir();
  for (const name of MEMORY_DIRS) {
    const dir = name.startsWith('/') ? name : env[name];
    if (dir === undefined || !path.isAbsolute(dir)) continue;
    try {
      if (!fs.statSync(dir).isDirectory()) continue;
      fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
      return dir;
    } catch {}
  }
  return os.tmpdir();
}

export class Testbed {
  /** The tree's root, symlinks resolved (the shim compares paths against it). */
  readonly root: string;
  private readonly kernel: Kernel;
  /** What is on disk now, by emulated path. */
  private current = new Map<string, Node>();
  private synced: string | undefined;

  /** Makes the tree in dir (created, must not exist), or in a new private temporary directory. */
  constructor(kernel: Kernel, dir?: string) {
    this.kernel = kernel;
    if (dir === undefined) dir = fs.mkdtempSync(path.join(scratchBase(), 'iommufd-emu-testbed-'));
    else fs.mkdirSync(dir, { mode: 0o755 });
    this.root = fs.realpathSync(dir);
    this.sync();
  }

  /** Brings the tree up to date if devfs or sysfs changed since the last sync. */
  sync(): void {
    const generation = `${this.kernel.devfs.generation}/${this.kernel.sysfs.generation}`;
    if (generation === this.synced) return;
    this.synced = generation;
    const wanted = this.wanted();
    const stale = [...this.current].filter(([p, node]) => {
      const want = wanted.get(p);
      return want === undefined || !same(want, node);
    });
    // Children before their directories.
    stale.sort(([a], [b]) => b.length - a.length);
    for (const [p, node] of stale) {
      const real = this.real(p);
      try {
        if (node.kind === 'dir') fs.rmdirSync(real);
        else fs.unlinkSync(real);
      } catch (err) {
        this.warn(`removing ${real}`, err);
      }
      this.current.delete(p);
    }
    // Directories before their children.
    const missing = [...wanted]
      .filter(([p]) => !this.current.has(p))
      .sort(([a], [b]) => (a < b ? -1 : 1));
    for (const [p, node] of missing) {
      const real = this.real(p);
      try {
        if (node.kind === 'dir') fs.mkdirSync(real, { mode: 0o755 });
        else if (node.kind === 'link') fs.symlinkSync(node.target, real);
        else fs.writeFileSync(real, `${node.owner.uid} ${node.owner.gid}\n`, { mode: 0o644 });
        this.current.set(p, node);
      } catch (err) {
        this.warn(`creating ${real}`, err);
      }
    }
  }

  /** Removes the tree. */
  remove(): void {
    fs.rmSync(this.root, { recursive: true, force: true });
    this.current.clear();
    this.synced = undefined;
  }

  private real(p: string): string {
    return `${this.root}${p}`;
  }

  /** The tree the kernel's files imply: every file and link, and every directory above them. */
  private wanted(): Map<string, Node> {
    const out = new Map<string, Node>();
    const addDirs = (p: string): void => {
      for (let d = path.posix.dirname(p); d !== '/' && !out.has(d); d = path.posix.dirname(d)) {
        out.set(d, { kind: 'dir' });
      }
    };
    const add = (p: string, node: Node): void => {
      out.set(p, node);
      addDirs(p);
    };
    for (const p of this.kernel.devfs.paths()) {
      add(p, { kind: 'file', owner: this.kernel.devfs.ownerOf(p) });
    }
    for (const entry of this.kernel.sysfs.list()) {
      add(
        entry.path,
        entry.kind === 'link'
          ? { kind: 'link', target: entry.target }
          : { kind: 'file', owner: entry.owner ?? ROOT_OWNER },
      );
    }
    for (const p of this.kernel.debugfsFiles()) add(p, { kind: 'file', owner: ROOT_OWNER });
    return out;
  }

  private warn(what: string, err: unknown): void {
    this.kernel.events.log('warn', `testbed: ${what}: ${(err as Error).message}`);
  }
}
