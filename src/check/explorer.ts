/**
 * The randomized model-based explorer: fast-check generates sequences of iommufd and VFIO cdev
 * calls (IOAS_ALLOC, MAP fixed/auto, UNMAP, COPY, DESTROY, ALLOW_IOVAS, IOVA_RANGES, HWPT_ALLOC,
 * GET_PA, and open/bind/attach/detach/close of the default platform's devices, the no-IOMMU one
 * included), runs each against a fresh kernel and against a small reference model (which ids
 * exist, which IOVA ranges each IOAS maps, which HWPT each device is attached to, and the errno
 * of the obvious failures), and after every call checks the result, that the kernel's state
 * matches the model, the invariants, and that no emulator bug was logged. Optionally arms
 * fail-nth before random calls: a call that fails by injection must leave the state as it was
 * (where the kernel promises that). Failures shrink to a minimal sequence; the seed is printed.
 */
import fc from 'fast-check';
import { Kernel } from '../boot/kernel.ts';
import { activeMutant } from '../fault/mutant.ts';
import { CAP_FULL_SET, CAP_IPC_LOCK } from '../host/credentials.ts';
import { SimProcess } from '../host/sim-process.ts';
import { errnoName } from '../uapi/errno.ts';
import {
  AttachCmd,
  BindCmd,
  CloseDeviceCmd,
  DetachCmd,
  GetPaCmd,
  HwptAllocCmd,
  OpenDeviceCmd,
} from './_explorer-device-commands.ts';
import {
  AllowIovasCmd,
  CopyCmd,
  DestroyCmd,
  IoasAllocCmd,
  IovaRangesCmd,
  MapCmd,
  type Target,
  UnmapCmd,
} from './_explorer-ioas-commands.ts';
import {
  BUF_PAGES,
  DEVICES,
  type ExploreStats,
  fail,
  initialModel,
  type Model,
  PAGE,
  type Real,
  SLOTS,
} from './_explorer-model.ts';
import { IommufdOps } from './_ops.ts';
import { checkInvariants } from './invariants.ts';

export type { ExploreStats };

// ---- the arbitraries and the run -------------------------------------------------------------

