/**
 * An attach that fills a new domain with big areas (io-pagetable.ts addDomainWalk, ctx-hold.ts):
 * a served client's attach maps, and pins where no domain held the pages yet, a batch per step,
 * holding its context meanwhile. Whatever the slicing, the result, the errno and the state are an
 * attach's at once; calls on the same context wait and then run; other contexts are served.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FIXED, IommufdOps, VfioDeviceOps } from '../check/_ops.ts';
import { checkInvariants } from '../check/invariants.ts';
import type { FaultSite } from '../fault/fault.ts';
import { CAP_IPC_LOCK } from '../host/credentials.ts';
import { isBlocked, type MaybeBlocked } from '../host/file.ts';
import type { SimProcess } from '../host/sim-process.ts';
import { createEmulator, type Emulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import {
  IOMMU_TEST_OP_DMABUF_GET,
  IOMMU_TEST_OP_DMABUF_REVOKE,
  testDmabufGet,
  testDmabufRevoke,
} from '../uapi/iommufd-test.ts';
import * as v from '../uapi/vfio.ts';
import { boundDevice, outcomeWithFailNth, pagingDomain, served, settle } from './_test-served.ts';

const MIB = 1n << 20n;
const IOVA = 0x4000_0000n;

/** A process with an iommufd, vfio0 bound, and an IOAS with `length` mapped and no domain. */
function setup(emu: Emulator, proc: SimProcess, length: bigint) {
  const t = boundDevice(proc);
  assert.equal(t.ops.map(t.ioas, proc.alloc(length), length, FIXED, IOVA).ret, 0);
  assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n, 'no domain yet, no pin');
  return t;
}

function attachServed(proc: SimProcess, devFd: number, ptId: number): MaybeBlocked {
  const spec = v.vfioDeviceAttachIommufdPt;
  return served(proc, devFd, ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT, spec, {
    argsz: spec.size,
    pt_id: ptId,
  });
}

/** Where the device's domain maps each page of the area (the same in two emulators' runs). */
function domainPages(emu: Emulator, length: bigint): (bigint | undefined)[] {
  const domain = pagingDomain(emu);
  assert.ok(domain !== undefined, 'an auto domain');
  const out: (bigint | undefined)[] = [];
  for (let at = 0n; at < length; at += u.PAGE_SIZE) out.push(domain.iovaToPhys(IOVA + at));
  return out;
}

