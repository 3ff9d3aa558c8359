/**
 * Pins in batches (area-fill.ts): a map into an IOAS with a domain is pinned and mapped a batch
 * at a time, each batch charged before it is pinned; a served client's map yields between
 * batches. Whatever the slicing, the result, the errno and the state are a map's at once: a
 * limit that runs out midway undoes exactly what was pinned, calls made meanwhile see the area
 * as the kernel shows it (an unmap is EBUSY, a DESTROY of the IOAS is EBUSY), and domains
 * attached or detached meanwhile end up holding exactly the areas they should.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FIXED } from '../check/_ops.ts';
import { checkInvariants } from '../check/invariants.ts';
import { type FaultSite, withFailNth } from '../fault/fault.ts';
import { CAP_IPC_LOCK } from '../host/credentials.ts';
import { isBlocked, type MaybeBlocked } from '../host/file.ts';
import type { SimProcess } from '../host/sim-process.ts';
import { createEmulator, type Emulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import { decodeStruct, encodeStruct } from '../uapi/struct.ts';
import * as v from '../uapi/vfio.ts';
import { boundDevice, outcomeWithFailNth, settle } from './_test-served.ts';
import { FILL_BATCH_PAGES } from './area-fill.ts';

const MIB = 1n << 20n;

/** A process with an iommufd, vfio0 bound and attached to a fresh IOAS. */
function setup(emu: Emulator, proc: SimProcess) {
  const t = boundDevice(proc);
  assert.equal(t.dev.attach(t.ioas).ret, 0);
  const pinned = emu.kernel.machine.pinned;
  const pin = pinned.pin.bind(pinned);
  const counts = { calls: 0 };
  pinned.pin = (...args: Parameters<typeof pin>) => {
    counts.calls++;
    return pin(...args);
  };
  return { ...t, pins: counts };
}

/** IOAS_MAP made as a served client's call is: by a task that may yield. */
function mapYielding(
  proc: SimProcess,
  fd: number,
  fields: { ioas_id: number; flags: number; user_va: bigint; length: bigint; iova: bigint },
): { result: MaybeBlocked; iova: () => bigint } {
  const task = { ...proc.task(), yields: true };
  const file = task.fds.fileOf(fd)!;
  const arg = proc.alloc(BigInt(u.iommuIoasMap.size));
  proc.memory.write(arg, encodeStruct(u.iommuIoasMap, { size: u.iommuIoasMap.size, ...fields }));
  const result = withFailNth(proc.failNth, () =>
    file.fops.ioctl!(file, task, ioctl.IOMMU_IOAS_MAP, arg),
  ) as MaybeBlocked;
  const iova = () => decodeStruct(u.iommuIoasMap, proc.memory.read(arg, u.iommuIoasMap.size)!).iova;
  return { result, iova };
}

