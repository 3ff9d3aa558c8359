/**
 * The memory bound of pinning at scale: a 64 GiB MAP of hugepage-backed memory into an IOAS with
 * an IOMMU domain attached pins and maps every one of its 16M pages, and must cost the heap a
 * size that does not grow with the page count (pins are extents, the domain uses 1 GiB IOPTEs).
 * A size bound only; nothing here depends on time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { IommufdOps, RW, VfioDeviceOps } from '../check/_ops.ts';
import { createEmulator } from '../index.ts';
import { defaultPlatform } from '../platform/platform-config.ts';
import { SZ_1G } from '../platform/sizes.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';

const MAPPED = 64n * SZ_1G;
const PAGES = Number(MAPPED / PAGE_SIZE);

/** A full GC, so that the heap figures below are live data, not garbage. */
function collect(): void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
}

/** JS objects, and the typed-array stores (frame states, page-table frames) apart. */
function heap(): { objects: number; buffers: number } {
  const m = process.memoryUsage();
  return { objects: m.heapUsed, buffers: m.arrayBuffers };
}

describe('pinning at scale', () => {
  it('maps 64 GiB with a domain attached in far less heap than one object per page', () => {
    const emu = createEmulator({ platform: { ...defaultPlatform(), memorySize: 80n * SZ_1G } });
    const proc = emu.spawn();
    const ops = new IommufdOps(proc, proc.open('/dev/iommu'));
    const dev = new VfioDeviceOps(proc, proc.open('/dev/vfio/devices/vfio0'));
    assert.equal(dev.bind(ops.fd).ret, 0);
    const ioas = ops.ioasAlloc();
    assert.equal(ioas.ret, 0);
    assert.equal(dev.attach(ioas.id).ret, 0);
    const va = proc.memory.mmap(MAPPED, { pageSize: SZ_1G });

    // Run the MAP path once first, so that compiling it does not count as growth.
    const warm = ops.map(ioas.id, va, SZ_1G, RW);
    assert.equal(warm.ret, 0);
    assert.equal(ops.unmap(ioas.id, warm.iova, SZ_1G).ret, 0);

    collect();
    const before = heap();
    const map = ops.map(ioas.id, va, MAPPED, RW);
    assert.equal(map.ret, 0);
    collect();
    const after = heap();
    const objects = after.objects - before.objects;
    const buffers = after.buffers - before.buffers;

    const pinned = emu.kernel.machine.pinned.stats();
    assert.equal(pinned.pinnedPages, BigInt(PAGES), 'every page of the MAP is pinned');
    assert.equal(pinned.extents, 64, 'one extent per 1 GiB huge page');
    // One object per page would be at least 16 bytes a page (256 MiB): allow 1/16 of a byte.
    assert.ok(objects < PAGES / 16, `JS objects grew by ${objects} bytes for ${PAGES} pages`);
    // The frame allocator's state table is one byte per frame of RAM it hands out, the
    // emulator's struct page; everything else it needs must fit in a tenth of that again.
    assert.ok(buffers < PAGES * 1.1, `buffers grew by ${buffers} bytes for ${PAGES} pages`);

    assert.equal(ops.unmap(ioas.id, map.iova, MAPPED).ret, 0);
    assert.equal(emu.kernel.machine.pinned.stats().pinnedPages, 0n);
  });
});
