import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkInvariants } from '../check/invariants.ts';
import { createEmulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as v from '../uapi/vfio.ts';
import { pciCoreMatch } from './pci-match.ts';

describe('group and container path', () => {
  it('sets a container, opens a device by name, and leaves nothing behind', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const group = emu.kernel.vfio.groups.get(0)!;
    const bdf = group.devices[0]!.pci.bdf;
    const container = proc.open('/dev/vfio/vfio');
    const groupFd = proc.open('/dev/vfio/0');
    assert.ok(container >= 0 && groupFd >= 0);
    const fdArg = proc.alloc(4096, new Uint8Array(new Int32Array([container]).buffer));
    const name = proc.alloc(4096, new TextEncoder().encode(`${bdf}\0`));
    const wrong = proc.alloc(4096, new TextEncoder().encode('0000:00:1f.7\0'));
    // Without a container no device opens.
    assert.equal(proc.ioctl(groupFd, ioctl.VFIO_GROUP_GET_DEVICE_FD, name), -Errno.EINVAL);
    assert.equal(proc.ioctl(groupFd, ioctl.VFIO_GROUP_UNSET_CONTAINER), -Errno.EINVAL);
    assert.equal(proc.ioctl(container, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), -Errno.ENODEV);
    assert.equal(proc.ioctl(groupFd, ioctl.VFIO_GROUP_SET_CONTAINER, fdArg), 0);
    assert.equal(proc.ioctl(groupFd, ioctl.VFIO_GROUP_SET_CONTAINER, fdArg), -Errno.EINVAL);
    // The wrong type first, with nothing changed, then the right one.
    assert.equal(proc.ioctl(container, ioctl.VFIO_SET_IOMMU, v.VFIO_NOIOMMU_IOMMU), -Errno.EINVAL);
    assert.equal(proc.ioctl(container, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), 0);
    const status = proc.ioctlStruct(groupFd, ioctl.VFIO_GROUP_GET_STATUS, v.vfioGroupStatus, {});
    assert.equal(status.out.flags, v.VFIO_GROUP_FLAGS_VIABLE | v.VFIO_GROUP_FLAGS_CONTAINER_SET);
    assert.equal(proc.ioctl(groupFd, ioctl.VFIO_GROUP_GET_DEVICE_FD, wrong), -Errno.ENODEV);
    const dev1 = proc.ioctl(groupFd, ioctl.VFIO_GROUP_GET_DEVICE_FD, name);
    const dev2 = proc.ioctl(groupFd, ioctl.VFIO_GROUP_GET_DEVICE_FD, name);
    assert.ok(dev1 >= 0 && dev2 >= 0 && dev1 !== dev2);
    assert.equal(group.devices[0]!.openCount.read(), 2);
    assert.notEqual(group.devices[0]!.iommufdDevice, undefined);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    proc.exit();
    assert.deepEqual(checkInvariants(emu.kernel), []);
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it("matches names as vfio-pci's match(): the name, spaces, one vf_token", () => {
    const emu = createEmulator();
    const device = emu.kernel.vfio.groups.get(0)!.devices[0]!;
    const bdf = device.pci.bdf;
    const uuid = '2ab74924-c335-45f4-9b16-8569e5b08258';
    assert.equal(pciCoreMatch(device, bdf), 1);
    assert.equal(pciCoreMatch(device, `${bdf}  `), 1);
    assert.equal(pciCoreMatch(device, `${bdf}x`), 0);
    assert.equal(pciCoreMatch(device, bdf.slice(5)), 0);
    assert.equal(pciCoreMatch(device, ''), 0);
    assert.equal(pciCoreMatch(device, `${bdf} foo`), -Errno.EINVAL);
    assert.equal(pciCoreMatch(device, `${bdf} vf_token=${uuid.slice(1)}`), -Errno.EINVAL);
    assert.equal(pciCoreMatch(device, `${bdf} vf_token=${uuid.replace('2', 'z')}`), -Errno.EINVAL);
    // Well formed, but the device is neither an SR-IOV PF nor a VF.
    assert.equal(pciCoreMatch(device, `${bdf} vf_token=${uuid}`), -Errno.EINVAL);
    assert.equal(pciCoreMatch(device, `${bdf} vf_token=${uuid} vf_token=${uuid}`), -Errno.EINVAL);
  });
});

describe('GET_DEVICE_FD and fail-nth', () => {
  it('the name: checked first with no injection point, then allocated and copied', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const container = proc.open('/dev/vfio/vfio');
    const groupFd = proc.open('/dev/vfio/0');
    const fdArg = proc.alloc(4096, new Uint8Array(new Int32Array([container]).buffer));
    assert.equal(proc.ioctl(groupFd, ioctl.VFIO_GROUP_SET_CONTAINER, fdArg), 0);
    assert.equal(proc.ioctl(container, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), 0);
    const name = proc.alloc(4096, new TextEncoder().encode('0000:00:04.0\0'));
    const long = proc.alloc(8192, new Uint8Array(4096).fill(0x41));
    // Too long: EINVAL before any injection point is reached.
    proc.failNth.arm(1);
    assert.equal(proc.ioctl(groupFd, ioctl.VFIO_GROUP_GET_DEVICE_FD, long), -Errno.EINVAL);
    assert.equal(proc.failNth.lastFired, undefined);
    proc.failNth.arm(0);
    const sites: string[] = [];
    for (let nth = 1; ; nth++) {
      proc.failNth.arm(nth);
      const rc = proc.ioctl(groupFd, ioctl.VFIO_GROUP_GET_DEVICE_FD, name);
      const fired: string | undefined = proc.failNth.lastFired;
      proc.failNth.arm(0);
      if (rc >= 0) {
        assert.equal(fired, undefined);
        proc.close(rc);
        break;
      }
      sites.push(`${fired} ${rc}`);
      const vdev = emu.kernel.vfio.devices.get('0000:00:04.0')!;
      assert.equal(vdev.registration.read(), 1, `${fired}: the reference is put back`);
      assert.equal(vdev.openCount.read(), 0, `${fired}: nothing stays open`);
      assert.equal(vdev.iommufdDevice, undefined, `${fired}: nothing stays bound`);
    }
    // memdup_user's allocation and copy, then the device file, then the first open's bind and
    // open_device (whose allocation comes after the bind's own points).
    assert.deepEqual(sites.slice(0, 2), [
      `kmalloc ${-Errno.ENOMEM}`,
      `copy-from-user ${-Errno.EFAULT}`,
    ]);
    const enomem = `kmalloc ${-Errno.ENOMEM}`;
    assert.deepEqual(sites.slice(0, 6), [
      enomem, // memdup_user()
      `copy-from-user ${-Errno.EFAULT}`,
      enomem, // vfio_allocate_device_file()
      `object-alloc ${-Errno.ENOMEM}`, // iommufd_device_bind()
      enomem, // iommufd_device_bind()'s own
      enomem, // open_device
    ]);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });
});
