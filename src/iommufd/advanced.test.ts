import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEmulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import type { FieldTable, StructSpec } from '../uapi/struct.ts';
import * as v from '../uapi/vfio.ts';
import type { Ioas } from './ioas.ts';
import type { IoptArea } from './iopt-area.ts';
import type { IommufdCtx } from './main.ts';

const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;
const FIXED = RW | u.IOMMU_IOAS_MAP_FIXED_IOVA;
const U64_MAX = (1n << 64n) - 1n;

/** A process with an iommufd, an IOAS and (optionally) a bound device with an IOMMU. */
function setup(opts: { bind?: 'iommu' | 'noiommu' } = {}) {
  const emu = createEmulator({ enableUnsafeNoiommuMode: true });
  const proc = emu.spawn();
  const fd = proc.open('/dev/iommu');
  assert.ok(fd >= 0);
  let devfd = -1;
  let devid = 0;
  if (opts.bind !== undefined) {
    devfd = proc.open(
      opts.bind === 'iommu' ? '/dev/vfio/devices/vfio0' : '/dev/vfio/devices/noiommu-vfio2',
    );
    assert.ok(devfd >= 0, `open device: ${devfd}`);
    const bind = proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
      iommufd: fd,
    });
    assert.equal(bind.ret, 0);
    devid = bind.out.out_devid;
  }
  const ioasAlloc = () => {
    const r = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    assert.equal(r.ret, 0);
    return r.out.out_ioas_id;
  };
  const ioas = ioasAlloc();
  const call = <F extends FieldTable>(
    cmd: number,
    spec: StructSpec<F>,
    value: Parameters<typeof proc.ioctlStruct<F>>[3],
    size?: number,
  ) => proc.ioctlStruct(fd, cmd, spec, value, size);
  /** HWPT_ALLOC of a paging HWPT on `ioasId` for the bound device. */
  const hwptAlloc = (ioasId = ioas) => {
    const r = call(ioctl.IOMMU_HWPT_ALLOC, u.iommuHwptAlloc, { dev_id: devid, pt_id: ioasId });
    assert.equal(r.ret, 0);
    return r.out.out_hwpt_id;
  };
  const attach = (ptId: number) =>
    proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT, v.vfioDeviceAttachIommufdPt, {
      pt_id: ptId,
    }).ret;
  const mapFile = (
    value: Partial<{
      flags: number;
      ioas_id: number;
      fd: number;
      start: bigint;
      length: bigint;
      iova: bigint;
    }>,
  ) =>
    call(ioctl.IOMMU_IOAS_MAP_FILE, u.iommuIoasMapFile, {
      flags: RW,
      ioas_id: ioas,
      length: 0x1000n,
      ...value,
    });
  const unmap = (iova: bigint, length: bigint, ioasId = ioas) =>
    call(ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, { ioas_id: ioasId, iova, length }).ret;
  const changeProcess = (reserved = 0) =>
    call(ioctl.IOMMU_IOAS_CHANGE_PROCESS, u.iommuIoasChangeProcess, { __reserved: reserved }).ret;
  const ictx = (): IommufdCtx => [...emu.kernel.iommufd.contexts][0]!;
  /** Every area of every IOAS of the first context. */
  const areas = (): IoptArea[] =>
    ictx()
      .publishedObjects()
      .filter((o): o is Ioas => o.type === 'ioas')
      .flatMap((ioas) => [...ioas.iopt.areas.iter()]);
  return {
    emu,
    proc,
    fd,
    devfd,
    devid,
    ioas,
    ioasAlloc,
    call,
    hwptAlloc,
    attach,
    mapFile,
    unmap,
    changeProcess,
    ictx,
    areas,
  };
}

