/**
 * An unmap of big areas (io-pagetable.ts unmapRangeWalk, area-fill.ts areaUnfillDomainsWalk): a
 * served client's unmap takes the IOPTEs out of every domain and unpins a batch per step, holding
 * its context meanwhile, and ends as an unmap at once: nothing mapped, pinned or charged that
 * should not be, no IOPTE cut in two, pages another area holds still pinned once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FIXED, IommufdOps } from '../check/_ops.ts';
import { checkInvariants } from '../check/invariants.ts';
import { CAP_IPC_LOCK } from '../host/credentials.ts';
import { isBlocked, type MaybeBlocked } from '../host/file.ts';
import type { SimProcess } from '../host/sim-process.ts';
import { createEmulator, type Emulator } from '../index.ts';
import { SZ_1G, SZ_2M } from '../platform/sizes.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import { decodeStruct } from '../uapi/struct.ts';
import * as v from '../uapi/vfio.ts';
import { boundDevice, pagingDomain, served, settle } from './_test-served.ts';
import type { IoptDomain } from './pages.ts';

const MIB = 1n << 20n;
const IOVA = 0x4000_0000n;

/** A process charged for what it pins (no CAP_IPC_LOCK). */
function spawnCharged(emu: Emulator): SimProcess {
  const proc = emu.spawn({ uid: 1000, memlockLimit: 8n * SZ_1G });
  proc.setCapability(CAP_IPC_LOCK, false);
  return proc;
}

/** A process with an iommufd and vfio0 attached to a fresh IOAS (a domain to map into). */
function setup(proc: SimProcess) {
  const t = boundDevice(proc);
  assert.equal(t.dev.attach(t.ioas).ret, 0);
  return t;
}

/** IOAS_UNMAP made as a served client's call is, and the length it wrote back. */
function unmapServed(
  proc: SimProcess,
  fd: number,
  ioasId: number,
  iova: bigint,
  length: bigint,
): { result: MaybeBlocked; length: () => bigint } {
  const spec = u.iommuIoasUnmap;
  const fields = { size: spec.size, ioas_id: ioasId, iova, length };
  const arg = proc.alloc(BigInt(spec.size));
  const result = served(proc, fd, ioctl.IOMMU_IOAS_UNMAP, spec, fields, arg);
  return { result, length: () => decodeStruct(spec, proc.memory.read(arg, spec.size)!).length };
}

/**
 * A charged process whose device is attached to an IOAS with `length` mapped at IOVA; with
 * `deferred`, the kernel's work after a release goes on as under the server.
 */
function mapped(length: bigint, deferred = false) {
  const emu = createEmulator();
  emu.kernel.iommufd.work.deferred = deferred;
  const proc = spawnCharged(emu);
  const t = setup(proc);
  assert.equal(t.ops.map(t.ioas, proc.alloc(length), length, FIXED, IOVA).ret, 0);
  return { emu, proc, t };
}

/** The IOAS's domain (the device's auto domain). */
function domainOf(emu: Emulator): IoptDomain {
  const domain = pagingDomain(emu);
  assert.ok(domain !== undefined);
  return domain;
}

