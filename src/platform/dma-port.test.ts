import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import {
  IOVA,
  type MachineRig,
  machineRig,
  mapRuns,
  newDomain,
  pin,
  shutdownMachines,
  VA,
} from './_test-machine.ts';
import { pattern } from './_test-user-memory.ts';
import { Prot, Pte } from './io-pgtable.ts';
import type { IommuDomain } from './iommu.ts';
import type { Machine } from './machine.ts';
import { defaultPlatform } from './platform-config.ts';
import { PAGE_SIZE, U64_MAX } from './sizes.ts';

const RW = Prot.READ | Prot.WRITE;

afterEach(shutdownMachines);

interface Rig extends MachineRig {
  readonly domain: IommuDomain;
  readonly port: NonNullable<ReturnType<Machine['device']>>['dma'];
}

/**
 * A machine whose dmar0 tracks dirty pages, `npages` pinned pages of a process mapped at IOVA
 * (scattered frames, so every page is its own leaf), and edu 00:04.0 attached to that domain.
 */
function rig(npages: bigint, iova = IOVA, levels = 4): Rig {
  const platform = defaultPlatform();
  const dmar0 = {
    ...platform.iommus[0]!,
    caps: { dirtyTracking: true, cacheCoherent: true },
    levels,
    aperture: { start: 0n, last: levels === 4 ? (1n << 48n) - 1n : U64_MAX },
  };
  const { machine, events, mem } = machineRig({ ...platform, iommus: [dmar0] });
  mem.mmap(VA, npages * PAGE_SIZE);
  const domain = newDomain(machine);
  mapRuns(domain, pin(machine, mem, VA, npages), VA, iova, RW);
  const dev = machine.device('0000:00:04.0')!;
  assert.equal(dev.setDomain(domain), 0);
  return { machine, events, mem, domain, port: dev.dma };
}

/** The IOVAs of the leaves whose DIRTY bit is set, clearing them. */
function takeDirty(domain: IommuDomain): bigint[] {
  const dirty: bigint[] = [];
  domain.readAndClearDirty(IOVA, 64n * PAGE_SIZE, false, (iova) => dirty.push(iova));
  return dirty;
}