/** Every command of 0x8b..0x94 with its struct: kernel size, min_size. */
const COMMANDS: readonly [string, number, StructSpec<FieldTable>, number, number][] = [
  ['SET_DIRTY_TRACKING', ioctl.IOMMU_HWPT_SET_DIRTY_TRACKING, u.iommuHwptSetDirtyTracking, 16, 16],
  ['GET_DIRTY_BITMAP', ioctl.IOMMU_HWPT_GET_DIRTY_BITMAP, u.iommuHwptGetDirtyBitmap, 48, 48],
  ['INVALIDATE', ioctl.IOMMU_HWPT_INVALIDATE, u.iommuHwptInvalidate, 32, 32],
  ['FAULT_QUEUE_ALLOC', ioctl.IOMMU_FAULT_QUEUE_ALLOC, u.iommuFaultAlloc, 16, 16],
  ['IOAS_MAP_FILE', ioctl.IOMMU_IOAS_MAP_FILE, u.iommuIoasMapFile, 40, 40],
  ['VIOMMU_ALLOC', ioctl.IOMMU_VIOMMU_ALLOC, u.iommuViommuAlloc, 40, 24],
  ['VDEVICE_ALLOC', ioctl.IOMMU_VDEVICE_ALLOC, u.iommuVdeviceAlloc, 24, 24],
  ['IOAS_CHANGE_PROCESS', ioctl.IOMMU_IOAS_CHANGE_PROCESS, u.iommuIoasChangeProcess, 8, 8],
  ['VEVENTQ_ALLOC', ioctl.IOMMU_VEVENTQ_ALLOC, u.iommuVeventqAlloc, 32, 28],
  ['HW_QUEUE_ALLOC', ioctl.IOMMU_HW_QUEUE_ALLOC, u.iommuHwQueueAlloc, 40, 40],
];

describe('framing of the commands 0x8b..0x94', () => {
  it('has the kernel struct sizes and min sizes', () => {
    for (const [name, , spec, size, minSize] of COMMANDS) {
      assert.deepEqual([spec.size, spec.minSize], [size, minSize], name);
    }
  });

  it('answers EINVAL below min_size and E2BIG for a non-zero tail, never ENOTTY', () => {
    const t = setup();
    for (const [name, cmd, spec, size, minSize] of COMMANDS) {
      assert.equal(t.call(cmd, spec, {}, minSize - 1).ret, -Errno.EINVAL, `${name} min-1`);
      assert.equal(t.call(cmd, spec, {}, 0).ret, -Errno.EINVAL, `${name} size 0`);
      // A byte past the kernel's struct that is not zero.
      const va = t.proc.scratchArea();
      const bytes = new Uint8Array(size + 8);
      new DataView(bytes.buffer).setUint32(0, size + 8, true);
      bytes[size + 3] = 1;
      t.proc.memory.write(va, bytes);
      assert.equal(t.proc.ioctl(t.fd, cmd, va), -Errno.E2BIG, `${name} tail`);
      // A zero tail is accepted: whatever the handler says, it is not a framing errno.
      const zero = t.call(cmd, spec, {}, size + 8).ret;
      assert.ok(![-Errno.E2BIG, -Errno.ENOTTY].includes(zero), `${name} zero tail: ${zero}`);
    }
  });

  it('accepts the short VIOMMU_ALLOC (24) and VEVENTQ_ALLOC (28) structs', () => {
    const t = setup();
    const viommu = t.call(ioctl.IOMMU_VIOMMU_ALLOC, u.iommuViommuAlloc, {}, 24);
    assert.equal(viommu.ret, -Errno.EOPNOTSUPP);
    const veventq = t.call(ioctl.IOMMU_VEVENTQ_ALLOC, u.iommuVeventqAlloc, { type: 1 }, 28);
    assert.equal(veventq.ret, -Errno.EINVAL); // depth 0: the missing __reserved read as 0
  });
});

