/**
 * A no-IOMMU device that DMAs over the kernel's own structures in simulated memory (the I/O page
 * tables of other domains, the no-IOMMU software table): reported as the corruption it is, and
 * the emulator keeps answering and releasing cleanly (decision 200).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import fc from 'fast-check';
import { TAINT_BAD_PAGE } from '../boot/kernel.ts';
import { checkInvariants } from '../check/invariants.ts';
import type { SimProcess } from '../host/sim-process.ts';
import { createEmulator, type Emulator } from '../index.ts';
import { EduReg } from '../platform/edu.ts';
import type { EmuEvent } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as v from '../uapi/vfio.ts';

const CONFIG = 7n << 40n;
const BUF = 0x40000n;
const IOVA = 0x100000n;
const LENGTH = 0x4000n;
const RW_FIXED =
  u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE | u.IOMMU_IOAS_MAP_FIXED_IOVA;

function u64(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

/** Programs one edu DMA through the device fd (BAR0 at offset 0) and waits for it. */
async function dma(proc: SimProcess, fd: number, src: bigint, dst: bigint, count: number) {
  const cmd = proc.pread(fd, 2, CONFIG + 4n) as Uint8Array;
  proc.pwrite(fd, new Uint8Array([cmd[0]! | 0x6, cmd[1]!]), CONFIG + 4n);
  proc.pwrite(fd, u64(src), EduReg.DMA_SRC);
  proc.pwrite(fd, u64(dst), EduReg.DMA_DST);
  proc.pwrite(fd, u64(BigInt(count)), EduReg.DMA_COUNT);
  const toRam = src === BUF ? 2n : 0n;
  proc.pwrite(fd, u64(1n | toRam), EduReg.DMA_CMD);
  for (let i = 0; i < 1000; i++) {
    const status = proc.pread(fd, 4, EduReg.DMA_CMD) as Uint8Array;
    if ((status[0]! & 1) === 0) return;
    await tick();
  }
  assert.fail('DMA did not complete');
}

interface Rig {
  readonly emu: Emulator;
  readonly proc: SimProcess;
  readonly events: EmuEvent[];
  readonly iommufd: number;
  /** vfio0: edu 0000:00:04.0 behind dmar0. */
  readonly dev4: number;
  /** noiommu-vfio2: edu 0000:00:06.0 with no IOMMU. */
  readonly dev6: number;
  readonly ioas4: number;
  readonly ioas6: number;
  readonly buf: bigint;
}

function call<T extends object>(
  proc: SimProcess,
  fd: number,
  cmd: number,
  layout: Parameters<SimProcess['ioctlStruct']>[2],
  fields: T,
) {
  return proc.ioctlStruct(fd, cmd, layout, fields as never);
}

/** Both edus bound to one iommufd, each attached to an IOAS mapping the same buffer. */
function rig(): Rig {
  const emu = createEmulator({ enableUnsafeNoiommuMode: true });
  const events: EmuEvent[] = [];
  emu.kernel.events.subscribe((e) => events.push(e), ['log', 'iommu-fault']);
  const proc = emu.spawn();
  const iommufd = proc.open('/dev/iommu');
  const dev4 = proc.open('/dev/vfio/devices/vfio0');
  const dev6 = proc.open('/dev/vfio/devices/noiommu-vfio2');
  assert.ok(iommufd >= 0 && dev4 >= 0 && dev6 >= 0);
  const ids: number[] = [];
  for (const dev of [dev4, dev6]) {
    const bind = call(proc, dev, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
      iommufd,
    });
    assert.equal(bind.ret, 0);
    const ioas = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    assert.equal(ioas.ret, 0);
    const id = ioas.out.out_ioas_id;
    const attach = call(
      proc,
      dev,
      ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      v.vfioDeviceAttachIommufdPt,
      {
        pt_id: id,
      },
    );
    assert.equal(attach.ret, 0);
    ids.push(id);
  }
  const buf = proc.alloc(LENGTH);
  for (const id of ids) {
    const map = call(proc, iommufd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: id,
      flags: RW_FIXED,
      user_va: buf,
      length: LENGTH,
      iova: IOVA,
    });
    assert.equal(map.ret, 0);
  }
  return { emu, proc, events, iommufd, dev4, dev6, ioas4: ids[0]!, ioas6: ids[1]!, buf };
}

function getPa(r: Rig, iova: bigint) {
  return call(r.proc, r.iommufd, ioctl.IOMMU_IOAS_NOIOMMU_GET_PA, u.iommuIoasNoiommuGetPa, {
    ioas_id: r.ioas6,
    iova,
    length: 0x1000n,
  });
}

/** Every table page of every live domain, the no-IOMMU software table's included. */
function tablePages(r: Rig): bigint[] {
  return r.emu.kernel.machine.domains
    .live()
    .flatMap((d) => d.walk(IOVA).steps.map((s) => s.tablePa));
}

