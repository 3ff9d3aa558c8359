import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Kernel } from '../boot/kernel.ts';
import { CAP_FULL_SET, CAP_IPC_LOCK } from '../host/credentials.ts';
import { SimProcess } from '../host/sim-process.ts';
import { hwDomainOf } from '../iommu/pt-domain.ts';
import { HwptPaging } from '../iommufd/hw-pagetable.ts';
import { Ioas } from '../iommufd/ioas.ts';
import { Prot } from '../platform/io-pgtable.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import { ctxObjects } from './_internals.ts';
import { FIXED, IommufdOps, VfioDeviceOps } from './_ops.ts';
import { checkInvariants } from './invariants.ts';
import { diffSnapshots, snapshotKernel } from './snapshot.ts';

/**
 * A kernel with an IOMMU device and a no-IOMMU device attached to one IOAS (two domains), two
 * mappings (pinned, charged), and a second IOAS with a COPY of one of them.
 */
function populated() {
  const kernel = new Kernel({ enableUnsafeNoiommuMode: true });
  const proc = new SimProcess(kernel, { capEff: CAP_FULL_SET & ~(1n << BigInt(CAP_IPC_LOCK)) });
  const ops = new IommufdOps(proc, proc.open('/dev/iommu'));
  const buf = proc.alloc(16n * PAGE_SIZE);
  const bind = (path: string) => {
    const dev = new VfioDeviceOps(proc, proc.open(path));
    assert.equal(dev.bind(ops.fd).ret, 0);
    return dev;
  };
  const a = bind('/dev/vfio/devices/vfio0');
  const n = bind('/dev/vfio/devices/noiommu-vfio2');
  const ioas = ops.ioasAlloc().id;
  const ioas2 = ops.ioasAlloc().id;
  assert.equal(ops.map(ioas, buf, 4n * PAGE_SIZE, FIXED, 0x100000n).ret, 0);
  // The no-IOMMU device first: the IOMMU device then gets a domain of its own (attached the
  // other way round, both would share the IOMMU's auto domain, docs/decisions.md 13).
  assert.equal(n.attach(ioas).ret, 0);
  assert.equal(a.attach(ioas).ret, 0);
  assert.equal(ops.map(ioas, buf + 8n * PAGE_SIZE, 2n * PAGE_SIZE, FIXED, 0x200000n).ret, 0);
  assert.equal(ops.copy(ioas, 0x100000n, ioas2, 4n * PAGE_SIZE, FIXED, 0x300000n).ret, 0);
  const ictx = [...kernel.iommufd.contexts][0]!;
  const objects = [...ctxObjects(ictx).values()];
  const ioasObj = objects.find((o): o is Ioas => o instanceof Ioas && o.id === ioas)!;
  const hwpts = objects.filter((o): o is HwptPaging => o instanceof HwptPaging);
  return { kernel, proc, ops, buf, ioasObj, hwpts };
}