describe('IOMMU_HWPT_SET_DIRTY_TRACKING', () => {
  const set = (
    t: ReturnType<typeof setup>,
    value: { flags?: number; hwpt_id?: number; __reserved?: number },
  ) => t.call(ioctl.IOMMU_HWPT_SET_DIRTY_TRACKING, u.iommuHwptSetDirtyTracking, value).ret;

  it('checks the flags, then wants a paging HWPT, then has no dirty ops', () => {
    const t = setup({ bind: 'iommu' });
    const hwpt = t.hwptAlloc();
    assert.equal(set(t, { flags: 2, hwpt_id: 999 }), -Errno.EOPNOTSUPP);
    assert.equal(set(t, { flags: 1, hwpt_id: 999 }), -Errno.ENOENT);
    // __reserved is not checked.
    assert.equal(set(t, { __reserved: 1, hwpt_id: 999 }), -Errno.ENOENT);
    for (const notPaging of [t.ioas, t.devid]) {
      assert.equal(set(t, { flags: 1, hwpt_id: notPaging }), -Errno.ENOENT);
    }
    assert.equal(set(t, { flags: 1, hwpt_id: hwpt }), -Errno.EOPNOTSUPP);
    assert.equal(set(t, { flags: 0, hwpt_id: hwpt }), -Errno.EOPNOTSUPP);
    assert.equal(set(t, { __reserved: 7, hwpt_id: hwpt }), -Errno.EOPNOTSUPP);
  });

  it('answers the same for an auto domain and for a no-IOMMU HWPT', () => {
    for (const bind of ['iommu', 'noiommu'] as const) {
      const t = setup({ bind });
      assert.equal(t.attach(t.ioas), 0);
      const hwpt = t
        .ictx()
        .publishedObjects()
        .find((o) => o.type === 'hwpt-paging')!;
      assert.equal(set(t, { flags: 1, hwpt_id: hwpt.id }), -Errno.EOPNOTSUPP, bind);
    }
  });
});

describe('IOMMU_HWPT_GET_DIRTY_BITMAP', () => {
  const get = (
    t: ReturnType<typeof setup>,
    value: Partial<{
      hwpt_id: number;
      flags: number;
      __reserved: number;
      iova: bigint;
      length: bigint;
      page_size: bigint;
      data: bigint;
    }>,
  ) =>
    t.call(ioctl.IOMMU_HWPT_GET_DIRTY_BITMAP, u.iommuHwptGetDirtyBitmap, {
      iova: 0x10000n,
      length: 0x10000n,
      page_size: 0x1000n,
      data: 0x1000n,
      ...value,
    }).ret;

  it('checks flags and reserved before the lookup, and wants a paging HWPT', () => {
    const t = setup({ bind: 'iommu' });
    assert.equal(get(t, { flags: 2, hwpt_id: 999 }), -Errno.EOPNOTSUPP);
    assert.equal(get(t, { __reserved: 1, hwpt_id: 999 }), -Errno.EOPNOTSUPP);
    assert.equal(get(t, { flags: 1, hwpt_id: 999 }), -Errno.ENOENT);
    assert.equal(get(t, { hwpt_id: t.ioas }), -Errno.ENOENT);
    assert.equal(get(t, { hwpt_id: t.devid }), -Errno.ENOENT);
  });

  it('checks overflow, IOAS alignment, page size, in the kernel order, then has no dirty ops', () => {
    const t = setup({ bind: 'iommu' });
    const hwpt = t.hwptAlloc(); // the domain raises the IOAS alignment to 4 KiB
    const h = { hwpt_id: hwpt };
    // iova + length - 1 past 2^64 - 1 (length 0 wraps to 2^64 - 1 for any iova but 0).
    assert.equal(get(t, { ...h, iova: 0x1000n, length: 0n }), -Errno.EOVERFLOW);
    assert.equal(get(t, { ...h, iova: U64_MAX, length: 2n, page_size: 0n }), -Errno.EOVERFLOW);
    // IOAS alignment, before the page size is looked at.
    assert.equal(get(t, { ...h, iova: 0x10800n, page_size: 0n }), -Errno.EINVAL);
    assert.equal(get(t, { ...h, length: 0x10800n, page_size: 0n }), -Errno.EINVAL);
    assert.equal(get(t, { ...h, page_size: 0n }), -Errno.EINVAL);
    assert.equal(get(t, { ...h, iova: 0x11000n, page_size: 0x2000n }), -Errno.EINVAL);
    assert.equal(get(t, { ...h, length: 0x11000n, page_size: 0x2000n }), -Errno.EINVAL);
    assert.equal(get(t, h), -Errno.EOPNOTSUPP);
    assert.equal(get(t, { ...h, flags: 1 }), -Errno.EOPNOTSUPP);
    // The whole space (iova 0, length 0: the end wraps to 0) passes every range check.
    assert.equal(get(t, { ...h, iova: 0n, length: 0n }), -Errno.EOPNOTSUPP);
  });
});

