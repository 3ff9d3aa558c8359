import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { checkInvariants } from '../check/invariants.ts';
import { CAP_IPC_LOCK, CAP_SYS_RAWIO } from '../host/credentials.ts';
import type { SimProcess } from '../host/sim-process.ts';
import { createEmulator } from '../index.ts';
import { EduReg } from '../platform/edu.ts';
import type { EmuEvent } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as tc from '../uapi/iommufd-test.ts';
import type { Decoded } from '../uapi/struct.ts';
import * as v from '../uapi/vfio.ts';
import type { IommufdCtx } from './context.ts';

const PAGE = 0x1000n;
const RW = v.VFIO_DMA_MAP_FLAG_READ | v.VFIO_DMA_MAP_FLAG_WRITE;
/** VFIO_IOMMU_DIRTY_PAGES: not emulated by iommufd. */
const VFIO_IOMMU_DIRTY_PAGES = ioctl.IO(ioctl.VFIO_TYPE, ioctl.VFIO_BASE + 17);

function u32At(bytes: Uint8Array, off: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(off, true);
}
function u16At(bytes: Uint8Array, off: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint16(off, true);
}
function u64At(bytes: Uint8Array, off: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(off, true);
}

/** An iommufd (default /dev/iommu) and helpers for the container ioctls on it. */
function setup(opts: { path?: string; compat?: boolean } = {}) {
  const emu = createEmulator();
  const events: EmuEvent[] = [];
  emu.kernel.events.subscribe((e) => events.push(e));
  const proc = emu.spawn();
  const fd = proc.open(opts.path ?? '/dev/iommu');
  assert.ok(fd >= 0, `open: ${fd}`);
  const ictx = [...emu.kernel.iommufd.contexts][0] as IommufdCtx;
  const ioasAlloc = () => {
    const r = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    assert.equal(r.ret, 0);
    return r.out.out_ioas_id;
  };
  const vfioIoas = (op: number, ioas_id = 0) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_VFIO_IOAS, u.iommuVfioIoas, { op, ioas_id });
  let ioas = 0;
  if (opts.compat ?? true) {
    ioas = ioasAlloc();
    assert.equal(vfioIoas(u.IOMMU_VFIO_IOAS_SET, ioas).ret, 0);
  }
  // Both structs have a `size` field of their own, so ioctlStruct() cannot fill argsz for them.
  const mapDma = (value: Partial<Decoded<typeof v.vfioIommuType1DmaMap.fields>>) =>
    proc.ioctlStruct(fd, ioctl.VFIO_IOMMU_MAP_DMA, v.vfioIommuType1DmaMap, {
      argsz: v.vfioIommuType1DmaMap.size,
      size: 0n,
      ...value,
    }).ret;
  const unmapDma = (value: Partial<Decoded<typeof v.vfioIommuType1DmaUnmap.fields>>) =>
    proc.ioctlStruct(fd, ioctl.VFIO_IOMMU_UNMAP_DMA, v.vfioIommuType1DmaUnmap, {
      argsz: v.vfioIommuType1DmaUnmap.size,
      size: 0n,
      ...value,
    });
  const ioasUnmap = (iova: bigint, length: bigint) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, { ioas_id: ioas, iova, length });
  const option = (option_id: number, object_id: number) =>
    proc.ioctlStruct(fd, ioctl.IOMMU_OPTION, u.iommuOption, {
      option_id,
      object_id,
      op: u.IOMMU_OPTION_OP_GET,
    });
  const areas = () => [...ictx.vfioIoas!.iopt.areas.iter()].map((a) => [a.iova, a.last] as const);
  /** GET_INFO into a fresh buffer of `bufSize` bytes prefilled with 0xee; argsz as given. */
  const getInfo = (argsz: number, bufSize = 256) => {
    const buf = proc.alloc(BigInt(bufSize), new Uint8Array(bufSize).fill(0xee));
    proc.memory.write(buf, new Uint8Array(new Uint32Array([argsz]).buffer));
    const ret = proc.ioctl(fd, ioctl.VFIO_IOMMU_GET_INFO, buf);
    return { ret, bytes: proc.memory.read(buf, bufSize)! };
  };
  return {
    emu,
    events,
    proc,
    fd,
    ictx,
    ioas,
    ioasAlloc,
    vfioIoas,
    mapDma,
    unmapDma,
    ioasUnmap,
    option,
    areas,
    getInfo,
  };
}

