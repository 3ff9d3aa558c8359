import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEmulator } from '../index.ts';
import { defaultPlatform } from '../platform/platform-config.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as t from '../uapi/iommufd-test.ts';

const PAGE = Number(u.PAGE_SIZE);

function mapFixed(proc: ReturnType<ReturnType<typeof createEmulator>['spawn']>, fd: number) {
  return (ioasId: number, va: bigint, length: number, iova: bigint) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE,
      ioas_id: ioasId,
      user_va: va,
      length: BigInt(length),
      iova,
    }).ret;
}

describe('IOMMU_TEST_CMD', () => {
  it('is ENOTTY on a kernel without the test interface, with the numbers below it', () => {
    const emu = createEmulator({ platform: { ...defaultPlatform(), iommufdTest: false } });
    const proc = emu.spawn();
    const fd = proc.open('/dev/iommu');
    const r = proc.ioctlStruct(fd, ioctl.IOMMU_TEST_CMD, t.testMockDomain, {
      op: t.IOMMU_TEST_OP_MOCK_DOMAIN,
    });
    assert.equal(r.ret, -Errno.ENOTTY);
    // 0x9f goes to the VFIO compat handler without the size being read.
    assert.equal(proc.ioctl(fd, ioctl.IO(ioctl.IOMMUFD_TYPE, 0x9f), 0n), -Errno.ENOTTY);
    proc.exit();
  });

  it('reads the size of a hole below it when the test interface is there', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const fd = proc.open('/dev/iommu');
    assert.equal(proc.ioctl(fd, ioctl.IO(ioctl.IOMMUFD_TYPE, 0x9f), 0n), -Errno.EFAULT);
    proc.exit();
  });

  it('pins once per pages object, drops everything at exit, and leaves no mock device', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const fd = proc.open('/dev/iommu');
    const ioas = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {}).out.out_ioas_id;
    const md = proc.ioctlStruct(fd, ioctl.IOMMU_TEST_CMD, t.testMockDomain, {
      op: t.IOMMU_TEST_OP_MOCK_DOMAIN,
      id: ioas,
    });
    assert.equal(md.ret, 0);
    assert.equal(emu.kernel.iommufd.mockBus?.devices.size, 1);
    const buf = proc.alloc(4 * PAGE, new Uint8Array(4 * PAGE).fill(1));
    assert.equal(mapFixed(proc, fd)(ioas, buf, 4 * PAGE, t.MOCK_APERTURE_START), 0);
    const refs = (n: number) =>
      proc.ioctlStruct(fd, ioctl.IOMMU_TEST_CMD, t.testCheckRefs, {
        op: t.IOMMU_TEST_OP_MD_CHECK_REFS,
        uptr: buf,
        length: BigInt(4 * PAGE),
        refs: n,
      }).ret;
    assert.equal(refs(1), 0);
    assert.equal(refs(0), -Errno.EIO);
    const copy = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_COPY, u.iommuIoasCopy, {
      flags: u.IOMMU_IOAS_MAP_READABLE,
      dst_ioas_id: ioas,
      src_ioas_id: ioas,
      length: BigInt(4 * PAGE),
      src_iova: t.MOCK_APERTURE_START,
    });
    assert.equal(copy.ret, 0);
    assert.equal(refs(1), 0, 'COPY shares the pin');
    proc.exit();
    assert.equal(emu.kernel.iommufd.mockBus?.devices.size, 0);
    assert.equal(emu.kernel.machine.pinned.stats().pins, 0n);
    assert.deepEqual(emu.kernel.leaks(), []);
  });
});