describe('IOMMU_HWPT_INVALIDATE', () => {
  const inv = (
    t: ReturnType<typeof setup>,
    value: Partial<{
      hwpt_id: number;
      data_uptr: bigint;
      data_type: number;
      entry_len: number;
      entry_num: number;
      __reserved: number;
    }>,
  ) => t.call(ioctl.IOMMU_HWPT_INVALIDATE, u.iommuHwptInvalidate, value);

  it('writes entry_num back (0) on every early error, in the kernel order', () => {
    const t = setup({ bind: 'iommu' });
    const rec = { data_uptr: 0x1000n, entry_len: 24, entry_num: 5 };
    const cases: [Parameters<typeof inv>[1], number][] = [
      [{ ...rec, __reserved: 1, hwpt_id: 999 }, -Errno.EOPNOTSUPP],
      [{ ...rec, data_uptr: 0n, hwpt_id: 999 }, -Errno.EINVAL],
      [{ ...rec, entry_len: 0, hwpt_id: 999 }, -Errno.EINVAL],
      [{ ...rec, hwpt_id: 999 }, -Errno.ENOENT],
    ];
    for (const [value, errno] of cases) {
      const r = inv(t, value);
      assert.equal(
        r.ret,
        errno,
        JSON.stringify(value, (_k, x) => String(x)),
      );
      assert.equal(r.out.entry_num, 0);
    }
  });

  it('takes only nested HWPTs and vIOMMUs: a paging HWPT, an IOAS, a device are EINVAL', () => {
    const t = setup({ bind: 'iommu' });
    const hwpt = t.hwptAlloc();
    for (const id of [hwpt, t.ioas, t.devid]) {
      const r = inv(t, { hwpt_id: id, data_uptr: 0x1000n, entry_len: 24, entry_num: 3 });
      assert.deepEqual([r.ret, r.out.entry_num], [-Errno.EINVAL, 0]);
    }
    // entry_num 0 is the "is this type supported?" probe: a null array is fine.
    const probe = inv(t, { hwpt_id: hwpt });
    assert.deepEqual([probe.ret, probe.out.entry_num], [-Errno.EINVAL, 0]);
  });

  it('answers EFAULT when entry_num cannot be written back, whatever the error was', () => {
    const t = setup();
    t.proc.failNth.trail = [];
    inv(t, { __reserved: 1 });
    const nth = t.proc.failNth.trail.indexOf('copy-to-user') + 1;
    t.proc.failNth.trail = undefined;
    assert.ok(nth > 0);
    t.proc.failNth.arm(nth);
    assert.equal(inv(t, { __reserved: 1 }).ret, -Errno.EFAULT);
  });
});

describe('IOMMU_FAULT_QUEUE_ALLOC', () => {
  it('rejects flags; its fd is a stream that holds the object and the iommufd', () => {
    const t = setup();
    const fault = (flags: number) =>
      t.call(ioctl.IOMMU_FAULT_QUEUE_ALLOC, u.iommuFaultAlloc, { flags });
    assert.equal(fault(1).ret, -Errno.EOPNOTSUPP);
    assert.equal(t.ictx().objectCount, 1);
    const r = fault(0);
    assert.equal(r.ret, 0);
    const qfd = r.out.out_fault_fd;
    assert.equal(r.out.out_fault_id, t.ioas + 1);
    assert.equal(t.proc.pread(qfd, 40, 0n), -Errno.ESPIPE);
    assert.equal(t.proc.read(qfd, 39), -Errno.ESPIPE);
    assert.deepEqual(t.proc.read(qfd, 40), new Uint8Array(0));
    assert.equal(t.proc.write(qfd, new Uint8Array(8)), -Errno.EINVAL);
    assert.equal(t.proc.poll(qfd), 0x4);
    const destroy = () => t.call(ioctl.IOMMU_DESTROY, u.iommuDestroy, { id: r.out.out_fault_id });
    assert.equal(destroy().ret, -Errno.EBUSY);
    // Closing the iommufd first: the queue's fd keeps the context.
    assert.equal(t.proc.close(t.fd), 0);
    assert.equal(t.emu.kernel.iommufd.contexts.size, 1);
    assert.equal(t.proc.close(qfd), 0);
    assert.equal(t.emu.kernel.iommufd.contexts.size, 0);
  });
});

