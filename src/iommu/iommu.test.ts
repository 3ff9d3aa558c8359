import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FailNth, withFailNth } from '../fault/fault.ts';
import { allocNoiommuDomain } from '../platform/iommu.ts';
import { Machine } from '../platform/machine.ts';
import { defaultPlatform, type PlatformConfig } from '../platform/platform-config.ts';
import { Errno } from '../uapi/errno.ts';
import {
  type Device,
  deviceIommuCapable,
  type IommuDomain,
  type IommuOps,
  IommuSubsystem,
  iommuAttachGroupHandle,
  iommuDetachGroupHandle,
  iommuDeviceClaimDmaOwner,
  iommuDeviceReleaseDmaOwner,
  iommuGetResvRegions,
  iommuGroupDmaOwnerClaimed,
  iommuGroupHasIsolatedMsi,
  iommuReplaceGroupHandle,
} from './iommu.ts';
import { hwDomainOf, PtDomain } from './pt-domain.ts';
import { unitIommuOps } from './unit-driver.ts';

/** The default machine plus a second unit "dmar1" without interrupt remapping, edu 07.0 behind it. */
function platform(): PlatformConfig {
  const base = defaultPlatform();
  const dmar1 = { ...base.iommus[0]!, name: 'dmar1', isolatedMsi: false };
  const dev = { ...base.devices[0]!, bdf: '0000:00:07.0', iommu: 'dmar1' };
  return { ...base, iommus: [...base.iommus, dmar1], devices: [...base.devices, dev] };
}

function boot(config = platform()): { machine: Machine; core: IommuSubsystem } {
  const machine = new Machine(config);
  return { machine, core: new IommuSubsystem(machine, unitIommuOps) };
}

function dev(core: IommuSubsystem, bdf: string): Device {
  const d = core.device(bdf);
  assert.ok(d !== undefined, `no device ${bdf}`);
  return d;
}

function paging(d: Device): IommuDomain {
  const domain = unitIommuOps.domainAllocPaging(d, 0, undefined);
  assert.ok(typeof domain !== 'number', `domain allocation failed: ${domain}`);
  return domain;
}

describe('iommu core: probe', () => {
  it('gives devices behind a unit dev->iommu and a group, and the no-IOMMU device neither', () => {
    const { machine, core } = boot();
    const edu0 = dev(core, '0000:00:04.0');
    assert.equal(edu0.iommu?.ops, unitIommuOps);
    assert.equal(edu0.iommu?.unit?.name, 'dmar0');
    assert.equal(edu0.group?.id, 0);
    assert.deepEqual(edu0.group?.devices, [edu0]);
    assert.equal(dev(core, '0000:00:05.0').group?.id, 1);
    const bare = dev(core, '0000:00:06.0');
    assert.equal(bare.iommu, undefined);
    assert.equal(bare.group, undefined);
    assert.deepEqual(iommuGetResvRegions(bare), []);
    assert.deepEqual(
      iommuGetResvRegions(edu0).map((r) => r.type),
      ['msi'],
    );
    assert.deepEqual([...core.groups.keys()].sort(), [0, 1, 2]);
    machine.shutdown();
  });

  it('answers device_iommu_capable from the unit, false with no IOMMU', () => {
    const config = platform();
    const coherentless = {
      ...config.iommus[1]!,
      caps: { dirtyTracking: true, cacheCoherent: false },
    };
    const { machine, core } = boot({ ...config, iommus: [config.iommus[0]!, coherentless] });
    const edu0 = dev(core, '0000:00:04.0');
    assert.equal(deviceIommuCapable(edu0, 'cache-coherency'), true);
    assert.equal(deviceIommuCapable(edu0, 'enforce-cache-coherency'), true);
    assert.equal(deviceIommuCapable(edu0, 'dirty-tracking'), false);
    const edu7 = dev(core, '0000:00:07.0');
    assert.equal(deviceIommuCapable(edu7, 'cache-coherency'), false);
    assert.equal(deviceIommuCapable(edu7, 'dirty-tracking'), true);
    for (const cap of ['cache-coherency', 'enforce-cache-coherency', 'dirty-tracking'] as const)
      assert.equal(deviceIommuCapable(dev(core, '0000:00:06.0'), cap), false);
    machine.shutdown();
  });

  it('takes MSI isolation per IOMMU unit from the platform', () => {
    const { machine, core } = boot();
    assert.equal(iommuGroupHasIsolatedMsi(dev(core, '0000:00:04.0').group!), true);
    assert.equal(iommuGroupHasIsolatedMsi(dev(core, '0000:00:07.0').group!), false);
    machine.shutdown();
  });

  it('keeps its state per kernel: two machines do not share group owners', () => {
    const a = boot();
    const b = boot();
    const owner = {};
    assert.equal(iommuDeviceClaimDmaOwner(dev(a.core, '0000:00:04.0'), owner), 0);
    assert.equal(iommuGroupDmaOwnerClaimed(dev(a.core, '0000:00:04.0').group!), true);
    assert.equal(iommuGroupDmaOwnerClaimed(dev(b.core, '0000:00:04.0').group!), false);
    assert.equal(iommuDeviceClaimDmaOwner(dev(b.core, '0000:00:04.0'), {}), 0);
    a.machine.shutdown();
    b.machine.shutdown();
  });
});

