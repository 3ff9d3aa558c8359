/**
 * A simulated process for the in-process library API: its own fd table, credentials and
 * SimulatedMemory, calling the emulated kernel exactly as the server does for a real process.
 * Struct arguments are built in its memory, so tests exercise the same user-copy paths as C.
 */
import type { FailNth } from '../fault/fault.ts';
import { Errno } from '../uapi/errno.ts';
import {
  type Decoded,
  decodeStruct,
  type FieldTable,
  type StructSpec,
  writeFields,
} from '../uapi/struct.ts';
import type { KernelCore } from './core.ts';
import { CAP_FULL_SET, type Credentials, type NamespacedCaps } from './credentials.ts';
import { type BlockedCall, File, type FileOperations } from './file.ts';
import { ROOT_OWNER } from './permission.ts';
import { SimulatedMemory } from './sim-memory.ts';
import { runSyscall, tracedIoctl } from './syscall.ts';
import type { Task } from './task.ts';
import type { Stat } from './vfs.ts';

let nextPid = 100000;

/** The counter of a simulated eventfd. */
class SimEventfd {
  count = 0n;
}

const simEventfdFops: FileOperations = { name: 'eventfd', release() {} };

export interface SimProcessOptions {
  /** Real, effective and filesystem uid; default 0. */
  readonly uid?: number;
  /** Real, effective and filesystem gid; default 0. */
  readonly gid?: number;
  /** Supplementary groups; default none. */
  readonly groups?: readonly number[];
  /** Effective capabilities; default all (a root process). */
  readonly capEff?: bigint;
  /**
   * The user namespace the process lives in: 'initial' (default), or 'other', as after
   * `unshare -r`, where its capabilities count for nothing in the kernel.
   */
  readonly userNs?: 'initial' | 'other';
  /** Capabilities the emulator grants whatever the above (`exec --cap`); default none. */
  readonly grantedCaps?: bigint;
  /** RLIMIT_MEMLOCK in bytes; default 8 MiB like a common distro default. */
  readonly memlockLimit?: bigint;
}

/** The command name of every in-process task. */
const inProcessComm = (): string => 'node';

export class SimProcess {
  readonly kernel: KernelCore;
  readonly pid: number;
  readonly memory: SimulatedMemory;
  uid: number;
  gid: number;
  groups: readonly number[];
  capEff: bigint;
  userNs: 'initial' | 'other';
  grantedCaps: bigint;
  memlockLimit: bigint;
  readonly failNth: FailNth;
  private readonly fds = new Map<number, File>();
  /** Numbers getUnusedFd() gave during the current call, not yet installed. */
  private readonly reservedFds = new Set<number>();
  /** What each file opened by path is (fstat), shared by every fd and process that holds it. */
  private static readonly stats = new WeakMap<File, Stat>();
  private exited = false;
  /** The filesystem ids as they are when asked (made once, reads the fields live). */
  private readonly fsIds = () => ({ fsuid: this.uid, fsgid: this.gid, groups: this.groups });
  /** The fd table as a call sees it: closures over this process only, made once. */
  private readonly taskFds: Task['fds'] = {
    fileOf: (fd) => this.fds.get(fd),
    isOpen: (fd) => this.fds.has(fd),
    eventfd: (fd) => {
      const file = this.fds.get(fd);
      if (file === undefined) return -Errno.EBADF;
      if (!(file.privateData instanceof SimEventfd)) return -Errno.EINVAL;
      const counter = file.privateData;
      file.get();
      return { signal: () => counter.count++, release: () => file.put() };
    },
    getUnusedFd: () => {
      const fd = this.lowestFreeFd();
      this.reservedFds.add(fd);
      return fd;
    },
    fdInstall: (fd, file) => {
      if (!this.reservedFds.delete(fd)) throw new Error(`fd ${fd} was not reserved`);
      this.fds.set(fd, file);
      this.kernel.openFiles.add(file);
    },
  };

  constructor(kernel: KernelCore, options: SimProcessOptions = {}, memory?: SimulatedMemory) {
    this.kernel = kernel;
    this.pid = nextPid++;
    this.memory = memory ?? new SimulatedMemory();
    this.uid = options.uid ?? 0;
    this.gid = options.gid ?? 0;
    this.groups = options.groups ?? [];
    this.capEff = options.capEff ?? CAP_FULL_SET;
    this.userNs = options.userNs ?? 'initial';
    this.grantedCaps = options.grantedCaps ?? 0n;
    this.memlockLimit = options.memlockLimit ?? 8n << 20n;
    this.failNth = kernel.failNth(this.pid, this.pid);
  }

  /** Drops (or restores) one capability, like capset(). */
  setCapability(cap: number, on: boolean): void {
    const bit = 1n << BigInt(cap);
    this.capEff = on ? this.capEff | bit : this.capEff & ~bit;
  }