describe('IOMMU_IOAS_MAP_FILE', () => {
  it('checks flags, overflow, protection, the IOAS, the length and the range before the fd', () => {
    const t = setup();
    const bad = -1;
    const cases: [Parameters<typeof t.mapFile>[0], number][] = [
      [{ flags: 1 << 3, fd: bad, ioas_id: 99 }, -Errno.EOPNOTSUPP],
      [{ iova: U64_MAX, fd: bad, ioas_id: 99 }, -Errno.EOVERFLOW],
      [{ length: U64_MAX, fd: bad, ioas_id: 99 }, -Errno.EOVERFLOW],
      [{ flags: u.IOMMU_IOAS_MAP_FIXED_IOVA, fd: bad, ioas_id: 99 }, -Errno.EINVAL],
      [{ fd: bad, ioas_id: 99 }, -Errno.ENOENT],
      [{ fd: bad, length: 0n }, -Errno.EINVAL],
      [{ fd: bad, start: U64_MAX, length: 2n }, -Errno.EOVERFLOW],
      [{ fd: bad }, -Errno.EBADF],
      [{ fd: 77 }, -Errno.EBADF],
    ];
    for (const [value, errno] of cases) {
      assert.equal(
        t.mapFile(value).ret,
        errno,
        JSON.stringify(value, (_k, x) => String(x)),
      );
    }
    // The last byte may be 2^64 - 1 exactly; then the length limit of iopt_alloc_pages().
    const fd = t.proc.eventfd();
    assert.equal(t.mapFile({ fd, start: U64_MAX - 0xfffn }).ret, 0);
    assert.equal(t.mapFile({ fd, length: U64_MAX - 1n }).ret, -Errno.EINVAL);
  });

  it('maps an open file lazily into an IOAS with no domain: an area like any other', () => {
    const t = setup();
    const fd = t.proc.eventfd();
    const fixed = t.mapFile({ fd, flags: FIXED, iova: 0x100000n, length: 0x3000n });
    assert.deepEqual([fixed.ret, fixed.out.iova], [0, 0x100000n]);
    assert.equal(t.mapFile({ fd, flags: FIXED, iova: 0x101000n }).ret, -Errno.EEXIST);
    // Automatic IOVA keeps the offset of `start` within its page.
    const auto = t.mapFile({ fd, start: 0x2010n, length: 0x1000n });
    assert.equal(auto.ret, 0);
    assert.equal(auto.out.iova % 0x1000n, 0x10n);
    const areas = t.areas();
    assert.equal(areas.length, 2);
    assert.ok(areas.every((a) => a.pages?.type === 'file' && a.storageDomain === undefined));
    // COPY takes file pages along; UNMAP removes them.
    const dst = t.ioasAlloc();
    const copy = t.call(ioctl.IOMMU_IOAS_COPY, u.iommuIoasCopy, {
      flags: FIXED,
      dst_ioas_id: dst,
      src_ioas_id: t.ioas,
      length: 0x3000n,
      dst_iova: 0x200000n,
      src_iova: 0x100000n,
    });
    assert.equal(copy.ret, 0);
    assert.equal(t.unmap(0x100000n, 0x3000n), 0);
    assert.equal(t.unmap(0x200000n, 0x3000n, dst), 0);
  });

  it('cannot pin file pages: EINVAL with a domain, and a domain cannot be added over them', () => {
    const t = setup({ bind: 'iommu' });
    const fd = t.proc.eventfd();
    assert.equal(t.mapFile({ fd, flags: FIXED, iova: 0x100000n }).ret, 0);
    // HWPT_ALLOC fills the new domain from every area: the file area cannot be pinned.
    const hwpt = t.call(ioctl.IOMMU_HWPT_ALLOC, u.iommuHwptAlloc, {
      dev_id: t.devid,
      pt_id: t.ioas,
    });
    assert.equal(hwpt.ret, -Errno.EINVAL);
    assert.equal(t.attach(t.ioas), -Errno.EINVAL);
    assert.equal(t.unmap(0x100000n, 0x1000n), 0);
    // With a domain in place, MAP_FILE itself fails and leaves nothing behind.
    assert.equal(t.attach(t.ioas), 0);
    assert.equal(t.mapFile({ fd, flags: FIXED, iova: 0x100000n }).ret, -Errno.EINVAL);
    assert.equal(t.unmap(0x100000n, 0x1000n), -Errno.ENOENT);
  });

  it('holds an emulated file until the last area using it is gone (get_file)', () => {
    const t = setup();
    const other = t.proc.open('/dev/iommu');
    assert.equal(t.emu.kernel.iommufd.contexts.size, 2);
    assert.equal(t.mapFile({ fd: other, flags: FIXED, iova: 0x100000n }).ret, 0);
    assert.equal(t.proc.close(other), 0);
    assert.equal(t.emu.kernel.iommufd.contexts.size, 2);
    assert.equal(t.unmap(0x100000n, 0x1000n), 0);
    assert.equal(t.emu.kernel.iommufd.contexts.size, 1);
  });
});

