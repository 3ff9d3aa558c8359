/**
 * Fault injection: the emulator's should_fail(). Every place the kernel can fail (allocations,
 * id reservation, pinning, user copies, lookups) calls shouldFail(site) and, when it returns true,
 * fails the way the kernel would there. Armed per task through the fail-nth protocol: the Nth
 * injection point reached after arming fails, once.
 */

/**
 * The named injection sites, and how the kernel fails at each: ENOMEM for every allocation
 * (object-alloc, id-reserve, kmalloc, frame-alloc, pagetable-alloc, domain-alloc), pinning and
 * RLIMIT_MEMLOCK charging (pin-pages, account-pages); EFAULT for user copies (copy-from-user,
 * copy-to-user); ENOENT for object lookups (object-lookup). docs/fault-injection.md lists where
 * each one sits.
 */
export const FAULT_SITES = [
  'object-alloc',
  'object-lookup',
  'id-reserve',
  'kmalloc',
  'copy-from-user',
  'copy-to-user',
  'pin-pages',
  'account-pages',
  'frame-alloc',
  'pagetable-alloc',
  'domain-alloc',
] as const;

/** One named injection site. */
export type FaultSite = (typeof FAULT_SITES)[number];

/** One task's fail-nth counter (/proc/<pid>/task/<tid>/fail-nth). 0 means disarmed. */
export class FailNth {
  remaining = 0;
  /** The site that failed last, for reports and replay lines. */
  lastFired: FaultSite | undefined;
  /**
   * Where in the emulator the last failure was injected, for reports. Kept as the Error: V8
   * formats its stack (through source maps, under tsx) only when `lastFiredStack` is read, and a
   * sweep reads it for few of its runs.
   */
  lastFiredAt: Error | undefined;
  /** Every site reached while armed-or-counting, in order, when recording is on. */
  trail: FaultSite[] | undefined;

  /** The stack trace of lastFiredAt. */
  get lastFiredStack(): string | undefined {
    return this.lastFiredAt?.stack;
  }

  arm(nth: number): void {
    this.remaining = nth;
    this.lastFired = undefined;
    this.lastFiredAt = undefined;
  }
}

let current: FailNth | undefined;
/**
 * A counter over every task at once, for sweeping a program that knows nothing of fail-nth
 * (`iommufd-emu check -- PROGRAM`): while set, it replaces the per-task counters.
 */
let everyTask: FailNth | undefined;

/** Sets (or clears, with undefined) the counter every task's injection points go to. */
export function setFailNthForEveryTask(counter: FailNth | undefined): void {
  everyTask = counter;
}

/** Runs fn with `counter` as the current task's fail-nth state (like `current->fail_nth`). */
export function withFailNth<T>(counter: FailNth | undefined, fn: () => T): T {
  const saved = current;
  current = counter;
  try {
    return fn();
  } finally {
    current = saved;
  }
}

/**
 * The counter of the call running now, for work that continues it later (resched.ts): that
 * work's injection points count against the same task.
 */
export function currentFailNth(): FailNth | undefined {
  return current;
}

/** The injection point. Cheap when no counter is armed. */
export function shouldFail(site: FaultSite): boolean {
  const c = everyTask ?? current;
  if (c === undefined) return false;
  c.trail?.push(site);
  if (c.remaining === 0) return false;
  c.remaining--;
  if (c.remaining !== 0) return false;
  c.lastFired = site;
  c.lastFiredAt = new Error(`injected failure at ${site}`);
  return true;
}
