/**
 * The path walk (namei) over the emulated tree, and stat/open on top of it, as fs/namei.c and
 * fs/open.c do them: every caller that names a file by path (the library's SimProcess, the shim's
 * server) goes through here, so both see one tree.
 *
 * The tree is made of devfs's character-device nodes, sysfs's attributes and symlinks, the files
 * the kernel makes up on lookup (procfs per-task files, debugfs knobs), and the directories all of
 * those imply: a directory exists while something lives below it, as in sysfs and devtmpfs.
 */
import { shouldFail } from '../fault/fault.ts';
import { Errno } from '../uapi/errno.ts';
import type { CharDevNode, DevFs } from './devfs.ts';
import { File, type FileOperations, type OpenFiles } from './file.ts';
import { accessModeOfOpen, type InodeOwner, inodePermission, ROOT_OWNER } from './permission.ts';
import { openAttr, type SysAttr, type SysFs } from './sysfs.ts';
import type { Task } from './task.ts';

/** What one path names. */
export type Inode =
  | { readonly kind: 'dir' }
  | { readonly kind: 'chr'; readonly node: CharDevNode; readonly owner: InodeOwner }
  | { readonly kind: 'attr'; readonly attr: SysAttr }
  | { readonly kind: 'link'; readonly target: string }
  /** A procfs file with its own file operations (pagemap). */
  | {
      readonly kind: 'proc';
      readonly mode: number;
      readonly owner: InodeOwner;
      readonly open: (task: Task, flags: number) => File | number;
    };

/** Files and directories the kernel makes up when they are looked up (per-task procfs files). */
export type DynamicLookup = (task: Task, path: string) => Inode | undefined;

/** What stat(2) reports of an emulated file. */
export interface Stat {
  /** st_mode: type and permission bits. */
  readonly mode: number;
  /** st_uid and st_gid. */
  readonly owner: InodeOwner;
  readonly rdev: { readonly major: number; readonly minor: number };
}

/** A walk's result: the path with every symlink resolved, and what it names. */
export interface Resolved {
  readonly path: string;
  readonly inode: Inode;
}

/** A file open(2) made: the File, what it is, and the path it was found at (links resolved). */
export interface OpenedFile {
  readonly file: File;
  readonly stat: Stat;
  readonly path: string;
}

/** Symlinks one walk follows before ELOOP (the kernel's MAXSYMLINKS). */
export const MAXSYMLINKS = 40;

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

export const O_ACCMODE = 0o3;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;

const NO_RDEV = { major: 0, minor: 0 };

/** An open directory: readdir is the front end's business; read(2) fails as generic_read_dir. */
const dirFops: FileOperations = {
  name: 'dir',
  read: () => -Errno.EISDIR,
  write: () => -Errno.EISDIR,
  release() {},
};

/** Whether a File is an open directory (the server hands those to the shim's testbed). */
export function isDirectoryFile(file: File): boolean {
  return file.fops === dirFops;
}

/** stat of an inode. */
export function inodeStat(inode: Inode): Stat {
  switch (inode.kind) {
    case 'dir':
      return { mode: S_IFDIR | 0o755, owner: ROOT_OWNER, rdev: NO_RDEV };
    case 'chr':
      return { mode: inode.node.mode, owner: inode.owner, rdev: inode.node.rdev };
    case 'attr':
      return {
        mode: S_IFREG | inode.attr.mode,
        owner: inode.attr.owner ?? ROOT_OWNER,
        rdev: NO_RDEV,
      };
    case 'link':
      return { mode: S_IFLNK | 0o777, owner: ROOT_OWNER, rdev: NO_RDEV };
    case 'proc':
      return { mode: S_IFREG | inode.mode, owner: inode.owner, rdev: NO_RDEV };
  }
}

export class Vfs {
  private readonly devfs: DevFs;
  private readonly sysfs: SysFs;
  private readonly openFiles: OpenFiles;
  private readonly dynamic: DynamicLookup;
  /** Every directory that holds a devfs node, for devfs generation `devDirsOf`. */
  private devDirs = new Set<string>();
  private devDirsOf = -1;
  /** Every directory that holds a sysfs entry (all under /sys), for `sysDirsOf`. */
  private sysDirs = new Set<string>();
  private sysDirsOf = -1;

  constructor(devfs: DevFs, sysfs: SysFs, openFiles: OpenFiles, dynamic: DynamicLookup) {
    this.devfs = devfs;
    this.sysfs = sysfs;
    this.openFiles = openFiles;
    this.dynamic = dynamic;
  }

  /** What the exact, already resolved path names (no walk), or undefined. */
  lookup(task: Task, path: string): Inode | undefined {
    if (path === '/') return { kind: 'dir' };
    const node = this.devfs.lookup(path);
    if (node !== undefined) return { kind: 'chr', node, owner: this.devfs.ownerOf(path) };
    const entry = this.sysfs.lookup(path);
    if (entry?.kind === 'attr') return { kind: 'attr', attr: entry };
    if (entry?.kind === 'link') return { kind: 'link', target: entry.target };
    const made = this.dynamic(task, path);
    if (made !== undefined) return made;
    return this.isImpliedDir(path) ? { kind: 'dir' } : undefined;
  }