describe('IOMMU_IOAS_CHANGE_PROCESS', () => {
  it('checks __reserved, succeeds with nothing mapped, and refuses MAP areas', () => {
    const t = setup();
    assert.equal(t.changeProcess(1), -Errno.EOPNOTSUPP);
    assert.equal(t.changeProcess(), 0); // one empty IOAS
    const va = t.proc.alloc(0x1000n);
    const map = t.call(ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      flags: FIXED,
      ioas_id: t.ioas,
      user_va: va,
      length: 0x1000n,
      iova: 0x100000n,
    });
    assert.equal(map.ret, 0);
    assert.equal(t.changeProcess(), -Errno.EINVAL);
    // A file area does not make the user area movable.
    assert.equal(t.mapFile({ fd: t.proc.eventfd(), flags: FIXED, iova: 0x200000n }).ret, 0);
    assert.equal(t.changeProcess(), -Errno.EINVAL);
    assert.equal(t.unmap(0x100000n, 0x1000n), 0);
    assert.equal(t.changeProcess(), 0);
    // No IOAS at all.
    const empty = setup();
    assert.equal(empty.call(ioctl.IOMMU_DESTROY, u.iommuDestroy, { id: empty.ioas }).ret, 0);
    assert.equal(empty.changeProcess(), 0);
  });

  it('moves file mappings to the calling process, all of them', () => {
    const t = setup();
    assert.equal(t.mapFile({ fd: t.proc.eventfd(), flags: FIXED, iova: 0x100000n }).ret, 0);
    const other = t.ioasAlloc();
    const copy = t.call(ioctl.IOMMU_IOAS_COPY, u.iommuIoasCopy, {
      flags: FIXED,
      dst_ioas_id: other,
      src_ioas_id: t.ioas,
      length: 0x1000n,
      dst_iova: 0x100000n,
      src_iova: 0x100000n,
    });
    assert.equal(copy.ret, 0);
    const child = t.proc.fork();
    const ret = child.ioctlStruct(
      t.fd,
      ioctl.IOMMU_IOAS_CHANGE_PROCESS,
      u.iommuIoasChangeProcess,
      {},
    );
    assert.equal(ret.ret, 0);
    const pages = t.areas().map((area) => area.pages!);
    assert.equal(pages.length, 2);
    assert.equal(pages[0], pages[1]);
    assert.equal(pages[0]!.owner.mm, child.memory.mm);
    assert.equal(pages[0]!.memory, child.memory);
  });
});