/** Binds vfio0 to the iommufd and attaches it to `ioas`. */
function attachVfio0(proc: SimProcess, iommufd: number, ioas: number): number {
  const devfd = proc.open('/dev/vfio/devices/vfio0');
  assert.ok(devfd >= 0);
  const bind = proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
    iommufd,
  });
  assert.equal(bind.ret, 0);
  const attach = proc.ioctlStruct(
    devfd,
    ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    v.vfioDeviceAttachIommufdPt,
    { pt_id: ioas },
  );
  assert.equal(attach.ret, 0);
  return devfd;
}

function u64Bytes(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

/** Runs one edu DMA of `count` bytes from `src` to `dst` (device addresses) and waits for it. */
async function eduDma(
  proc: SimProcess,
  devfd: number,
  src: bigint,
  dst: bigint,
  count: bigint,
  toRam: boolean,
) {
  const config = 7n << 40n;
  const cmd = proc.pread(devfd, 2, config + 4n) as Uint8Array;
  const value = cmd[0]! | (cmd[1]! << 8) | 0x6; // memory space + bus master
  proc.pwrite(devfd, new Uint8Array([value & 0xff, value >> 8]), config + 4n);
  proc.pwrite(devfd, u64Bytes(src), EduReg.DMA_SRC);
  proc.pwrite(devfd, u64Bytes(dst), EduReg.DMA_DST);
  proc.pwrite(devfd, u64Bytes(count), EduReg.DMA_COUNT);
  proc.pwrite(devfd, u64Bytes(toRam ? 3n : 1n), EduReg.DMA_CMD);
  for (let i = 0; i < 1000; i++) {
    const reg = proc.pread(devfd, 4, EduReg.DMA_CMD) as Uint8Array;
    if ((u32At(reg, 0) & 1) === 0) return;
    await tick();
  }
  assert.fail('DMA did not complete');
}

describe('VFIO container ioctls on an iommufd: no compat IOAS', () => {
  it('are ENODEV, except GET_API_VERSION, CHECK_EXTENSION and the type check of SET_IOMMU', () => {
    const t = setup({ compat: false });
    const mem = t.proc.alloc(PAGE);
    assert.equal(t.mapDma({ flags: RW, vaddr: mem, iova: 0x100000n, size: PAGE }), -Errno.ENODEV);
    assert.equal(t.unmapDma({ iova: 0x100000n, size: PAGE }).ret, -Errno.ENODEV);
    assert.equal(t.getInfo(24).ret, -Errno.ENODEV);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), -Errno.ENODEV);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1_IOMMU), -Errno.ENODEV);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_SPAPR_TCE_IOMMU), -Errno.EINVAL);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_NOIOMMU_IOMMU), -Errno.EINVAL);
    assert.equal(
      t.proc.ioctl(t.fd, ioctl.VFIO_CHECK_EXTENSION, v.VFIO_DMA_CC_IOMMU),
      -Errno.ENODEV,
    );
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_GET_API_VERSION), 0);
    const ext = (type: bigint) => t.proc.ioctl(t.fd, ioctl.VFIO_CHECK_EXTENSION, type);
    assert.deepEqual(
      [
        v.VFIO_TYPE1_IOMMU,
        v.VFIO_SPAPR_TCE_IOMMU,
        v.VFIO_TYPE1v2_IOMMU,
        v.VFIO_EEH,
        v.VFIO_RESERVED_TYPE1_NESTING_IOMMU,
        v.VFIO_SPAPR_TCE_v2_IOMMU,
        v.VFIO_NOIOMMU_IOMMU,
        v.VFIO_UNMAP_ALL,
        v.VFIO_UPDATE_VADDR,
        1n << 40n,
      ].map(ext),
      [1, 0, 1, 0, 0, 0, 1, 1, 0, 0],
    );
    // Checked before the compat IOAS: the argument is read first.
    assert.equal(t.mapDma({ flags: 1 << 2 }), -Errno.EINVAL);
    assert.equal(t.unmapDma({ flags: v.VFIO_DMA_UNMAP_FLAG_VADDR }).ret, -Errno.EINVAL);
    assert.equal(t.getInfo(15).ret, -Errno.EINVAL);
    assert.equal(t.proc.ioctl(t.fd, VFIO_IOMMU_DIRTY_PAGES, 0n), -Errno.ENOTTY);
    // Unmapped argument: EFAULT before anything else.
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_IOMMU_MAP_DMA, 0n), -Errno.EFAULT);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_IOMMU_UNMAP_DMA, 0n), -Errno.EFAULT);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_IOMMU_GET_INFO, 0n), -Errno.EFAULT);
  });

  it('work once IOMMU_VFIO_IOAS SET names an IOAS, and stop after CLEAR or its destruction', () => {
    const t = setup({ compat: false });
    const id = t.ioasAlloc();
    assert.equal(t.vfioIoas(u.IOMMU_VFIO_IOAS_GET).ret, -Errno.ENODEV);
    assert.equal(t.vfioIoas(u.IOMMU_VFIO_IOAS_SET, id + 1).ret, -Errno.ENOENT);
    assert.equal(t.vfioIoas(u.IOMMU_VFIO_IOAS_SET, id).ret, 0);
    assert.equal(t.vfioIoas(u.IOMMU_VFIO_IOAS_GET).out.ioas_id, id);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), 0);
    assert.equal(t.vfioIoas(u.IOMMU_VFIO_IOAS_CLEAR).ret, 0);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), -Errno.ENODEV);
    assert.equal(t.vfioIoas(u.IOMMU_VFIO_IOAS_SET, id).ret, 0);
    const destroy = t.proc.ioctlStruct(t.fd, ioctl.IOMMU_DESTROY, u.iommuDestroy, { id });
    assert.equal(destroy.ret, 0);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), -Errno.ENODEV);
  });
});

