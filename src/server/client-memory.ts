/**
 * The memory of client processes: one ProcMemory (/proc/<pid>/mem and smaps) per address space,
 * kept while any of its threads has a transport (devices may DMA into it between calls), and
 * retired once the process is gone. Each call sees it through a CallMemory with the ioctl window
 * the shim prefetched.
 */
import { isBlocked, type MaybeBlocked } from '../host/file.ts';
import { CallMemory, type MapRange, ProcMemory } from '../host/proc-memory.ts';
import type { UserMemory } from '../host/user-memory.ts';
import type { EventBus } from '../trace/events.ts';
import { FaultIns } from './fault-in.ts';
import type { WireCreds } from './protocol.ts';

/** How often memory views of finished processes are looked for. */
const SWEEP_MS = 5000;

/** The memory of a caller the server cannot name: every access faults. */
export const NO_MEMORY: UserMemory = {
  mm: 'none',
  read: () => undefined,
  write: () => false,
  vma: () => undefined,
};

/** The bytes of an ioctl's argument the shim sent with the request. */
export interface IoctlWindow {
  readonly start: bigint;
  readonly bytes: Uint8Array;
  readonly writable: boolean;
}

/** What the server's calls need of client memory: ClientMemories, or a replay's (replay.ts). */
export interface CallMemories {
  /** A thread said HELLO; returns the key of its address space. */
  attach(creds: WireCreds): string;
  /** A thread's transport closed. */
  detach(key: string): void;
  /** The caller's memory for one call; its done() ends the call. */
  forCall(creds: WireCreds, window?: IoctlWindow): ServedMemory;
  close(): void;
}

/** A call's view of the process memory beneath its CallMemory, and of its mappings. */
export interface MemoryView {
  readonly memory: UserMemory;
  mapRanges(): readonly MapRange[];
}

/** Sees the process memory each call reaches (a recording) and returns the view the call uses. */
export type MemoryObserver = (view: MemoryView) => MemoryView;

interface MemoryEntry {
  /** The address space it views (memoryKey: pid and mm cookie). */
  readonly key: string;
  readonly memory: ProcMemory;
  transports: number;
}

/** Whether `mm` (a memoryKey) is an address space of process `pid`. */
export function isMemoryOf(mm: string, pid: number): boolean {
  return mm.startsWith(`pid${pid}/`);
}

/** The key of a client address space: its pid and the shim's mm cookie (a new one after exec). */
export function memoryKey(creds: WireCreds): string {
  // Consecutive calls come from the same address space: the last key is kept.
  if (creds.pid !== lastKey.pid || creds.mmCookie !== lastKey.mmCookie) {
    lastKey = {
      pid: creds.pid,
      mmCookie: creds.mmCookie,
      key: `pid${creds.pid}/mm${creds.mmCookie.toString(16)}`,
    };
  }
  return lastKey.key;
}

let lastKey = { pid: -1, mmCookie: -1n, key: '' };

/**
 * The memory of one served call: a CallMemory over the caller's memory, and what ends the call.
 * A class, so that a call makes no function objects of its own: the mappings are asked of an
 * object (the ProcMemory itself, unless a recording watches).
 */
export class ServedMemory extends CallMemory {
  /** A view opened for this call alone (its process never said HELLO), retired when it ends. */
  private readonly ownView: OwnView | undefined;
  /** The caller's process; absent where nothing can be faulted in (a replay). */
  private readonly proc: ProcMemory | undefined;
  /** Who faults the caller's pages in. */
  private readonly faultIns: FaultIns | undefined;

  constructor(
    memory: UserMemory,
    maps: { mapRanges(): readonly MapRange[] },
    window: IoctlWindow | undefined,
    ownView?: OwnView,
    proc?: ProcMemory,
    faultIns?: FaultIns,
  ) {
    super(memory, window?.start ?? 0n, window?.bytes ?? new Uint8Array(0), {
      windowWritable: window?.writable ?? true,
      maps,
      userfaults: proc,
    });
    this.ownView = ownView;
    this.proc = proc;
    this.faultIns = faultIns;
    // Calls run one at a time: the newest is the one running, until it is done.
    running = this;
  }

