import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { EmuEvent } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import {
  IOVA,
  machineRig,
  mapRuns,
  newDomain,
  pin,
  shutdownMachines,
  VA,
} from './_test-machine.ts';
import { pattern } from './_test-user-memory.ts';
import { EduDevice, EduDmaCmd, EduIrq, EduReg } from './edu.ts';
import { Prot, Pte } from './io-pgtable.ts';
import type { Machine } from './machine.ts';
import { PciCommand, PciConfig } from './pci.ts';
import { PAGE_SIZE, SZ_2M } from './sizes.ts';

afterEach(shutdownMachines);

function edu(machine: Machine, bdf: string): EduDevice {
  const dev = machine.device(bdf);
  assert.ok(dev instanceof EduDevice);
  dev.configWrite(PciConfig.COMMAND, 2, PciCommand.MEMORY | PciCommand.MASTER);
  return dev;
}

/** Programs one edu DMA and waits for it. */
async function dma(
  dev: EduDevice,
  src: bigint,
  dst: bigint,
  count: bigint,
  cmd: bigint,
): Promise<void> {
  dev.mmioWrite(EduReg.DMA_SRC, 8, src);
  dev.mmioWrite(EduReg.DMA_DST, 8, dst);
  dev.mmioWrite(EduReg.DMA_COUNT, 8, count);
  dev.mmioWrite(EduReg.DMA_CMD, 8, cmd | EduDmaCmd.RUN);
  assert.equal(dev.mmioRead(EduReg.DMA_CMD, 4) & 1n, 1n, 'DMA is asynchronous');
  await dev.whenIdle();
  assert.equal(dev.mmioRead(EduReg.DMA_CMD, 4) & 1n, 0n);
}

