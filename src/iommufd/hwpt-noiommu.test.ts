import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FailNth, withFailNth } from '../fault/fault.ts';
import { type Device, deviceIommuCapable, IommuSubsystem } from '../iommu/iommu.ts';
import { hwDomainOf } from '../iommu/pt-domain.ts';
import { unitIommuOps } from '../iommu/unit-driver.ts';
import { Machine } from '../platform/machine.ts';
import { SZ_4K, U64_MAX } from '../platform/sizes.ts';
import { Errno } from '../uapi/errno.ts';
import * as u from '../uapi/iommufd.ts';
import { iommufdNoiommuOps, isNoiommuDomain } from './hwpt-noiommu.ts';

function boot(): { machine: Machine; bare: Device; edu0: Device } {
  const machine = new Machine();
  const core = new IommuSubsystem(machine, unitIommuOps);
  return {
    machine,
    bare: core.device('0000:00:06.0')!,
    edu0: core.device('0000:00:04.0')!,
  };
}

describe('hwpt-noiommu: iommufd_noiommu_ops', () => {
  it('allocates a software domain over the whole 64-bit IOVA space that records IOVA to PA', () => {
    const { machine, bare } = boot();
    const domain = iommufdNoiommuOps.domainAllocPaging(bare, 0, undefined);
    assert.ok(typeof domain !== 'number', `allocation failed: ${domain}`);
    assert.equal(domain.owner, iommufdNoiommuOps);
    assert.equal(isNoiommuDomain(domain), true);
    assert.deepEqual(domain.aperture, { start: 0n, last: U64_MAX });
    assert.equal(domain.pgsizeBitmap & SZ_4K, SZ_4K);
    assert.equal(hwDomainOf(domain)?.kind, 'noiommu');
    assert.equal(
      domain.map(0xffff_ffff_f000_0000n, 0x20_0000n, SZ_4K, { read: true, write: true }),
      0,
    );
    assert.equal(domain.iovaToPhys(0xffff_ffff_f000_0123n), 0x20_0123n);
    assert.equal(domain.unmap(0xffff_ffff_f000_0000n, SZ_4K), SZ_4K);
    domain.free();
    assert.deepEqual(machine.domains.live(), []);
    assert.equal(machine.phys.stats().byPurpose['page-table'], 0n);
    machine.shutdown();
  });

  it('supports no flags and no driver data, and has no capabilities and no hardware', () => {
    const { machine, bare, edu0 } = boot();
    for (const flag of [
      u.IOMMU_HWPT_ALLOC_NEST_PARENT,
      u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
      u.IOMMU_HWPT_ALLOC_PASID,
    ])
      assert.equal(iommufdNoiommuOps.domainAllocPaging(bare, flag, undefined), -Errno.EOPNOTSUPP);
    const data = { type: 1, uptr: 0x1000n, len: 8, task: undefined as never };
    assert.equal(iommufdNoiommuOps.domainAllocPaging(bare, 0, data), -Errno.EOPNOTSUPP);
    assert.deepEqual(machine.domains.live(), []);
    assert.equal(iommufdNoiommuOps.capable, undefined);
    assert.equal(iommufdNoiommuOps.attachDev, undefined);
    assert.equal(deviceIommuCapable(bare, 'dirty-tracking'), false);
    // A unit's domain is not a no-IOMMU one.
    const hw = unitIommuOps.domainAllocPaging(edu0, 0, undefined);
    assert.ok(typeof hw !== 'number');
    assert.equal(isNoiommuDomain(hw), false);
    assert.equal(isNoiommuDomain(undefined), false);
    hw.free();
    machine.shutdown();
  });

  it('fails with ENOMEM at each allocation site and leaves nothing behind', () => {
    const { machine, bare } = boot();
    const nth = new FailNth();
    for (let n = 1; n <= 2; n++) {
      nth.arm(n);
      assert.equal(
        withFailNth(nth, () => iommufdNoiommuOps.domainAllocPaging(bare, 0, undefined)),
        -Errno.ENOMEM,
      );
      assert.deepEqual(machine.domains.live(), []);
      assert.deepEqual(machine.invariantViolations(), []);
    }
    machine.shutdown();
  });
});
