import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEmulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';

const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;

function setup() {
  const emu = createEmulator();
  const proc = emu.spawn();
  const fd = proc.open('/dev/iommu');
  assert.ok(fd >= 0);
  const ioasAlloc = () => {
    const r = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    assert.equal(r.ret, 0);
    return r.out.out_ioas_id;
  };
  const map = (ioas: number, va: bigint, length: bigint, flags: number, iova = 0n) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: ioas,
      flags,
      user_va: va,
      length,
      iova,
    });
  const unmap = (ioas: number, iova: bigint, length: bigint) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, { ioas_id: ioas, iova, length });
  const destroy = (id: number) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_DESTROY, u.iommuDestroy, { id }).ret;
  return { emu, proc, fd, ioasAlloc, map, unmap, destroy };
}

describe('object table', () => {
  it('hands out ids from 1 and reuses the lowest free one', () => {
    const t = setup();
    assert.deepEqual([t.ioasAlloc(), t.ioasAlloc(), t.ioasAlloc()], [1, 2, 3]);
    assert.equal(t.destroy(2), 0);
    assert.equal(t.destroy(2), -Errno.ENOENT);
    assert.equal(t.ioasAlloc(), 2);
    assert.equal(t.ioasAlloc(), 4);
  });

  it('does not burn an id when the response cannot be written', () => {
    const t = setup();
    // Find where the response copy-out sits among the injection points, then fail exactly it.
    t.proc.failNth.trail = [];
    t.ioasAlloc();
    const nth = t.proc.failNth.trail.indexOf('copy-to-user') + 1;
    t.proc.failNth.trail = undefined;
    assert.equal(t.destroy(1), 0);
    t.proc.failNth.arm(nth);
    const r = t.proc.ioctlStruct(t.fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    assert.equal(r.ret, -Errno.EFAULT);
    assert.equal(t.proc.failNth.lastFired, 'copy-to-user');
    assert.equal(t.ioasAlloc(), 1);
  });

  it('frees everything when the last fd closes, including through dup and fork', () => {
    const t = setup();
    t.ioasAlloc();
    const dupfd = t.proc.dup(t.fd);
    const child = t.proc.fork();
    t.proc.close(t.fd);
    assert.equal(t.emu.kernel.iommufd.contexts.size, 1);
    t.proc.close(dupfd);
    assert.equal(t.emu.kernel.iommufd.contexts.size, 1);
    // The child still sees the object through its inherited fd.
    assert.equal(child.ioctlStruct(t.fd, ioctl.IOMMU_DESTROY, u.iommuDestroy, { id: 1 }).ret, 0);
    child.exit();
    assert.equal(t.emu.kernel.iommufd.contexts.size, 0);
    assert.deepEqual(t.emu.kernel.leaks(), []);
  });
});

describe('IOAS_MAP automatic IOVA', () => {
  it('allocates first fit from PAGE_SIZE, keeping the in-page offset and source alignment', () => {
    const t = setup();
    const ioas = t.ioasAlloc();
    const va = t.proc.alloc(0x10000n);
    const a = t.map(ioas, va, 0x1000n, RW);
    assert.equal(a.ret, 0);
    assert.equal(a.out.iova, 0x1000n); // never page 0
    const b = t.map(ioas, va + 0x80n, 0x100n, RW);
    assert.equal(b.ret, 0);
    // Alignment = min(roundup(0x100), lowest set bit of va+0x80) = 0x80; offset 0x80 kept.
    assert.equal(b.out.iova % 0x1000n, 0x80n);
    assert.equal(b.out.iova, 0x2080n);
  });

  it('honours allowed ranges and reports ENOSPC when nothing fits', () => {
    const t = setup();
    const ioas = t.ioasAlloc();
    const ranges = t.proc.alloc(0x1000n);
    const bytes = u.iommuIovaRange;
    const enc = new Uint8Array(bytes.size);
    const dv = new DataView(enc.buffer);
    dv.setBigUint64(0, 0x100000n, true);
    dv.setBigUint64(8, 0x101fffn, true);
    t.proc.memory.write(ranges, enc);
    const allow = t.proc.ioctlStruct(t.fd, ioctl.IOMMU_IOAS_ALLOW_IOVAS, u.iommuIoasAllowIovas, {
      ioas_id: ioas,
      num_iovas: 1,
      allowed_iovas: ranges,
    });
    assert.equal(allow.ret, 0);
    const va = t.proc.alloc(0x4000n);
    assert.equal(t.map(ioas, va, 0x1000n, RW).out.iova, 0x100000n);
    assert.equal(t.map(ioas, va, 0x1000n, RW).out.iova, 0x101000n);
    assert.equal(t.map(ioas, va, 0x1000n, RW).ret, -Errno.ENOSPC);
    // A fixed IOVA is not checked against the allowed list.
    assert.equal(t.map(ioas, va, 0x1000n, RW | u.IOMMU_IOAS_MAP_FIXED_IOVA, 0x5000n).ret, 0);
  });
});

describe('IOAS_UNMAP', () => {
  it('removes whole areas only, lowest first, and is not atomic', () => {
    const t = setup();
    const ioas = t.ioasAlloc();
    const va = t.proc.alloc(0x10000n);
    const fixed = RW | u.IOMMU_IOAS_MAP_FIXED_IOVA;
    assert.equal(t.map(ioas, va, 0x2000n, fixed, 0x10000n).ret, 0);
    assert.equal(t.map(ioas, va, 0x2000n, fixed, 0x20000n).ret, 0);
    // Cuts the second area: the first is already gone when ENOENT comes back.
    assert.equal(t.unmap(ioas, 0x10000n, 0x11000n).ret, -Errno.ENOENT);
    assert.equal(t.unmap(ioas, 0x10000n, 0x2000n).ret, -Errno.ENOENT);
    const all = t.unmap(ioas, 0n, u.ULONG_MAX);
    assert.equal(all.ret, 0);
    assert.equal(all.out.length, 0x2000n);
    // Unmap-all of an empty IOAS succeeds with 0 bytes.
    assert.deepEqual(
      [t.unmap(ioas, 0n, u.ULONG_MAX).ret, t.unmap(ioas, 0n, u.ULONG_MAX).out.length],
      [0, 0n],
    );
  });
});

describe('IOAS_COPY', () => {
  it('copies a gap-free run of areas into another IOAS and keeps area boundaries', () => {
    const t = setup();
    const src = t.ioasAlloc();
    const dst = t.ioasAlloc();
    const va = t.proc.alloc(0x10000n);
    const fixed = RW | u.IOMMU_IOAS_MAP_FIXED_IOVA;
    assert.equal(t.map(src, va, 0x2000n, fixed, 0x10000n).ret, 0);
    assert.equal(t.map(src, va + 0x2000n, 0x2000n, fixed, 0x12000n).ret, 0);
    const copy = (srcIova: bigint, length: bigint, flags = fixed, dstIova = 0x40000n) =>
      t.proc.ioctlStruct(t.fd, ioctl.IOMMU_IOAS_COPY, u.iommuIoasCopy, {
        flags,
        dst_ioas_id: dst,
        src_ioas_id: src,
        length,
        dst_iova: dstIova,
        src_iova: srcIova,
      });
    assert.equal(copy(0x11000n, 0x2000n).ret, 0);
    // Two areas in dst: unmapping only the first half fails with ENOENT? No: it is its own area.
    assert.equal(t.unmap(dst, 0x40000n, 0x1000n).ret, 0);
    assert.equal(t.unmap(dst, 0x41000n, 0x1000n).ret, 0);
    // A hole in the source range is ENOENT.
    assert.equal(copy(0x13000n, 0x2000n).ret, -Errno.ENOENT);
  });
});
