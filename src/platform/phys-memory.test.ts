import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FailNth, withFailNth } from '../fault/fault.ts';
import { type EmuEvent, EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { LOW_RESERVED_FRAMES, PhysMemory } from './phys-memory.ts';
import { SZ_2M } from './sizes.ts';

function frame(r: bigint | number): bigint {
  assert.equal(typeof r, 'bigint', `expected a frame, got errno ${r}`);
  return r as bigint;
}

describe('PhysMemory allocator', () => {
  it('hands out single frames above 1 MiB, never adjacent to the previous one', () => {
    const phys = new PhysMemory();
    let prev = -10n;
    for (let i = 0; i < 200; i++) {
      const pfn = frame(phys.allocFrame('kernel'));
      assert.ok(pfn >= LOW_RESERVED_FRAMES, `frame ${pfn} is in the low 1 MiB`);
      assert.notEqual(pfn - prev, 1n);
      assert.notEqual(prev - pfn, 1n);
      prev = pfn;
    }
    assert.equal(phys.stats().byPurpose.kernel, 200n);
  });

  it('allocates aligned contiguous blocks and counts them by purpose', () => {
    const phys = new PhysMemory();
    phys.allocFrame('user-page');
    const huge = frame(phys.allocContiguous(512n, 512n, 'user-page'));
    assert.equal(huge % 512n, 0n);
    const table = frame(phys.allocContiguous(1n, 1n, 'page-table'));
    assert.notEqual(table, huge);
    const s = phys.stats();
    assert.equal(s.byPurpose['user-page'], 513n);
    assert.equal(s.byPurpose['page-table'], 1n);
    assert.equal(s.framesInUse, 514n);
    assert.equal(s.freeFrames, s.totalFrames - LOW_RESERVED_FRAMES - 514n);
    assert.equal(phys.frameState(huge + 100n), 'user-page');
    assert.equal(phys.frameState(table), 'page-table');
    assert.equal(phys.frameState(0n), 'reserved');
    assert.equal(phys.frameState(s.totalFrames), 'outside');
    assert.equal(phys.free(huge, 512n), 0);
    assert.equal(phys.stats().byPurpose['user-page'], 1n);
    assert.equal(phys.frameState(huge), 'free');
  });

  it('reports a double free as a bug and changes nothing', () => {
    const events = new EventBus();
    const seen: EmuEvent[] = [];
    events.subscribe((e) => seen.push(e));
    const phys = new PhysMemory({ events });
    const pfn = frame(phys.allocFrame('kernel'));
    assert.equal(phys.free(pfn), 0);
    assert.equal(phys.free(pfn), -Errno.EINVAL);
    assert.ok(seen.some((e) => e.kind === 'log' && e.level === 'bug'));
    assert.equal(phys.stats().framesInUse, 0n);
  });

  it('runs out of memory with -ENOMEM', () => {
    const phys = new PhysMemory({ size: 2n * 1024n * 1024n });
    const usable = Number(phys.totalFrames - LOW_RESERVED_FRAMES);
    for (let i = 0; i < usable; i++) frame(phys.allocFrame('kernel'));
    assert.equal(phys.allocFrame('kernel'), -Errno.ENOMEM);
    assert.equal(phys.allocContiguous(1n, 1n, 'page-table'), -Errno.ENOMEM);
    assert.equal(phys.allocContiguous(512n, 512n, 'user-page'), -Errno.ENOMEM);
  });

  it('fails at the injection sites: frame-alloc, and pagetable-alloc for table pages', () => {
    const phys = new PhysMemory();
    const nth = new FailNth();
    nth.arm(1);
    assert.equal(
      withFailNth(nth, () => phys.allocFrame('user-page')),
      -Errno.ENOMEM,
    );
    assert.equal(nth.lastFired, 'frame-alloc');
    nth.arm(1);
    assert.equal(
      withFailNth(nth, () => phys.allocContiguous(1n, 1n, 'page-table')),
      -Errno.ENOMEM,
    );
    assert.equal(nth.lastFired, 'pagetable-alloc');
    assert.equal(phys.stats().framesInUse, 0n);
  });
});

describe('PhysMemory bytes', () => {
  it('is sparse: untouched RAM reads zeros and costs nothing', () => {
    const phys = new PhysMemory();
    assert.deepEqual(phys.read(0x12345000n, 16), new Uint8Array(16));
    assert.equal(phys.stats().touchedFrames, 0n);
  });

  it('round-trips writes across a frame boundary', () => {
    const phys = new PhysMemory();
    const data = Uint8Array.from({ length: 100 }, (_, i) => i + 1);
    assert.ok(phys.write(0x200ff0n, data));
    assert.deepEqual(phys.read(0x200ff0n, 100), data);
    assert.equal(phys.stats().touchedFrames, 2n);
    phys.writeU64(0x300008n, 0x1122334455667788n);
    assert.equal(phys.readU64(0x300008n), 0x1122334455667788n);
    assert.deepEqual([...phys.read(0x300008n, 2)], [0x88, 0x77]);
  });

  it('drops writes beyond RAM and reads zeros there', () => {
    const phys = new PhysMemory({ size: 16n * SZ_2M });
    assert.equal(phys.write(phys.size - 2n, Uint8Array.of(1, 2, 3, 4)), false);
    assert.deepEqual([...phys.read(phys.size - 2n, 4)], [1, 2, 0, 0]);
    assert.equal(phys.isRam(phys.size - 2n, 2n), true);
    assert.equal(phys.isRam(phys.size - 2n, 3n), false);
  });

  it('hands out zeroed table pages even if the frame held old bytes', () => {
    const phys = new PhysMemory();
    const pfn = frame(phys.allocContiguous(1n, 1n, 'page-table'));
    phys.writeU64(pfn << 12n, 0xdeadn);
    phys.free(pfn);
    assert.equal(frame(phys.allocContiguous(1n, 1n, 'page-table')), pfn);
    assert.equal(phys.readU64(pfn << 12n), 0n);
  });
});