describe('IommuDmaPort', () => {
  it('sets the DIRTY bit of exactly the leaves a DMA writes through, every time', () => {
    const { mem, domain, port } = rig(4n);
    domain.setDirtyTracking(true);
    // Reads dirty nothing; an empty write dirties nothing, even one that starts mid-page.
    assert.ok(port.read(IOVA, 4 * 4096) !== undefined);
    assert.ok(port.write(IOVA + 0x800n, new Uint8Array(0)));
    assert.deepEqual(takeDirty(domain), []);
    // Pages 0..2 of 4, from the middle of page 0 to the middle of page 2.
    const data = pattern(0x1200, 5);
    assert.ok(port.write(IOVA + 0xf00n, data));
    assert.deepEqual(mem.read(VA + 0xf00n, 0x1200), data);
    assert.deepEqual(takeDirty(domain), [IOVA, IOVA + PAGE_SIZE, IOVA + 2n * PAGE_SIZE]);
    // Cleared bits are set again by the next write through the same leaves.
    assert.ok(port.write(IOVA + 0x1000n, pattern(16)));
    assert.deepEqual(takeDirty(domain), [IOVA + PAGE_SIZE]);
    // With tracking off, a write leaves the bits alone.
    domain.setDirtyTracking(false);
    assert.ok(port.write(IOVA, pattern(16)));
    domain.setDirtyTracking(true);
    assert.deepEqual(takeDirty(domain), []);
  });

  it('faults a write that reaches an unmapped page before a byte moves, dirtying what it translated', () => {
    const { mem, events, domain, port } = rig(3n);
    domain.setDirtyTracking(true);
    assert.equal(domain.unmap(IOVA + 2n * PAGE_SIZE, PAGE_SIZE), PAGE_SIZE);
    assert.equal(port.write(IOVA + 0x10n, pattern(3 * 4096 - 0x20)), false);
    assert.deepEqual(mem.read(VA, 2 * 4096), new Uint8Array(2 * 4096), 'no byte moved');
    assert.deepEqual(
      events.filter((e) => e.kind === 'iommu-fault'),
      [
        {
          kind: 'iommu-fault',
          device: '0000:00:04.0',
          iova: IOVA + 2n * PAGE_SIZE,
          access: 'write',
          reason: 'not-present',
        },
      ],
    );
    // translate() checks the whole range first, for write: the pages before the fault are dirty.
    assert.deepEqual(takeDirty(domain), [IOVA, IOVA + PAGE_SIZE]);
  });

  it('sees a leaf rewritten in RAM between two transfers of one region', () => {
    const { machine, mem, port, domain } = rig(2n);
    mem.write(VA, pattern(2 * 4096, 9));
    assert.deepEqual(port.read(IOVA, 16), pattern(16, 9));
    // The walk of IOVA is cached now; point its leaf at the second page, then make it read-only.
    const leaf = domain.walk(IOVA).steps[3]!;
    const second = domain.walk(IOVA + PAGE_SIZE).steps[3]!.pte & Pte.ADDR_MASK;
    machine.phys.writeU64(leaf.ptePa, second | Pte.PRESENT | Pte.READ | Pte.WRITE);
    assert.deepEqual(port.read(IOVA, 16), pattern(2 * 4096, 9).subarray(4096, 4096 + 16));
    machine.phys.writeU64(leaf.ptePa, second | Pte.PRESENT | Pte.READ);
    assert.equal(port.write(IOVA, pattern(16)), false);
    assert.ok(port.read(IOVA, 16) !== undefined);
  });

  it('walks a table a corrupted entry put in a process page as the process rewrites it', () => {
    const { machine, mem, events, port, domain } = rig(3n);
    mem.write(VA + 2n * PAGE_SIZE, pattern(16, 4));
    const frame = (page: bigint) =>
      domain.walk(IOVA + page * PAGE_SIZE).steps[3]!.pte & Pte.ADDR_MASK;
    const [fake, data] = [frame(1n), frame(2n)];
    // The level-1 entry of IOVA's region now points at page 1 of the process: its "table".
    const level1 = domain.walk(IOVA).steps[2]!.ptePa;
    machine.phys.writeU64(level1, fake | Pte.PRESENT);
    assert.equal(port.read(IOVA, 16), undefined, 'an empty table');
    // The process fills in entry 0 (no RAM write: the walk must not trust a cache of it).
    const entry = new Uint8Array(8);
    new DataView(entry.buffer).setBigUint64(0, data | Pte.PRESENT | Pte.READ, true);
    assert.ok(mem.write(VA + PAGE_SIZE, entry));
    assert.deepEqual(port.read(IOVA, 16), pattern(16, 4));
    assert.deepEqual(port.read(IOVA, 16), pattern(16, 4));
    assert.ok(mem.write(VA + PAGE_SIZE, new Uint8Array(8)));
    assert.equal(port.read(IOVA, 16), undefined, 'the entry is gone again');
    assert.equal(events.filter((e) => e.kind === 'iommu-fault').length, 2);
  });

  it('blocks DMA through a domain freed under the device, whatever its walk caches held', () => {
    const { events, domain, port } = rig(1n);
    assert.ok(port.read(IOVA, 16) !== undefined);
    domain.free();
    assert.equal(port.read(IOVA, 16), undefined);
    const fault = events.find((e) => e.kind === 'iommu-fault');
    assert.ok(fault?.kind === 'iommu-fault' && fault.reason.startsWith('blocked'));
  });

  it('moves bytes at IOVAs above 2^52 through a unit of 6 levels, the bigint way', () => {
    const high = (1n << 60n) + 0x3000n;
    const { mem, events, port } = rig(2n, high, 6);
    assert.ok(port.write(high + 0xff8n, pattern(16, 2)));
    assert.deepEqual(mem.read(VA + 0xff8n, 16), pattern(16, 2));
    assert.deepEqual(port.read(high + 0xff8n, 16), pattern(16, 2));
    assert.equal(port.read(high + 0x1ff8n, 16), undefined);
    const fault = events.find((e) => e.kind === 'iommu-fault');
    assert.ok(fault?.kind === 'iommu-fault' && fault.iova === high + 0x2000n);
    assert.equal(fault.reason, 'not-present');
  });

  it('translates IOVAs too large for a double the same way: an aperture fault', () => {
    const { events, port } = rig(1n);
    const iova = U64_MAX - 0xfffn;
    assert.equal(port.read(iova, 16), undefined);
    assert.equal(port.write((1n << 52n) + 0x10n, pattern(16)), false);
    assert.deepEqual(
      events.filter((e) => e.kind === 'iommu-fault').map((e) => e.kind === 'iommu-fault' && e.iova),
      [iova, (1n << 52n) + 0x10n],
    );
  });
});
