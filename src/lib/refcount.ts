/**
 * Reference counts as the kernel keeps them (include/linux/refcount.h), and the plain counters
 * the kernel keeps beside them. Where the kernel warns and saturates (a refcount_t misused),
 * these throw: in an emulator a refcount bug must stop the call that made it, where the
 * syscall boundary turns it into EIO and a `bug` event, instead of corrupting state quietly.
 *
 * A leaf module: every layer may import it.
 */

/** A misuse of a reference count: what the kernel reports with "refcount_t: ..." warnings. */
export class RefcountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RefcountError';
  }
}

/**
 * refcount_t: the number of holders of an object that is freed when the count reaches zero.
 * Zero means the object is dead, so nothing may take a reference from zero (use after free);
 * the count never goes below zero (underflow); and a plain dec() must not be the one that
 * reaches zero (whoever drops the last reference must free, so uses decAndTest()).
 */
export class Refcount {
  /** What is counted, for messages: "ioas 3 users", "vfio0 registration". */
  private readonly what: () => string;
  private refs: number;

  constructor(initial: number, what: string | (() => string)) {
    if (!Number.isInteger(initial) || initial < 0)
      throw new RefcountError(`refcount of ${initial} is not a count`);
    this.refs = initial;
    this.what = typeof what === 'string' ? () => what : what;
  }

  /** refcount_read(). */
  read(): number {
    return this.refs;
  }

  /** refcount_set(): only for (re)initialising an object nobody else can see. */
  set(n: number): void {
    if (!Number.isInteger(n) || n < 0) throw new RefcountError(`${this.what()}: set to ${n}`);
    this.refs = n;
  }

  /** refcount_inc(): the caller already holds a reference, so the count cannot be zero. */
  inc(): void {
    this.add(1);
  }

  /** refcount_add(). */
  add(n: number): void {
    if (this.refs === 0) throw new RefcountError(`${this.what()}: addition on 0; use-after-free`);
    this.refs += n;
  }

  /** refcount_inc_not_zero(): take a reference unless the object is already dying. */
  incNotZero(): boolean {
    if (this.refs === 0) return false;
    this.refs++;
    return true;
  }

  /** refcount_dec(): drop a reference that is not the last one. */
  dec(): void {
    if (this.refs === 0) throw new RefcountError(`${this.what()}: underflow; use-after-free`);
    if (this.refs === 1) throw new RefcountError(`${this.what()}: decrement hit 0; leaking memory`);
    this.refs--;
  }

  /** refcount_dec_and_test(): drop a reference; true when it was the last (free the object). */
  decAndTest(): boolean {
    return this.subAndTest(1);
  }

  /** refcount_sub_and_test(). */
  subAndTest(n: number): boolean {
    if (n > this.refs) throw new RefcountError(`${this.what()}: underflow; use-after-free`);
    this.refs -= n;
    return this.refs === 0;
  }

  /** refcount_dec_if_one(): 1 -> 0 and true, or false and nothing changes. */
  decIfOne(): boolean {
    if (this.refs !== 1) return false;
    this.refs = 0;
    return true;
  }

  /** refcount_dec_not_one(): drop a reference unless it is the last; false when it is. */
  decNotOne(): boolean {
    if (this.refs === 0) throw new RefcountError(`${this.what()}: underflow; use-after-free`);
    if (this.refs === 1) return false;
    this.refs--;
    return true;
  }
}

/**
 * A plain unsigned count the kernel keeps under a lock (vfio_device->open_count,
 * vfio_group->cdev_device_open_cnt): it starts at zero and comes back to zero, but never goes
 * below it, and never above `max` when one is given.
 */
export class Counter {
  private readonly what: () => string;
  private readonly max: number;
  private count = 0;

  constructor(what: string | (() => string), max = Number.MAX_SAFE_INTEGER) {
    this.what = typeof what === 'string' ? () => what : what;
    this.max = max;
  }

  read(): number {
    return this.count;
  }

  inc(): void {
    if (this.count >= this.max)
      throw new RefcountError(`${this.what()}: count above its maximum ${this.max}`);
    this.count++;
  }

  dec(): void {
    if (this.count === 0) throw new RefcountError(`${this.what()}: count underflow`);
    this.count--;
  }
}