describe('iommu core: DMA ownership', () => {
  it('has one owner per group, counted per claim', () => {
    const config = defaultPlatform();
    const shared = {
      ...config,
      devices: config.devices.map((d) => ({ ...d, group: d.iommu ? 3 : undefined })),
    };
    const { machine, core } = boot(shared as PlatformConfig);
    const a = dev(core, '0000:00:04.0');
    const b = dev(core, '0000:00:05.0');
    assert.equal(a.group, b.group);
    const ctx1 = {};
    const ctx2 = {};
    assert.equal(iommuDeviceClaimDmaOwner(a, ctx1), 0);
    assert.equal(iommuDeviceClaimDmaOwner(b, ctx2), -Errno.EPERM, 'another owner');
    assert.equal(iommuDeviceClaimDmaOwner(b, ctx1), 0, 'the same owner claims again');
    assert.equal(a.group!.ownerCount, 2);
    // A device of the group may let go while another keeps a domain attached.
    const d = paging(a);
    assert.equal(iommuAttachGroupHandle(d, a.group!), 0);
    iommuDeviceReleaseDmaOwner(a);
    assert.equal(iommuGroupDmaOwnerClaimed(a.group!), true);
    assert.throws(() => iommuDeviceReleaseDmaOwner(b), /domain attached/, 'not the last one');
    iommuDetachGroupHandle(d, a.group!);
    d.free();
    assert.equal(iommuDeviceClaimDmaOwner(a, ctx2), -Errno.EPERM);
    iommuDeviceReleaseDmaOwner(b);
    assert.equal(iommuGroupDmaOwnerClaimed(a.group!), false);
    assert.equal(a.group!.owner, undefined);
    assert.equal(iommuDeviceClaimDmaOwner(b, ctx2), 0, 'free again');
    assert.throws(() => iommuDeviceReleaseDmaOwner(dev(core, '0000:00:06.0')));
    assert.equal(iommuDeviceClaimDmaOwner(dev(core, '0000:00:06.0'), ctx1), -Errno.ENODEV);
    machine.shutdown();
  });
});

