/**
 * For tests of calls that go on over several turns of the event loop: an ioctl made as a served
 * client's call is (by a task that may yield), the wait for its answer with something done on
 * every other turn meanwhile, what a call leaves with fail-nth armed, the domain it built, and
 * the bound device they start from.
 */
import assert from 'node:assert/strict';
import { IommufdOps, VfioDeviceOps } from '../check/_ops.ts';
import { checkInvariants } from '../check/invariants.ts';
import { type FaultSite, withFailNth } from '../fault/fault.ts';
import { isBlocked, type MaybeBlocked } from '../host/file.ts';
import type { SimProcess } from '../host/sim-process.ts';
import type { Emulator } from '../index.ts';
import { type Decoded, encodeStruct, type FieldTable, type StructSpec } from '../uapi/struct.ts';
import { HwptPaging } from './hw-pagetable.ts';
import type { IoptDomain } from './pages.ts';

/** The ioctl `cmd` on `fd` with `fields` at `arg`, by a task of `proc` that may yield. */
export function served<F extends FieldTable>(
  proc: SimProcess,
  fd: number,
  cmd: number,
  spec: StructSpec<F>,
  fields: Partial<Decoded<F>>,
  arg = proc.alloc(BigInt(spec.size)),
): MaybeBlocked {
  const task = { ...proc.task(), yields: true };
  const file = task.fds.fileOf(fd)!;
  proc.memory.write(arg, encodeStruct(spec, fields));
  return withFailNth(proc.failNth, () => file.fops.ioctl!(file, task, cmd, arg)) as MaybeBlocked;
}

/** The call's result, with `during` run on every other turn of the event loop meanwhile. */
export async function settle(
  value: MaybeBlocked,
  during: (turn: number) => void = () => {},
): Promise<{ ret: number; turns: number }> {
  if (!isBlocked(value)) return { ret: value, turns: 0 };
  let turns = 0;
  let done = false;
  const other = (): void => {
    if (done) return;
    during(turns++);
    setImmediate(other);
  };
  setImmediate(other);
  const ret = await value.blocked;
  done = true;
  return { ret, turns };
}

/** What a call leaves behind: its result, the point fail-nth failed, pins, charges, invariants. */
export interface CallOutcome {
  readonly ret: number;
  readonly fired: FaultSite | undefined;
  readonly pinned: bigint;
  readonly charged: bigint;
  readonly broken: string[];
}

/**
 * Runs `call` with `proc`'s fail-nth counter armed at `nth` (0: never fails), its injection
 * points recorded on `trail` when given, and says what it left.
 */
export async function outcomeWithFailNth(
  emu: Emulator,
  proc: SimProcess,
  nth: number,
  trail: FaultSite[] | undefined,
  call: () => Promise<number>,
): Promise<CallOutcome> {
  proc.failNth.arm(nth);
  proc.failNth.trail = trail;
  const ret = await call();
  const fired = proc.failNth.lastFired;
  proc.failNth.arm(0);
  proc.failNth.trail = undefined;
  return {
    ret,
    fired,
    pinned: emu.kernel.machine.pinned.stats().pinnedPages,
    charged: emu.kernel.iommufd.accounting.total(),
    broken: checkInvariants(emu.kernel),
  };
}

/** The domain of the first published paging HWPT (a device's auto domain), if there is one. */
export function pagingDomain(emu: Emulator): IoptDomain | undefined {
  for (const ctx of emu.kernel.iommufd.contexts) {
    for (const obj of ctx.publishedObjects()) if (obj instanceof HwptPaging) return obj.domain;
  }
  return undefined;
}

/** An iommufd of `proc`, vfio0 bound to it, and a fresh IOAS (nothing attached yet). */
export function boundDevice(proc: SimProcess) {
  const ops = new IommufdOps(proc, proc.open('/dev/iommu'));
  const dev = new VfioDeviceOps(proc, proc.open('/dev/vfio/devices/vfio0'));
  const bound = dev.bind(ops.fd);
  assert.equal(bound.ret, 0);
  const ioas = ops.ioasAlloc();
  assert.equal(ioas.ret, 0);
  return { ops, dev, devid: bound.devid, ioas: ioas.id };
}
