/**
 * The credentials of a real client thread as the emulated kernel sees them.
 *
 * The shim reports what the thread sees of itself (getuid(), capget()). Inside a user namespace
 * of its own those are namespaced: after `unshare -r` the thread is uid 0 with a full effective
 * set. The kernel's capable() asks about the initial user namespace only, and the emulated
 * kernel's initial user namespace is the one the emulator runs in. So the server decides, not the
 * shim (which cannot know the emulator's namespace): it compares the caller's /proc/<pid>/ns/user
 * with its own /proc/self/ns/user in every call that asks (capable(), the uid), when it first
 * asks, as a process may unshare between two calls (one
 * namespace per process: the kernel refuses a new or another user namespace to a multithreaded
 * one). A caller in any other namespace brings no capability, and its uid is the one the
 * emulator's namespace sees (the Uid: line of /proc/<pid>/status, read from outside).
 *
 * Capabilities the emulator was told to grant (`exec --cap`, `serve --cap`) are added apart, and
 * each client program is named once in the trace with what it was granted.
 */
import * as fs from 'node:fs';
import {
  type Credentials,
  capSetNames,
  type FsIds,
  type NamespacedCaps,
} from '../host/credentials.ts';
import type { EventBus } from '../trace/events.ts';
import { memlockLimitOf } from './client-identity.ts';
import type { WireCreds } from './protocol.ts';

/** The uid (and gid) a task gets when its ids cannot be read (the kernel's overflowuid). */
const OVERFLOW_UID = 65534;
/** Programs whose first call was traced; forgotten all at once beyond this many. */
const ANNOUNCED_MAX = 4096;

/** The identity of a user namespace ("user:[4026531837]"), or undefined if it cannot be read. */
function userNamespaceOf(path: string): string | undefined {
  try {
    return fs.readlinkSync(path);
  } catch {
    return undefined;
  }
}

/**
 * The filesystem ids of a thread from its /proc status file (the fourth field of `Uid:` and
 * `Gid:`, and `Groups:`), as the reader's namespace maps them; undefined if it cannot be read.
 */
function fsIdsOf(statusPath: string): FsIds | undefined {
  let text: string;
  try {
    text = fs.readFileSync(statusPath, 'utf8');
  } catch {
    return undefined;
  }
  const uid = /^Uid:\s+\d+\s+\d+\s+\d+\s+(\d+)/m.exec(text);
  const gid = /^Gid:\s+\d+\s+\d+\s+\d+\s+(\d+)/m.exec(text);
  const groups = /^Groups:[ \t]*([\d \t]*)$/m.exec(text);
  if (uid === null || gid === null) return undefined;
  return {
    fsuid: Number(uid[1]),
    fsgid: Number(gid[1]),
    groups: (groups?.[1] ?? '')
      .split(/\s+/)
      .filter((g) => g !== '')
      .map(Number),
  };
}

/** The lower of a limit read from /proc (if it could be) and the one claimed. */
function lowerOf(actual: bigint | undefined, claimed: bigint): bigint {
  return actual !== undefined && actual < claimed ? actual : claimed;
}

/** The comm of client thread `tid` (/proc/<tid>/comm), or "?" once it is gone. */
function clientComm(tid: number): string {
  try {
    return fs.readFileSync(`/proc/${tid}/comm`, 'latin1').replace(/\n$/, '');
  } catch {
    return '?';
  }
}