  /**
   * A pin through this memory: during the call, GUP's fault-in (CallMemory); after it, a pin a
   * later call of the same address space makes through the memory this one saw (an attach that
   * fills, into its new domain, the areas a MAP left unpinned) waits in that later call, as the
   * kernel's caller sleeps in the fault whoever mapped the range.
   */
  override pinFaults(addr: bigint, length: bigint): boolean {
    if (!this.finishedCall) return super.pinFaults(addr, length);
    const caller = running;
    if (caller === undefined || caller === this || caller.mm !== this.mm) return false;
    return caller.pinFaults(addr, length);
  }

  /**
   * The call's result once no access of it is left waiting for the caller's userfaultfd handler
   * (decision 287). A call that failed on such an access (its error path undid what it did, as
   * for any EFAULT) is run again by `rerun` once the range is in, as often as it takes, as the
   * kernel's caller sleeps in the fault and goes on; if the kernel's copy would fail there too,
   * or the process is gone, the failure stands. Anything else is the result as it is.
   */
  settle(value: MaybeBlocked, rerun: () => MaybeBlocked): MaybeBlocked {
    return this.settleAfter(value, rerun, undefined);
  }

  /** settle(), after a run that faulted `previous` in (undefined for the first run). */
  private settleAfter(
    value: MaybeBlocked,
    rerun: () => MaybeBlocked,
    previous: bigint | undefined,
  ): MaybeBlocked {
    if (isBlocked(value)) {
      return { blocked: value.blocked.then((v) => this.settled(v, rerun, previous)) };
    }
    if (!this.mustFaultIn(value)) return value;
    return { blocked: this.settled(value, rerun, previous) };
  }

  private mustFaultIn(value: unknown): value is number {
    return (
      this.faultIns !== undefined &&
      this.userfault !== undefined &&
      typeof value === 'number' &&
      value < 0
    );
  }

  private async settled(
    value: number,
    rerun: () => MaybeBlocked,
    previous: bigint | undefined,
  ): Promise<number> {
    const fault = this.userfault;
    if (!this.mustFaultIn(value) || fault === undefined) return value;
    // The page just faulted in fails again at once: the helper's access and the server's differ
    // there (nothing known does), so the run's failure stands rather than a loop of helpers.
    if (fault.addr === previous) return value;
    const { proc, faultIns } = this;
    if (proc === undefined || faultIns === undefined) return value;
    const outcome = await faultIns.faultIn(proc.pid, this.mm, fault);
    if (outcome !== 'in') return value;
    this.restart();
    running = this;
    const again = this.settleAfter(rerun(), rerun, fault.addr);
    return isBlocked(again) ? again.blocked : again;
  }

  /** The call is over: from now on a pass-through; a view opened for it alone is retired. */
  done(): void {
    this.finish();
    if (running === this) running = undefined;
    if (this.ownView !== undefined) {
      this.ownView.proc.retire();
      this.ownView.gone(this.ownView.proc.mm);
    }
  }
}

/** The served call whose handler may be running now (the newest not yet done). */
let running: ServedMemory | undefined;

/** A view opened for one call, and whom to tell once it is retired (ClientMemories' `gone`). */
interface OwnView {
  readonly proc: ProcMemory;
  readonly gone: (mm: string) => void;
}

export class ClientMemories implements CallMemories {
  private readonly events: EventBus;
  /** Called once an address space's view is retired: the kernel lets go of what it held there. */
  private readonly gone: (mm: string) => void;
  /** One view per process (by pid): its current address space's. */
  private readonly memories = new Map<number, MemoryEntry>();
  private sweep: NodeJS.Timeout | undefined;
  private readonly observe: MemoryObserver | undefined;
  /** Pages of clients being faulted in through their userfaultfd (fault-in.ts). */
  readonly faultIns: FaultIns;

