import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FailNth, withFailNth } from '../fault/fault.ts';
import { type EmuEvent, EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { pattern, TestUserMemory } from './_test-user-memory.ts';
import { PhysMemory } from './phys-memory.ts';
import { PinnedPages, type PinnedRun } from './pinned-pages.ts';
import { PAGE_SIZE, SZ_1G, SZ_2M } from './sizes.ts';

const VA = 0x7f0000000000n;

function runs(r: PinnedRun[] | number): PinnedRun[] {
  assert.ok(Array.isArray(r), `pin failed with errno ${r}`);
  return r;
}

function setup(): { phys: PhysMemory; pins: PinnedPages; mem: TestUserMemory; events: EmuEvent[] } {
  const bus = new EventBus();
  const events: EmuEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const phys = new PhysMemory({ events: bus });
  return { phys, pins: new PinnedPages(phys), mem: new TestUserMemory(), events };
}

describe('PinnedPages', () => {
  it('gives 4K pages physically discontiguous frames', () => {
    const { phys, pins, mem } = setup();
    mem.mmap(VA, 16n * PAGE_SIZE);
    const r = runs(pins.pin(mem, VA, 16n, true));
    assert.equal(r.length, 16, 'every 4K page should be its own physical run');
    for (const [i, run] of r.entries()) {
      assert.equal(run.va, VA + BigInt(i) * PAGE_SIZE);
      assert.equal(run.npages, 1n);
    }
    assert.equal(phys.stats().byPurpose['user-page'], 16n);
  });

  it('backs a 2 MiB hugepage with one aligned contiguous block', () => {
    const { phys, pins, mem } = setup();
    mem.mmap(VA, 2n * SZ_2M, { pageSize: SZ_2M });
    const r = runs(pins.pin(mem, VA + 0x10000n, 32n, true));
    assert.equal(r.length, 1);
    const run = r[0]!;
    assert.equal(run.npages, 32n);
    assert.equal((run.pfn - 16n) % 512n, 0n, 'the huge page must be 2 MiB aligned in PA');
    assert.equal(phys.stats().byPurpose['user-page'], 512n);
    // A second huge page of the same VMA gets another block.
    const r2 = runs(pins.pin(mem, VA + SZ_2M, 1n, false));
    assert.equal(r2[0]!.pfn % 512n, 0n);
    assert.equal(phys.stats().byPurpose['user-page'], 1024n);
  });

  it('backs a 1 GiB hugepage with a 1 GiB aligned block', () => {
    const { pins, mem } = setup();
    mem.mmap(0x40000000n, SZ_1G, { pageSize: SZ_1G });
    const r = runs(pins.pin(mem, 0x40000000n + 5n * PAGE_SIZE, 3n, true));
    assert.equal(r.length, 1);
    assert.equal((r[0]!.pfn - 5n) % (1n << 18n), 0n);
  });

  it('falls back to 4K frames where a huge page does not fit in the VMA', () => {
    const { pins, mem } = setup();
    mem.mmap(VA + PAGE_SIZE, SZ_2M, { pageSize: SZ_2M });
    const r = runs(pins.pin(mem, VA + PAGE_SIZE, 2n, true));
    assert.equal(r.length, 2);
  });

  it('refcounts: the same page pinned twice has one frame, freed on the last unpin', () => {
    const { phys, pins, mem } = setup();
    mem.mmap(VA, 4n * PAGE_SIZE);
    const a = runs(pins.pin(mem, VA, 2n, true));
    const b = runs(pins.pin(mem, VA + PAGE_SIZE, 2n, false));
    assert.equal(b[0]!.pfn, a[1]!.pfn);
    assert.equal(pins.frameOwner(a[1]!.pfn)?.pins, 2);
    assert.equal(phys.stats().byPurpose['user-page'], 3n);
    assert.equal(pins.unpin(mem.mm, VA, 2n), 0);
    assert.equal(pins.frameOwner(a[1]!.pfn)?.pins, 1);
    assert.equal(pins.frameOwner(a[0]!.pfn), undefined);
    assert.equal(phys.stats().byPurpose['user-page'], 2n);
    assert.equal(pins.unpin(mem.mm, VA + PAGE_SIZE, 2n), 0);
    assert.equal(phys.stats().framesInUse, 0n);
    assert.equal(pins.stats().pins, 0n);
    assert.equal(pins.stats().mms, 0);
  });

  it('keeps a huge block until its last pinned 4K page is unpinned', () => {
    const { phys, pins, mem } = setup();
    mem.mmap(VA, SZ_2M, { pageSize: SZ_2M });
    const r = runs(pins.pin(mem, VA, 2n, true));
    const base = r[0]!.pfn;
    const other = pins.frameOwner(base + 100n);
    assert.deepEqual(other, {
      mm: mem.mm,
      va: VA + 100n * PAGE_SIZE,
      pins: 0,
      hugePage: { va: VA, pfn: base, size: SZ_2M },
    });
    pins.unpin(mem.mm, VA, 1n);
    assert.equal(phys.stats().byPurpose['user-page'], 512n);
    pins.unpin(mem.mm, VA + PAGE_SIZE, 1n);
    assert.equal(phys.stats().framesInUse, 0n);
    assert.equal(pins.frameOwner(base), undefined);
  });

  it('fails with EFAULT on a hole or a write pin of a read-only VMA, leaving nothing pinned', () => {
    const { phys, pins, mem } = setup();
    mem.mmap(VA, 4n * PAGE_SIZE);
    mem.mmap(VA + 0x100000n, PAGE_SIZE, { writable: false });
    assert.equal(pins.pin(mem, VA, 5n, false), -Errno.EFAULT);
    assert.equal(pins.pin(mem, VA + 0x100000n, 1n, true), -Errno.EFAULT);
    assert.equal(pins.pin(mem, VA - PAGE_SIZE, 1n, false), -Errno.EFAULT);
    assert.equal(phys.stats().framesInUse, 0n);
    assert.equal(pins.stats().pinnedPages, 0n);
    // A read pin of the read-only VMA is fine.
    runs(pins.pin(mem, VA + 0x100000n, 1n, false));
  });

  it('does not disturb earlier pins when a later pin of the same pages fails', () => {
    const { pins, mem } = setup();
    mem.mmap(VA, 2n * PAGE_SIZE);
    const first = runs(pins.pin(mem, VA, 1n, true));
    assert.equal(pins.pin(mem, VA, 3n, true), -Errno.EFAULT);
    assert.equal(pins.frameOwner(first[0]!.pfn)?.pins, 1);
    assert.equal(pins.stats().pinnedPages, 1n);
  });

  it('fails with ENOMEM at an injected frame-alloc failure, leaving nothing pinned', () => {
    const { phys, pins, mem } = setup();
    mem.mmap(VA, 8n * PAGE_SIZE);
    const nth = new FailNth();
    nth.arm(3);
    assert.equal(
      withFailNth(nth, () => pins.pin(mem, VA, 8n, true)),
      -Errno.ENOMEM,
    );
    assert.equal(nth.lastFired, 'frame-alloc');
    assert.equal(phys.stats().framesInUse, 0n);
    assert.equal(pins.stats().pinnedPages, 0n);
  });

  it('rejects misaligned ranges and reports unpin of unpinned pages as a bug', () => {
    const { pins, mem, events } = setup();
    mem.mmap(VA, PAGE_SIZE);
    assert.equal(pins.pin(mem, VA + 1n, 1n, false), -Errno.EINVAL);
    assert.deepEqual(pins.pin(mem, VA, 0n, false), []);
    assert.equal(pins.unpin(mem.mm, VA, 1n), -Errno.EINVAL);
    assert.ok(events.some((e) => e.kind === 'log' && e.level === 'bug'));
  });

  it('routes physical reads and writes of a pinned frame to the process page', () => {
    const { phys, pins, mem } = setup();
    mem.mmap(VA, 2n * PAGE_SIZE);
    mem.write(VA + 0x10n, pattern(32));
    const r = runs(pins.pin(mem, VA, 2n, true));
    const pa = r[0]!.pfn << 12n;
    assert.deepEqual(phys.read(pa + 0x10n, 32), pattern(32));
    assert.ok(phys.write(pa + 0x800n, pattern(8, 99)));
    assert.deepEqual(mem.read(VA + 0x800n, 8), pattern(8, 99));
    assert.equal(pins.lookup(mem.mm, VA + 0x123n), r[0]!.pfn);
    assert.equal(phys.stats().touchedFrames, 0n, 'user frames hold no simulated RAM bytes');
  });

  it('keeps address spaces apart and snapshots runs per mm', () => {
    const { pins } = setup();
    const a = new TestUserMemory('mm-a');
    const b = new TestUserMemory('mm-b');
    a.mmap(VA, PAGE_SIZE);
    b.mmap(VA, PAGE_SIZE);
    const ra = runs(pins.pin(a, VA, 1n, true));
    const rb = runs(pins.pin(b, VA, 1n, true));
    assert.notEqual(ra[0]!.pfn, rb[0]!.pfn);
    assert.deepEqual(
      pins.snapshot().map((s) => s.mm),
      ['mm-a', 'mm-b'],
    );
    assert.equal(pins.frameOwner(rb[0]!.pfn)?.mm, 'mm-b');
  });
});