/** The real uid on the Uid: line of a /proc status file, as the reader's namespace maps it. */
function realUidOf(statusPath: string): number | undefined {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(statusPath, 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** What the kernel counts of a caller: its capabilities where they count, its uid. */
export interface CallerFound {
  readonly caps: NamespacedCaps;
  readonly uid: number;
  /** Its user namespace could not be read (it then holds nothing). */
  readonly unreadable: boolean;
}

/** Where a replay's credentials come from instead of /proc: the record. */
export interface RecordedCallers {
  caller(wire: WireCreds): CallerFound;
  fsIds(wire: WireCreds): FsIds;
  comm(wire: WireCreds): string;
}

/** What a recording sees of every answer. */
export interface CallerObserver {
  caller(found: CallerFound): void;
  fsIds(ids: FsIds): void;
  comm(name: string): void;
}

/**
 * A served call's credentials. The fields the caller's user namespace decides (userNs, capEff,
 * uid) are read from /proc when one is first read, during the call: most calls never ask
 * capable() or the uid, and the read is a /proc path walk that cost a tenth of a served ioctl.
 * A caller that keeps credentials beyond the call (an open file's f_cred) copies them first
 * (copyCredentials). A class with getters on its prototype: an object literal with getters is
 * made in dictionary mode, a cost per call of its own.
 */
class ServedCredentials {
  readonly pid: number;
  readonly tid: number;
  readonly grantedCaps: bigint;
  private readonly wire: WireCreds;
  private readonly hooks: CredentialHooks;
  private found: CallerFound | undefined;
  private ids: FsIds | undefined;
  private memlock: bigint | undefined;

  constructor(wire: WireCreds, grantedCaps: bigint, hooks: CredentialHooks) {
    this.pid = wire.pid;
    this.tid = wire.tid;
    this.grantedCaps = grantedCaps;
    this.wire = wire;
    this.hooks = hooks;
  }

  /** What the caller's user namespace decides, read at the first ask. */
  resolved(): CallerFound {
    this.found ??= this.hooks.find(this.wire);
    return this.found;
  }

  get userNs(): 'initial' | 'other' {
    return this.resolved().caps.userNs;
  }

  get capEff(): bigint {
    return this.resolved().caps.capEff;
  }

  get uid(): number {
    return this.resolved().uid;
  }

  /**
   * The lower of what the shim reports and what the process has: a claim cannot raise it. Read
   * only when a pin needs it.
   */
  get memlockLimit(): bigint {
    this.memlock ??= this.hooks.memlockLimit(this.wire);
    return this.memlock;
  }

  /** Read once, when a permission check first asks (an open). */
  fsIds(): FsIds {
    this.ids ??= this.hooks.fsIds(this.wire);
    return this.ids;
  }
}

/** What ServedCredentials asks of the ClientCredentials that made it. */
interface CredentialHooks {
  find(wire: WireCreds): CallerFound;
  memlockLimit(wire: WireCreds): bigint;
  fsIds(wire: WireCreds): FsIds;
}

export class ClientCredentials {
  private readonly events: EventBus;
  private readonly grantedCaps: bigint;
  /** The emulator's own user namespace: the emulated kernel's init_user_ns. */
  private readonly initialUserNs: string | undefined;
  /** pid/mm of every program already named in the trace. */
  private readonly announced = new Set<string>();
  /** Where the answers come from instead of /proc (a replay: from the record). */
  private readonly recorded: RecordedCallers | undefined;
  /** Sees every answer (a recording). */
  observe: CallerObserver | undefined;

  constructor(events: EventBus, grantedCaps: bigint, recorded?: RecordedCallers) {
    this.events = events;
    this.grantedCaps = grantedCaps;
    this.recorded = recorded;
    this.initialUserNs = recorded === undefined ? userNamespaceOf('/proc/self/ns/user') : 'replay';
    if (this.initialUserNs === undefined) {
      events.log(
        'warn',
        'cannot read /proc/self/ns/user: every client counts as being in the initial user namespace',
      );
    }
  }

  /** Whether a call's credentials must be made at its start: a grant is named at the first call. */
  get namedAtFirstCall(): boolean {
    return this.grantedCaps !== 0n;
  }

  /** The credentials the kernel would see for the thread that sent `wire` (see ServedCredentials). */
  of(wire: WireCreds): Credentials {
    const creds = new ServedCredentials(wire, this.grantedCaps, this.hooks);
    // A grant is named in the trace at the first call, with what the task lacks.
    if (this.grantedCaps !== 0n) creds.resolved();
    // Only the shape differs from the Credentials union (getters): a found userNs of 'other'
    // always comes with capEff 0n (lookup()).
    return creds as unknown as Credentials;
  }

  /** The comm of the thread that sent `wire` (/proc/<tid>/comm), "?" once it is gone. */
  comm(wire: WireCreds): string {
    const name = this.recorded?.comm(wire) ?? clientComm(wire.tid);
    this.observe?.comm(name);
    return name;
  }

  /** Made once: a call's credentials reach back here without a closure of their own. */
  private readonly hooks: CredentialHooks = {
    find: (wire) => {
      const found = this.recorded?.caller(wire) ?? this.lookup(wire);
      this.observe?.caller(found);
      this.announce(wire, found);
      return found;
    },
    // A replay has no process and takes the record's.
    memlockLimit: (wire) =>
      this.recorded !== undefined ? wire.memlock : lowerOf(memlockLimitOf(wire.pid), wire.memlock),
    // The thread's status file has the filesystem ids and the groups the shim does not send. A
    // thread that is gone has none: the overflow ids, which own nothing.
    fsIds: (wire) => {
      const ids = this.recorded?.fsIds(wire) ??
        fsIdsOf(`/proc/${wire.pid}/task/${wire.tid}/status`) ?? {
          fsuid: OVERFLOW_UID,
          fsgid: OVERFLOW_UID,
          groups: [],
        };
      this.observe?.fsIds(ids);
      return ids;
    },
  };

  /** The caller's user namespace against ours, read from /proc now. */
  private lookup(wire: WireCreds): CallerFound {
    const proc = `/proc/${wire.pid}`;
    let caps: NamespacedCaps;
    let uid: number;
    let unreadable = false;
    if (this.initialUserNs === undefined) {
      caps = { userNs: 'initial', capEff: wire.capEff };
      uid = wire.uid;
    } else {
      const ns = userNamespaceOf(`${proc}/ns/user`);
      unreadable = ns === undefined;
      if (ns === this.initialUserNs) {
        caps = { userNs: 'initial', capEff: wire.capEff };
        uid = wire.uid;
      } else {
        // Not provably in the initial namespace: nothing held there, and the outside uid.
        caps = { userNs: 'other', capEff: 0n };
        uid = realUidOf(`${proc}/status`) ?? OVERFLOW_UID;
      }
    }
    return { caps, uid, unreadable };
  }

  /** Names a program in the trace once, when its capabilities are not its own. */
  private announce(wire: WireCreds, found: CallerFound): void {
    if (found.caps.userNs === 'initial' && this.grantedCaps === 0n) return;
    const key = `${wire.pid}/${wire.mmCookie.toString(16)}`;
    if (this.announced.has(key)) return;
    if (this.announced.size >= ANNOUNCED_MAX) this.announced.clear();
    this.announced.add(key);
    if (found.unreadable) {
      this.events.log(
        'warn',
        `pid ${wire.pid}: cannot read its user namespace: it holds no capability for the emulated kernel`,
      );
    } else if (found.caps.userNs === 'other') {
      this.events.log(
        'info',
        `pid ${wire.pid}: in a user namespace other than the emulator's (uid ${found.uid} outside): capabilities it holds there do not count for capable()`,
      );
    }
    if (this.grantedCaps !== 0n) {
      const lacks = this.grantedCaps & ~found.caps.capEff;
      this.events.log(
        'info',
        `pid ${wire.pid}: capabilities granted by the emulator (--cap): ${capSetNames(this.grantedCaps)}; the task itself lacks: ${capSetNames(lacks)}`,
      );
    }
  }
}