describe('VFIO_SET_IOMMU', () => {
  it('takes TYPE1v2 as is and turns huge pages off for TYPE1', () => {
    const t = setup();
    const set = (type: bigint) => t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, type);
    assert.equal(set(v.VFIO_SPAPR_TCE_IOMMU), -Errno.EINVAL);
    assert.equal(set(0n), -Errno.EINVAL);
    assert.equal(set(v.VFIO_UNMAP_ALL), -Errno.EINVAL);
    assert.equal(set(v.VFIO_TYPE1v2_IOMMU | (1n << 32n)), -Errno.EINVAL);
    assert.equal(set(v.VFIO_TYPE1v2_IOMMU), 0);
    assert.equal(t.option(u.IOMMU_OPTION_HUGE_PAGES, t.ioas).out.val64, 1n);
    assert.equal(set(v.VFIO_TYPE1_IOMMU), 0);
    assert.equal(t.option(u.IOMMU_OPTION_HUGE_PAGES, t.ioas).out.val64, 0n);
    assert.equal(t.ictx.vfioIoas!.iopt.iovaAlignment, PAGE);
    // Again, and v2 after v1: nothing more changes.
    assert.equal(set(v.VFIO_TYPE1_IOMMU), 0);
    assert.equal(set(v.VFIO_TYPE1v2_IOMMU), 0);
    assert.equal(t.option(u.IOMMU_OPTION_HUGE_PAGES, t.ioas).out.val64, 0n);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_CHECK_EXTENSION, v.VFIO_DMA_CC_IOMMU), 1);
  });

  it('VFIO_DMA_CC_IOMMU asks every HWPT of the compat IOAS: a mock domain enforces nothing', () => {
    const t = setup();
    const cc = () => t.proc.ioctl(t.fd, ioctl.VFIO_CHECK_EXTENSION, v.VFIO_DMA_CC_IOMMU);
    assert.equal(cc(), 1, 'no HWPT at all');
    attachVfio0(t.proc, t.fd, t.ioas);
    assert.equal(cc(), 1, "the edu's domain enforces coherency");
    const md = t.proc.ioctlStruct(t.fd, ioctl.IOMMU_TEST_CMD, tc.testMockDomain, {
      op: tc.IOMMU_TEST_OP_MOCK_DOMAIN,
      id: t.ioas,
    });
    assert.equal(md.ret, 0);
    assert.equal(cc(), 0, "the mock device's HWPT does not enforce it");
  });

  it('refuses TYPE1 (v1) once a domain holds mappings', () => {
    const t = setup();
    attachVfio0(t.proc, t.fd, t.ioas);
    const mem = t.proc.alloc(PAGE);
    // A domain with no mapping is fine for v2; v1 would be too, but map first.
    assert.equal(t.mapDma({ flags: RW, vaddr: mem, iova: 0x100000n, size: PAGE }), 0);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1_IOMMU), -Errno.EINVAL);
    assert.equal(t.option(u.IOMMU_OPTION_HUGE_PAGES, t.ioas).out.val64, 1n);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), 0);
    t.proc.exit();
    assert.deepEqual(t.emu.kernel.leaks(), []);
  });

  it('in no-IOMMU mode takes only NOIOMMU, with CAP_SYS_RAWIO', () => {
    const t = setup();
    // What VFIO_GROUP_SET_CONTAINER of a no-IOMMU group would do (iommufd_vfio_compat_set_no_iommu).
    t.ictx.noIommuMode = true;
    const set = (type: bigint) => t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, type);
    const ext = (type: bigint) => t.proc.ioctl(t.fd, ioctl.VFIO_CHECK_EXTENSION, type);
    assert.equal(set(v.VFIO_TYPE1v2_IOMMU), -Errno.EINVAL);
    assert.equal(set(v.VFIO_TYPE1_IOMMU), -Errno.EINVAL);
    assert.equal(set(v.VFIO_NOIOMMU_IOMMU), 0);
    t.proc.setCapability(CAP_SYS_RAWIO, false);
    assert.equal(set(v.VFIO_NOIOMMU_IOMMU), -Errno.EPERM);
    assert.deepEqual(
      [v.VFIO_TYPE1_IOMMU, v.VFIO_TYPE1v2_IOMMU, v.VFIO_UNMAP_ALL, v.VFIO_NOIOMMU_IOMMU].map(ext),
      [0, 0, 0, 1],
    );
  });
});