describe('pins in batches', () => {
  it('a limit that runs out midway fails with ENOMEM and undoes exactly what was pinned', () => {
    const emu = createEmulator();
    const proc = emu.spawn({ uid: 1000, memlockLimit: 4n * MIB });
    proc.setCapability(CAP_IPC_LOCK, false);
    const t = setup(emu, proc);
    const free = emu.kernel.machine.phys.stats().freeFrames;
    const va = proc.alloc(16n * MIB);
    assert.equal(t.ops.map(t.ioas, va, 16n * MIB, FIXED, 0x1000_0000n).ret, -Errno.ENOMEM);
    // Batch by batch up to the limit, not the whole 16 MiB first and not nothing.
    const batches = Number((4n * MIB) / (FILL_BATCH_PAGES * u.PAGE_SIZE));
    assert.equal(t.pins.calls, batches);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
    assert.equal(emu.kernel.machine.phys.stats().freeFrames, free);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    // Nothing left charged: exactly the limit fits, one page more does not.
    assert.equal(t.ops.map(t.ioas, va, 4n * MIB, FIXED, 0x1000_0000n).ret, 0);
    assert.equal(t.ops.map(t.ioas, va + 4n * MIB, 4096n, FIXED, 0x2000_0000n).ret, -Errno.ENOMEM);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });

  it('over the limit, a hole anywhere in the range is EFAULT, as the kernel pins before it charges', () => {
    const emu = createEmulator();
    const proc = emu.spawn({ uid: 1000, memlockLimit: 4n * MIB });
    proc.setCapability(CAP_IPC_LOCK, false);
    const t = setup(emu, proc);
    const va = proc.alloc(12n * MIB);
    // The page after the buffer is a hole: the limit runs out at 4 MiB, the hole is 8 MiB later.
    assert.equal(proc.memory.vma(va + 12n * MIB), undefined);
    assert.equal(t.ops.map(t.ioas, va, 12n * MIB + 4096n, FIXED, 0x1000_0000n).ret, -Errno.EFAULT);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
  });

  it("a served client's map yields between batches and ends as a map at once", async () => {
    const length = 64n * MIB;
    const now = createEmulator();
    const nowProc = now.spawn();
    const a = setup(now, nowProc);
    const nowVa = nowProc.alloc(length);
    assert.equal(a.ops.map(a.ioas, nowVa, length, FIXED, 0x4000_0000n).ret, 0);

    const emu = createEmulator();
    const proc = emu.spawn();
    const t = setup(emu, proc);
    const va = proc.alloc(length);
    const other = t.ops.ioasAlloc();
    assert.equal(other.ret, 0);
    const call = mapYielding(proc, t.ops.fd, {
      ioas_id: t.ioas,
      flags: FIXED,
      user_va: va,
      length,
      iova: 0x4000_0000n,
    });
    assert.ok(isBlocked(call.result), 'a 64 MiB pin does not end in one slice');
    const seen = new Set<string>();
    const { ret, turns } = await settle(call.result, () => {
      // Meanwhile: the area is there without pages, its IOAS held by the call.
      seen.add(`unmap ${t.ops.unmap(t.ioas, 0x4000_0000n, length).ret}`);
      seen.add(`destroy ${t.ops.destroy(t.ioas)}`);
      seen.add(`map over it ${t.ops.map(t.ioas, va, 4096n, FIXED, 0x4000_0000n).ret}`);
      seen.add(
        `copy from it ${t.ops.copy(t.ioas, 0x4000_0000n, other.id, 4096n, FIXED, 0x1000n).ret}`,
      );
      for (const line of checkInvariants(emu.kernel)) seen.add(line);
    });
    assert.equal(ret, 0);
    assert.ok(turns >= 3, `${turns} other turns ran`);
    assert.deepEqual([...seen].sort(), [
      `copy from it ${-Errno.ENOENT}`,
      `destroy ${-Errno.EBUSY}`,
      `map over it ${-Errno.EEXIST}`,
      `unmap ${-Errno.EBUSY}`,
    ]);
    assert.equal(call.iova(), 0x4000_0000n);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    assert.equal(t.pins.calls, a.pins.calls);
    assert.equal(
      emu.kernel.machine.pinned.stats().pinnedPages,
      now.kernel.machine.pinned.stats().pinnedPages,
    );
    assert.deepEqual(t.ops.unmap(t.ioas, 0x4000_0000n, length), { ret: 0, length });
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
  });

  it("a served client's VFIO type1 MAP_DMA yields too, holding the compat IOAS", async () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const t = setup(emu, proc);
    const set = proc.ioctlStruct(t.ops.fd, ioctl.IOMMU_VFIO_IOAS, u.iommuVfioIoas, {
      op: u.IOMMU_VFIO_IOAS_SET,
      ioas_id: t.ioas,
    });
    assert.equal(set.ret, 0);
    assert.equal(proc.ioctl(t.ops.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), 0);
    const length = 32n * MIB;
    const va = proc.alloc(length);
    const task = { ...proc.task(), yields: true };
    const file = task.fds.fileOf(t.ops.fd)!;
    const arg = proc.alloc(BigInt(v.vfioIommuType1DmaMap.size));
    const fields = {
      argsz: v.vfioIommuType1DmaMap.size,
      flags: v.VFIO_DMA_MAP_FLAG_READ | v.VFIO_DMA_MAP_FLAG_WRITE,
      vaddr: va,
      iova: 0x4000_0000n,
      size: length,
    };
    proc.memory.write(arg, encodeStruct(v.vfioIommuType1DmaMap, fields));
    const result = file.fops.ioctl!(file, task, ioctl.VFIO_IOMMU_MAP_DMA, arg) as MaybeBlocked;
    assert.ok(isBlocked(result));
    const busy = new Set<number>();
    const { ret } = await settle(result, () => {
      busy.add(t.ops.unmap(t.ioas, 0x4000_0000n, length).ret);
      assert.deepEqual(checkInvariants(emu.kernel), []);
    });
    assert.equal(ret, 0);
    assert.deepEqual([...busy], [-Errno.EBUSY]);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    assert.deepEqual(t.ops.unmap(t.ioas, 0x4000_0000n, length), { ret: 0, length });
  });

  it('a domain attached or detached while a map is pinning ends up holding what it should', async () => {
    for (const detachAt of [undefined, 2, 5]) {
      const emu = createEmulator();
      const proc = emu.spawn();
      const t = setup(emu, proc);
      const length = 48n * MIB;
      const va = proc.alloc(length);
      const call = mapYielding(proc, t.ops.fd, {
        ioas_id: t.ioas,
        flags: FIXED,
        user_va: va,
        length,
        iova: 0x4000_0000n,
      });
      let hwpt: number | undefined;
      const { ret } = await settle(call.result, (turn) => {
        if (turn === 1) {
          const r = t.ops.hwptAlloc(t.devid, t.ioas);
          assert.equal(r.ret, 0);
          hwpt = r.id;
        }
        if (turn === detachAt && hwpt !== undefined) {
          assert.equal(t.ops.destroy(hwpt), 0);
          hwpt = undefined;
        }
        assert.deepEqual(checkInvariants(emu.kernel), [], `turn ${turn}`);
      });
      assert.equal(ret, 0);
      // Every domain maps every page of the area at its pinned frame (the invariant says so).
      assert.deepEqual(checkInvariants(emu.kernel), []);
      if (hwpt !== undefined) assert.equal(t.ops.destroy(hwpt), 0);
      assert.equal(t.dev.detach(), 0);
      assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n, 'no domain, no pin');
      assert.deepEqual(checkInvariants(emu.kernel), []);
    }
  });

  it('a failure injected at any point of a yielding map leaves what the same failure at once does', async () => {
    // Past one slice, so that the yielding map does yield.
    const length = 6n * MIB;
    const outcome = (nth: number, yields: boolean, trail?: FaultSite[]) => {
      const emu = createEmulator();
      const proc = emu.spawn({ uid: 1000, memlockLimit: 64n * MIB });
      proc.setCapability(CAP_IPC_LOCK, false);
      const t = setup(emu, proc);
      const va = proc.alloc(length);
      const fields = { ioas_id: t.ioas, flags: FIXED, user_va: va, length, iova: 0x4000_0000n };
      return outcomeWithFailNth(emu, proc, nth, trail, async () =>
        yields
          ? (await settle(mapYielding(proc, t.ops.fd, fields).result)).ret
          : t.ops.map(t.ioas, va, length, FIXED, 0x4000_0000n).ret,
      );
    };
    // The injection points of the call, in order: a frame allocation per 4 KiB page pinned, so
    // every other point, and the frame allocations that start, cut and end the batches.
    const trail: FaultSite[] = [];
    const clean = await outcome(0, false, trail);
    assert.equal(clean.ret, 0);
    const pages = Number(length / u.PAGE_SIZE);
    const frames = trail.flatMap((site, i) => (site === 'frame-alloc' ? [i + 1] : []));
    assert.equal(frames.length, pages);
    const batch = Number(FILL_BATCH_PAGES);
    const picked = [0, batch - 1, batch, pages - 1].map((i) => frames[i]!);
    const nths = trail.flatMap((site, i) => (site === 'frame-alloc' ? [] : [i + 1]));
    assert.ok(nths.length >= 5, `${nths.length} other points`);
    for (const nth of [...nths, ...picked]) {
      const now = await outcome(nth, false);
      assert.notEqual(now.fired, undefined, `fail-nth ${nth} fires`);
      assert.notEqual(now.ret, 0);
      assert.deepEqual(await outcome(nth, true), now, `fail-nth ${nth} (${trail[nth - 1]})`);
      assert.deepEqual(now.broken, []);
    }
  });
});
