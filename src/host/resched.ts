/**
 * cond_resched() for the server. The kernel walks a huge user buffer (clear_user() of a 2 GiB
 * GET_HW_INFO buffer, check_zeroed_user() of a struct whose size says 4 GiB) in one call,
 * rescheduling between pages: the caller waits, other processes run. The server is one event
 * loop, so the same walk done at once would hold every client. A long walk is therefore written
 * as steps (a generator that yields after each chunk of memory it handled), and run here:
 *
 * - for a task that may yield (a served client's ioctl), a slice of YIELD_BYTES at a time, the
 *   rest of the call continuing on a later turn of the event loop (setImmediate, after the
 *   other clients' requests that arrived meanwhile); the call is then a BlockedCall, answered
 *   when it ends;
 * - otherwise, and for any walk that ends within its first slice, to its end at once.
 *
 * The steps and what runs after them are the same code either way, so the result, the errno
 * and what is left in memory are the same; only when the reply comes differs. The continuation
 * runs with the call's fail-nth counter current (the same injection points, counted on), and an
 * exception in it rejects the BlockedCall, which the server reports as the emulator bug it is.
 */
import { currentFailNth, withFailNth } from '../fault/fault.ts';
import { isBlocked, type MaybeBlocked } from './file.ts';
import type { Task } from './task.ts';

/** A long walk over user memory: yields the bytes each step handled, returns its result. */
export type LongWalk<T> = Generator<number, T, undefined>;

/**
 * How much memory one slice walks before other clients get a turn: a walk this short never
 * yields (every call of ordinary size answers at once, as before), and a slice costs
 * milliseconds, not seconds.
 */
export const YIELD_BYTES = 4 * 1024 * 1024;

/** Steps `walk` for one slice; its result if it ended. */
function slice<T>(walk: LongWalk<T>): { readonly value: T } | undefined {
  // A walk of at most YIELD_BYTES ends within one slice: its end is seen by one more step.
  let walked = 0;
  for (;;) {
    const step = walk.next();
    if (step.done === true) return { value: step.value };
    walked += step.value;
    if (walked > YIELD_BYTES) return undefined;
  }
}

/** Runs `walk` to its end at once. */
export function walkNow<T>(walk: LongWalk<T>): T {
  for (;;) {
    const step = walk.next();
    if (step.done === true) return step.value;
  }
}

/**
 * Runs `walk`, then `then` with its result: at once if the task may not yield or the walk ends
 * within a slice; otherwise a BlockedCall that continues a slice per event-loop turn.
 */
export function afterWalk<T>(
  task: Task,
  walk: LongWalk<T>,
  then: (value: T) => MaybeBlocked,
): MaybeBlocked {
  if (task.yields !== true) return then(walkNow(walk));
  const first = slice(walk);
  if (first !== undefined) return then(first.value);
  const failNth = currentFailNth();
  const blocked = new Promise<number>((resolve, reject) => {
    const turn = (): void => {
      let next: MaybeBlocked | undefined;
      try {
        next = withFailNth(failNth, () => {
          const ended = slice(walk);
          return ended === undefined ? undefined : then(ended.value);
        });
      } catch (err) {
        reject(err);
        return;
      }
      if (next === undefined) setImmediate(turn);
      else if (isBlocked(next)) next.blocked.then(resolve, reject);
      else resolve(next);
    };
    setImmediate(turn);
  });
  return { blocked };
}

/**
 * Kernel work that goes on after the call that made it, with no caller waiting (the teardown
 * a released device leaves): a slice per turn of the event loop where the event loop serves
 * clients (`deferred`, the server), to its end at once otherwise (the library API, whose callers
 * expect the state settled when a call returns). The server is idle only once it is done.
 */
export class BackgroundWork {
  deferred = false;
  private running = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly failed: (err: unknown) => void;

  /** `failed` reports an exception of the work (an emulator bug): the work ends there. */
  constructor(failed: (err: unknown) => void) {
    this.failed = failed;
  }

  /**
   * Runs `walk`, then `done` (also after an exception). Undefined when it ran at once, else a
   * promise of its end.
   */
  run(walk: LongWalk<void>, done: () => void): Promise<void> | undefined {
    if (!this.deferred) {
      try {
        walkNow(walk);
      } finally {
        done();
      }
      return undefined;
    }
    this.running++;
    return new Promise((resolve) => {
      const turn = (): void => {
        try {
          if (slice(walk) === undefined) {
            setImmediate(turn);
            return;
          }
        } catch (err) {
          this.failed(err);
        }
        try {
          done();
        } catch (err) {
          this.failed(err);
        }
        this.finish();
        resolve();
      };
      setImmediate(turn);
    });
  }

  /** Resolves once no work runs. */
  whenIdle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
    });
  }

  private finish(): void {
    if (--this.running > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