describe('VFIO_IOMMU_GET_INFO', () => {
  it('reports page sizes and the DMA_AVAIL then IOVA_RANGE chain, growing argsz', () => {
    const t = setup();
    // argsz 16: only 16 bytes are written back; argsz is raised to the whole chain.
    let r = t.getInfo(16);
    assert.equal(r.ret, 0);
    assert.equal(u32At(r.bytes, 0), 72);
    assert.equal(u32At(r.bytes, 4), v.VFIO_IOMMU_INFO_PGSIZES | v.VFIO_IOMMU_INFO_CAPS);
    assert.equal(u64At(r.bytes, 8), 0xfffffffffffff000n);
    assert.equal(u32At(r.bytes, 16), 0xeeeeeeee);
    assert.equal(u32At(r.bytes, 24), 0xeeeeeeee);

    // argsz 24: cap_offset 0 and pad 0, no capability written.
    r = t.getInfo(24);
    assert.deepEqual([u32At(r.bytes, 0), u32At(r.bytes, 16), u32At(r.bytes, 20)], [72, 0, 0]);
    assert.equal(u32At(r.bytes, 24), 0xeeeeeeee);

    // argsz 36: room for DMA_AVAIL (12 bytes) only; its next link is not written.
    r = t.getInfo(36);
    assert.deepEqual([u32At(r.bytes, 0), u32At(r.bytes, 16)], [72, 0]);
    assert.deepEqual(
      [u16At(r.bytes, 24), u16At(r.bytes, 26), u32At(r.bytes, 28), u32At(r.bytes, 32)],
      [v.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 0, 0xffffffff],
    );
    assert.equal(u32At(r.bytes, 36), 0xeeeeeeee);

    // argsz 40 to 71: the link to the IOVA_RANGE cap is written, the cap itself is not (its
    // one range needs 32 bytes from offset 40).
    for (const argsz of [40, 71]) {
      r = t.getInfo(argsz);
      assert.deepEqual([u32At(r.bytes, 0), u32At(r.bytes, 16), u32At(r.bytes, 28)], [72, 0, 40]);
      assert.equal(u32At(r.bytes, 40), 0xeeeeeeee);
      assert.equal(u32At(r.bytes, 56), 0xeeeeeeee);
    }

    r = t.getInfo(72);
    assert.deepEqual([u32At(r.bytes, 0), u32At(r.bytes, 16), u32At(r.bytes, 20)], [72, 24, 0]);
    assert.deepEqual(
      [u16At(r.bytes, 40), u16At(r.bytes, 42), u32At(r.bytes, 44), u32At(r.bytes, 48)],
      [v.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 0, 1],
    );
    assert.equal(u32At(r.bytes, 52), 0);
    assert.deepEqual([u64At(r.bytes, 56), u64At(r.bytes, 64)], [0n, u.ULONG_MAX]);
    assert.equal(u32At(r.bytes, 72), 0xeeeeeeee);

    // A larger argsz still reports 72.
    assert.equal(u32At(t.getInfo(256).bytes, 0), 72);
    assert.equal(t.getInfo(15).ret, -Errno.EINVAL);
  });

  it('follows the attached domains: page sizes and the reserved holes', () => {
    const t = setup();
    attachVfio0(t.proc, t.fd, t.ioas);
    const ranges = t.proc.alloc(PAGE);
    const ir = t.proc.ioctlStruct(t.fd, ioctl.IOMMU_IOAS_IOVA_RANGES, u.iommuIoasIovaRanges, {
      ioas_id: t.ioas,
      num_iovas: 16,
      allowed_iovas: ranges,
    });
    assert.equal(ir.ret, 0);
    const n = ir.out.num_iovas;
    assert.ok(n > 1);
    const want = t.proc.memory.read(ranges, 16 * n)!;
    const total = 24 + 16 + 16 + 16 * n;

    const r = t.getInfo(total);
    assert.equal(r.ret, 0);
    assert.equal(u32At(r.bytes, 0), total);
    assert.equal(u32At(r.bytes, 16), 24);
    // The emulated IOMMU: 4K | 2M | 1G.
    assert.equal(u64At(r.bytes, 8), 0x1000n | 0x200000n | 0x40000000n);
    assert.equal(u32At(r.bytes, 48), n);
    assert.deepEqual(r.bytes.subarray(56, 56 + 16 * n), want);
    assert.equal(u64At(r.bytes, 64), 0xfedfffffn);
  });
});

