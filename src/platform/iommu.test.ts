import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FailNth, withFailNth } from '../fault/fault.ts';
import { Errno } from '../uapi/errno.ts';
import { Prot } from './io-pgtable.ts';
import {
  allocDomain,
  allocNoiommuDomain,
  DomainRegistry,
  type IommuDomain,
  IommuUnit,
} from './iommu.ts';
import { PhysMemory } from './phys-memory.ts';
import { defaultPlatform } from './platform-config.ts';
import { PAGE_SIZE, SZ_1G, SZ_2M, SZ_4K, U64_MAX } from './sizes.ts';

function unit(phys: PhysMemory, registry = new DomainRegistry()): IommuUnit {
  const config = defaultPlatform().iommus[0]!;
  return new IommuUnit(phys, config, registry);
}

function domain(d: IommuDomain | number): IommuDomain {
  assert.ok(typeof d !== 'number', `domain allocation failed with errno ${d}`);
  return d;
}

describe('IommuUnit and domains', () => {
  it('describes the default x86 unit: 4K|2M|1G, 48-bit aperture, MSI window reserved', () => {
    const u = unit(new PhysMemory());
    assert.equal(u.pgsizeBitmap, SZ_4K | SZ_2M | SZ_1G);
    assert.deepEqual(u.aperture, { start: 0n, last: (1n << 48n) - 1n });
    assert.deepEqual(u.caps, { dirtyTracking: false, cacheCoherent: true });
    assert.deepEqual(u.reservedRegions('0000:00:04.0'), [
      { start: 0xfee00000n, last: 0xfeefffffn, type: 'msi' },
    ]);
    u.setDeviceRegions('0000:00:04.0', [{ start: 0x1000n, last: 0x1fffn, type: 'direct' }]);
    assert.equal(u.reservedRegions('0000:00:04.0').length, 2);
    assert.equal(u.reservedRegions('0000:00:05.0').length, 1);
  });

  it('translates with permission checks and names each fault', () => {
    const phys = new PhysMemory();
    const d = domain(allocDomain(unit(phys)));
    assert.equal(d.kind, 'paging');
    assert.equal(d.map(0x10000n, 0x200000n, PAGE_SIZE, Prot.READ), 0);
    assert.equal(d.map(0x20000n, 0x300000n, PAGE_SIZE, Prot.WRITE), 0);
    assert.deepEqual(d.translate(0x10010n, 'read'), { pa: 0x200010n, span: 0xff0n });
    assert.deepEqual(d.translate(0x10010n, 'write'), { fault: 'no-write' });
    assert.deepEqual(d.translate(0x20000n, 'read'), { fault: 'no-read' });
    assert.deepEqual(d.translate(0x30000n, 'read'), { fault: 'not-present' });
    assert.deepEqual(d.translate(1n << 48n, 'read'), { fault: 'outside-aperture' });
    assert.equal(d.map((1n << 48n) - PAGE_SIZE, 0n, 2n * PAGE_SIZE, Prot.READ), -Errno.ERANGE);
  });

  it('lists live domains in the registry and frees their tables', () => {
    const phys = new PhysMemory();
    const registry = new DomainRegistry();
    const u = unit(phys, registry);
    const a = domain(allocDomain(u));
    const b = domain(allocNoiommuDomain(phys, registry));
    assert.deepEqual(
      registry.live().map((d) => d.id),
      [a.id, b.id],
    );
    assert.deepEqual(u.domains(), [a]);
    a.map(0n, 0x100000n, SZ_2M, Prot.READ | Prot.WRITE);
    a.free();
    b.free();
    assert.equal(a.freed, true);
    assert.deepEqual(registry.live(), []);
    assert.equal(phys.stats().framesInUse, 0n);
  });

  it('makes a 64-bit software no-IOMMU domain with 4 KiB minimum pages', () => {
    const phys = new PhysMemory();
    const d = domain(allocNoiommuDomain(phys));
    assert.equal(d.kind, 'noiommu');
    assert.equal(d.unit, undefined);
    assert.deepEqual(d.aperture, { start: 0n, last: U64_MAX });
    assert.equal(d.pgsizeBitmap & -d.pgsizeBitmap, SZ_4K);
    const va = 0x7ffff7a00000n;
    assert.equal(d.map(va, 0x5000n, PAGE_SIZE, Prot.READ | Prot.WRITE), 0);
    assert.equal(d.iovaToPhys(va + 0x80n), 0x5080n);
    assert.equal(d.walk(va).steps.length, 6);
  });

  it('fails allocation at the domain-alloc and pagetable-alloc sites without leaking', () => {
    const phys = new PhysMemory();
    const registry = new DomainRegistry();
    const u = unit(phys, registry);
    const nth = new FailNth();
    for (const [n, site] of [
      [1, 'domain-alloc'],
      [2, 'pagetable-alloc'],
    ] as const) {
      nth.arm(n);
      assert.equal(
        withFailNth(nth, () => allocDomain(u)),
        -Errno.ENOMEM,
      );
      assert.equal(nth.lastFired, site);
      nth.arm(n);
      assert.equal(
        withFailNth(nth, () => allocNoiommuDomain(phys, registry)),
        -Errno.ENOMEM,
      );
    }
    assert.deepEqual(registry.live(), []);
    assert.equal(phys.stats().framesInUse, 0n);
  });
});