  constructor(events: EventBus, observe?: MemoryObserver, gone: (mm: string) => void = () => {}) {
    this.events = events;
    this.observe = observe;
    this.gone = gone;
    this.faultIns = new FaultIns(events);
  }

  /** A thread said HELLO: its address space's view lives at least as long as its transport. */
  attach(creds: WireCreds): string {
    const key = memoryKey(creds);
    let entry = this.memories.get(creds.pid);
    if (entry !== undefined && entry.key !== key) {
      // A new address space of the same process (it exec'd): one open view per process, so the
      // old one goes (kept open only while pinned pages still need it).
      this.memories.delete(creds.pid);
      this.retire(entry.key, entry.memory);
      entry = undefined;
    }
    if (entry === undefined) {
      entry = { key, memory: this.open(creds), transports: 0 };
      this.memories.set(creds.pid, entry);
    }
    entry.transports++;
    return key;
  }

  /**
   * The transport of a thread of address space `key` closed. If the address space still lives
   * (other threads), keep the view: devices may still DMA into it. The sweep retires it once the
   * process is gone.
   */
  detach(key: string): void {
    const pid = Number(/^pid(\d+)\//.exec(key)?.[1]);
    const entry = this.memories.get(pid);
    if (entry === undefined || entry.key !== key || --entry.transports !== 0) return;
    if (entry.memory.current) this.startSweep();
    else {
      this.memories.delete(pid);
      this.retire(key, entry.memory);
    }
  }

  /**
   * The caller's memory for one call: its address space's ProcMemory (or one opened for this call
   * only) seen through a CallMemory, with the prefetched ioctl window if there is one. done()
   * ends the call.
   */
  forCall(creds: WireCreds, window?: IoctlWindow): ServedMemory {
    const found = this.memories.get(creds.pid);
    const entry = found?.key === memoryKey(creds) ? found : undefined;
    const proc = entry?.memory ?? this.open(creds);
    // A view opened for this call alone (the process never said HELLO) is retired after it.
    const ownView = entry === undefined ? { proc, gone: this.gone } : undefined;
    if (this.observe === undefined) {
      return new ServedMemory(proc, proc, window, ownView, proc, this.faultIns);
    }
    const view = this.observe({ memory: proc, mapRanges: () => proc.mapRanges() });
    return new ServedMemory(view.memory, view, window, ownView, proc, this.faultIns);
  }

  /** Closes every view (server shutdown). */
  close(): void {
    clearInterval(this.sweep);
    this.faultIns.close();
    for (const entry of this.memories.values()) {
      entry.memory.close();
      this.gone(entry.key);
    }
    this.memories.clear();
  }

  private retire(key: string, memory: ProcMemory): void {
    // A fault-in still waiting for this process's handler would answer nobody.
    this.faultIns.cancel(key);
    memory.retire();
    this.gone(key);
  }

  private open(creds: WireCreds): ProcMemory {
    const memory = new ProcMemory(creds.pid, memoryKey(creds));
    if (memory.openError !== undefined) {
      this.events.log(
        'warn',
        `cannot open /proc/${creds.pid}/mem (${memory.openError}): its user copies will fail with EFAULT`,
      );
    }
    return memory;
  }

  /** Retires, every few seconds, the memory views of address spaces that are gone. */
  private startSweep(): void {
    if (this.sweep !== undefined) return;
    this.sweep = setInterval(() => {
      for (const [pid, entry] of this.memories) {
        if (entry.transports === 0 && !entry.memory.current) {
          this.memories.delete(pid);
          this.retire(entry.key, entry.memory);
        }
      }
      if (![...this.memories.values()].some((e) => e.transports === 0)) {
        clearInterval(this.sweep);
        this.sweep = undefined;
      }
    }, SWEEP_MS);
    this.sweep.unref();
  }
}
