/**
 * A call that holds its context's I/O page tables for write across turns of the event loop: an
 * attach filling a new domain with gigabytes of areas, an unmap unpinning them, the teardown of
 * a domain that left its IOAS. In the kernel such a call holds the IOAS's domains_rwsem and
 * iova_rwsem for write (iopt_table_add_domain(), iopt_unmap_iova_range()) and every other call
 * on that IOAS sleeps until it is done. Here the call goes on a slice per turn (host/resched.ts),
 * and every other call on the same context waits, then runs from its start; other contexts
 * (other clients) are served meanwhile (docs/decisions.md 290-293).
 *
 * Only a walk that does not end within its first slice holds: every call of ordinary size
 * answers at once, as before.
 */
import { currentFailNth, withFailNth } from '../fault/fault.ts';
import { isBlocked, type MaybeBlocked } from '../host/file.ts';
import { afterWalk, type BackgroundWork, type LongWalk } from '../host/resched.ts';
import type { Task } from '../host/task.ts';
import type { SyscallResult } from '../uapi/errno.ts';
import { type DomainTeardown, teardownWalk } from './area-unfill.ts';
import type { IoptEnv } from './iopt-area.ts';

export class ContextHold {
  #held = false;
  /** What waits for the hold to end: calls to run again, releases to run. */
  #waiters: (() => void)[] = [];
  /** Reports an exception of a waiter (an emulator bug); the other waiters run all the same. */
  readonly #failed: (err: unknown) => void;

  constructor(failed: (err: unknown) => void) {
    this.#failed = failed;
  }

  get held(): boolean {
    return this.#held;
  }

  /** Runs `fn` once no call holds the context (now, if none does). */
  whenFree(fn: () => void): void {
    if (this.#held) this.#waiters.push(fn);
    else fn();
  }

  take(): void {
    if (this.#held) throw new Error('a context held twice');
    this.#held = true;
  }

  /**
   * Ends the hold and runs what waited, in order, in this same turn: a release that waited is
   * done before the holder's reply. A waiter that takes the hold again makes the rest wait on.
   */
  release(): void {
    this.#held = false;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const fn of waiters) {
      try {
        this.whenFree(fn);
      } catch (err) {
        this.#failed(err);
      }
    }
  }
}

/** What a context is, for a hold: its hold, and the domains its calls left (IommufdCtx). */
export interface HeldContext {
  readonly hold: ContextHold;
  readonly teardowns: DomainTeardown[];
  readonly subsystem: {
    readonly ioptEnv: IoptEnv;
    readonly work: BackgroundWork;
    /** Contexts whose teardowns run as kernel work (a released one is in no other list). */
    readonly tearingDown: Set<HeldContext>;
  };
}

/**
 * A call on a context another call holds: it waits for the hold to end, then `run` runs it from
 * its start with the call's fail-nth counter (its injection points are counted once: nothing
 * ran before the wait). undefined when nothing holds the context: the caller goes on now.
 */
export function waitForContext(
  ctx: HeldContext | undefined,
  run: () => MaybeBlocked,
): MaybeBlocked | undefined {
  if (ctx === undefined || !ctx.hold.held) return undefined;
  const failNth = currentFailNth();
  const blocked = new Promise<number>((resolve, reject) => {
    ctx.hold.whenFree(() => {
      let value: MaybeBlocked;
      try {
        value = withFailNth(failNth, run);
      } catch (err) {
        reject(err);
        return;
      }
      if (isBlocked(value)) value.blocked.then(resolve, reject);
      else resolve(value);
    });
  });
  return { blocked };
}

/**
 * afterWalk() for a walk that changes the context's page tables: if it does not end within its
 * first slice, the context is held from then until it ends (then() included), so that no other
 * call on it sees a half-filled domain or a half-unpinned area.
 */
export function afterWalkHolding<T>(
  ctx: HeldContext,
  task: Task,
  walk: LongWalk<T>,
  then: (value: T) => MaybeBlocked,
): MaybeBlocked {
  const result = afterWalk(task, walk, then);
  if (!isBlocked(result)) return result;
  ctx.hold.take();
  return { blocked: result.blocked.finally(() => ctx.hold.release()) };
}

/**
 * A call on `ctx`: it waits for a call that holds the context, runs, then tears down the domains
 * it took out of their IOAS before it returns.
 */
export function callOnContext(
  ctx: HeldContext | undefined,
  task: Task,
  run: () => MaybeBlocked,
): MaybeBlocked {
  return teardownBeforeReturn(ctx, task, waitForContext(ctx, run) ?? run());
}

/** afterWalkHolding() of a walk whose result is the call's. */
export function walkHolding(
  ctx: HeldContext,
  task: Task,
  walk: LongWalk<SyscallResult>,
): MaybeBlocked {
  return afterWalkHolding(ctx, task, walk, (rc) => rc);
}

/**
 * A call on `ctx` returned `value`: the domains that left their IOAS during it (a detach, a
 * DESTROY, a replace) are torn down before it returns, unpinning what they alone held, a batch
 * per step for a served call, holding the context (area-unfill.ts).
 */
export function teardownBeforeReturn(
  ctx: HeldContext | undefined,
  task: Task,
  value: MaybeBlocked,
): MaybeBlocked {
  if (ctx === undefined) return value;
  if (isBlocked(value))
    return { blocked: value.blocked.then((v) => settled(teardownBeforeReturn(ctx, task, v))) };
  if (ctx.teardowns.length === 0) return value;
  // Another call holds the context now: it tears them down when it returns, or this one after.
  const waited = waitForContext(ctx, () => teardownBeforeReturn(ctx, task, value));
  if (waited !== undefined) return waited;
  const walk = teardownWalk(ctx.subsystem.ioptEnv, ctx.teardowns);
  return afterWalkHolding(ctx, task, walk, () => value);
}

/**
 * After a release (a device's file, a context), the domains it left are torn down as kernel
 * work, holding the context until that is done; undefined if that was at once, else a promise
 * of its end (a close() waits for it, a dying process does not).
 */
export function teardownAfterRelease(ctx: HeldContext): Promise<void> | undefined {
  if (ctx.teardowns.length === 0) return undefined;
  if (ctx.hold.held) return whenFree(ctx, () => teardownAfterRelease(ctx));
  ctx.hold.take();
  const { subsystem } = ctx;
  subsystem.tearingDown.add(ctx);
  return subsystem.work.run(teardownWalk(subsystem.ioptEnv, ctx.teardowns), () => {
    subsystem.tearingDown.delete(ctx);
    ctx.hold.release();
  });
}

/**
 * A release that waits for the call holding `ctx` (the kernel's release sleeps on the same
 * locks): `release` runs once the hold ends; a promise of its end, whatever happens.
 */
export function whenFree(
  ctx: HeldContext,
  release: () => Promise<void> | undefined,
): Promise<void> {
  return new Promise((resolve) => {
    ctx.hold.whenFree(() => {
      try {
        resolve(release());
      } catch (err) {
        resolve();
        throw err;
      }
    });
  });
}

function settled(value: MaybeBlocked): Promise<number> {
  return isBlocked(value) ? value.blocked : Promise.resolve(value);
}