describe('iommu core: attach, replace and detach of a group handle', () => {
  it('programs every device of the group and blocks DMA again on detach', () => {
    const { machine, core } = boot();
    const edu0 = dev(core, '0000:00:04.0');
    const group = edu0.group!;
    assert.equal(iommuDeviceClaimDmaOwner(edu0, {}), 0);
    const d1 = paging(edu0);
    const d2 = paging(edu0);
    assert.equal(edu0.pci.domain, undefined, 'devices start blocked');
    assert.equal(iommuAttachGroupHandle(d1, group), 0);
    assert.equal(edu0.pci.domain, hwDomainOf(d1));
    assert.equal(iommuAttachGroupHandle(d2, group), -Errno.EBUSY, 'one handle at a time');
    assert.equal(iommuReplaceGroupHandle(group, d2), 0);
    assert.equal(edu0.pci.domain, hwDomainOf(d2));
    assert.throws(() => iommuDetachGroupHandle(d1, group), /does not have attached/);
    assert.throws(() => iommuDeviceReleaseDmaOwner(edu0), /domain attached/);
    iommuDetachGroupHandle(d2, group);
    assert.equal(edu0.pci.domain, undefined);
    assert.equal(group.domain, undefined);
    iommuDeviceReleaseDmaOwner(edu0);
    d1.free();
    d2.free();
    assert.deepEqual(machine.invariantViolations(), []);
    machine.shutdown();
  });

  it('refuses a domain of another driver (owner rule on attach, ENODEV on replace) and of another unit, changing nothing', () => {
    const { machine, core } = boot();
    const edu0 = dev(core, '0000:00:04.0');
    const group = edu0.group!;
    // Another driver: software tables only, like iommufd's no-IOMMU ops.
    const softOps: IommuOps = {
      name: 'soft',
      domainAllocPaging(d) {
        const table = allocNoiommuDomain(d.pages.phys, d.pages.domains);
        return typeof table === 'number' ? table : new PtDomain(softOps, table);
      },
    };
    const soft = softOps.domainAllocPaging(dev(core, '0000:00:06.0'), 0, undefined);
    assert.ok(typeof soft !== 'number');
    assert.equal(soft.owner, softOps);
    assert.equal(iommuAttachGroupHandle(soft, group), -Errno.EINVAL);
    assert.equal(group.hasHandle, false);
    assert.equal(edu0.pci.domain, undefined);
    const other = paging(dev(core, '0000:00:07.0'));
    assert.equal(other.owner, edu0.iommu?.ops, 'the same driver');
    assert.equal(iommuAttachGroupHandle(other, group), -Errno.EINVAL, 'the unit refuses it');
    assert.equal(group.hasHandle, false);
    const mine = paging(edu0);
    assert.equal(iommuAttachGroupHandle(mine, group), 0);
    // Replace has no owner check: the domain's attach_dev decides, and soft has none.
    assert.equal(iommuReplaceGroupHandle(group, soft), -Errno.ENODEV);
    assert.equal(iommuReplaceGroupHandle(group, other), -Errno.EINVAL);
    assert.equal(group.domain, mine, 'a failed replace keeps the old domain');
    assert.equal(edu0.pci.domain, hwDomainOf(mine));
    iommuDetachGroupHandle(mine, group);
    for (const d of [soft, other, mine]) d.free();
    assert.deepEqual(machine.domains.live(), []);
    machine.shutdown();
  });

  it('allocates unit domains all or nothing under fault injection', () => {
    const { machine, core } = boot();
    const edu0 = dev(core, '0000:00:04.0');
    const nth = new FailNth();
    // Two sites (domain-alloc, pagetable-alloc), then nothing left to fail.
    for (let n = 1; n <= 3; n++) {
      nth.arm(n);
      const d = withFailNth(nth, () => unitIommuOps.domainAllocPaging(edu0, 0, undefined));
      if (n <= 2) assert.equal(d, -Errno.ENOMEM, `injection point ${n}`);
      else if (typeof d === 'number') assert.fail(`allocation failed with ${d}`);
      else d.free();
      assert.deepEqual(machine.domains.live(), []);
      assert.deepEqual(machine.invariantViolations(), []);
    }
    machine.shutdown();
  });
});
