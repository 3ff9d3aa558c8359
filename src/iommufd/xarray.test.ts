import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Kernel } from '../boot/kernel.ts';
import { CAP_FULL_SET } from '../host/credentials.ts';
import { SimProcess } from '../host/sim-process.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import { xaNodesToStore } from './xarray.ts';

describe('xarray nodes of the object table', () => {
  it('allocates a node only where the path of the new index has none', () => {
    assert.equal(xaNodesToStore([], 1), 1, 'the first id needs the level-0 node');
    assert.equal(xaNodesToStore([1], 2), 0);
    assert.equal(xaNodesToStore([1, 2, 3], 63), 0);
    const full = Array.from({ length: 63 }, (_, i) => i + 1);
    assert.equal(xaNodesToStore(full, 64), 2, 'a new root and the node of 64..127');
    assert.equal(xaNodesToStore([...full, 64], 65), 0);
    assert.equal(xaNodesToStore([1, 64], 130), 1, 'the root exists, the node of 128..191 not');
    assert.equal(xaNodesToStore([], 4096), 3);
  });
});

describe("the kernel's injection map", () => {
  function setup() {
    const kernel = new Kernel();
    const proc = new SimProcess(kernel, { capEff: CAP_FULL_SET });
    proc.failNth.trail = [];
    return { kernel, proc };
  }

  it('has three VFS points before the open of /dev/iommu, and none at the size read', () => {
    const { kernel, proc } = setup();
    const fd = proc.open('/dev/iommu');
    assert.ok(fd >= 0);
    assert.deepEqual(proc.failNth.trail, ['kmalloc', 'copy-from-user', 'kmalloc', 'kmalloc']);
    proc.failNth.trail = [];
    const first = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    assert.equal(first.ret, 0);
    // copy_struct_from_user, the object, the xarray node of ids 1..63, the response.
    assert.deepEqual(proc.failNth.trail, [
      'copy-from-user',
      'object-alloc',
      'id-reserve',
      'copy-to-user',
    ]);
    proc.failNth.trail = [];
    assert.equal(proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {}).ret, 0);
    assert.deepEqual(proc.failNth.trail, ['copy-from-user', 'object-alloc', 'copy-to-user']);
    proc.exit();
    kernel.shutdown();
  });

  it('fails open at each VFS point with the kernel errno', () => {
    const { kernel, proc } = setup();
    const want = [-Errno.ENOMEM, -Errno.EFAULT, -Errno.ENOMEM, -Errno.ENOMEM];
    for (const [i, errno] of want.entries()) {
      proc.failNth.arm(i + 1);
      assert.equal(proc.open('/dev/iommu'), errno, `point ${i + 1}`);
    }
    assert.deepEqual(kernel.leaks(), []);
    proc.exit();
    kernel.shutdown();
  });

  it('survives a failed GFP_NOWAIT node allocation: the blocking retry stores the id', () => {
    const { kernel, proc } = setup();
    const fd = proc.open('/dev/iommu');
    proc.failNth.trail = [];
    proc.failNth.arm(3);
    const r = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    assert.equal(proc.failNth.lastFired, 'id-reserve');
    assert.equal(r.ret, 0);
    assert.equal(r.out.out_ioas_id, 1);
    assert.deepEqual(proc.failNth.trail, [
      'copy-from-user',
      'object-alloc',
      'id-reserve',
      'kmalloc',
      'copy-to-user',
    ]);
    proc.exit();
    assert.deepEqual(kernel.leaks(), []);
    kernel.shutdown();
  });
});