  /** The Task a call runs as: credentials of this moment. */
  task(): Task {
    const caps: NamespacedCaps =
      this.userNs === 'initial'
        ? { userNs: 'initial', capEff: this.capEff }
        : { userNs: 'other', capEff: 0n };
    const creds: Credentials = {
      ...caps,
      pid: this.pid,
      tid: this.pid,
      uid: this.uid,
      grantedCaps: this.grantedCaps,
      memlockLimit: this.memlockLimit,
      fsIds: this.fsIds,
    };
    return {
      creds,
      memory: this.memory,
      // An in-process task is a thread of the emulator's own process.
      comm: inProcessComm,
      fds: this.taskFds,
    };
  }

  private lowestFreeFd(): number {
    let fd = 3;
    while (this.fds.has(fd) || this.reservedFds.has(fd)) fd++;
    return fd;
  }

  private call<T = number>(what: string, fn: () => T | number): T | number {
    if (this.exited) throw new Error(`process ${this.pid} has exited`);
    return runSyscall(this.kernel.events, what, this.failNth, fn);
  }

  /** open(2): an fd, or a negative errno. */
  open(path: string, flags = 2 /* O_RDWR */): number {
    return this.call(`open(${path})`, () => {
      const opened = this.kernel.vfs.open(this.task(), path, flags);
      if (typeof opened === 'number') return opened;
      const fd = this.lowestFreeFd();
      this.fds.set(fd, opened.file);
      SimProcess.stats.set(opened.file, opened.stat);
      return fd;
    });
  }

  /** stat(2): the type, mode and rdev of what path names, or a negative errno. */
  stat(path: string): Stat | number {
    return this.call(`stat(${path})`, () => this.kernel.vfs.stat(this.task(), path, true));
  }

  /** lstat(2): like stat, but a final symlink is reported itself. */
  lstat(path: string): Stat | number {
    return this.call(`lstat(${path})`, () => this.kernel.vfs.stat(this.task(), path, false));
  }

  /** fstat(2) of an fd: what its file was when opened (an eventfd: an anonymous inode). */
  fstat(fd: number): Stat | number {
    const file = this.fds.get(fd);
    if (file === undefined) return -Errno.EBADF;
    return SimProcess.stats.get(file) ?? { mode: 0o600, owner: ROOT_OWNER, rdev: file.rdev };
  }

  /** ioctl(2) as the raw syscall: >= 0 on success, a negative errno on failure. */
  ioctl(fd: number, cmd: number, arg: bigint | number = 0n): number {
    const file = this.fds.get(fd);
    if (file === undefined) return -Errno.EBADF;
    if (this.exited) throw new Error(`process ${this.pid} has exited`);
    const call = { pid: this.pid, tid: this.pid, fd };
    const ret = tracedIoctl(
      this.kernel.events,
      call,
      file,
      this.task(),
      cmd,
      BigInt(arg),
      this.failNth,
    );
    this.reservedFds.clear(); // put_unused_fd() of any number the call took and did not install
    return ret;
  }

  /** read(2) of a stream (a nonseekable file, such as an event queue): the bytes, or an errno. */
  read(fd: number, length: number): Uint8Array | number {
    const file = this.fds.get(fd);
    if (file === undefined) return -Errno.EBADF;
    if (!file.fops.nonseekable) throw new Error(`read(${fd}) of a seekable file: use pread()`);
    return this.pread(fd, length, 0n, true);
  }

  /** write(2) of a stream (a nonseekable file): bytes written, or a negative errno. */
  write(fd: number, data: Uint8Array): number {
    const file = this.fds.get(fd);
    if (file === undefined) return -Errno.EBADF;
    if (!file.fops.nonseekable) throw new Error(`write(${fd}) of a seekable file: use pwrite()`);
    const rc = this.startWrite(fd, data, 0n, true);
    if (typeof rc !== 'number') throw new Error(`write(${fd}) blocks`);
    return rc;
  }

  /** poll(2) of one fd: its ready mask now (POLLNVAL for a closed fd). */
  poll(fd: number): number {
    const file = this.fds.get(fd);
    if (file === undefined) return 0x20;
    const poll = file.fops.poll;
    if (poll === undefined) return 0x145; // DEFAULT_POLLMASK
    return this.call(`poll(${fd})`, () => poll.call(file.fops, file, this.task()));
  }

  /** pread(2): the bytes read, or a negative errno (ESPIPE for a stream). */
  pread(fd: number, length: number, pos: bigint, stream = false): Uint8Array | number {
    const file = this.fds.get(fd);
    if (file === undefined) return -Errno.EBADF;
    if (file.fops.nonseekable && !stream) return -Errno.ESPIPE;
    const read = file.fops.read;
    if (read === undefined) return -Errno.EINVAL;
    let out: Uint8Array | number = -Errno.EIO;
    const rc = this.call(`pread(${fd})`, () => {
      out = read(file, this.task(), length, pos);
      return typeof out === 'number' ? out : out.length;
    });
    return rc < 0 ? rc : out;
  }