describe('an unmap of big areas', () => {
  it("a served client's unmap yields and leaves what an unmap at once does", async () => {
    const length = 32n * MIB;
    const { emu, proc, t } = mapped(length);
    const small = proc.alloc(4096n);
    assert.equal(t.ops.map(t.ioas, small, 4096n, FIXED, 0x1000n).ret, 0);
    const pinnedBefore = emu.kernel.machine.pinned.stats().pinnedPages;
    assert.equal(pinnedBefore, length / u.PAGE_SIZE + 1n);
    const other = emu.spawn();
    const otherOps = new IommufdOps(other, other.open('/dev/iommu'));
    const call = unmapServed(proc, t.ops.fd, t.ioas, IOVA, length);
    assert.ok(isBlocked(call.result), 'unpinning 32 MiB does not end in one slice');
    let turns = 0;
    const { ret } = await settle(call.result, () => {
      turns++;
      // Another client is served meanwhile.
      assert.equal(otherOps.ioasAlloc().ret, 0);
    });
    assert.equal(ret, 0);
    assert.ok(turns >= 3, `${turns} other turns ran`);
    assert.equal(call.length(), length);
    const domain = domainOf(emu);
    for (let at = 0n; at < length; at += u.PAGE_SIZE)
      assert.equal(domain.iovaToPhys(IOVA + at), undefined);
    assert.notEqual(domain.iovaToPhys(0x1000n), undefined, 'the other area stays');
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 1n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 1n);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });

  it('many small areas take many slices too, and end as at once', async () => {
    const emu = createEmulator();
    const proc = spawnCharged(emu);
    const t = setup(proc);
    const areas = 2048n;
    const va = proc.alloc(areas * u.PAGE_SIZE);
    for (let i = 0n; i < areas; i++) {
      const at = i * u.PAGE_SIZE;
      assert.equal(t.ops.map(t.ioas, va + at, u.PAGE_SIZE, FIXED, IOVA + at).ret, 0);
    }
    const call = unmapServed(proc, t.ops.fd, t.ioas, 0n, u.ULONG_MAX);
    assert.ok(isBlocked(call.result), '2048 pinned pages in as many areas do not end in one slice');
    assert.equal((await settle(call.result)).ret, 0);
    assert.equal(call.length(), areas * u.PAGE_SIZE);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });

  it('never cuts an IOPTE: a batch runs on to the end of a huge page', async () => {
    const emu = createEmulator();
    const proc = spawnCharged(emu);
    const t = setup(proc);
    // 1 GiB pages, mapped at a 1 GiB aligned IOVA: one IOPTE per page where the IOMMU has them.
    const length = 2n * SZ_1G;
    const va = proc.memory.mmap(length, { pageSize: SZ_1G });
    assert.equal(t.ops.map(t.ioas, va, length, FIXED, SZ_1G).ret, 0);
    const twoMeg = proc.memory.mmap(8n * SZ_2M, { pageSize: SZ_2M });
    assert.equal(t.ops.map(t.ioas, twoMeg, 8n * SZ_2M, FIXED, 4n * SZ_1G).ret, 0);
    for (const [iova, len] of [
      [SZ_1G, length],
      [4n * SZ_1G, 8n * SZ_2M],
    ] as const) {
      const call = unmapServed(proc, t.ops.fd, t.ioas, iova, len);
      assert.equal((await settle(call.result)).ret, 0);
      assert.equal(call.length(), len);
    }
    const domain = domainOf(emu);
    for (let at = SZ_1G; at < 5n * SZ_1G; at += SZ_2M)
      assert.equal(domain.iovaToPhys(at), undefined, `IOVA ${at.toString(16)} unmapped`);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });

  it('pages another area holds stay pinned and charged once', async () => {
    const length = 16n * MIB;
    const { emu, proc, t } = mapped(length);
    // The middle half again, as a second area of the same pages in another IOAS with a domain.
    const second = t.ops.ioasAlloc();
    assert.equal(second.ret, 0);
    assert.equal(t.ops.hwptAlloc(t.devid, second.id).ret, 0);
    const half = length / 2n;
    assert.equal(t.ops.copy(t.ioas, IOVA + half / 2n, second.id, half, FIXED, IOVA).ret, 0);
    const pages = length / u.PAGE_SIZE;
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, pages);
    assert.equal(emu.kernel.iommufd.accounting.total(), pages);
    const call = unmapServed(proc, t.ops.fd, t.ioas, IOVA, length);
    assert.equal((await settle(call.result)).ret, 0);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, pages / 2n);
    assert.equal(emu.kernel.iommufd.accounting.total(), pages / 2n);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    assert.deepEqual(t.ops.unmap(second.id, IOVA, half), { ret: 0, length: half });
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
  });

  it('a range that sticks out still stops with ENOENT after what it unmapped', async () => {
    const emu = createEmulator();
    const proc = spawnCharged(emu);
    const t = setup(proc);
    const length = 8n * MIB;
    const va = proc.alloc(2n * length);
    assert.equal(t.ops.map(t.ioas, va, length, FIXED, IOVA).ret, 0);
    assert.equal(t.ops.map(t.ioas, va + length, length, FIXED, IOVA + length).ret, 0);
    const call = unmapServed(proc, t.ops.fd, t.ioas, IOVA, length + length / 2n);
    assert.equal((await settle(call.result)).ret, -Errno.ENOENT);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, length / u.PAGE_SIZE);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });
});