describe('an attach filling a new domain', () => {
  it("a served client's attach yields and ends as an attach at once", async () => {
    const length = 32n * MIB;
    const now = createEmulator();
    const nowProc = now.spawn();
    const a = setup(now, nowProc, length);
    assert.equal(a.dev.attach(a.ioas).ret, 0);

    const emu = createEmulator();
    const proc = emu.spawn();
    const t = setup(emu, proc, length);
    const call = attachServed(proc, t.dev.fd, t.ioas);
    assert.ok(isBlocked(call), 'pinning 32 MiB does not end in one slice');
    const { ret, turns } = await settle(call);
    assert.equal(ret, 0);
    assert.ok(turns >= 3, `${turns} other turns ran`);

    const pinned = (e: Emulator) => e.kernel.machine.pinned.stats().pinnedPages;
    assert.equal(pinned(emu), pinned(now));
    assert.equal(emu.kernel.iommufd.accounting.total(), now.kernel.iommufd.accounting.total());
    assert.deepEqual(domainPages(emu, length), domainPages(now, length));
    assert.ok(!domainPages(emu, length).includes(undefined), 'every page mapped');
    assert.deepEqual(checkInvariants(emu.kernel), []);
    // The same device, attached again to a HWPT it is already on, and a replace: at once.
    assert.equal(t.dev.detach(), 0);
    assert.equal(pinned(emu), 0n);
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });

  it('holds its context: calls on it wait and then run, other contexts are served', async () => {
    const length = 32n * MIB;
    const emu = createEmulator();
    const proc = emu.spawn();
    const t = setup(emu, proc, length);
    const other = emu.spawn();
    const otherOps = new IommufdOps(other, other.open('/dev/iommu'));
    const call = attachServed(proc, t.dev.fd, t.ioas);
    assert.ok(isBlocked(call));
    const hwptPublished = () => pagingDomain(emu) !== undefined;
    const ran: string[] = [];
    const waiting: Promise<void>[] = [];
    await settle(call, (turn) => {
      // Nothing of the caller's ran while the attach was going on.
      assert.equal(ran.length, 0, `turn ${turn}`);
      if (turn !== 1) return;
      // Another client: answered in this turn.
      assert.equal(otherOps.ioasAlloc().ret, 0);
      // The caller's other threads: two unmaps of the area wait for the attach, then the first
      // unmaps what it filled (a walk of its own, which the second waits for: ENOENT, not EBUSY).
      for (const which of ['first', 'second']) {
        const unmap = served(proc, t.ops.fd, ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, {
          size: u.iommuIoasUnmap.size,
          ioas_id: t.ioas,
          iova: IOVA,
          length,
        });
        assert.ok(isBlocked(unmap), 'an unmap of the held context waits');
        waiting.push(unmap.blocked.then((rc) => void ran.push(`${which} unmap ${rc}`)));
      }
      // A call that would not touch the IOAS waits as well (the whole context is held).
      const ranges = served(proc, t.ops.fd, ioctl.IOMMU_IOAS_IOVA_RANGES, u.iommuIoasIovaRanges, {
        size: u.iommuIoasIovaRanges.size,
        ioas_id: t.ioas,
      });
      assert.ok(isBlocked(ranges));
      // No room for the ranges given: EMSGSIZE, as at any time.
      waiting.push(ranges.blocked.then((rc) => void ran.push(`ranges ${rc} ${hwptPublished()}`)));
    });
    await Promise.all(waiting);
    assert.deepEqual(ran.sort(), [
      'first unmap 0',
      `ranges ${-Errno.EMSGSIZE} true`,
      `second unmap ${-Errno.ENOENT}`,
    ]);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n, 'the unmap unpinned it all');
    assert.deepEqual(checkInvariants(emu.kernel), []);
  });

  it('a memlock limit that runs out midway fails it with ENOMEM and undoes it all', async () => {
    const length = 16n * MIB;
    const results: number[] = [];
    for (const yields of [false, true]) {
      const emu = createEmulator();
      const proc = emu.spawn({ uid: 1000, memlockLimit: 4n * MIB });
      proc.setCapability(CAP_IPC_LOCK, false);
      const t = setup(emu, proc, length);
      const ret = yields
        ? (await settle(attachServed(proc, t.dev.fd, t.ioas))).ret
        : t.dev.attach(t.ioas).ret;
      results.push(ret);
      assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
      assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
      assert.deepEqual(checkInvariants(emu.kernel), []);
      // Nothing attached: a detach finds nothing, and the IOAS can go once unmapped.
      assert.deepEqual(t.ops.unmap(t.ioas, IOVA, length), { ret: 0, length });
      assert.equal(t.ops.destroy(t.ioas), 0);
    }
    assert.deepEqual(results, [-Errno.ENOMEM, -Errno.ENOMEM]);
  });

  it('a device file closed meanwhile is released once the attach ends', async () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const t = setup(emu, proc, 32n * MIB);
    const second = new VfioDeviceOps(proc, proc.open('/dev/vfio/devices/vfio1'));
    assert.equal(second.bind(t.ops.fd).ret, 0);
    const objects = () => [...emu.kernel.iommufd.contexts][0]!.objectCount;
    const before = objects();
    const call = attachServed(proc, t.dev.fd, t.ioas);
    const seen: number[] = [];
    await settle(call, (turn) => {
      if (turn === 1) assert.equal(proc.close(second.fd), 0);
      if (turn >= 1) seen.push(objects());
    });
    // Until the attach ended the closed device stayed bound: its object was there (with the
    // attach's domain, reserved).
    assert.ok(seen.length > 0);
    assert.deepEqual(new Set(seen), new Set([before + 1]));
    // The attach published its auto domain, the release removed the second device.
    assert.equal(objects(), before);
    assert.equal(t.dev.detach(), 0);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it('a failure injected at any point of a yielding attach leaves what the same failure at once does', async () => {
    const length = 6n * MIB;
    const outcome = (nth: number, yields: boolean, trail?: FaultSite[]) => {
      const emu = createEmulator();
      const proc = emu.spawn({ uid: 1000, memlockLimit: 64n * MIB });
      proc.setCapability(CAP_IPC_LOCK, false);
      const t = setup(emu, proc, length);
      return outcomeWithFailNth(emu, proc, nth, trail, async () =>
        yields
          ? (await settle(attachServed(proc, t.dev.fd, t.ioas))).ret
          : t.dev.attach(t.ioas).ret,
      );
    };
    const trail: FaultSite[] = [];
    const clean = await outcome(0, false, trail);
    assert.equal(clean.ret, 0);
    // Every point but the frame allocations of the pinned pages, and some of those.
    const frames = trail.flatMap((site, i) => (site === 'frame-alloc' ? [i + 1] : []));
    const others = trail.flatMap((site, i) => (site === 'frame-alloc' ? [] : [i + 1]));
    assert.ok(others.length >= 5, `${others.length} other points`);
    const picked = [0, 255, 256, frames.length - 1].map((i) => frames[i]!);
    for (const nth of [...others, ...picked]) {
      const now = await outcome(nth, false);
      assert.notEqual(now.fired, undefined, `fail-nth ${nth} fires`);
      assert.deepEqual(await outcome(nth, true), now, `fail-nth ${nth} (${trail[nth - 1]})`);
      assert.deepEqual(now.broken, []);
    }
  });

  it('a dma-buf revoked while the attach goes on is not left mapped in the new domain', async () => {
    const DMABUF_IOVA = 0x1000_0000n;
    for (const yields of [false, true]) {
      const emu = createEmulator();
      const proc = emu.spawn();
      // The exporter is another context: its revoke is not a call of the attaching one.
      const exporter = new IommufdOps(proc, proc.open('/dev/iommu'));
      // 7.3's DMABUF_GET answers 0; the dma-buf gets the lowest free fd.
      const dmabuf = proc.dup(exporter.fd);
      assert.equal(proc.close(dmabuf), 0);
      const get = proc.ioctlStruct(exporter.fd, ioctl.IOMMU_TEST_CMD, testDmabufGet, {
        op: IOMMU_TEST_OP_DMABUF_GET,
        length: 65536,
        open_flags: 2,
      });
      assert.equal(get.ret, 0);
      const t = setup(emu, proc, 32n * MIB);
      const mapped = proc.ioctlStruct(t.ops.fd, ioctl.IOMMU_IOAS_MAP_FILE, u.iommuIoasMapFile, {
        flags: FIXED,
        ioas_id: t.ioas,
        fd: dmabuf,
        start: 0n,
        length: 65536n,
        iova: DMABUF_IOVA,
      });
      assert.equal(mapped.ret, 0);
      const revoke = () =>
        proc.ioctlStruct(exporter.fd, ioctl.IOMMU_TEST_CMD, testDmabufRevoke, {
          op: IOMMU_TEST_OP_DMABUF_REVOKE,
          dmabuf_fd: dmabuf,
          revoked: 1,
        }).ret;
      if (yields) {
        await settle(attachServed(proc, t.dev.fd, t.ioas), (turn) => {
          if (turn === 1) assert.equal(revoke(), 0);
        });
      } else {
        assert.equal(t.dev.attach(t.ioas).ret, 0);
        assert.equal(revoke(), 0);
      }
      assert.equal(domainPages(emu, 32n * MIB)[0] !== undefined, true, 'the area is mapped');
      assert.equal(pagingDomain(emu)?.iovaToPhys(DMABUF_IOVA), undefined, `yields ${yields}`);
      assert.deepEqual(checkInvariants(emu.kernel), []);
    }
  });
});