describe('VFIO_IOMMU_MAP_DMA and UNMAP_DMA', () => {
  it('check argsz and flags, map at a fixed IOVA, and take flags 0', () => {
    const t = setup();
    const mem = t.proc.alloc(8n * PAGE);
    const map = { flags: RW, vaddr: mem, iova: 0x100000n, size: 4n * PAGE };
    assert.equal(t.mapDma({ ...map, flags: v.VFIO_DMA_MAP_FLAG_VADDR | 1 }), -Errno.EINVAL);
    assert.equal(t.mapDma({ ...map, flags: 1 << 3 }), -Errno.EINVAL);
    assert.equal(t.mapDma({ ...map, argsz: 31 }), -Errno.EINVAL);
    assert.equal(t.mapDma({ ...map, size: 0n }), -Errno.EINVAL);
    assert.equal(t.mapDma(map), 0);
    assert.equal(t.mapDma(map), -Errno.EEXIST);
    assert.equal(t.mapDma({ ...map, iova: 0x102000n }), -Errno.EEXIST);
    assert.equal(t.mapDma({ ...map, flags: 0, iova: 0x200000n }), 0);
    // A larger argsz is fine: only 32 bytes are read.
    assert.equal(t.mapDma({ ...map, argsz: 4096, iova: 0x300000n }), 0);
    assert.deepEqual(t.areas(), [
      [0x100000n, 0x103fffn],
      [0x200000n, 0x203fffn],
      [0x300000n, 0x303fffn],
    ]);
    // They are ordinary areas of the compat IOAS.
    const un = t.ioasUnmap(0x200000n, 4n * PAGE);
    assert.deepEqual([un.ret, un.out.length], [0, 4n * PAGE]);
    // Nothing is written back by MAP_DMA.
    const scratch = t.proc.scratchArea();
    assert.equal(t.mapDma({ ...map, iova: 0x400000n }), 0);
    assert.equal(u64At(t.proc.memory.read(scratch, 32)!, 16), 0x400000n);
  });

  it('unmap: flags, UNMAP_ALL, size written back, empty range is success with size 0', () => {
    const t = setup();
    const mem = t.proc.alloc(8n * PAGE);
    const map = { flags: RW, vaddr: mem, iova: 0x100000n, size: 4n * PAGE };
    assert.equal(t.mapDma(map), 0);
    const um = { iova: 0x100000n, size: 4n * PAGE };
    assert.equal(t.unmapDma({ ...um, argsz: 23 }).ret, -Errno.EINVAL);
    assert.equal(
      t.unmapDma({ ...um, flags: v.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP }).ret,
      -Errno.EINVAL,
    );
    assert.equal(t.unmapDma({ ...um, flags: v.VFIO_DMA_UNMAP_FLAG_VADDR }).ret, -Errno.EINVAL);
    // UNMAP_ALL wants iova 0 and size 0; the failure writes nothing back.
    const bad = t.unmapDma({ ...um, flags: v.VFIO_DMA_UNMAP_FLAG_ALL });
    assert.deepEqual([bad.ret, bad.out.size], [-Errno.EINVAL, 4n * PAGE]);
    assert.equal(t.unmapDma({ flags: v.VFIO_DMA_UNMAP_FLAG_ALL, iova: 1n }).ret, -Errno.EINVAL);
    // Type1 v2: a range cutting an area is ENOENT, with size written back (0 bytes).
    const partial = t.unmapDma({ iova: 0x101000n, size: PAGE });
    assert.deepEqual([partial.ret, partial.out.size], [-Errno.ENOENT, 0n]);
    assert.equal(t.unmapDma({ iova: 0x100000n, size: 0n }).ret, -Errno.EINVAL);
    assert.equal(t.unmapDma({ iova: 0x100000n, size: u.ULONG_MAX }).ret, -Errno.EOVERFLOW);
    const ok = t.unmapDma(um);
    assert.deepEqual([ok.ret, ok.out.size], [0, 4n * PAGE]);
    const empty = t.unmapDma(um);
    assert.deepEqual([empty.ret, empty.out.size], [0, 0n]);
    // IOAS_UNMAP of the same empty range stays ENOENT.
    assert.equal(t.ioasUnmap(0x100000n, 4n * PAGE).ret, -Errno.ENOENT);

    assert.equal(t.mapDma({ ...map, iova: 0x300000n }), 0);
    assert.equal(t.mapDma({ ...map, iova: 0x400000n }), 0);
    const all = t.unmapDma({ flags: v.VFIO_DMA_UNMAP_FLAG_ALL });
    assert.deepEqual([all.ret, all.out.size], [0, 8n * PAGE]);
    const none = t.unmapDma({ flags: v.VFIO_DMA_UNMAP_FLAG_ALL });
    assert.deepEqual([none.ret, none.out.size], [0, 0n]);
    assert.deepEqual(t.areas(), []);
  });

  it('type1 v1 punches holes by cutting areas at the range ends', () => {
    const t = setup();
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1_IOMMU), 0);
    const mem = t.proc.alloc(16n * PAGE);
    assert.equal(t.mapDma({ flags: RW, vaddr: mem, iova: 0x100000n, size: 8n * PAGE }), 0);
    const hole = t.unmapDma({ iova: 0x102000n, size: 2n * PAGE });
    assert.deepEqual([hole.ret, hole.out.size], [0, 2n * PAGE]);
    assert.deepEqual(t.areas(), [
      [0x100000n, 0x101fffn],
      [0x104000n, 0x107fffn],
    ]);
    // Cuts stay page aligned: a sub-page range is EINVAL and changes nothing.
    const odd = t.unmapDma({ iova: 0x104800n, size: PAGE });
    assert.deepEqual([odd.ret, odd.out.size], [-Errno.EINVAL, PAGE]);
    assert.equal(t.areas().length, 2);
    // A range covering an area's tail and the next gap: one cut, one piece unmapped.
    const tail = t.unmapDma({ iova: 0x101000n, size: 3n * PAGE });
    assert.deepEqual([tail.ret, tail.out.size], [0, PAGE]);
    // A cut at IOVA 0 is not needed; unmap from 0 through the first area's first page.
    const head = t.unmapDma({ iova: 0n, size: 0x101000n });
    assert.deepEqual([head.ret, head.out.size], [0, PAGE]);
    assert.deepEqual(t.areas(), [[0x104000n, 0x107fffn]]);
    // The last page of an area and the first are cut points that need no split.
    const last = t.unmapDma({ iova: 0x107000n, size: PAGE });
    assert.deepEqual([last.ret, last.out.size], [0, PAGE]);
    const first = t.unmapDma({ iova: 0x104000n, size: PAGE });
    assert.deepEqual([first.ret, first.out.size], [0, PAGE]);
    assert.deepEqual(t.areas(), [[0x105000n, 0x106fffn]]);
    assert.deepEqual(checkInvariants(t.emu.kernel), []);
    // Pieces share the pages object of the original MAP; all of it goes with UNMAP_ALL.
    const all = t.unmapDma({ flags: v.VFIO_DMA_UNMAP_FLAG_ALL });
    assert.deepEqual([all.ret, all.out.size], [0, 2n * PAGE]);
    t.proc.exit();
    assert.deepEqual(t.emu.kernel.leaks(), []);
  });
});