function u64le(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

function kinds(events: readonly EmuEvent[], kind: EmuEvent['kind']): EmuEvent[] {
  return events.filter((e) => e.kind === kind);
}

describe('Machine', () => {
  it('builds the default platform', () => {
    const { machine } = machineRig();
    assert.equal(machine.phys.size, 4n << 30n);
    assert.equal(machine.enableUnsafeNoiommuMode, false);
    assert.deepEqual([...machine.devices.keys()], ['0000:00:04.0', '0000:00:05.0', '0000:00:06.0']);
    const [a, b, c] = [...machine.devices.values()];
    assert.equal(a?.iommu?.name, 'dmar0');
    assert.equal(b?.iommu?.name, 'dmar0');
    assert.notEqual(a?.group, b?.group);
    assert.deepEqual(
      a?.group?.devices.map((d) => d.bdf),
      ['0000:00:04.0'],
    );
    assert.equal(c?.iommu, undefined);
    assert.equal(c?.group, undefined);
    assert.equal(c?.setDomain(undefined), -Errno.ENODEV);
    assert.equal((a as EduDevice).dmaMask, (1n << 64n) - 1n);
    assert.deepEqual(machine.reservedRegions('0000:00:04.0'), [
      { start: 0xfee00000n, last: 0xfeefffffn, type: 'msi' },
    ]);
    assert.deepEqual(machine.reservedRegions('0000:00:06.0'), []);
    assert.equal(a?.domain, undefined, 'devices start blocked');
  });

  it('snapshots frames, pins, domains and devices as plain data', () => {
    const { machine, mem } = machineRig();
    mem.mmap(VA, 4n * PAGE_SIZE);
    const runs = pin(machine, mem, VA, 4n);
    const domain = newDomain(machine);
    mapRuns(domain, runs, VA, IOVA, Prot.READ | Prot.WRITE);
    machine.device('0000:00:05.0')?.setDomain(domain);
    const snap = machine.snapshot();
    assert.equal(snap.memory.byPurpose['user-page'], 4n);
    assert.equal(snap.memory.byPurpose['page-table'], domain.tablePages());
    assert.equal(snap.pinned.stats.pinnedPages, 4n);
    assert.deepEqual(snap.domains, [
      {
        id: domain.id,
        kind: 'paging',
        unit: 'dmar0',
        tablePages: 4n,
        mappedBytes: 4n * PAGE_SIZE,
        devices: ['0000:00:05.0'],
        corruptEntries: 0,
      },
    ]);
    assert.deepEqual(snap.corruption, { count: 0, first: [] });
    assert.equal(snap.devices[1]?.domain, domain.id);
    assert.equal(snap.devices[0]?.domain, null);
    assert.deepEqual(
      snap.iommus[0]?.groups.map((g) => g.devices),
      [['0000:00:04.0'], ['0000:00:05.0']],
    );
    assert.deepEqual(machine.invariantViolations(), []);
    // A page-table frame nobody owns breaks the accounting.
    machine.phys.allocContiguous(1n, 1n, 'page-table');
    domain.free();
    assert.equal(machine.invariantViolations().length, 2);
  });
});

describe('DMA through an IOMMU domain', () => {
  it('round-trips data between user memory and the edu buffer across discontiguous pages', async () => {
    const { machine, mem, events } = machineRig();
    const dev = edu(machine, '0000:00:04.0');
    mem.mmap(VA, 8n * PAGE_SIZE);
    mem.write(VA, pattern(8 * 4096));
    const runs = pin(machine, mem, VA, 8n);
    assert.ok(runs.length > 1, '4K pages are physically scattered');
    const domain = newDomain(machine);
    mapRuns(domain, runs, VA, IOVA, Prot.READ | Prot.WRITE);
    assert.equal(dev.setDomain(domain), 0);

    // RAM -> buffer, crossing a page boundary.
    await dma(dev, IOVA + 0xf80n, 0x40000n, 0x100n, 0n);
    assert.deepEqual(dev.dmaBuffer().subarray(0, 0x100), pattern(8 * 4096).subarray(0xf80, 0x1080));
    // Buffer -> RAM somewhere else, with the DMA interrupt.
    await dma(dev, 0x40000n, IOVA + 0x5010n, 0x100n, EduDmaCmd.TO_RAM | EduDmaCmd.IRQ);
    assert.deepEqual(mem.read(VA + 0x5010n, 0x100), pattern(8 * 4096).subarray(0xf80, 0x1080));
    assert.equal(dev.mmioRead(EduReg.IRQ_STATUS, 4), BigInt(EduIrq.DMA));
    assert.equal(dev.intxAsserted(), true);

    const transfers = kinds(events, 'dma');
    assert.equal(transfers.length, 2);
    // The PA is where the IOVA's first byte really is: the user's bytes are there.
    const pa = transfers[0]?.kind === 'dma' ? transfers[0].pa : undefined;
    assert.deepEqual(transfers[0], {
      kind: 'dma',
      device: '0000:00:04.0',
      dir: 'read',
      addr: IOVA + 0xf80n,
      length: 0x100,
      path: 'iommu',
      pa,
    });
    assert.ok(pa !== undefined && pa % PAGE_SIZE === 0xf80n);
    assert.deepEqual(machine.phys.read(pa, 0x80), pattern(8 * 4096).subarray(0xf80, 0x1000));
    assert.equal(kinds(events, 'iommu-fault').length, 0);
  });

  it('uses the mappings live at completion time, not at command time', async () => {
    const { machine, mem, events } = machineRig();
    const dev = edu(machine, '0000:00:04.0');
    mem.mmap(VA, PAGE_SIZE);
    const runs = pin(machine, mem, VA, 1n);
    const domain = newDomain(machine);
    mapRuns(domain, runs, VA, IOVA, Prot.READ | Prot.WRITE);
    dev.setDomain(domain);
    dev.mmioWrite(EduReg.DMA_SRC, 8, 0x40000n);
    dev.mmioWrite(EduReg.DMA_DST, 8, IOVA);
    dev.mmioWrite(EduReg.DMA_COUNT, 8, 16n);
    dev.mmioWrite(EduReg.DMA_CMD, 8, EduDmaCmd.RUN | EduDmaCmd.TO_RAM);
    domain.unmap(IOVA, PAGE_SIZE);
    await dev.whenIdle();
    assert.deepEqual(
      kinds(events, 'iommu-fault').map((e) => e.kind === 'iommu-fault' && e.reason),
      ['not-present'],
    );
  });

  it('faults on an unmapped IOVA: no byte moves, the command completes and interrupts', async () => {
    const { machine, events } = machineRig();
    const dev = edu(machine, '0000:00:05.0');
    const domain = newDomain(machine);
    dev.setDomain(domain);
    await dma(dev, IOVA, 0x40000n, 64n, EduDmaCmd.IRQ);
    assert.deepEqual(kinds(events, 'iommu-fault'), [
      {
        kind: 'iommu-fault',
        device: '0000:00:05.0',
        iova: IOVA,
        access: 'read',
        reason: 'not-present',
      },
    ]);
    assert.deepEqual(dev.dmaBuffer(), new Uint8Array(4096));
    assert.equal(dev.mmioRead(EduReg.IRQ_STATUS, 4), BigInt(EduIrq.DMA));
  });

  it('faults on a write to a read-only mapping and writes nothing', async () => {
    const { machine, mem, events } = machineRig();
    const dev = edu(machine, '0000:00:04.0');
    mem.mmap(VA, 2n * PAGE_SIZE);
    const runs = pin(machine, mem, VA, 2n, false);
    const domain = newDomain(machine);
    mapRuns(domain, runs.slice(0, 1), VA, IOVA, Prot.READ | Prot.WRITE);
    mapRuns(domain, runs.slice(1), VA, IOVA, Prot.READ);
    dev.setDomain(domain);
    // The first page is writable, the second is not: the whole transfer must fault.
    await dma(dev, 0x40000n, IOVA + 0xf00n, 0x200n, EduDmaCmd.TO_RAM);
    const faults = kinds(events, 'iommu-fault');
    assert.equal(faults.length, 1);
    assert.ok(faults[0]?.kind === 'iommu-fault' && faults[0].reason === 'no-write');
    assert.ok(faults[0]?.kind === 'iommu-fault' && faults[0].iova === IOVA + PAGE_SIZE);
    assert.deepEqual(
      mem.read(VA + 0xf00n, 0x100),
      new Uint8Array(0x100),
      'not even the first page',
    );
  });

  it('blocks a device with no domain', async () => {
    const { machine, events } = machineRig();
    const dev = edu(machine, '0000:00:04.0');
    const domain = newDomain(machine);
    dev.setDomain(domain);
    dev.setDomain(undefined);
    assert.equal(domain.devices.size, 0);
    await dma(dev, 0x40000n, IOVA, 8n, EduDmaCmd.TO_RAM);
    const fault = kinds(events, 'iommu-fault')[0];
    assert.ok(fault?.kind === 'iommu-fault' && fault.reason.startsWith('blocked'));
  });

  it('refuses domains the device cannot use', () => {
    const { machine } = machineRig();
    const dev = edu(machine, '0000:00:04.0');
    const noiommu = machine.allocNoiommuDomain();
    assert.ok(typeof noiommu !== 'number');
    assert.equal(dev.setDomain(noiommu), -Errno.EINVAL);
    const freed = newDomain(machine);
    freed.free();
    assert.equal(dev.setDomain(freed), -Errno.EINVAL);
  });

  it('does nothing without bus mastering, but still completes', async () => {
    const { machine, mem, events } = machineRig();
    const dev = edu(machine, '0000:00:04.0');
    dev.configWrite(PciConfig.COMMAND, 2, PciCommand.MEMORY);
    mem.mmap(VA, PAGE_SIZE);
    mem.write(VA, pattern(64));
    const domain = newDomain(machine);
    mapRuns(domain, pin(machine, mem, VA, 1n), VA, IOVA, Prot.READ | Prot.WRITE);
    dev.setDomain(domain);
    await dma(dev, IOVA, 0x40000n, 64n, EduDmaCmd.IRQ);
    assert.deepEqual(dev.dmaBuffer().subarray(0, 64), new Uint8Array(64));
    assert.ok(events.some((e) => e.kind === 'log' && e.message.includes('bus master disabled')));
    assert.equal(dev.mmioRead(EduReg.IRQ_STATUS, 4), BigInt(EduIrq.DMA));
  });

  it('DMAs into hugepage-backed memory mapped with 2 MiB leaves', async () => {
    const { machine, mem } = machineRig();
    const dev = edu(machine, '0000:00:05.0');
    mem.mmap(VA, SZ_2M, { pageSize: SZ_2M });
    const runs = pin(machine, mem, VA, SZ_2M / PAGE_SIZE);
    assert.equal(runs.length, 1);
    const domain = newDomain(machine);
    mapRuns(domain, runs, VA, 0x40000000n, Prot.READ | Prot.WRITE);
    assert.equal(domain.leaves().length, 1, 'one 2 MiB leaf');
    dev.setDomain(domain);
    mem.write(VA + 0x1000n, pattern(0x1000, 3));
    await dma(dev, 0x40000000n + 0x1000n, 0x40000n, 0x1000n, 0n);
    await dma(dev, 0x40000n, 0x40000000n + 0x123456n, 0x1000n, EduDmaCmd.TO_RAM);
    assert.deepEqual(mem.read(VA + 0x123456n, 0x1000), pattern(0x1000, 3));
  });
});

describe('DMA with no IOMMU', () => {
  it('goes straight to the physical address of a pinned page, with no warning', async () => {
    const { machine, mem, events } = machineRig();
    const dev = edu(machine, '0000:00:06.0');
    mem.mmap(VA, 2n * PAGE_SIZE);
    mem.write(VA + 0x100n, pattern(32, 5));
    const runs = pin(machine, mem, VA, 2n);
    const pa = runs[0]!.pfn << 12n;
    await dma(dev, pa + 0x100n, 0x40000n, 32n, 0n);
    assert.deepEqual(dev.dmaBuffer().subarray(0, 32), pattern(32, 5));
    await dma(dev, 0x40000n, pa + 0x800n, 32n, EduDmaCmd.TO_RAM);
    assert.deepEqual(mem.read(VA + 0x800n, 32), pattern(32, 5));
    assert.equal(kinds(events, 'unsafe-dma').length, 0);
    assert.deepEqual(
      kinds(events, 'dma').map((e) => e.kind === 'dma' && e.path),
      ['direct', 'direct'],
    );
  });

  it('corrupts unpinned RAM loudly: an unsafe-dma event, and the write lands', async () => {
    const { machine, events } = machineRig();
    const dev = edu(machine, '0000:00:06.0');
    const target = 0x20000000n;
    await dma(dev, 0x40000n, target, 16n, EduDmaCmd.TO_RAM);
    const unsafe = kinds(events, 'unsafe-dma');
    assert.equal(unsafe.length, 1);
    assert.ok(
      unsafe[0]?.kind === 'unsafe-dma' && unsafe[0].pa === target && unsafe[0].dir === 'write',
    );
    assert.ok(unsafe[0]?.kind === 'unsafe-dma' && unsafe[0].reason.includes('free frame'));
    machine.phys.write(0x30000000n, pattern(16, 9));
    await dma(dev, 0x30000000n, 0x40000n, 16n, 0n);
    await dma(dev, 0x40000n, target, 16n, EduDmaCmd.TO_RAM);
    assert.deepEqual(
      machine.phys.read(target, 16),
      pattern(16, 9),
      'simulated RAM was overwritten',
    );
  });

  it('can smash an IOMMU page table: devices see the damage, reported as corruption', async () => {
    const { machine, mem, events } = machineRig();
    const dev6 = edu(machine, '0000:00:06.0');
    const dev4 = edu(machine, '0000:00:04.0');
    mem.mmap(VA, PAGE_SIZE);
    const runs = pin(machine, mem, VA, 1n);
    const domain = newDomain(machine);
    mapRuns(domain, runs, VA, IOVA, Prot.READ | Prot.WRITE);
    dev4.setDomain(domain);
    // Zero the root table entry that leads to IOVA: the buffer is still all zeros.
    const rootEntry = domain.walk(IOVA).steps[0]!.ptePa;
    await dma(dev6, 0x40000n, rootEntry, 8n, EduDmaCmd.TO_RAM);
    const unsafe = kinds(events, 'unsafe-dma')[0];
    assert.ok(unsafe?.kind === 'unsafe-dma' && unsafe.reason.includes('page-table'));
    const bug = kinds(events, 'log').find((e) => e.kind === 'log' && e.level === 'error');
    assert.ok(bug?.kind === 'log' && bug.message.includes(`I/O page table of domain ${domain.id}`));
    const snap = machine.snapshot();
    assert.equal(snap.corruption.count, 1);
    assert.deepEqual(
      { ...snap.corruption.first[0], victim: undefined },
      { device: '0000:00:06.0', pa: rootEntry, length: 8, frames: 1, victim: undefined },
    );
    assert.equal(snap.domains[0]?.corruptEntries, 1);
    // The IOMMU walks what is in RAM now; the kernel's own view is what it wrote.
    assert.equal(domain.walk(IOVA).result.kind, 'not-present');
    assert.equal(domain.iovaToPhys(IOVA), runs[0]!.pfn << 12n);
    await dma(dev4, IOVA, 0x40000n, 8n, 0n);
    assert.equal(kinds(events, 'iommu-fault').length, 1);
    // The kernel unmaps what it mapped and frees every table page it owns.
    assert.equal(domain.unmap(IOVA, PAGE_SIZE), PAGE_SIZE);
    dev4.setDomain(undefined);
    domain.free();
    machine.pinned.unpin(mem.mm, VA, 1n);
    assert.deepEqual(machine.invariantViolations(), []);
    assert.equal(machine.phys.stats().framesInUse, 0n);
  });

  it('walks garbage the way hardware would, bounded: a pointer anywhere, a refused huge leaf', async () => {
    const { machine, mem, events } = machineRig();
    const dev6 = edu(machine, '0000:00:06.0');
    const dev4 = edu(machine, '0000:00:04.0');
    mem.mmap(VA, 2n * PAGE_SIZE);
    mem.write(VA + PAGE_SIZE, pattern(16, 7));
    pin(machine, mem, VA, 2n);
    const first = machine.pinned.lookup(mem.mm, VA)! << 12n;
    const other = machine.pinned.lookup(mem.mm, VA + PAGE_SIZE)! << 12n;
    const domain = newDomain(machine);
    assert.equal(domain.map(IOVA, first, PAGE_SIZE, Prot.READ | Prot.WRITE), 0);
    dev4.setDomain(domain);
    const leafEntry = domain.walk(IOVA).steps[3]!.ptePa;
    // A leaf rewritten to point at the client's second page: the device reads that page.
    machine.phys.write(0x30000000n, u64le(other | Pte.PRESENT | Pte.READ | Pte.WRITE));
    await dma(dev6, 0x30000000n, 0x40000n, 8n, 0n);
    await dma(dev6, 0x40000n, leafEntry, 8n, EduDmaCmd.TO_RAM);
    await dma(dev4, IOVA, 0x40000n, 16n, 0n);
    assert.deepEqual(dev4.dmaBuffer().subarray(0, 16), pattern(16, 7));
    // A LEAF bit at the top level is not a format the IOMMU knows: a fault, nothing moves.
    const rootEntry = domain.walk(IOVA).steps[0]!.ptePa;
    machine.phys.write(0x30000000n, u64le(~0n & ((1n << 64n) - 1n)));
    await dma(dev6, 0x30000000n, 0x40000n, 8n, 0n);
    await dma(dev6, 0x40000n, rootEntry, 8n, EduDmaCmd.TO_RAM);
    await dma(dev4, IOVA, 0x40000n, 16n, 0n);
    assert.equal(kinds(events, 'iommu-fault').length, 1);
    assert.equal(machine.snapshot().corruption.count, 2);
    // The kernel unmaps from its own copy; the entries it writes on the way (the leaf, then the
    // root's pointer to the tables it frees) are written whole, so they are repaired.
    assert.equal(machine.snapshot().domains[0]?.corruptEntries, 2);
    assert.equal(domain.iovaToPhys(IOVA), first);
    assert.equal(domain.unmap(IOVA, PAGE_SIZE), PAGE_SIZE);
    assert.equal(machine.snapshot().domains[0]?.corruptEntries, 0);
    dev4.setDomain(undefined);
    domain.free();
    machine.pinned.unpin(mem.mm, VA, 2n);
    assert.equal(machine.phys.stats().framesInUse, 0n);
  });

  it('flags a transfer that runs past the pinned pages', async () => {
    const { machine, mem, events } = machineRig();
    const dev = edu(machine, '0000:00:06.0');
    mem.mmap(VA, PAGE_SIZE);
    const pa = pin(machine, mem, VA, 1n)[0]!.pfn << 12n;
    await dma(dev, 0x40000n, pa + 0xf00n, 0x200n, EduDmaCmd.TO_RAM);
    assert.equal(kinds(events, 'unsafe-dma').length, 1);
  });

  it('keeps IOVA-to-PA lookups in a software no-IOMMU domain', () => {
    const { machine, mem } = machineRig();
    mem.mmap(VA, 4n * PAGE_SIZE);
    const runs = pin(machine, mem, VA, 4n);
    const domain = machine.allocNoiommuDomain();
    assert.ok(typeof domain !== 'number');
    mapRuns(domain, runs, VA, VA, Prot.READ | Prot.WRITE);
    assert.equal(domain.iovaToPhys(VA + 2n * PAGE_SIZE + 0x80n), (runs[2]!.pfn << 12n) + 0x80n);
    assert.equal(machine.snapshot().domains[0]?.kind, 'noiommu');
    domain.free();
    machine.pinned.unpin(mem.mm, VA, 4n);
    assert.equal(machine.phys.stats().framesInUse, 0n);
  });
});
