import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CAP_SYS_RAWIO } from '../host/credentials.ts';
import type { SimProcess } from '../host/sim-process.ts';
import { createEmulator } from '../index.ts';
import type { EmuEvent } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as v from '../uapi/vfio.ts';

const FIXED = u.IOMMU_IOAS_MAP_FIXED_IOVA | u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;
const SZ_2M = 2n << 20n;

/** A bound no-IOMMU device and an IOAS; attach or HWPT_ALLOC makes the no-IOMMU domain. */
function setup(opts: { attach: boolean } = { attach: true }) {
  const emu = createEmulator({ enableUnsafeNoiommuMode: true });
  const proc = emu.spawn();
  const devfd = proc.open('/dev/vfio/devices/noiommu-vfio2');
  const fd = proc.open('/dev/iommu');
  const devid = proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
    iommufd: fd,
  }).out.out_devid;
  const ioas = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {}).out.out_ioas_id;
  if (opts.attach) {
    const r = proc.ioctlStruct(
      devfd,
      ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      v.vfioDeviceAttachIommufdPt,
      { pt_id: ioas },
    );
    assert.equal(r.ret, 0);
  }
  const map = (va: bigint, length: bigint, iova: bigint) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: ioas,
      flags: FIXED,
      user_va: va,
      length,
      iova,
    }).ret;
  const getPa = (
    iova: bigint,
    length: bigint,
    extra: { flags?: number; __reserved?: number; ioas_id?: number } = {},
  ) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_NOIOMMU_GET_PA, u.iommuIoasNoiommuGetPa, {
      ioas_id: ioas,
      iova,
      length,
      ...extra,
    });
  return { emu, proc, fd, devfd, devid, ioas, map, getPa };
}

function hugeBuffer(proc: SimProcess, size: bigint): bigint {
  return proc.memory.mmap(size, { pageSize: SZ_2M });
}

describe('IOMMU_IOAS_NOIOMMU_GET_PA algorithm', () => {
  it('keeps the sub-page offset, follows contiguous hugepage frames, and stops at the area end', () => {
    const t = setup();
    const va = hugeBuffer(t.proc, SZ_2M);
    assert.equal(t.map(va, 0x20000n, 0x200000n), 0);
    const whole = t.getPa(0x200000n, 0x100000n);
    assert.equal(whole.ret, 0);
    const base = whole.out.out_phys;
    assert.equal(whole.out.length, 0x20000n); // truncated at the area end
    const offset = t.getPa(0x200080n, 0x100000n);
    assert.deepEqual([offset.out.out_phys, offset.out.length], [base + 0x80n, 0x1ff80n]);
    assert.equal((offset.out.out_phys + offset.out.length) % 4096n, 0n);
    assert.equal(t.getPa(0x200000n, 0x1000n).out.length, 0x1000n); // capped
    const inPage = t.getPa(0x200080n, 0x10n);
    assert.deepEqual([inPage.out.out_phys, inPage.out.length], [base + 0x80n, 0x10n]);
    const last = t.getPa(0x21f000n, 0x100000n);
    assert.deepEqual([last.out.out_phys, last.out.length], [base + 0x1f000n, 0x1000n]);
    assert.equal(t.getPa(0x220000n, 0x1000n).ret, -Errno.ENOENT); // adjacent but unmapped
  });

  it('never crosses into the next area, even when physically contiguous', () => {
    const t = setup();
    const va = hugeBuffer(t.proc, SZ_2M);
    assert.equal(t.map(va, 0x10000n, 0x400000n), 0);
    assert.equal(t.map(va + 0x10000n, 0x10000n, 0x410000n), 0);
    const first = t.getPa(0x400000n, 0x100000n);
    const second = t.getPa(0x410000n, 0x100000n);
    assert.equal(first.out.length, 0x10000n);
    assert.equal(second.out.out_phys, first.out.out_phys + 0x10000n);
  });

  it('reports one page at a time for ordinary 4 KiB memory', () => {
    const t = setup();
    const va = t.proc.alloc(0x4000n);
    assert.equal(t.map(va, 0x4000n, va), 0);
    let covered = 0n;
    while (covered < 0x4000n) {
      const r = t.getPa(va + covered, 0x4000n - covered);
      assert.equal(r.ret, 0);
      assert.equal(r.out.length, 0x1000n);
      covered += r.out.length;
    }
  });
});

