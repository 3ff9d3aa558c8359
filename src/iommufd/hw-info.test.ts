import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEmulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as v from '../uapi/vfio.ts';

const PAGE = Number(u.PAGE_SIZE);

/** A bound edu device behind the IOMMU, and GET_HW_INFO on it with a given buffer. */
function setup() {
  const emu = createEmulator();
  const proc = emu.spawn();
  const devfd = proc.open('/dev/vfio/devices/vfio0');
  const fd = proc.open('/dev/iommu');
  const bind = proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
    iommufd: fd,
  });
  assert.equal(bind.ret, 0);
  const hwInfo = (dataUptr: bigint, dataLen: number) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_GET_HW_INFO, u.iommuHwInfo, {
      dev_id: bind.out.out_devid,
      data_len: dataLen,
      data_uptr: dataUptr,
    });
  return { emu, proc, hwInfo };
}

describe('IOMMU_GET_HW_INFO data buffer', () => {
  it('clears a buffer longer than the blob in place and reports the blob length', () => {
    const { emu, proc, hwInfo } = setup();
    const buf = proc.alloc(3 * PAGE, new Uint8Array(3 * PAGE).fill(0xaa));
    const r = hwInfo(buf + 8n, 2 * PAGE + 100);
    assert.equal(r.ret, 0);
    assert.equal(r.out.data_len, 0);
    assert.equal(r.out.out_data_type, u.IOMMU_HW_INFO_TYPE_NONE);
    const after = proc.memory.read(buf, 3 * PAGE)!;
    assert.ok(
      after.subarray(0, 8).every((b) => b === 0xaa),
      'before the buffer: untouched',
    );
    assert.ok(
      after.subarray(8, 8 + 2 * PAGE + 100).every((b) => b === 0),
      'the buffer: zeroed',
    );
    assert.ok(
      after.subarray(8 + 2 * PAGE + 100).every((b) => b === 0xaa),
      'after: untouched',
    );
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it('with a huge data_len, clears up to the first unmapped page and fails with EFAULT', () => {
    const { emu, proc, hwInfo } = setup();
    const buf = proc.alloc(2 * PAGE, new Uint8Array(2 * PAGE).fill(0xaa));
    const end = buf + BigInt(2 * PAGE);
    assert.equal(proc.memory.vma(end), undefined, 'a hole after the buffer');
    const r = hwInfo(buf + 64n, 0xffffffff);
    assert.equal(r.ret, -Errno.EFAULT);
    const after = proc.memory.read(buf, 2 * PAGE)!;
    assert.ok(after.subarray(0, 64).every((b) => b === 0xaa));
    assert.ok(
      after.subarray(64).every((b) => b === 0),
      'zeroed up to the fault, like clear_user',
    );
    // The device is still there and answers a sane call.
    assert.equal(hwInfo(0n, 0).ret, 0);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it('EFAULT at once when the buffer starts unmapped; nothing is held after', () => {
    const { emu, proc, hwInfo } = setup();
    const r = hwInfo(0x10n, 0xffffffff);
    assert.equal(r.ret, -Errno.EFAULT);
    const ictx = [...emu.kernel.iommufd.contexts][0]!;
    for (const obj of ictx.publishedObjects()) assert.equal(obj.shorttermUsers.read(), 1);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });
});