/** VFIO_DEVICE_DETACH_IOMMUFD_PT made as a served client's call is. */
function detachServed(proc: SimProcess, devFd: number): MaybeBlocked {
  const spec = v.vfioDeviceDetachIommufdPt;
  return served(proc, devFd, ioctl.VFIO_DEVICE_DETACH_IOMMUFD_PT, spec, { argsz: spec.size });
}

describe('a domain leaving its IOAS', () => {
  it("a served client's detach of the last domain unpins a batch per step before it returns", async () => {
    const length = 32n * MIB;
    const { emu, proc, t } = mapped(length);
    const tablesBefore = emu.kernel.machine.phys.stats().byPurpose['page-table'];
    assert.ok(tablesBefore > 0n);
    const other = emu.spawn();
    const otherOps = new IommufdOps(other, other.open('/dev/iommu'));
    const call = detachServed(proc, t.dev.fd);
    assert.ok(isBlocked(call), 'unpinning 32 MiB does not end in one slice');
    let turns = 0;
    let waited: Promise<number> | undefined;
    const { ret } = await settle(call, () => {
      turns++;
      assert.equal(otherOps.ioasAlloc().ret, 0);
      // Between two batches: what is left pinned is the teardown's.
      assert.deepEqual(checkInvariants(emu.kernel), [], `turn ${turns}`);
      if (turns !== 2) return;
      // The caller's next call waits for the detach: it then finds the area unpinned.
      const remap = served(proc, t.ops.fd, ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, {
        size: u.iommuIoasUnmap.size,
        ioas_id: t.ioas,
        iova: IOVA,
        length,
      });
      assert.ok(isBlocked(remap));
      waited = remap.blocked;
    });
    assert.equal(ret, 0);
    assert.ok(turns >= 3, `${turns} other turns ran`);
    // Unpinned and uncharged, the domain and its page tables freed.
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
    assert.equal(emu.kernel.machine.phys.stats().byPurpose['page-table'], 0n);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    assert.equal(await waited, 0);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });

  it('a detach that leaves another domain moves the storage and unpins nothing', async () => {
    const length = 16n * MIB;
    const { emu, proc, t } = mapped(length);
    // A second domain on the IOAS, held by its HWPT.
    const hwpt = t.ops.hwptAlloc(t.devid, t.ioas);
    assert.equal(hwpt.ret, 0);
    const pages = length / u.PAGE_SIZE;
    assert.equal((await settle(detachServed(proc, t.dev.fd))).ret, 0);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, pages);
    assert.equal(emu.kernel.iommufd.accounting.total(), pages);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    // Now the last one goes by DESTROY, made as a served call.
    const destroy = served(proc, t.ops.fd, ioctl.IOMMU_DESTROY, u.iommuDestroy, {
      size: u.iommuDestroy.size,
      id: hwpt.id,
    });
    assert.equal((await settle(destroy)).ret, 0);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });

  it('a released device is torn down after its release, as kernel work', async () => {
    const length = 32n * MIB;
    const { emu, proc, t } = mapped(length, true);
    const work = emu.kernel.iommufd.work;
    assert.equal(proc.close(t.dev.fd), 0);
    // Not yet: the release left the unpin to the work, which holds the context meanwhile.
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, length / u.PAGE_SIZE);
    const ctx = [...emu.kernel.iommufd.contexts][0]!;
    assert.ok(ctx.hold.held);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    const unmap = served(proc, t.ops.fd, ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, {
      size: u.iommuIoasUnmap.size,
      ioas_id: t.ioas,
      iova: IOVA,
      length,
    });
    assert.ok(isBlocked(unmap), 'a call on the context waits for the work');
    await work.whenIdle();
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
    assert.equal(await unmap.blocked, 0);
    proc.exit();
    await work.whenIdle();
    assert.deepEqual(emu.kernel.leaks(), []);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });

  it('a client that exits leaves the teardown to the kernel, which ends with nothing left', async () => {
    const { emu, proc } = mapped(32n * MIB, true);
    const work = emu.kernel.iommufd.work;
    proc.exit();
    // The context is gone; its domain is still being torn down, and the invariants know it.
    assert.equal(emu.kernel.iommufd.contexts.size, 0);
    assert.equal(emu.kernel.iommufd.tearingDown.size, 1);
    assert.notEqual(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    await work.whenIdle();
    assert.equal(emu.kernel.iommufd.tearingDown.size, 0);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
    assert.deepEqual(emu.kernel.leaks(), []);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });
});