function commandArbitraries(faults: boolean): fc.Arbitrary<fc.Command<Model, Real>>[] {
  const nth = faults ? fc.option(fc.integer({ min: 1, max: 24 }), { freq: 3 }) : fc.constant(null);
  const sel = fc.nat({ max: 7 });
  const rarely = fc.nat({ max: 9 }).map((x) => x === 0);
  const dev = fc.nat({ max: DEVICES.length - 1 });
  const target = fc.constantFrom<Target>('ioas', 'ioas', 'hwpt', 'device', 'bogus');
  return [
    nth.map((n) => new IoasAllocCmd(n)),
    nth.map((n) => new IoasAllocCmd(n)),
    fc
      .tuple(
        sel,
        rarely,
        fc.nat({ max: BUF_PAGES - 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        fc.nat({ max: SLOTS - 1 }),
        nth,
      )
      .map(([s, b, off, pages, fixed, slot, n]) => new MapCmd(s, b, off, pages, fixed, slot, n)),
    fc
      .tuple(
        sel,
        rarely,
        fc.nat({ max: BUF_PAGES - 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        fc.nat({ max: SLOTS - 1 }),
        nth,
      )
      .map(([s, b, off, pages, fixed, slot, n]) => new MapCmd(s, b, off, pages, fixed, slot, n)),
    fc
      .tuple(
        sel,
        rarely,
        fc.constantFrom<'area' | 'all' | 'range'>('area', 'area', 'all', 'range'),
        fc.nat({ max: 15 }),
        fc.integer({ min: 1, max: 12 }),
        nth,
      )
      .map(([s, b, mode, which, pages, n]) => new UnmapCmd(s, b, mode, which, pages, n)),
    fc
      .tuple(
        sel,
        sel,
        fc.nat({ max: 7 }),
        fc.integer({ min: 1, max: 8 }),
        sel,
        rarely,
        fc.boolean(),
        fc.nat({ max: SLOTS - 1 }),
        nth,
      )
      .map(
        ([s, a, skip, pages, d, b, fixed, slot, n]) =>
          new CopyCmd(s, a, skip, pages, d, b, fixed, slot, n),
      ),
    fc.tuple(target, sel, nth).map(([t, s, n]) => new DestroyCmd(t, s, n)),
    fc
      .tuple(sel, rarely, fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }), nth)
      .map(([s, b, which, n]) => new AllowIovasCmd(s, b, which, n)),
    fc.tuple(sel, rarely, nth).map(([s, b, n]) => new IovaRangesCmd(s, b, n)),
    fc.tuple(dev, nth).map(([d, n]) => new OpenDeviceCmd(d, n)),
    fc.tuple(dev, nth).map(([d, n]) => new OpenDeviceCmd(d, n)),
    fc.tuple(dev, nth).map(([d, n]) => new BindCmd(d, n)),
    fc.tuple(dev, nth).map(([d, n]) => new BindCmd(d, n)),
    fc.tuple(dev, target, sel, nth).map(([d, t, s, n]) => new AttachCmd(d, t, s, n)),
    fc.tuple(dev, target, sel, nth).map(([d, t, s, n]) => new AttachCmd(d, t, s, n)),
    fc.tuple(dev, nth).map(([d, n]) => new DetachCmd(d, n)),
    fc.tuple(dev, nth).map(([d, n]) => new CloseDeviceCmd(d, n)),
    fc.tuple(dev, target, sel, nth).map(([d, t, s, n]) => new HwptAllocCmd(d, t, s, n)),
    fc
      .tuple(sel, sel, fc.nat({ max: 7 }), rarely, nth)
      .map(([s, a, p, h, n]) => new GetPaCmd(s, a, p, h, n)),
  ];
}

/** A fresh kernel in no-IOMMU mode and a process (without CAP_IPC_LOCK: pins are charged). */
function setupReal(stats: ExploreStats): Real {
  const kernel = new Kernel({ enableUnsafeNoiommuMode: true });
  const bugs: string[] = [];
  kernel.events.subscribe((e) => {
    if (e.kind === 'log' && e.level === 'bug') bugs.push(e.message);
  });
  const proc = new SimProcess(kernel, { capEff: CAP_FULL_SET & ~(1n << BigInt(CAP_IPC_LOCK)) });
  const fd = proc.open('/dev/iommu');
  if (fd < 0) throw new Error(`open /dev/iommu: ${errnoName(fd)}`);
  const buf = proc.alloc(BigInt(BUF_PAGES) * PAGE);
  return {
    kernel,
    proc,
    ops: new IommufdOps(proc, fd),
    buf,
    devFds: DEVICES.map(() => undefined),
    bugs,
    stats,
  };
}

/** Every process exits: nothing may be left, no bug may be logged. */
function teardown(r: Real): void {
  r.proc.exit();
  const broken = checkInvariants(r.kernel);
  if (broken.length > 0) fail(`invariants after exit: ${broken.join('; ')}`);
  const leaks = r.kernel.leaks();
  if (leaks.length > 0) fail(`leaks after exit: ${leaks.join('; ')}`);
  if (r.bugs.length > 0) fail(`emulator bug during exit: ${r.bugs[0]}`);
}

export interface ExploreOptions {
  /** The fast-check seed; a random one (printed in the report) when absent. */
  readonly seed?: number;
  /** How many command sequences to try (default 100). */
  readonly runs?: number;
  /** Replays one shrunk counterexample (fast-check's path), with the same seed. */
  readonly path?: string;
  /** fast-check's replayPath hint for the command sequence, with `path`. */
  readonly replayPath?: string;
  /** Also arm fail-nth before random calls (default false). */
  readonly faults?: boolean;
  /** The longest sequence (default 40). */
  readonly maxCommands?: number;
}

export interface ExploreReport {
  readonly ok: boolean;
  readonly seed: number;
  readonly runs: number;
  readonly faults: boolean;
  /** fast-check's report of the (shrunk) counterexample, when one was found. */
  readonly message: string | undefined;
  /** What went wrong in the counterexample. */
  readonly error: string | undefined;
  /** The command line that reruns this exploration (and, on failure, the counterexample). */
  readonly replay: string;
  readonly stats: ExploreStats;
}

/** Runs the explorer. Synchronous; a few milliseconds per command. */
export function explore(options: ExploreOptions = {}): ExploreReport {
  const seed = options.seed ?? (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;
  const runs = options.runs ?? 100;
  const faults = options.faults ?? false;
  const arbs = commandArbitraries(faults);
  const stats: ExploreStats = { calls: 0, byCall: {}, injected: 0, failedByInjection: 0 };
  const property = fc.property(
    fc.commands(arbs, {
      maxCommands: options.maxCommands ?? 40,
      size: 'max',
      ...(options.replayPath === undefined ? {} : { replayPath: options.replayPath }),
    }),
    (cmds) => {
      let real: Real | undefined;
      try {
        fc.modelRun(() => {
          real = setupReal(stats);
          return { model: initialModel(), real };
        }, cmds);
        if (real !== undefined) teardown(real);
      } finally {
        real?.kernel.shutdown();
      }
    },
  );
  const details = fc.check(property, {
    seed,
    numRuns: runs,
    ...(options.path === undefined ? {} : { path: options.path }),
  });
  const mutant = activeMutant();
  const base =
    `iommufd-emu check --explore --seed ${seed} --runs ${runs}` +
    (faults ? ' --faults' : '') +
    (mutant === undefined ? '' : ` --mutant ${mutant}`);
  let replay = base;
  if (details.failed && details.counterexamplePath !== null) {
    const hint = /replayPath="([^"]*)"/.exec(String(details.counterexample?.[0] ?? ''));
    replay += ` --path ${details.counterexamplePath}`;
    if (hint !== null) replay += ` --replay-path '${hint[1]}'`;
  }
  const error = details.errorInstance;
  return {
    ok: !details.failed,
    seed,
    runs,
    faults,
    message: details.failed ? (fc.defaultReportMessage(details) ?? 'failed') : undefined,
    error: details.failed ? (error instanceof Error ? error.message : String(error)) : undefined,
    replay,
    stats,
  };
}
