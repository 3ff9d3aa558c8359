import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CAP_IPC_LOCK } from '../host/credentials.ts';
import type { SimProcess } from '../host/sim-process.ts';
import { createEmulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as v from '../uapi/vfio.ts';

const FIXED = u.IOMMU_IOAS_MAP_FIXED_IOVA | u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;

/** A process without CAP_IPC_LOCK, its iommufd in `mode`, vfio device `dev` attached to an IOAS. */
function attached(proc: SimProcess, dev: string, mode: 0n | 1n) {
  proc.setCapability(CAP_IPC_LOCK, false);
  const fd = proc.open('/dev/iommu');
  const opt = proc.ioctlStruct(fd, ioctl.IOMMU_OPTION, u.iommuOption, {
    option_id: u.IOMMU_OPTION_RLIMIT_MODE,
    op: u.IOMMU_OPTION_OP_SET,
    val64: mode,
  });
  assert.equal(opt.ret, 0);
  const devfd = proc.open(dev);
  assert.equal(
    proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
      iommufd: fd,
    }).ret,
    0,
  );
  const ioas = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {}).out.out_ioas_id;
  assert.equal(
    proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT, v.vfioDeviceAttachIommufdPt, {
      pt_id: ioas,
    }).ret,
    0,
  );
  const map = (pages: number) => {
    const va = proc.alloc(BigInt(pages) * 4096n);
    return proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: ioas,
      flags: FIXED,
      user_va: va,
      length: BigInt(pages) * 4096n,
      iova: va,
    }).ret;
  };
  return { fd, ioas, map };
}

describe('RLIMIT_MEMLOCK accounting of pinned pages', () => {
  it('a map over the limit fails at once, without pinning a page (EFAULT first for a hole)', () => {
    const emu = createEmulator();
    const proc = emu.spawn({ uid: 1000, memlockLimit: 64n * 1024n });
    const t = attached(proc, '/dev/vfio/devices/vfio0', 0n);
    const pinned = emu.kernel.machine.pinned;
    const pin = pinned.pin.bind(pinned);
    let pins = 0;
    pinned.pin = (...args: Parameters<typeof pin>) => {
      pins++;
      return pin(...args);
    };
    const before = emu.kernel.machine.phys.stats().freeFrames;
    assert.equal(t.map(1 << 18), -Errno.ENOMEM); // 1 GiB
    assert.equal(pins, 0);
    assert.equal(emu.kernel.machine.phys.stats().freeFrames, before);
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
    // A hole is what the kernel's pin meets before the charge: EFAULT, as before.
    const hole = proc.ioctlStruct(t.fd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: t.ioas,
      flags: FIXED,
      user_va: 0x7000_0000_0000n,
      length: 1n << 30n,
      iova: 0x4000_0000n,
    });
    assert.equal(hole.ret, -Errno.EFAULT);
    assert.equal(pins, 0);
    // Within the limit, maps still pin.
    assert.equal(t.map(16), 0);
    assert.ok(pins > 0);
  });

  it('per user: processes of one uid share one budget', () => {
    const emu = createEmulator();
    const a = emu.spawn({ uid: 1000, memlockLimit: 16n * 4096n });
    const b = emu.spawn({ uid: 1000, memlockLimit: 16n * 4096n });
    const ta = attached(a, '/dev/vfio/devices/vfio0', 0n);
    const tb = attached(b, '/dev/vfio/devices/vfio1', 0n);
    assert.equal(ta.map(10), 0);
    assert.equal(emu.kernel.iommufd.accounting.lockedVmByUser.get(1000), 10n);
    assert.equal(tb.map(8), -Errno.ENOMEM);
    assert.equal(tb.map(6), 0);
    a.exit();
    b.exit();
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it('per process (mm): each process has its own budget', () => {
    const emu = createEmulator();
    const a = emu.spawn({ uid: 1000, memlockLimit: 16n * 4096n });
    const b = emu.spawn({ uid: 1000, memlockLimit: 16n * 4096n });
    const ta = attached(a, '/dev/vfio/devices/vfio0', 1n);
    const tb = attached(b, '/dev/vfio/devices/vfio1', 1n);
    assert.equal(ta.map(10), 0);
    assert.equal(tb.map(10), 0);
    assert.equal(emu.kernel.iommufd.accounting.lockedVmByMm.get(a.memory.mm), 10n);
    assert.equal(ta.map(7), -Errno.ENOMEM);
    assert.equal(emu.kernel.iommufd.accounting.lockedVmByUser.size, 0);
    a.exit();
    b.exit();
    assert.equal(emu.kernel.iommufd.accounting.total(), 0n);
  });

  it('RLIMIT_MODE can only change while the context holds no object', () => {
    const emu = createEmulator();
    const p = emu.spawn();
    const fd = p.open('/dev/iommu');
    p.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    const set = p.ioctlStruct(fd, ioctl.IOMMU_OPTION, u.iommuOption, {
      option_id: u.IOMMU_OPTION_RLIMIT_MODE,
      op: u.IOMMU_OPTION_OP_SET,
      val64: 1n,
    });
    assert.equal(set.ret, -Errno.EBUSY);
  });
});
