/**
 * The credentials of a real client thread as the emulated kernel sees them.
 *
 * The shim reports what the thread sees of itself (getuid(), capget()). Inside a user namespace
 * of its own those are namespaced: after `unshare -r` the thread is uid 0 with a full effective
 * set. The kernel's capable() asks about the initial user namespace only, and the emulated
 * kernel's initial user namespace is the one the emulator runs in. So the server decides, not the
 * shim (which cannot know the emulator's namespace): it compares the caller's /proc/<pid>/ns/user
 * with its own /proc/self/ns/user at every call, as a process may unshare between two calls (one
 * namespace per process: the kernel refuses a new or another user namespace to a multithreaded
 * one). A caller in any other namespace brings no capability, and its uid is the one the
 * emulator's namespace sees (the Uid: line of /proc/<pid>/status, read from outside).
 *
 * Capabilities the emulator was told to grant (`exec --cap`, `serve --cap`) are added apart, and
 * each client program is named once in the trace with what it was granted.
 */
import * as fs from 'node:fs';
import { type Credentials, capSetNames, type NamespacedCaps } from '../host/credentials.ts';
import type { EventBus } from '../trace/events.ts';
import type { WireCreds } from './protocol.ts';

/** The uid a task gets when its real uid cannot be read (the kernel's overflowuid). */
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

/** The real uid on the Uid: line of a /proc status file, as the reader's namespace maps it. */
function realUidOf(statusPath: string): number | undefined {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(statusPath, 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** What the caller's user namespace decides: where its capabilities count, its uid. */
interface Namespaced {
  readonly caps: NamespacedCaps;
  /** The real uid as the emulator's namespace sees it. */
  readonly uid: number;
  /** The namespace could not be read (the process is gone, or /proc is hidden). */
  readonly unreadable: boolean;
}

/**
 * A served call's credentials. A class with getters on its prototype, so that making one per call
 * costs one small object (an object literal with getters is made in dictionary mode).
 */
class ServedCredentials {
  readonly pid: number;
  readonly tid: number;
  readonly grantedCaps: bigint;
  readonly memlockLimit: bigint;
  private readonly wire: WireCreds;
  private readonly resolve: (wire: WireCreds) => Namespaced;
  private found: Namespaced | undefined;

  constructor(wire: WireCreds, grantedCaps: bigint, resolve: (wire: WireCreds) => Namespaced) {
    this.pid = wire.pid;
    this.tid = wire.tid;
    this.grantedCaps = grantedCaps;
    this.memlockLimit = wire.memlock;
    this.wire = wire;
    this.resolve = resolve;
  }

  resolved(): Namespaced {
    this.found ??= this.resolve(this.wire);
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
}

export class ClientCredentials {
  private readonly events: EventBus;
  private readonly grantedCaps: bigint;
  /** The emulator's own user namespace: the emulated kernel's init_user_ns. */
  private readonly initialUserNs: string | undefined;
  /** pid/mm of every program already named in the trace. */
  private readonly announced = new Set<string>();

  constructor(events: EventBus, grantedCaps: bigint) {
    this.events = events;
    this.grantedCaps = grantedCaps;
    this.initialUserNs = userNamespaceOf('/proc/self/ns/user');
    if (this.initialUserNs === undefined) {
      events.log(
        'warn',
        'cannot read /proc/self/ns/user: every client counts as being in the initial user namespace',
      );
    }
  }

  /**
   * The credentials the kernel would see for the thread that sent `wire`. The user namespace is
   * read from /proc only when a field that depends on it (capEff, userNs, uid) is first read,
   * during the call: most calls never ask capable() or the uid, and the read is a path walk in
   * /proc that cost a tenth of a served ioctl. A caller that keeps the credentials beyond the
   * call (an open file's f_cred) copies them (`copyCredentials`). A grant is named at the
   * first call, so with one the namespace is read at once.
   */
  of(wire: WireCreds): Credentials {
    const creds = new ServedCredentials(wire, this.grantedCaps, this.resolve);
    if (this.grantedCaps !== 0n) creds.resolved();
    // Only the shape differs from the Credentials union (getters): a resolved userNs of 'other'
    // always comes with capEff 0n (namespaced()).
    return creds as unknown as Credentials;
  }

  /** The namespace facts of a call's caller, read now (and announced in the trace once). */
  private readonly resolve = (wire: WireCreds): Namespaced => {
    const found = this.namespaced(wire);
    this.announce(wire, found);
    return found;
  };

  /** Where the caller's capabilities count, and its uid as the emulator's namespace sees it. */
  private namespaced(wire: WireCreds): Namespaced {
    const own: Namespaced = {
      caps: { userNs: 'initial', capEff: wire.capEff },
      uid: wire.uid,
      unreadable: false,
    };
    if (this.initialUserNs === undefined) return own;
    const proc = `/proc/${wire.pid}`;
    const ns = userNamespaceOf(`${proc}/ns/user`);
    if (ns === this.initialUserNs) return own;
    // Not provably in the initial namespace: nothing held there, and the outside uid.
    return {
      caps: { userNs: 'other', capEff: 0n },
      uid: realUidOf(`${proc}/status`) ?? OVERFLOW_UID,
      unreadable: ns === undefined,
    };
  }

  /** Names a program in the trace once, when its capabilities are not its own. */
  private announce(wire: WireCreds, found: Namespaced): void {
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
