/**
 * What a sweep runs: a scenario is a TypeScript function that drives a fresh Kernel through
 * simulated processes, arms fail-nth where sweeping should start (`ctx.failNthEnable(proc)`, the
 * kernel selftest's fail_nth_enable()), and either completes or stops at the first call that
 * fails. The sweep runs it on a new Kernel for every injection point.
 */
import type { Kernel, KernelOptions } from '../boot/kernel.ts';
import { SimProcess, type SimProcessOptions } from '../host/sim-process.ts';
import { Errno, errnoName } from '../uapi/errno.ts';
import * as ioctlNumbers from '../uapi/ioctl.ts';

/**
 * Thrown by ScenarioContext.ok() when a call fails: the scenario stops there, like a kernel
 * selftest body returning -1. Expected once a fault was injected; a bug before that.
 */
export class ScenarioStop extends Error {
  readonly what: string;
  readonly ret: number;

  constructor(what: string, ret: number) {
    super(`${what} failed: ${errnoName(-ret)}`);
    this.name = 'ScenarioStop';
    this.what = what;
    this.ret = ret;
  }
}

/** Thrown by ScenarioContext.check(): a functional expectation of the scenario did not hold. */
export class ScenarioCheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScenarioCheckError';
  }
}

/** The handle a scenario drives the kernel through. */
export interface ScenarioContext {
  readonly kernel: Kernel;
  /** A new simulated process (root with every capability unless told otherwise). */
  spawn(options?: SimProcessOptions): SimProcess;
  /**
   * fail_nth_enable(): injection points of `proc` count from here. The counting run records
   * them; a swept run arms fail-nth to its n here.
   */
  failNthEnable(proc: SimProcess): void;
  /** The call must succeed: returns `ret`, or stops the scenario (ScenarioStop) when negative. */
  ok(ret: number, what: string): number;
  /**
   * The call must fail with `errno`. Another failure stops the scenario (it may be injected);
   * success is a broken expectation.
   */
  fails(ret: number, errno: number, what: string): void;
  /** A functional expectation (ScenarioCheckError when false). */
  check(condition: boolean, message: string): void;
}

/** A built-in or user scenario for the sweep. */
export interface Scenario {
  /** Short kebab-case name, used on the command line (`--scenario NAME`). */
  readonly name: string;
  /** One line: what it exercises. */
  readonly description: string;
  /** How to build its Kernel (e.g. no-IOMMU mode on). */
  readonly kernelOptions?: KernelOptions;
  run(ctx: ScenarioContext): void | Promise<void>;
}

/** ioctl number -> name, for call logs. */
const ioctlNames = new Map<number, string>();
for (const [name, value] of Object.entries(ioctlNumbers)) {
  if (typeof value !== 'number' || !/^(IOMMU|VFIO)_/.test(name)) continue;
  const prev = ioctlNames.get(value);
  ioctlNames.set(value, prev === undefined ? name : `${prev}|${name}`);
}

/** The name of an ioctl command number, or its hex value. */
export function ioctlName(cmd: number): string {
  return ioctlNames.get(cmd) ?? `0x${cmd.toString(16)}`;
}

/** What kind of call a log entry is, for the atomicity policy. */
export type CallKind =
  | { readonly kind: 'open'; readonly path: string }
  | { readonly kind: 'ioctl'; readonly cmd: number }
  | { readonly kind: 'close' | 'pread' | 'pwrite'; readonly fd: number };

/** Observes every call of a CheckedProcess: the sweep's hook around each syscall. */
export interface CallObserver {
  observe(proc: CheckedProcess, call: CallKind, label: string, fn: () => number): number;
}

/** A SimProcess whose calls go through a CallObserver (snapshots, invariants, call log). */
export class CheckedProcess extends SimProcess {
  private readonly observer: CallObserver;

  constructor(kernel: Kernel, observer: CallObserver, options: SimProcessOptions = {}) {
    super(kernel, options);
    this.observer = observer;
  }

  override open(path: string, flags = 2): number {
    return this.observer.observe(this, { kind: 'open', path }, `open(${path})`, () =>
      super.open(path, flags),
    );
  }

  override ioctl(fd: number, cmd: number, arg: bigint | number = 0n): number {
    return this.observer.observe(
      this,
      { kind: 'ioctl', cmd },
      `ioctl(${fd}, ${ioctlName(cmd)})`,
      () => super.ioctl(fd, cmd, arg),
    );
  }

  override pread(fd: number, length: number, pos: bigint): Uint8Array | number {
    let out: Uint8Array | number = -Errno.EIO;
    this.observer.observe(
      this,
      { kind: 'pread', fd },
      `pread(${fd}, ${length}, 0x${pos.toString(16)})`,
      () => {
        out = super.pread(fd, length, pos);
        return typeof out === 'number' ? out : out.length;
      },
    );
    return out;
  }

  override pwrite(fd: number, data: Uint8Array, pos: bigint): number {
    return this.observer.observe(
      this,
      { kind: 'pwrite', fd },
      `pwrite(${fd}, ${data.length}, 0x${pos.toString(16)})`,
      () => super.pwrite(fd, data, pos),
    );
  }

  override close(fd: number): number {
    return this.observer.observe(this, { kind: 'close', fd }, `close(${fd})`, () =>
      super.close(fd),
    );
  }
}

/** The default fail-if-negative helpers, shared by every ScenarioContext. */
export function scenarioHelpers(): Pick<ScenarioContext, 'ok' | 'fails' | 'check'> {
  return {
    ok(ret, what) {
      if (ret < 0) throw new ScenarioStop(what, ret);
      return ret;
    },
    fails(ret, errno, what) {
      if (ret === -errno) return;
      if (ret < 0) throw new ScenarioStop(what, ret);
      throw new ScenarioCheckError(`${what} succeeded (${ret}), expected ${errnoName(errno)}`);
    },
    check(condition, message) {
      if (!condition) throw new ScenarioCheckError(message);
    },
  };
}