  /** pwrite(2): bytes written, or a negative errno. Throws for a write that would block. */
  pwrite(fd: number, data: Uint8Array, pos: bigint): number {
    const rc = this.startWrite(fd, data, pos);
    if (typeof rc !== 'number') throw new Error(`pwrite(${fd}) blocks: use pwriteBlocking()`);
    return rc;
  }

  /** pwrite(2) that may block (an unbind waiting for the device's users): settles when it returns. */
  async pwriteBlocking(fd: number, data: Uint8Array, pos: bigint): Promise<number> {
    const rc = this.startWrite(fd, data, pos);
    return typeof rc === 'number' ? rc : rc.blocked;
  }

  private startWrite(
    fd: number,
    data: Uint8Array,
    pos: bigint,
    stream = false,
  ): number | BlockedCall {
    const file = this.fds.get(fd);
    if (file === undefined) return -Errno.EBADF;
    if (file.fops.nonseekable && !stream) return -Errno.ESPIPE;
    const write = file.fops.write;
    if (write === undefined) return -Errno.EINVAL;
    if (this.exited) throw new Error(`process ${this.pid} has exited`);
    return runSyscall(this.kernel.events, `pwrite(${fd})`, this.failNth, () =>
      write(file, this.task(), data, pos),
    );
  }

  close(fd: number): number {
    const file = this.fds.get(fd);
    if (file === undefined) return -Errno.EBADF;
    this.fds.delete(fd);
    return this.call(`close(${fd})`, () => {
      file.put();
      return 0;
    });
  }

  dup(fd: number): number {
    const file = this.fds.get(fd);
    if (file === undefined) return -Errno.EBADF;
    const nfd = this.lowestFreeFd();
    this.fds.set(nfd, file.get());
    return nfd;
  }

  /** fork(): the child shares every open file and gets a copy of the memory. */
  fork(): SimProcess {
    const child = new SimProcess(
      this.kernel,
      {
        uid: this.uid,
        gid: this.gid,
        groups: this.groups,
        capEff: this.capEff,
        userNs: this.userNs,
        grantedCaps: this.grantedCaps,
        memlockLimit: this.memlockLimit,
      },
      this.memory.clone(),
    );
    for (const [fd, file] of this.fds) child.fds.set(fd, file.get());
    return child;
  }

  /** exit(): every fd is closed, as the kernel does for a dying process, and its mm goes. */
  exit(): void {
    for (const fd of [...this.fds.keys()]) this.close(fd);
    this.kernel.pagemap?.release(this.memory.mm);
    this.exited = true;
  }

  /**
   * Builds `value` as a struct of `size` bytes (default: the kernel's size, with size/argsz set)
   * in this process's memory, issues the ioctl with its address, and decodes what came back.
   */
  ioctlStruct<F extends FieldTable>(
    fd: number,
    cmd: number,
    spec: StructSpec<F>,
    value: Partial<Decoded<F>>,
    size = spec.size,
  ): { ret: number; out: Decoded<F> } {
    const bytes = new Uint8Array(Math.max(size, spec.size));
    const sizeField = 'size' in spec.fields ? 'size' : 'argsz' in spec.fields ? 'argsz' : undefined;
    writeFields(spec, bytes, sizeField === undefined ? value : { [sizeField]: size, ...value });
    const va = this.scratchArea();
    this.memory.write(va, bytes.subarray(0, size));
    const ret = this.ioctl(fd, cmd, va);
    const back = new Uint8Array(Math.max(size, spec.size));
    back.set(this.memory.read(va, size)!);
    return { ret, out: decodeStruct(spec, back) };
  }

  private scratch: bigint | undefined;

  /** A page of this process's memory that ioctlStruct() builds its arguments in. */
  scratchArea(): bigint {
    if (this.scratch === undefined) this.scratch = this.memory.mmap(65536n);
    return this.scratch;
  }

  /** eventfd(0, 0): a counter the emulator's interrupts add to; see eventfdCount(). */
  eventfd(): number {
    const fd = this.lowestFreeFd();
    const file = new File('eventfd', simEventfdFops, new SimEventfd(), { major: 0, minor: 0 });
    this.kernel.openFiles.add(file);
    this.fds.set(fd, file);
    return fd;
  }

  /** read() of an eventfd: the count so far, reset to 0. */
  eventfdRead(fd: number): bigint {
    const file = this.fds.get(fd);
    if (!(file?.privateData instanceof SimEventfd)) throw new Error(`fd ${fd} is not an eventfd`);
    const n = file.privateData.count;
    file.privateData.count = 0n;
    return n;
  }

  /** Allocates memory in this process (mmap) and optionally fills it. */
  alloc(length: bigint | number, fill?: Uint8Array): bigint {
    const va = this.memory.mmap(BigInt(length));
    if (fill !== undefined) this.memory.write(va, fill);
    return va;
  }
}