/** No emulator bug was logged, and everything the program held is gone once it exits. */
async function releasesCleanly(r: Rig): Promise<void> {
  r.proc.exit();
  await r.emu.kernel.machine.whenIdle();
  assert.deepEqual(r.emu.kernel.leaks(), []);
  assert.deepEqual(checkInvariants(r.emu.kernel), []);
  assert.equal(r.emu.kernel.machine.phys.stats().framesInUse, 0n);
  assert.deepEqual(
    r.events.filter((e) => e.kind === 'log' && e.level === 'bug'),
    [],
  );
}

describe('unsafe DMA over the kernel’s page tables', () => {
  it('is reported as corruption and taints the kernel; later calls answer as before', async () => {
    const r = rig();
    const before = getPa(r, IOVA);
    assert.equal(before.ret, 0);
    assert.equal(r.emu.kernel.tainted & (1 << TAINT_BAD_PAGE), 0);

    r.proc.pwrite(r.dev6, new Uint8Array(4096).fill(0xff), BUF);
    const pages = tablePages(r);
    assert.equal(pages.length, 4 + 6, 'four levels of dmar0, six of the software table');
    for (const pa of pages) await dma(r.proc, r.dev6, BUF, pa, 4096);

    const tainted = r.proc.open('/proc/sys/kernel/tainted', 0);
    const text = new TextDecoder().decode(r.proc.pread(tainted, 32, 0n) as Uint8Array);
    assert.notEqual(Number(text) & (1 << TAINT_BAD_PAGE), 0);
    r.proc.close(tainted);
    const corrupt = r.events.filter(
      (e) =>
        e.kind === 'log' &&
        e.level === 'error' &&
        e.message.startsWith('BUG: kernel memory corrupted'),
    );
    assert.equal(corrupt.length, pages.length);
    assert.ok(r.emu.kernel.dmesg.some((line) => line.includes('no-IOMMU software page table')));
    const snap = r.emu.kernel.machine.snapshot();
    assert.equal(snap.corruption.count, pages.length);
    assert.ok(snap.domains.every((d) => d.corruptEntries > 0));

    // The kernel's answers come from what it wrote: GET_PA as before.
    const after = getPa(r, IOVA);
    assert.deepEqual([after.ret, after.out.out_phys], [0, before.out.out_phys]);
    // The IOMMU walks the garbage: a huge LEAF at the top is refused, a fault, not a bug.
    await dma(r.proc, r.dev4, IOVA, BUF, 8);
    assert.ok(r.events.some((e) => e.kind === 'iommu-fault' && e.iova === IOVA));

    // Unmap, map again, detach and close all work on the corrupted domains.
    const unmap = call(r.proc, r.iommufd, ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, {
      ioas_id: r.ioas4,
      iova: IOVA,
      length: LENGTH,
    });
    assert.deepEqual([unmap.ret, unmap.out.length], [0, LENGTH]);
    const remap = call(r.proc, r.iommufd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: r.ioas4,
      flags: RW_FIXED,
      user_va: r.buf,
      length: LENGTH,
      iova: IOVA,
    });
    assert.equal(remap.ret, 0);
    const detach = call(
      r.proc,
      r.dev6,
      ioctl.VFIO_DEVICE_DETACH_IOMMUFD_PT,
      v.vfioDeviceDetachIommufdPt,
      {},
    );
    assert.equal(detach.ret, 0);
    assert.equal(getPa(r, IOVA).ret, -Errno.EOPNOTSUPP);
    await releasesCleanly(r);
  });

  it('whatever bytes land on whichever table page, nothing fails as an emulator bug', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(9),
        fc.nat(511),
        fc.uint8Array({ minLength: 8, maxLength: 64 }),
        fc.boolean(),
        async (page, entry, garbage, pointAtTable) => {
          const r = rig();
          const pages = tablePages(r);
          const target = pages[page % pages.length]! + BigInt(entry * 8);
          // Either random bytes or a well-formed pointer to another table page (a cycle).
          const bytes = pointAtTable
            ? u64(pages[(page + 1) % pages.length]! | 1n)
            : garbage.subarray(0, Math.min(garbage.length, 4096 - entry * 8));
          r.proc.pwrite(r.dev6, bytes, BUF);
          await dma(r.proc, r.dev6, BUF, target, bytes.length);
          await dma(r.proc, r.dev4, IOVA, BUF, 64);
          await dma(r.proc, r.dev4, BUF, IOVA + 0x1000n, 64);
          assert.equal(getPa(r, IOVA + 0x2000n).ret, 0);
          const unmap = call(r.proc, r.iommufd, ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, {
            ioas_id: r.ioas6,
            iova: 0n,
            length: u.ULONG_MAX,
          });
          assert.deepEqual([unmap.ret, unmap.out.length], [0, LENGTH]);
          await releasesCleanly(r);
        },
      ),
      { seed: 200, numRuns: 25 },
    );
  });
});