describe('checkInvariants', () => {
  it('holds on a populated kernel and after everything exited', () => {
    const t = populated();
    assert.equal(t.hwpts.length, 2);
    assert.deepEqual(checkInvariants(t.kernel), []);
    t.proc.exit();
    assert.deepEqual(checkInvariants(t.kernel), []);
    assert.deepEqual(t.kernel.leaks(), []);
  });

  it('counts the references a fault queue fd and a HWPT that reports to it hold', () => {
    const t = populated();
    const alloc = t.proc.ioctlStruct(
      t.ops.fd,
      ioctl.IOMMU_FAULT_QUEUE_ALLOC,
      u.iommuFaultAlloc,
      {},
    );
    assert.equal(alloc.ret, 0);
    assert.deepEqual(checkInvariants(t.kernel), []);
    const hwpt = t.proc.ioctlStruct(t.ops.fd, ioctl.IOMMU_HWPT_ALLOC, u.iommuHwptAlloc, {
      flags: u.IOMMU_HWPT_FAULT_ID_VALID,
      dev_id: 1,
      pt_id: t.ioasObj.id,
      fault_id: alloc.out.out_fault_id,
    });
    assert.equal(hwpt.ret, 0);
    assert.deepEqual(checkInvariants(t.kernel), []);
    assert.equal(t.proc.close(alloc.out.out_fault_fd), 0);
    assert.deepEqual(checkInvariants(t.kernel), []);
    t.proc.exit();
    assert.deepEqual(checkInvariants(t.kernel), []);
    assert.deepEqual(t.kernel.leaks(), []);
  });

  it('finds a refcount that does not match the object graph', () => {
    const t = populated();
    t.ioasObj.users.inc();
    const lines = checkInvariants(t.kernel);
    assert.ok(
      lines.some((l) => /ioas \d+ has users 4, the object graph implies 3/.test(l)),
      lines.join('\n'),
    );
    t.ioasObj.users.dec();
    t.hwpts[0]!.shorttermUsers.inc();
    assert.ok(
      checkInvariants(t.kernel).some((l) => l.includes('1 short-term users between calls')),
    );
    t.hwpts[0]!.shorttermUsers.dec();
    assert.deepEqual(checkInvariants(t.kernel), []);
  });

  it('finds a mapping no area explains', () => {
    const t = populated();
    const hw = hwDomainOf(t.hwpts[0]!.domain!)!;
    assert.equal(hw.map(0x900000n, 0x200000n, PAGE_SIZE, Prot.READ), 0);
    const lines = checkInvariants(t.kernel);
    assert.ok(
      lines.some((l) => l.includes(`domain ${hw.id} maps`)),
      lines.join('\n'),
    );
  });

  it('finds a page table that maps an area to the wrong frame', () => {
    const t = populated();
    const hw = hwDomainOf(t.hwpts[1]!.domain!)!;
    assert.equal(hw.unmap(0x200000n, PAGE_SIZE), PAGE_SIZE);
    assert.equal(hw.map(0x200000n, 0x300000n, PAGE_SIZE, Prot.READ | Prot.WRITE), 0);
    const lines = checkInvariants(t.kernel);
    assert.ok(
      lines.some((l) => l.includes('the pinned frame is')),
      lines.join('\n'),
    );
  });

  it('finds pins, charges and domains that no object owns', () => {
    const t = populated();
    const pinned = t.kernel.machine.pinned.pin(t.proc.memory, t.buf + 12n * PAGE_SIZE, 1n, true);
    assert.ok(Array.isArray(pinned));
    let lines = checkInvariants(t.kernel);
    assert.ok(
      lines.some((l) => /pages hold \d+ pins/.test(l)),
      lines.join('\n'),
    );
    t.kernel.machine.pinned.unpin(t.proc.memory.mm, t.buf + 12n * PAGE_SIZE, 1n);
    assert.deepEqual(checkInvariants(t.kernel), []);

    const owner = { uid: 0, mm: t.proc.memory.mm, memlockLimit: 1n << 30n };
    assert.equal(t.kernel.iommufd.accounting.charge('user', owner, 3n), 0);
    lines = checkInvariants(t.kernel);
    assert.ok(
      lines.some((l) => l.startsWith('locked_vm of user:0')),
      lines.join('\n'),
    );
    t.kernel.iommufd.accounting.uncharge('user', owner, 3n);

    const stray = t.kernel.machine.allocNoiommuDomain();
    assert.notEqual(typeof stray, 'number');
    lines = checkInvariants(t.kernel);
    assert.ok(
      lines.some((l) => l.includes('no HWPT holds it')),
      lines.join('\n'),
    );
  });

  it('finds reserved ranges nothing implies and igroups with the wrong count', () => {
    const t = populated();
    const owner = {};
    assert.equal(t.ioasObj.iopt.reserveIova(0x5000000n, 0x5000fffn, owner), 0);
    assert.ok(checkInvariants(t.kernel).some((l) => l.includes('stray reserved range')));
    t.ioasObj.iopt.removeReservedIova(owner);
    const ictx = [...t.kernel.iommufd.contexts][0]!;
    const igroup = [...ictx.groups.values()][0]!;
    igroup.refs++;
    assert.ok(checkInvariants(t.kernel).some((l) => /igroup \d+ has refs 2 for 1/.test(l)));
    igroup.refs--;
    assert.deepEqual(checkInvariants(t.kernel), []);
  });

  it('finds an area left half built', () => {
    const t = populated();
    const area = t.ioasObj.iopt.areas.iterFirst(0x200000n, 0x200000n)!;
    const pages = area.pages;
    area.pages = undefined;
    assert.ok(checkInvariants(t.kernel).some((l) => l.includes('has no pages between calls')));
    assert.deepEqual(
      checkInvariants(t.kernel, { betweenCalls: false }).filter((l) => l.includes('no pages')),
      [],
    );
    area.pages = pages;
  });
});

describe('snapshots', () => {
  it('are equal for an unchanged kernel and name what changed', () => {
    const t = populated();
    const before = snapshotKernel(t.kernel);
    assert.deepEqual(diffSnapshots(before, snapshotKernel(t.kernel)), []);
    assert.equal(t.ops.unmap(t.ioasObj.id, 0x200000n, 2n * PAGE_SIZE).ret, 0);
    const diff = diffSnapshots(before, snapshotKernel(t.kernel));
    assert.ok(
      diff.some((l) => l.includes(`ioas[id ${t.ioasObj.id}].areas[iova 0x200000]: removed`)),
      diff.join('\n'),
    );
    assert.ok(
      diff.some((l) => l.startsWith('pinned.pinnedPages')),
      diff.join('\n'),
    );
  });
});