  /**
   * path_lookupat(): walks `path` from the root, following symlinks in every component and in
   * the last one when `followLast` (or when the path ends in "/", which also demands a
   * directory). ENOENT for a missing component, ENOTDIR for a component below a non-directory,
   * ELOOP after MAXSYMLINKS links.
   */
  namei(task: Task, path: string, followLast: boolean): Resolved | number {
    if (path === '') return -Errno.ENOENT;
    const trailingSlash = path.endsWith('/');
    const follow = followLast || trailingSlash;
    let parts = path.split('/').filter((p) => p !== '');
    const done: string[] = [];
    let inode: Inode = { kind: 'dir' };
    let links = 0;
    while (parts.length > 0) {
      const part = parts.shift()!;
      const last = parts.length === 0;
      if (part === '.' || part === '..') {
        if (part === '..') done.pop();
        inode = { kind: 'dir' };
        continue;
      }
      const here = `/${[...done, part].join('/')}`;
      const found = this.lookup(task, here);
      if (found === undefined) return -Errno.ENOENT;
      if (found.kind === 'link' && (!last || follow)) {
        if (++links > MAXSYMLINKS) return -Errno.ELOOP;
        if (found.target.startsWith('/')) done.length = 0;
        parts = [...found.target.split('/').filter((p) => p !== ''), ...parts];
        // A link to "/" or "." leaves nothing more to walk: what it names is a directory.
        inode = { kind: 'dir' };
        continue;
      }
      if (!last && found.kind !== 'dir') return -Errno.ENOTDIR;
      done.push(part);
      inode = found;
    }
    if (trailingSlash && inode.kind !== 'dir') return -Errno.ENOTDIR;
    return { path: `/${done.join('/')}`, inode };
  }

  /** stat(2) (followLast) or lstat(2). */
  stat(task: Task, path: string, followLast = true): Stat | number {
    const resolved = this.namei(task, path, followLast);
    return typeof resolved === 'number' ? resolved : inodeStat(resolved.inode);
  }

  /**
   * do_filp_open(): the walk, then the open-time checks of do_open() and may_open(), then the
   * driver's open. A directory opens read-only as a directory File. Before any lookup the VFS
   * reaches three injection points (docs/fault-injection.md): getname()'s names_cache
   * allocation and its strncpy_from_user(), then path_openat()'s alloc_empty_file().
   */
  open(task: Task, path: string, flags: number): OpenedFile | number {
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    if (shouldFail('copy-from-user')) return -Errno.EFAULT;
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    const creat = (flags & O_CREAT) !== 0;
    const exclusive = creat && (flags & O_EXCL) !== 0;
    // O_CREAT | O_EXCL never follows a trailing link: the name itself must not exist.
    const follow = (flags & O_NOFOLLOW) === 0 && !exclusive;
    const resolved = this.namei(task, path, follow);
    if (typeof resolved === 'number') return resolved;
    const { inode } = resolved;
    if (exclusive) return -Errno.EEXIST;
    if (inode.kind === 'link') return -Errno.ELOOP;
    const access = flags & O_ACCMODE;
    if (inode.kind === 'dir') {
      if (creat || access === O_WRONLY || access === O_RDWR) return -Errno.EISDIR;
      const file = new File('directory', dirFops, resolved.path, NO_RDEV);
      this.openFiles.add(file);
      return { file, stat: inodeStat(inode), path: resolved.path };
    }
    if ((flags & O_DIRECTORY) !== 0) return -Errno.ENOTDIR;
    // may_open(): the caller's fsuid, fsgid and groups against the inode's owner, group and mode.
    const stat = inodeStat(inode);
    const denied = inodePermission(task.creds, stat.owner, stat.mode, accessModeOfOpen(flags));
    if (denied < 0) return denied;
    let file: File | number;
    if (inode.kind === 'chr') file = inode.node.open(task, flags);
    else if (inode.kind === 'proc') file = inode.open(task, flags);
    else file = openAttr(task, inode.attr, flags);
    if (typeof file === 'number') return file;
    this.openFiles.add(file);
    return { file, stat, path: resolved.path };
  }

  /**
   * Whether some devfs node or sysfs entry lies below `path`. The two sets are rebuilt apart,
   * each when its tree changed: a fresh kernel's first walk of `/dev` need not list the whole
   * of sysfs, and no sysfs entry is under `/dev` (SysFs.add refuses one).
   */
  private isImpliedDir(path: string): boolean {
    if (this.devDirsOf !== this.devfs.generation) {
      this.devDirs = parentDirs(this.devfs.paths());
      this.devDirsOf = this.devfs.generation;
    }
    if (this.devDirs.has(path)) return true;
    if (path === '/dev' || path.startsWith('/dev/')) return false;
    if (this.sysDirsOf !== this.sysfs.generation) {
      this.sysDirs = parentDirs(this.sysfs.paths());
      this.sysDirsOf = this.sysfs.generation;
    }
    return this.sysDirs.has(path);
  }
}

/** Every directory above one of `paths`. */
function parentDirs(paths: Iterable<string>): Set<string> {
  const dirs = new Set<string>();
  for (const path of paths) {
    for (let i = path.lastIndexOf('/'); i > 0; i = path.lastIndexOf('/', i - 1)) {
      const dir = path.slice(0, i);
      if (dirs.has(dir)) break;
      dirs.add(dir);
    }
  }
  return dirs;
}
