/**
 * Hot reset on the group path (vfio_reset.c covers the cdev path through the shim): a
 * group-opened device proves ownership by group fds, one for every device the bus reset reaches.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkInvariants } from '../check/invariants.ts';
import { createEmulator } from '../index.ts';
import {
  defaultPlatform,
  loadPlatformFile,
  PlatformConfigError,
} from '../platform/platform-config.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as v from '../uapi/vfio.ts';

const RESETS = fileURLToPath(new URL('../../examples/platforms/resets.json', import.meta.url));

function s32s(values: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(values).buffer);
}

describe('hot reset through groups', () => {
  it('needs the group of every device on the bus, and nothing else', () => {
    const platform = loadPlatformFile(RESETS);
    assert.ok(!(platform instanceof PlatformConfigError));
    const emu = createEmulator({ platform });
    const proc = emu.spawn();
    const container = proc.open('/dev/vfio/vfio');
    const group0 = proc.open('/dev/vfio/0');
    const group1 = proc.open('/dev/vfio/1');
    const fdArg = proc.alloc(4096, s32s([container]));
    assert.equal(proc.ioctl(group0, ioctl.VFIO_GROUP_SET_CONTAINER, fdArg), 0);
    assert.equal(proc.ioctl(group1, ioctl.VFIO_GROUP_SET_CONTAINER, fdArg), 0);
    assert.equal(proc.ioctl(container, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), 0);
    const name = proc.alloc(4096, new TextEncoder().encode('0000:01:00.0\0'));
    const dev = proc.ioctl(group0, ioctl.VFIO_GROUP_GET_DEVICE_FD, name);
    assert.ok(dev >= 0);

    // Group ids, not devids, on the group path; both functions of bus 01.
    const info = proc.alloc(4096, s32s([12 + 2 * 8, 0, 0]));
    assert.equal(proc.ioctl(dev, ioctl.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info), 0);
    const out = new DataView(proc.memory.read(info, 28)!.buffer);
    assert.deepEqual(
      [out.getUint32(4, true), out.getUint32(8, true)],
      [0, 2],
      'flags 0 (no DEV_ID), count 2',
    );
    assert.deepEqual(
      [0, 1].map((i) => [out.getUint32(12 + i * 8, true), out.getUint8(12 + i * 8 + 7)]),
      [
        [0, 0x00],
        [1, 0x01],
      ],
    );

    const reset = (fds: number[], count = fds.length): number =>
      proc.ioctl(
        dev,
        ioctl.VFIO_DEVICE_PCI_HOT_RESET,
        proc.alloc(4096, s32s([12 + fds.length * 4, 0, count, ...fds])),
      );
    assert.equal(reset([]), -Errno.EINVAL, 'a group-opened device needs group fds');
    assert.equal(reset([group0, group1, group1]), -Errno.EINVAL, 'more fds than devices');
    assert.equal(reset([group0, 999]), -Errno.EBADF);
    assert.equal(reset([group0, container]), -Errno.EINVAL, 'a container is no group');
    assert.equal(reset([group0]), -Errno.EINVAL, "01:00.1's group is missing");
    // The header's copy; two arrays, both allocated before either is checked; the fds' copy.
    const fired: string[] = [];
    for (const nth of [1, 2, 3, 4]) {
      proc.failNth.arm(nth);
      const rc = reset([group1, group0]);
      fired.push(`${proc.failNth.lastFired} ${rc}`);
      proc.failNth.arm(0);
    }
    assert.deepEqual(fired, [
      `copy-from-user ${-Errno.EFAULT}`,
      `kmalloc ${-Errno.ENOMEM}`,
      `kmalloc ${-Errno.ENOMEM}`,
      `copy-from-user ${-Errno.EFAULT}`,
    ]);
    assert.equal(reset([group1, group0]), 0);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });
});

describe('reset_works', () => {
  it('is found at the first open and kept: reset_method changed while open makes the reset ENOTTY', () => {
    const platform = defaultPlatform();
    const devices = platform.devices.map((d, i) =>
      i === 0 ? { ...d, resetMethods: ['flr'] as const } : d,
    );
    const emu = createEmulator({ platform: { ...platform, devices } });
    const proc = emu.spawn();
    const dev = proc.open('/dev/vfio/devices/vfio0');
    const iommufd = proc.open('/dev/iommu');
    const bind = proc.ioctlStruct(dev, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
      iommufd,
    });
    assert.equal(bind.ret, 0);
    const resetFlag = () => {
      const info = proc.ioctlStruct(dev, ioctl.VFIO_DEVICE_GET_INFO, v.vfioDeviceInfo, {});
      assert.equal(info.ret, 0);
      return (info.out.flags & v.VFIO_DEVICE_FLAGS_RESET) !== 0;
    };
    assert.equal(resetFlag(), true);
    assert.equal(proc.ioctl(dev, ioctl.VFIO_DEVICE_RESET), 0);
    const method = proc.open('/sys/bus/pci/devices/0000:00:04.0/reset_method', 1 /* O_WRONLY */);
    assert.equal(proc.pwrite(method, new TextEncoder().encode('\n'), 0n), 1);
    proc.close(method);
    assert.equal(resetFlag(), true, 'the flag is what the open found');
    assert.equal(proc.ioctl(dev, ioctl.VFIO_DEVICE_RESET), -Errno.ENOTTY, 'the PCI core has none');
    // Closed and opened again: the open finds no reset now.
    proc.close(dev);
    const again = proc.open('/dev/vfio/devices/vfio0');
    assert.equal(
      proc.ioctlStruct(again, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
        iommufd,
      }).ret,
      0,
    );
    const info = proc.ioctlStruct(again, ioctl.VFIO_DEVICE_GET_INFO, v.vfioDeviceInfo, {});
    assert.equal(info.out.flags & v.VFIO_DEVICE_FLAGS_RESET, 0);
    assert.equal(proc.ioctl(again, ioctl.VFIO_DEVICE_RESET), -Errno.EINVAL);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });
});