describe('DMA through the compat IOAS', () => {
  it('maps with MAP_DMA for vfio0, punches a hole (type1 v1) and unpins exactly that', async () => {
    const t = setup();
    t.proc.setCapability(CAP_IPC_LOCK, false);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1_IOMMU), 0);
    const devfd = attachVfio0(t.proc, t.fd, t.ioas);
    const info = t.getInfo(24);
    assert.equal(u64At(info.bytes, 8), 0x1000n | 0x200000n | 0x40000000n);

    const buf = t.proc.alloc(4n * PAGE);
    t.proc.memory.write(buf, new TextEncoder().encode('hello via the container'));
    assert.equal(t.mapDma({ flags: RW, vaddr: buf, iova: 0x100000n, size: 4n * PAGE }), 0);
    const accounting = t.emu.kernel.iommufd.accounting;
    assert.equal(accounting.lockedVmByUser.get(0), 4n); // /dev/iommu charges per user

    await eduDma(t.proc, devfd, 0x100000n, 0x40000n, 23n, false);
    await eduDma(t.proc, devfd, 0x40000n, 0x103000n, 23n, true);
    assert.equal(
      new TextDecoder().decode(t.proc.memory.read(buf + 3n * PAGE, 23)),
      'hello via the container',
    );

    // Punch out the second page: it is unmapped from the domain and unpinned, the rest stays.
    const hole = t.unmapDma({ iova: 0x101000n, size: PAGE });
    assert.deepEqual([hole.ret, hole.out.size], [0, PAGE]);
    assert.equal(accounting.lockedVmByUser.get(0), 3n);
    // Pins, charges and the page table agree with the split areas.
    assert.deepEqual(checkInvariants(t.emu.kernel), []);
    const faults = () => t.events.filter((e) => e.kind === 'iommu-fault').length;
    const before = faults();
    await eduDma(t.proc, devfd, 0x40000n, 0x101000n, 8n, true);
    assert.equal(faults(), before + 1);
    await eduDma(t.proc, devfd, 0x40000n, 0x102000n, 5n, true);
    assert.equal(new TextDecoder().decode(t.proc.memory.read(buf + 2n * PAGE, 5)), 'hello');
    assert.equal(faults(), before + 1);

    t.proc.exit();
    await t.emu.kernel.machine.whenIdle();
    assert.deepEqual(t.emu.kernel.leaks(), []);
  });

  it('type1 v1 maps huge-page memory with 4 KiB IOPTEs, so a hole can be punched in it', () => {
    const t = setup();
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1_IOMMU), 0);
    attachVfio0(t.proc, t.fd, t.ioas);
    const SZ_2M = 2n << 20n;
    const buf = t.proc.memory.mmap(SZ_2M, { pageSize: SZ_2M });
    assert.equal(t.mapDma({ flags: RW, vaddr: buf, iova: SZ_2M, size: SZ_2M }), 0);
    const domain = t.ictx.vfioIoas!.iopt.domains[0]!;
    const pa = domain.iovaToPhys(SZ_2M)!;
    const hole = t.unmapDma({ iova: SZ_2M + 0x10000n, size: PAGE });
    assert.deepEqual([hole.ret, hole.out.size], [0, PAGE]);
    assert.equal(domain.iovaToPhys(SZ_2M + 0x10000n), undefined);
    assert.equal(domain.iovaToPhys(SZ_2M + 0x11000n), pa + 0x11000n);
    assert.equal(domain.iovaToPhys(SZ_2M + 0xf000n), pa + 0xf000n);
    assert.equal(t.areas().length, 2);
    assert.deepEqual(checkInvariants(t.emu.kernel), []);
    t.proc.exit();
    assert.deepEqual(t.emu.kernel.leaks(), []);
  });

  it('type1 v2 cuts nothing: a range inside an area is ENOENT', () => {
    const t = setup();
    attachVfio0(t.proc, t.fd, t.ioas);
    const buf = t.proc.alloc(4n * PAGE);
    assert.equal(t.mapDma({ flags: RW, vaddr: buf, iova: 0x100000n, size: 4n * PAGE }), 0);
    const r = t.unmapDma({ iova: 0x101000n, size: PAGE });
    assert.deepEqual([r.ret, r.out.size], [-Errno.ENOENT, 0n]);
    assert.equal(t.areas().length, 1);
  });
});