describe('vIOMMU commands', () => {
  it('VIOMMU_ALLOC: flags and type, then the device, then no vIOMMU support', () => {
    for (const bind of ['iommu', 'noiommu'] as const) {
      const t = setup({ bind });
      const alloc = (
        value: Partial<{
          flags: number;
          type: number;
          dev_id: number;
          hwpt_id: number;
          __reserved: number;
        }>,
      ) => t.call(ioctl.IOMMU_VIOMMU_ALLOC, u.iommuViommuAlloc, value).ret;
      const smmu = u.IOMMU_VIOMMU_TYPE_ARM_SMMUV3;
      assert.equal(alloc({ flags: 1, type: smmu, dev_id: 999 }), -Errno.EOPNOTSUPP);
      assert.equal(alloc({ type: u.IOMMU_VIOMMU_TYPE_DEFAULT, dev_id: 999 }), -Errno.EOPNOTSUPP);
      assert.equal(alloc({ type: smmu, dev_id: 999, __reserved: 1 }), -Errno.ENOENT);
      assert.equal(alloc({ type: smmu, dev_id: t.ioas }), -Errno.ENOENT);
      // The driver is asked before hwpt_id is looked up: a bogus one does not matter.
      assert.equal(alloc({ type: smmu, dev_id: t.devid, hwpt_id: 999 }), -Errno.EOPNOTSUPP);
      assert.equal(alloc({ type: 99, dev_id: t.devid, hwpt_id: t.ioas }), -Errno.EOPNOTSUPP);
    }
  });

  it('VDEVICE_ALLOC: the vIOMMU is looked up first and never exists', () => {
    const t = setup({ bind: 'iommu' });
    const alloc = (viommu_id: number, dev_id: number) =>
      t.call(ioctl.IOMMU_VDEVICE_ALLOC, u.iommuVdeviceAlloc, { viommu_id, dev_id, virt_id: 1n })
        .ret;
    assert.equal(alloc(5, 6), -Errno.ENOENT);
    assert.equal(alloc(5, t.devid), -Errno.ENOENT);
    assert.equal(alloc(t.ioas, t.devid), -Errno.ENOENT);
  });

  it('VEVENTQ_ALLOC: flags, reserved and type, then the depth, then the vIOMMU', () => {
    const t = setup();
    const alloc = (
      value: Partial<{
        flags: number;
        viommu_id: number;
        type: number;
        veventq_depth: number;
        __reserved: number;
      }>,
    ) => t.call(ioctl.IOMMU_VEVENTQ_ALLOC, u.iommuVeventqAlloc, { viommu_id: 99, ...value }).ret;
    const smmu = u.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3;
    assert.equal(alloc({ flags: 1, type: smmu, veventq_depth: 1 }), -Errno.EOPNOTSUPP);
    assert.equal(alloc({ __reserved: 1, type: smmu, veventq_depth: 1 }), -Errno.EOPNOTSUPP);
    assert.equal(
      alloc({ type: u.IOMMU_VEVENTQ_TYPE_DEFAULT, veventq_depth: 1 }),
      -Errno.EOPNOTSUPP,
    );
    assert.equal(alloc({ type: smmu }), -Errno.EINVAL);
    assert.equal(alloc({ type: smmu, veventq_depth: 1 }), -Errno.ENOENT);
    assert.equal(alloc({ type: 77, veventq_depth: 1, viommu_id: t.ioas }), -Errno.ENOENT);
  });

  it('HW_QUEUE_ALLOC: flags and type, length, overflow, then the vIOMMU', () => {
    const t = setup();
    const alloc = (
      value: Partial<{ flags: number; type: number; nesting_parent_iova: bigint; length: bigint }>,
    ) => t.call(ioctl.IOMMU_HW_QUEUE_ALLOC, u.iommuHwQueueAlloc, { viommu_id: 99, ...value }).ret;
    const cmdqv = u.IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV;
    assert.equal(alloc({ flags: 1, type: cmdqv, length: 0x1000n }), -Errno.EOPNOTSUPP);
    assert.equal(
      alloc({ type: u.IOMMU_HW_QUEUE_TYPE_DEFAULT, length: 0x1000n }),
      -Errno.EOPNOTSUPP,
    );
    assert.equal(alloc({ type: cmdqv }), -Errno.EINVAL);
    assert.equal(
      alloc({ type: cmdqv, nesting_parent_iova: U64_MAX, length: 2n }),
      -Errno.EOVERFLOW,
    );
    assert.equal(alloc({ type: cmdqv, nesting_parent_iova: U64_MAX, length: 1n }), -Errno.ENOENT);
    assert.equal(alloc({ type: cmdqv, length: 0x1000n }), -Errno.ENOENT);
  });
});

describe('leaks', () => {
  it('leaves nothing behind after every command has been tried', () => {
    const t = setup({ bind: 'iommu' });
    t.hwptAlloc();
    assert.equal(t.mapFile({ fd: t.proc.eventfd(), iova: 0n }).ret, -Errno.EINVAL);
    t.call(ioctl.IOMMU_FAULT_QUEUE_ALLOC, u.iommuFaultAlloc, {});
    t.changeProcess();
    t.proc.exit();
    assert.deepEqual(t.emu.kernel.iommufd.leaks(), []);
  });
});
