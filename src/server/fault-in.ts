/**
 * Faulting a client's pages in through its userfaultfd without waiting (decision 286). The kernel's
 * copy from a page a userfaultfd handler must supply sleeps in the caller until the handler has
 * supplied it; the server cannot sleep (it serves everyone), and its own /proc/<pid>/mem access
 * fails there at once. So it starts `iommufd-emu-faultin` (native/faultin/faultin.c), which makes
 * the same access with process_vm_readv()/writev(), whose faults wait for the handler as the
 * kernel's copy would, and learns the outcome from its exit status, on a later turn of the event
 * loop. Killed when the server no longer cares (the client's process is gone, the server stops).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { UserfaultRange } from '../host/userfault.ts';
import type { EventBus } from '../trace/events.ts';

/**
 * 'in': the range is in (the handler supplied it; the call may run again); 'fault': the kernel's
 * copy fails there too (EFAULT: a user-mode-only or SIGBUS userfaultfd, an unmapped page);
 * 'gone': the process is.
 */
export type FaultInOutcome = 'in' | 'fault' | 'gone';

const HELPER_NAME = 'iommufd-emu-faultin';

/** Where the CLI built the helper (an installed package builds it in a per-user cache). */
let helperFile: string | undefined;

/** Use the helper at `file` rather than looking in native/build (call before serving). */
export function useFaultIn(file: string): void {
  helperFile = file;
}

/** The helper's path: the one the CLI gave, else native/build above this module, if built. */
function helperPath(): string | undefined {
  if (helperFile !== undefined) return helperFile;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'native', 'build', HELPER_NAME);
    if (fs.existsSync(candidate)) {
      helperFile = candidate;
      return candidate;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** The fault-ins running for client address spaces, by their memory key. */
export class FaultIns {
  private readonly events: EventBus;
  private readonly running = new Map<string, Set<ChildProcess>>();
  private warned = false;

  constructor(events: EventBus) {
    this.events = events;
  }

  /** How many fault-ins are waiting for a handler now (for tests and the checker). */
  get pending(): number {
    let n = 0;
    for (const set of this.running.values()) n += set.size;
    return n;
  }

  /**
   * Faults `range` of process `pid` (address space `mm`) in as the kernel's copy would; settles
   * when that is done.
   */
  faultIn(pid: number, mm: string, range: UserfaultRange): Promise<FaultInOutcome> {
    const file = helperPath();
    if (file === undefined) {
      this.warnOnce(`${HELPER_NAME} is not built`);
      return Promise.resolve('fault');
    }
    const write = range.data !== undefined;
    const args = [
      String(pid),
      `0x${range.addr.toString(16)}`,
      String(range.length),
      write ? 'w' : 'r',
    ];
    return new Promise((resolve) => {
      // No environment: it needs none, and a preloaded shim has no business in it.
      const child = spawn(file, args, {
        stdio: [write ? 'pipe' : 'ignore', 'ignore', 'ignore'],
        env: {},
      });
      let set = this.running.get(mm);
      if (set === undefined) {
        set = new Set();
        this.running.set(mm, set);
      }
      set.add(child);
      const done = (outcome: FaultInOutcome): void => {
        const live = this.running.get(mm);
        live?.delete(child);
        if (live?.size === 0) this.running.delete(mm);
        resolve(outcome);
      };
      child.on('error', (err) => {
        this.warnOnce(`${HELPER_NAME} cannot be run (${err.message})`);
        done('fault');
      });
      child.on('exit', (code) => done(code === 0 ? 'in' : code === 2 ? 'gone' : 'fault'));
      if (write && child.stdin !== null) {
        // The helper may be gone before it read everything (the process died): not an error.
        child.stdin.on('error', () => {});
        child.stdin.end(range.data);
      }
    });
  }

  /** Address space `mm` is gone: its fault-ins are of no use (their calls answer nobody). */
  cancel(mm: string): void {
    for (const child of this.running.get(mm) ?? []) child.kill('SIGKILL');
  }

  /** The server stops. */
  close(): void {
    for (const mm of this.running.keys()) this.cancel(mm);
  }

  private warnOnce(why: string): void {
    if (this.warned) return;
    this.warned = true;
    this.events.log(
      'warn',
      `${why}: a call whose memory a userfaultfd handler must supply fails with EFAULT instead of waiting for it`,
    );
  }
}