describe('/dev/vfio/vfio provided by iommufd', () => {
  it('is an iommufd context with per-mm accounting and the container ioctls', () => {
    const t = setup({ path: '/dev/vfio/vfio', compat: false });
    const node = t.emu.kernel.iommufd.vfioDevNode();
    assert.deepEqual([node.rdev, node.mode & 0o777], [{ major: 10, minor: 196 }, 0o666]);
    assert.ok(
      t.events.some(
        (e) => e.kind === 'log' && e.message === 'IOMMUFD is providing /dev/vfio/vfio, not VFIO.',
      ),
    );
    assert.equal(t.option(u.IOMMU_OPTION_RLIMIT_MODE, 0).out.val64, 1n);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_GET_API_VERSION), 0);
    assert.equal(t.proc.ioctl(t.fd, ioctl.VFIO_SET_IOMMU, v.VFIO_TYPE1v2_IOMMU), -Errno.ENODEV);

    const id = t.ioasAlloc();
    assert.equal(t.vfioIoas(u.IOMMU_VFIO_IOAS_SET, id).ret, 0);
    t.proc.setCapability(CAP_IPC_LOCK, false);
    attachVfio0(t.proc, t.fd, id);
    const buf = t.proc.alloc(2n * PAGE);
    assert.equal(t.mapDma({ flags: RW, vaddr: buf, iova: 0x100000n, size: 2n * PAGE }), 0);
    const accounting = t.emu.kernel.iommufd.accounting;
    assert.equal(accounting.lockedVmByUser.size, 0);
    assert.deepEqual([...accounting.lockedVmByMm.values()], [2n]);
    t.proc.exit();
    assert.deepEqual(t.emu.kernel.leaks(), []);
  });
});
