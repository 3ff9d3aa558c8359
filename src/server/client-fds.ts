/**
 * The files clients hold and the fds that name them. Every open file description is one object
 * connection: the client's end is a socket whose inode names it in every process that inherits
 * the fd, so a client's fd table (/proc/<pid>/task/<tid>/fd) resolves to our Files through it.
 * Eventfds are the client's own: the server takes a duplicate (pidfd_getfd) to signal them.
 */
import * as fs from 'node:fs';
import type { File } from '../host/file.ts';
import { runSyscall } from '../host/syscall.ts';
import type { EventfdRef, FdResolver, HostFile } from '../host/task.ts';
import type { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { holdsSocket } from './client-identity.ts';
import { fdAddon } from './fd-addon.ts';
import { openHostFile } from './host-file.ts';
import type { WireCreds } from './protocol.ts';

/** An open file description: one object connection. */
export interface OpenObject {
  readonly id: number;
  readonly file: File;
  readonly path: string;
  readonly mode: number;
  /** st_ino of the client's end of the object connection: its identity in every process. */
  readonly ino: bigint;
  /** The file position read()/write() use (shared by dup'd fds, like f_pos). */
  pos: bigint;
  released: boolean;
  /** A write that bypassed the shim failed and was logged: later ones are not (a flood). */
  rawWriteFailed?: boolean;
  /** The opener's credentials (f_cred), for writes that arrive raw on the object connection. */
  readonly creds: WireCreds;
}

/**
 * An fd the shim reserved for a file an ioctl may create (RESERVE): an object connection with no
 * file yet, whose number the call's get_unused_fd_flags() returns. The id is the object id the
 * file gets when a call installs it.
 */
export interface ReservedFd {
  readonly id: number;
  readonly ino: bigint;
  /** The reserving process: only its calls may install a file here. */
  readonly pid: number;
  readonly creds: WireCreds;
  /** The open file once a call installed one (fd_install); its connection's EOF releases it. */
  object: OpenObject | undefined;
  dropped: boolean;
}

/** Fd resolvers kept, one per client thread, before they are all forgotten at once. */
const RESOLVERS_MAX = 4096;

export class ClientFiles {
  private readonly events: EventBus;
  /** By pid, then tid (numbers, not a string made per call). */
  private readonly resolvers = new Map<number, Map<number, FdResolver>>();
  private resolverCount = 0;
  private readonly objects = new Map<number, OpenObject>();
  private readonly byIno = new Map<bigint, OpenObject>();
  private readonly reservations = new Map<number, ReservedFd>();
  private nextObjectId = 1;
  /** The paths of the last objects released, oldest first (pathOf). */
  private readonly releasedPaths = new Map<number, string>();
  /** Releases that go on after the last put (File.releasing), by object id, until they end. */
  private readonly releasing = new Map<number, Promise<void>>();

  constructor(events: EventBus) {
    this.events = events;
  }

  /** A file a client opened, on the object connection whose client end has inode `ino`. */
  add(file: File, path: string, mode: number, ino: bigint, creds: WireCreds): OpenObject {
    const object: OpenObject = {
      id: this.nextObjectId++,
      file,
      path,
      mode,
      ino,
      pos: 0n,
      released: false,
      creds,
    };
    this.objects.set(object.id, object);
    this.byIno.set(object.ino, object);
    return object;
  }

  /**
   * Why `ino` cannot name a new object connection of `conn`'s process, or undefined if it can:
   * it must be a socket the process holds (its end of this connection) that no live object has
   * taken, or one client could make another's fds resolve to its own files.
   */
  unusableInode(
    conn: { readonly peer: { readonly pid: number } | undefined },
    ino: bigint,
    fd?: number,
  ): string | undefined {
    const taken = this.byIno.get(ino);
    if (taken !== undefined && !taken.released)
      return `names socket inode ${ino}, already an open file's`;
    for (const r of this.reservations.values()) {
      if (r.ino === ino) return `names socket inode ${ino}, already a reserved fd's`;
    }
    if (conn.peer !== undefined && !holdsSocket(conn.peer.pid, ino, fd))
      return `names socket inode ${ino}, which pid ${conn.peer.pid} does not hold`;
    return undefined;
  }

  /** RESERVE: a connection waiting for the file a later ioctl creates. */
  reserve(ino: bigint, creds: WireCreds): ReservedFd {
    const reserved: ReservedFd = {
      id: this.nextObjectId++,
      ino,
      pid: creds.pid,
      creds,
      object: undefined,
      dropped: false,
    };
    this.reservations.set(reserved.id, reserved);
    return reserved;
  }

  /** The reservation `id` of process `pid` that holds no file yet, if any. */
  reservation(id: number, pid: number): ReservedFd | undefined {
    const reserved = this.reservations.get(id);
    return reserved?.pid === pid && reserved.object === undefined ? reserved : undefined;
  }

  /** fd_install() on a reserved fd: the file (its reference) becomes that fd's open object. */
  install(reserved: ReservedFd, file: File, path: string, mode: number): OpenObject {
    if (reserved.object !== undefined || reserved.dropped) throw new Error('fd installed twice');
    const object: OpenObject = {
      id: reserved.id,
      file,
      path,
      mode,
      ino: reserved.ino,
      pos: 0n,
      released: false,
      creds: reserved.creds,
    };
    reserved.object = object;
    this.reservations.delete(reserved.id);
    this.objects.set(object.id, object);
    this.byIno.set(object.ino, object);
    return object;
  }

  /** The reserved connection closed: its file, if a call installed one, is released. */
  dropReservation(reserved: ReservedFd): void {
    reserved.dropped = true;
    this.reservations.delete(reserved.id);
    if (reserved.object !== undefined) this.release(reserved.object);
  }

  get(id: number): OpenObject | undefined {
    return this.objects.get(id);
  }

  /** The id of the live object whose file is `file` (what fget found, for a recording). */
  idOf(file: File): number | undefined {
    for (const object of this.objects.values()) if (object.file === file) return object.id;
    return undefined;
  }

  /**
   * For the trace: the path of an object, live or among the last released (a close's EOF can
   * overtake the shim's CLOSE that names it).
   */
  pathOf(id: number): string | undefined {
    return this.objects.get(id)?.path ?? this.releasedPaths.get(id);
  }

  /** The object whose connection's client end has inode `ino` (an fd inherited across exec). */
  byInode(ino: bigint): OpenObject | undefined {
    return this.byIno.get(ino);
  }

  /** The object connection closed: the last copy of the fd is gone, the file is put. */
  release(object: OpenObject): void {
    if (object.released) return;
    object.released = true;
    this.objects.delete(object.id);
    this.releasedPaths.set(object.id, object.path);
    if (this.releasedPaths.size > 64) {
      this.releasedPaths.delete(this.releasedPaths.keys().next().value!);
    }
    if (this.byIno.get(object.ino) === object) this.byIno.delete(object.ino);
    runSyscall(this.events, `release of ${object.path}`, undefined, () => {
      object.file.put();
      return 0;
    });
    const releasing = object.file.releasing;
    if (releasing === undefined) return;
    this.releasing.set(object.id, releasing);
    const forget = (): void => {
      this.releasing.delete(object.id);
    };
    void releasing.then(forget, forget);
  }

  /** The release of object `id` while it goes on (close() returns after it). */
  releaseOf(id: number): Promise<void> | undefined {
    return this.releasing.get(id);
  }

  /**
   * The fd table of thread `tid` of process `pid`, as fget() and eventfd_ctx_fdget() see it. It
   * depends on nothing but the two numbers (every lookup reads /proc at the time it is made), so
   * one is kept per thread rather than six closures made per call.
   */
  resolver(pid: number, tid: number): FdResolver {
    let threads = this.resolvers.get(pid);
    let fds = threads?.get(tid);
    if (fds === undefined) {
      // Threads that are gone leave theirs behind: forget them all now and then.
      if (this.resolverCount >= RESOLVERS_MAX) {
        this.resolvers.clear();
        this.resolverCount = 0;
        threads = undefined;
      }
      if (threads === undefined) {
        threads = new Map();
        this.resolvers.set(pid, threads);
      }
      fds = this.newResolver(pid, tid);
      threads.set(tid, fds);
      this.resolverCount++;
    }
    return fds;
  }

  private newResolver(pid: number, tid: number): FdResolver {
    const dir = `/proc/${pid}/task/${tid}/fd/`;
    return {
      fileOf: (fd: number): File | undefined => {
        if (!Number.isInteger(fd) || fd < 0) return undefined;
        let link: string;
        try {
          link = fs.readlinkSync(`${dir}${fd}`);
        } catch {
          return undefined;
        }
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m === null) return undefined;
        return this.byIno.get(BigInt(m[1]!))?.file;
      },
      isOpen: (fd: number): boolean => {
        if (!Number.isInteger(fd) || fd < 0) return false;
        try {
          fs.lstatSync(`${dir}${fd}`);
          return true;
        } catch {
          return false;
        }
      },
      eventfd: (fd: number): EventfdRef | number => this.eventfd(pid, `${dir}${fd}`, fd),
      hostFile: (fd: number): HostFile | number =>
        !Number.isInteger(fd) || fd < 0 ? -Errno.EBADF : openHostFile(`${dir}${fd}`),
      // Only an ioctl of a command that creates files has an fd reserved (ops/ioctl.ts).
      getUnusedFd: (): number => -Errno.EMFILE,
      fdInstall: (): void => {
        throw new Error('fd_install without a reserved fd');
      },
    };
  }

  /**
   * eventfd_ctx_fdget() on a client's fd: the server takes its own duplicate (pidfd_getfd, via
   * the native addon), so it can signal the eventfd later, whatever the client does with its fd.
   */
  private eventfd(pid: number, link: string, fd: number): EventfdRef | number {
    if (!Number.isInteger(fd) || fd < 0) return -Errno.EBADF;
    let target: string;
    try {
      target = fs.readlinkSync(link);
    } catch {
      return -Errno.EBADF;
    }
    if (target !== 'anon_inode:[eventfd]') return -Errno.EINVAL;
    const addon = fdAddon();
    const ours = addon === undefined ? -Errno.ENOSYS : addon.getfd(pid, fd);
    if (addon === undefined || ours < 0) {
      this.events.log(
        'warn',
        `cannot take eventfd ${fd} of pid ${pid} (${addon === undefined ? 'fd addon not built' : `errno ${-ours}`}): failing the call with EINVAL`,
      );
      return -Errno.EINVAL;
    }
    let open = true;
    return {
      signal: (): void => {
        // Never blocks: at the counter's maximum the signal is lost and the counter stays full,
        // as the kernel's eventfd_signal() saturates (the file may be the client's blocking one).
        if (open) addon.signal(ours);
      },
      release: (): void => {
        if (!open) return;
        open = false;
        fs.closeSync(ours);
      },
    };
  }
}