describe('IOMMU_IOAS_NOIOMMU_GET_PA checks, in the kernel order', () => {
  it('EPERM first, then EOPNOTSUPP, EINVAL, EOVERFLOW, ENOENT', () => {
    const t = setup();
    const va = t.proc.alloc(0x1000n);
    assert.equal(t.map(va, 0x1000n, 0x10000n), 0);
    t.proc.setCapability(CAP_SYS_RAWIO, false);
    assert.equal(t.getPa(0x10000n, 0n, { flags: 1 }).ret, -Errno.EPERM);
    t.proc.setCapability(CAP_SYS_RAWIO, true);
    assert.equal(t.getPa(0x10000n, 0n, { flags: 1 }).ret, -Errno.EOPNOTSUPP);
    assert.equal(t.getPa(0x10000n, 0n, { __reserved: 1 }).ret, -Errno.EOPNOTSUPP);
    assert.equal(t.getPa(u.ULONG_MAX, 0n).ret, -Errno.EINVAL);
    assert.equal(t.getPa(u.ULONG_MAX, 1n).ret, -Errno.EOVERFLOW);
    assert.equal(t.getPa(0x10000n, 1n, { ioas_id: 99 }).ret, -Errno.ENOENT);
    assert.equal(t.getPa(0x10000n, 1n, { ioas_id: t.devid }).ret, -Errno.ENOENT); // not an IOAS
    assert.equal(t.getPa(0x11000n, 1n).ret, -Errno.ENOENT);
    // A response shorter than the struct is EINVAL before anything else.
    assert.equal(
      t.proc.ioctlStruct(t.fd, ioctl.IOMMU_IOAS_NOIOMMU_GET_PA, u.iommuIoasNoiommuGetPa, {}, 32)
        .ret,
      -Errno.EINVAL,
    );
  });

  it('EOPNOTSUPP while the IOAS holds no no-IOMMU domain, then works after HWPT_ALLOC', () => {
    const t = setup({ attach: false });
    const va = t.proc.alloc(0x1000n);
    assert.equal(t.map(va, 0x1000n, 0x10000n), 0);
    assert.equal(t.getPa(0x10000n, 1n).ret, -Errno.EOPNOTSUPP);
    const alloc = (flags: number, data = {}) =>
      t.proc.ioctlStruct(t.fd, ioctl.IOMMU_HWPT_ALLOC, u.iommuHwptAlloc, {
        dev_id: t.devid,
        pt_id: t.ioas,
        flags,
        ...data,
      });
    for (const flag of [
      u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
      u.IOMMU_HWPT_ALLOC_NEST_PARENT,
      u.IOMMU_HWPT_ALLOC_PASID,
    ]) {
      assert.equal(alloc(flag).ret, -Errno.EOPNOTSUPP);
    }
    assert.equal(alloc(0, { data_type: 1, data_len: 8, data_uptr: va }).ret, -Errno.EOPNOTSUPP);
    const hwpt = alloc(0);
    assert.equal(hwpt.ret, 0);
    assert.equal(t.getPa(0x10000n, 1n).ret, 0);
    // A nested HWPT on the no-IOMMU parent is refused.
    const nested = t.proc.ioctlStruct(t.fd, ioctl.IOMMU_HWPT_ALLOC, u.iommuHwptAlloc, {
      dev_id: t.devid,
      pt_id: hwpt.out.out_hwpt_id,
      data_type: 1,
      data_len: 8,
      data_uptr: va,
    });
    assert.equal(nested.ret, -Errno.EOPNOTSUPP);
    // Destroying the HWPT takes the domain away again.
    assert.equal(
      t.proc.ioctlStruct(t.fd, ioctl.IOMMU_DESTROY, u.iommuDestroy, { id: hwpt.out.out_hwpt_id })
        .ret,
      0,
    );
    assert.equal(t.getPa(0x10000n, 1n).ret, -Errno.EOPNOTSUPP);
    t.proc.exit();
    assert.deepEqual(t.emu.kernel.leaks(), []);
  });
});

describe('a no-IOMMU device that DMAs over its own page table', () => {
  it('is reported as kernel memory corruption; GET_PA and release keep working', () => {
    const t = setup();
    const events: EmuEvent[] = [];
    t.emu.kernel.events.subscribe((e) => events.push(e));
    const va = t.proc.alloc(4n * u.PAGE_SIZE);
    assert.equal(t.map(va, 4n * u.PAGE_SIZE, 0x100000n), 0);
    const before = t.getPa(0x100000n, u.PAGE_SIZE);
    assert.equal(before.ret, 0);
    const phys = t.emu.kernel.machine.phys;
    const dev = t.emu.kernel.machine.devices.get('0000:00:06.0')!;
    // The device writes zeros over every I/O page-table page (its table lives in RAM).
    let smashed = 0;
    for (let pfn = 256n; pfn < 1n << 20n && smashed < 64; pfn++) {
      if (phys.frameState(pfn) !== 'page-table') continue;
      assert.ok(dev.dma.write(pfn << 12n, new Uint8Array(Number(u.PAGE_SIZE))));
      smashed++;
    }
    assert.ok(smashed > 0);
    const unsafe = events.filter((e) => e.kind === 'unsafe-dma');
    assert.ok(unsafe.length > 0 && unsafe.every((e) => e.kind === 'unsafe-dma' && e.corrupts));
    assert.ok(
      events.some(
        (e) => e.kind === 'log' && e.level === 'error' && /kernel memory corrupted/.test(e.message),
      ),
    );
    assert.equal((t.emu.kernel.tainted >> 5) & 1, 1, 'tainted B');
    // The kernel reads its own copy of the table (decision 200): GET_PA answers as before, and
    // it is no emulator bug.
    const after = t.getPa(0x100000n, u.PAGE_SIZE);
    assert.deepEqual([after.ret, after.out.out_phys], [0, before.out.out_phys]);
    assert.equal(
      events.filter((e) => e.kind === 'log' && e.level === 'bug').length,
      0,
      'an emulator bug',
    );
    t.proc.close(t.devfd);
    t.proc.close(t.fd);
    assert.deepEqual(t.emu.kernel.leaks(), []);
  });
});
