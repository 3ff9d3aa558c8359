import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { CAP_SYS_RAWIO } from '../host/credentials.ts';
import type { SimProcess } from '../host/sim-process.ts';
import { createEmulator } from '../index.ts';
import { EduReg } from '../platform/edu.ts';
import { defaultPlatform } from '../platform/platform-config.ts';
import type { EmuEvent } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as v from '../uapi/vfio.ts';

const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;
const FIXED = RW | u.IOMMU_IOAS_MAP_FIXED_IOVA;
const CONFIG = 7n << 40n;

function u64(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

/** A userspace driver's view of one edu device through its cdev. */
class EduDriver {
  readonly proc: SimProcess;
  readonly fd: number;

  constructor(proc: SimProcess, fd: number) {
    this.proc = proc;
    this.fd = fd;
  }

  reg32(off: bigint): number {
    const b = this.proc.pread(this.fd, 4, off);
    assert.ok(b instanceof Uint8Array);
    return new DataView(b.buffer, b.byteOffset).getUint32(0, true);
  }

  write64(off: bigint, value: bigint): void {
    assert.equal(this.proc.pwrite(this.fd, u64(value), off), 8);
  }

  enableBusMaster(): void {
    const cmd = this.proc.pread(this.fd, 2, CONFIG + 4n) as Uint8Array;
    const value = cmd[0]! | (cmd[1]! << 8) | 0x6;
    assert.equal(
      this.proc.pwrite(this.fd, new Uint8Array([value & 0xff, value >> 8]), CONFIG + 4n),
      2,
    );
  }

  async dma(src: bigint, dst: bigint, count: bigint, toRam: boolean): Promise<void> {
    this.write64(EduReg.DMA_SRC, src);
    this.write64(EduReg.DMA_DST, dst);
    this.write64(EduReg.DMA_COUNT, count);
    this.write64(EduReg.DMA_CMD, toRam ? 3n : 1n);
    for (let i = 0; i < 1000 && this.reg32(EduReg.DMA_CMD) & 1; i++) await tick();
    assert.equal(this.reg32(EduReg.DMA_CMD) & 1, 0, 'DMA did not complete');
  }
}

function open(proc: SimProcess, path: string): number {
  const fd = proc.open(path);
  assert.ok(fd >= 0, `open ${path}: ${fd}`);
  return fd;
}

function bindAndAttach(proc: SimProcess, devfd: number, iommufd: number) {
  const bind = proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
    iommufd,
  });
  assert.equal(bind.ret, 0);
  const ioas = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
  assert.equal(ioas.ret, 0);
  const ioasId = ioas.out.out_ioas_id;
  const attach = proc.ioctlStruct(
    devfd,
    ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    v.vfioDeviceAttachIommufdPt,
    {
      pt_id: ioasId,
    },
  );
  assert.equal(attach.ret, 0);
  return { devid: bind.out.out_devid, ioasId, hwptId: attach.out.pt_id };
}

describe('edu behind an IOMMU through the VFIO cdev', () => {
  it('accepts only BIND before binding, then DMAs through the IOMMU page table', async () => {
    const emu = createEmulator();
    const events: EmuEvent[] = [];
    emu.kernel.events.subscribe((e) => events.push(e));
    const proc = emu.spawn();
    const devfd = open(proc, '/dev/vfio/devices/vfio0');
    const iommufd = open(proc, '/dev/iommu');
    assert.equal(
      proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_GET_INFO, v.vfioDeviceInfo, {}).ret,
      -Errno.EINVAL,
    );
    assert.equal(proc.pread(devfd, 4, 0n), -Errno.EINVAL);

    const ids = bindAndAttach(proc, devfd, iommufd);
    assert.notEqual(ids.hwptId, ids.ioasId);
    // DESTROY of a bound device or an auto domain in use is EBUSY.
    assert.equal(
      proc.ioctlStruct(iommufd, ioctl.IOMMU_DESTROY, u.iommuDestroy, { id: ids.devid }).ret,
      -Errno.EBUSY,
    );
    assert.equal(
      proc.ioctlStruct(iommufd, ioctl.IOMMU_DESTROY, u.iommuDestroy, { id: ids.hwptId }).ret,
      -Errno.EBUSY,
    );

    // The MSI window is reserved now and the alignment is the page size.
    const ranges = proc.alloc(0x1000n);
    const r = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_IOVA_RANGES, u.iommuIoasIovaRanges, {
      ioas_id: ids.ioasId,
      num_iovas: 4,
      allowed_iovas: ranges,
    });
    assert.equal(r.ret, 0);
    assert.equal(r.out.out_iova_alignment, 4096n);
    const first = proc.memory.read(ranges, 16)!;
    assert.equal(new DataView(first.buffer).getBigUint64(8, true), 0xfedfffffn);

    const info = proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_GET_INFO, v.vfioDeviceInfo, {});
    assert.deepEqual(
      [info.ret, info.out.flags, info.out.num_regions, info.out.num_irqs],
      [0, 2, 9, 5],
    );

    const edu = new EduDriver(proc, devfd);
    assert.equal(edu.reg32(EduReg.ID), 0x010000ed);
    edu.enableBusMaster();

    const buf = proc.alloc(0x4000n);
    proc.memory.write(buf, new TextEncoder().encode('hello through the IOMMU'));
    const map = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: ids.ioasId,
      flags: FIXED,
      user_va: buf,
      length: 0x4000n,
      iova: 0x100000n,
    });
    assert.equal(map.ret, 0);
    await edu.dma(0x100000n, 0x40000n, 23n, false);
    await edu.dma(0x40000n, 0x102000n, 23n, true);
    assert.equal(
      new TextDecoder().decode(proc.memory.read(buf + 0x2000n, 23)),
      'hello through the IOMMU',
    );

    // An unmapped IOVA is an IOMMU fault and no byte moves.
    await edu.dma(0x40000n, 0x900000n, 8n, true);
    assert.ok(events.some((e) => e.kind === 'iommu-fault' && e.iova === 0x900000n));

    // After detach the device is blocked.
    const detach = proc.ioctlStruct(
      devfd,
      ioctl.VFIO_DEVICE_DETACH_IOMMUFD_PT,
      v.vfioDeviceDetachIommufdPt,
      {},
    );
    assert.equal(detach.ret, 0);
    const faults = events.filter((e) => e.kind === 'iommu-fault').length;
    await edu.dma(0x40000n, 0x100000n, 8n, true);
    assert.equal(events.filter((e) => e.kind === 'iommu-fault').length, faults + 1);

    proc.exit();
    await emu.kernel.machine.whenIdle();
    assert.deepEqual(emu.kernel.leaks(), []);
  });
});

describe('edu with no IOMMU (unsafe no-IOMMU mode)', () => {
  it('has no VFIO node unless the mode is on', () => {
    const emu = createEmulator();
    assert.equal(emu.spawn().open('/dev/vfio/devices/noiommu-vfio2'), -Errno.ENOENT);
    assert.equal(emu.kernel.tainted, 0);
  });

  it('needs CAP_SYS_RAWIO to open, binds, and DMAs to the physical address GET_PA returns', async () => {
    const emu = createEmulator({ enableUnsafeNoiommuMode: true });
    assert.notEqual(emu.kernel.tainted & (1 << 6), 0);
    const events: EmuEvent[] = [];
    emu.kernel.events.subscribe((e) => events.push(e));
    const weak = emu.spawn();
    weak.setCapability(CAP_SYS_RAWIO, false);
    assert.equal(weak.open('/dev/vfio/devices/noiommu-vfio2'), -Errno.EPERM);

    const proc = emu.spawn();
    const devfd = open(proc, '/dev/vfio/devices/noiommu-vfio2');
    const iommufd = open(proc, '/dev/iommu');
    const ids = bindAndAttach(proc, devfd, iommufd);
    // No reserved IOVA: one range over the whole space (EMSGSIZE with room for none), and
    // 4 KiB alignment from the software table.
    const r = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_IOVA_RANGES, u.iommuIoasIovaRanges, {
      ioas_id: ids.ioasId,
      num_iovas: 0,
    });
    assert.deepEqual(
      [r.ret, r.out.num_iovas, r.out.out_iova_alignment],
      [-Errno.EMSGSIZE, 1, 4096n],
    );

    const buf = proc.alloc(0x2000n);
    proc.memory.write(buf, new TextEncoder().encode('physical'));
    const map = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: ids.ioasId,
      flags: FIXED,
      user_va: buf,
      length: 0x2000n,
      iova: buf,
    });
    assert.equal(map.ret, 0);
    const getPa = (iova: bigint, length: bigint) =>
      proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_NOIOMMU_GET_PA, u.iommuIoasNoiommuGetPa, {
        ioas_id: ids.ioasId,
        iova,
        length,
      });
    const pa = getPa(buf + 0x10n, 0x100000n);
    assert.equal(pa.ret, 0);
    assert.equal(pa.out.out_phys % 4096n, 0x10n);
    // 4 KiB anonymous memory gets scattered frames: the run ends at the page boundary.
    assert.equal(pa.out.length, 0x1000n - 0x10n);
    assert.equal(getPa(buf, 0n).ret, -Errno.EINVAL);
    assert.equal(getPa(buf + 0x2000n, 1n).ret, -Errno.ENOENT);
    proc.setCapability(CAP_SYS_RAWIO, false);
    assert.equal(getPa(buf, 1n).ret, -Errno.EPERM);
    proc.setCapability(CAP_SYS_RAWIO, true);

    const edu = new EduDriver(proc, devfd);
    edu.enableBusMaster();
    await edu.dma(pa.out.out_phys - 0x10n, 0x40000n, 8n, false);
    const pa2 = getPa(buf + 0x1000n, 0x1000n).out.out_phys;
    await edu.dma(0x40000n, pa2, 8n, true);
    assert.equal(new TextDecoder().decode(proc.memory.read(buf + 0x1000n, 8)), 'physical');
    assert.ok(!events.some((e) => e.kind === 'unsafe-dma'));

    // A PA that is no pinned page of the client: the DMA hits simulated RAM, loudly.
    await edu.dma(0x40000n, 0x3000_0000n, 8n, true);
    assert.ok(events.some((e) => e.kind === 'unsafe-dma' && e.pa === 0x3000_0000n));

    // Detach drops the auto domain: GET_PA has no no-IOMMU domain to ask.
    assert.equal(
      proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_DETACH_IOMMUFD_PT, v.vfioDeviceDetachIommufdPt, {})
        .ret,
      0,
    );
    assert.equal(getPa(buf, 1n).ret, -Errno.EOPNOTSUPP);
    proc.exit();
    await emu.kernel.machine.whenIdle();
    assert.deepEqual(emu.kernel.leaks(), []);
  });
});

describe('legacy group nodes', () => {
  it('a no-IOMMU group taints and says so, and logs every device fd it hands out', () => {
    const lines: string[] = [];
    const emu = createEmulator({ enableUnsafeNoiommuMode: true });
    assert.notEqual(emu.kernel.tainted & (1 << 6), 0);
    emu.kernel.events.subscribe((e) => {
      if (e.kind === 'log') lines.push(e.message);
    });
    const proc = emu.spawn();
    // Bound again, the device registers again: both taint lines, the group's first.
    const unbind = proc.open('/sys/bus/pci/drivers/vfio-pci/unbind', 1 /* O_WRONLY */);
    assert.equal(proc.pwrite(unbind, new TextEncoder().encode('0000:00:06.0'), 0n), 12);
    const bindFd = proc.open('/sys/bus/pci/drivers/vfio-pci/bind', 1 /* O_WRONLY */);
    assert.equal(proc.pwrite(bindFd, new TextEncoder().encode('0000:00:06.0'), 0n), 12);
    assert.deepEqual(lines, [
      'vfio-pci 0000:00:06.0: Adding kernel taint for vfio-noiommu group on device',
      'vfio-pci 0000:00:06.0: Adding kernel taint for vfio-noiommu cdev',
    ]);
    const container = open(proc, '/dev/vfio/vfio');
    const group = open(proc, '/dev/vfio/noiommu-2');
    const fdArg = proc.alloc(4096n, new Uint8Array(new Int32Array([container]).buffer));
    assert.equal(proc.ioctl(group, ioctl.VFIO_GROUP_SET_CONTAINER, fdArg), 0);
    assert.equal(proc.ioctl(container, ioctl.VFIO_SET_IOMMU, v.VFIO_NOIOMMU_IOMMU), 0);
    const name = proc.alloc(4096n, new TextEncoder().encode('0000:00:06.0\0'));
    lines.length = 0;
    assert.ok(proc.ioctl(group, ioctl.VFIO_GROUP_GET_DEVICE_FD, name) >= 0);
    assert.ok(proc.ioctl(group, ioctl.VFIO_GROUP_GET_DEVICE_FD, name) >= 0);
    const opened = `vfio-pci 0000:00:06.0: vfio-noiommu device opened by user (node:${proc.pid})`;
    assert.deepEqual(lines, [opened, opened]);
    proc.exit();
  });

  it('exist per group, open once, and exclude binding through the cdev', () => {
    const emu = createEmulator({ enableUnsafeNoiommuMode: true });
    const proc = emu.spawn();
    const status = (fd: number) =>
      proc.ioctlStruct(fd, ioctl.VFIO_GROUP_GET_STATUS, v.vfioGroupStatus, {});
    // The no-IOMMU device's placeholder group takes the lowest id the IOMMU groups left.
    assert.deepEqual(
      emu.kernel.devfs.paths().filter((p) => /^\/dev\/vfio\/[^/]+$/.test(p)),
      ['/dev/vfio/0', '/dev/vfio/1', '/dev/vfio/noiommu-2', '/dev/vfio/vfio'],
    );
    const weak = emu.spawn();
    weak.setCapability(CAP_SYS_RAWIO, false);
    assert.equal(weak.open('/dev/vfio/noiommu-2'), -Errno.EPERM);
    assert.ok(weak.open('/dev/vfio/0') >= 0);
    weak.exit();

    const group = open(proc, '/dev/vfio/noiommu-2');
    assert.equal(proc.open('/dev/vfio/noiommu-2'), -Errno.EBUSY);
    assert.deepEqual([status(group).ret, status(group).out.flags], [0, v.VFIO_GROUP_FLAGS_VIABLE]);
    const devfd = open(proc, '/dev/vfio/devices/noiommu-vfio2');
    const iommufd = open(proc, '/dev/iommu');
    const bind = () =>
      proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, { iommufd })
        .ret;
    assert.equal(bind(), -Errno.EBUSY);
    proc.close(group);
    assert.equal(bind(), 0);
    assert.equal(proc.open('/dev/vfio/noiommu-2'), -Errno.EBUSY);

    // The same exclusion for an IOMMU group; the other group stays free and viable.
    const dev0 = open(proc, '/dev/vfio/devices/vfio0');
    assert.equal(
      proc.ioctlStruct(dev0, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, { iommufd })
        .ret,
      0,
    );
    assert.equal(proc.open('/dev/vfio/0'), -Errno.EBUSY);
    const group1 = open(proc, '/dev/vfio/1');
    assert.equal(status(group1).out.flags, v.VFIO_GROUP_FLAGS_VIABLE);
    proc.close(group1);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });
});

describe('review fixes', () => {
  it('an unbind waits for an open cdev, even an unbound one, to close', async () => {
    const emu = createEmulator();
    const warnings: string[] = [];
    emu.kernel.events.subscribe((e) => {
      if (e.kind === 'log' && e.level === 'warn') warnings.push(e.message);
    });
    const proc = emu.spawn();
    const devfd = open(proc, '/dev/vfio/devices/vfio0');
    const unbind = proc.open('/sys/bus/pci/drivers/vfio-pci/unbind', 1);
    let returned: number | undefined;
    const writing = proc
      .pwriteBlocking(unbind, new TextEncoder().encode('0000:00:04.0\n'), 0n)
      .then((n) => {
        returned = n;
      });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(returned, undefined, 'the writer is blocked');
    assert.deepEqual(warnings, [
      'vfio-pci 0000:00:04.0: No device request channel registered, blocked until released by user',
    ]);
    // The node is gone at once; the open fd keeps working.
    assert.equal(proc.open('/dev/vfio/devices/vfio0'), -Errno.ENOENT);
    assert.throws(() => proc.pwrite(unbind, new TextEncoder().encode('0000:00:04.0\n'), 0n));
    proc.close(devfd);
    await writing;
    assert.equal(returned, 13);
    assert.equal(
      proc.pwrite(unbind, new TextEncoder().encode('0000:00:04.0\n'), 0n),
      -Errno.ENODEV,
    );
    proc.exit();
    emu.kernel.shutdown();
  });

  it('a waiting unbind signals the REQ eventfd; a second unbind waits with it', async () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const devfd = open(proc, '/dev/vfio/devices/vfio1');
    const iommufd = open(proc, '/dev/iommu');
    assert.equal(
      proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, { iommufd })
        .ret,
      0,
    );
    const efd = proc.eventfd();
    // struct vfio_irq_set for REQ with one eventfd after the 20-byte header.
    const set = new Uint8Array(24);
    const view = new DataView(set.buffer);
    view.setUint32(0, 24, true);
    view.setUint32(4, v.VFIO_IRQ_SET_DATA_EVENTFD | v.VFIO_IRQ_SET_ACTION_TRIGGER, true);
    view.setUint32(8, v.VFIO_PCI_REQ_IRQ_INDEX, true);
    view.setUint32(16, 1, true);
    view.setInt32(20, efd, true);
    const va = proc.scratchArea();
    proc.memory.write(va, set);
    assert.equal(proc.ioctl(devfd, ioctl.VFIO_DEVICE_SET_IRQS, va), 0);
    assert.equal(proc.eventfdRead(efd), 0n);

    const unbind = proc.open('/sys/bus/pci/drivers/vfio-pci/unbind', 1);
    const text = new TextEncoder().encode('0000:00:05.0\n');
    const results: number[] = [];
    const first = proc.pwriteBlocking(unbind, text, 0n).then((n) => results.push(n));
    assert.equal(proc.eventfdRead(efd), 1n, 'the user is asked to release the device');
    const second = proc.pwriteBlocking(unbind, text, 0n).then((n) => results.push(n));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(results, []);
    // The device still works for its user until it lets go.
    const info = proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_GET_INFO, v.vfioDeviceInfo, {});
    assert.equal(info.ret, 0);
    proc.close(devfd);
    await Promise.all([first, second]);
    assert.deepEqual(results, [13, 13]);
    assert.equal(emu.kernel.vfio.devices.has('0000:00:05.0'), false);
    proc.close(iommufd);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
    emu.kernel.shutdown();
  });

  it('SET_IRQS MSI with an eventfd block of zero vectors: ERANGE when MSI is off', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const devfd = open(proc, '/dev/vfio/devices/vfio0');
    const iommufd = open(proc, '/dev/iommu');
    assert.equal(
      proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, { iommufd })
        .ret,
      0,
    );
    const r = proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_SET_IRQS, v.vfioIrqSet, {
      flags: v.VFIO_IRQ_SET_DATA_EVENTFD | v.VFIO_IRQ_SET_ACTION_TRIGGER,
      index: v.VFIO_PCI_MSI_IRQ_INDEX,
      start: 0,
      count: 0,
    });
    assert.equal(r.ret, -Errno.ERANGE);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });
});

describe('VFIO references and the files that hold them', () => {
  const unbindText = (bdf: string) => new TextEncoder().encode(`${bdf}\n`);

  it('a cdev open that fails at its allocation (fail-nth 1) lets the device be unbound', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const vdev = emu.kernel.vfio.devices.get('0000:00:04.0')!;
    proc.failNth.arm(1);
    assert.equal(proc.open('/dev/vfio/devices/vfio0'), -Errno.ENOMEM);
    assert.equal(proc.failNth.lastFired, 'kmalloc');
    assert.equal(vdev.registration.read(), 1, 'the failed open dropped what it took');
    assert.deepEqual(emu.kernel.leaks(), []);
    const unbind = proc.open('/sys/bus/pci/drivers/vfio-pci/unbind', 1 /* O_WRONLY */);
    assert.equal(proc.pwrite(unbind, unbindText('0000:00:04.0'), 0n), 13);
    assert.equal(vdev.registration.read(), 0);
    assert.equal(proc.open('/dev/vfio/devices/vfio0'), -Errno.ENOENT);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it('a cdev open refused for CAP_SYS_RAWIO takes no reference', () => {
    const emu = createEmulator({ enableUnsafeNoiommuMode: true });
    const proc = emu.spawn();
    proc.setCapability(CAP_SYS_RAWIO, false);
    assert.equal(proc.open('/dev/vfio/devices/noiommu-vfio2'), -Errno.EPERM);
    assert.equal(emu.kernel.vfio.devices.get('0000:00:06.0')!.registration.read(), 1);
    proc.exit();
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it('counts every open file by kind, and each VFIO counter follows its files', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const files = emu.kernel.openFiles;
    const vdev = emu.kernel.vfio.devices.get('0000:00:04.0')!;
    const count = () =>
      ['iommufd', 'vfio-container', 'vfio-cdev', 'vfio-group', 'sysfs', 'eventfd'].map(
        (k) => files.ofKind(k as Parameters<typeof files.ofKind>[0]).length,
      );
    const iommufd = open(proc, '/dev/iommu');
    const container = open(proc, '/dev/vfio/vfio');
    const dev = open(proc, '/dev/vfio/devices/vfio0');
    const group1 = open(proc, '/dev/vfio/1');
    assert.ok(proc.open('/sys/devices/pci0000:00/0000:00:04.0/vendor', 0) >= 0);
    proc.eventfd();
    assert.deepEqual(count(), [1, 1, 1, 1, 1, 1]);
    assert.equal(vdev.registration.read(), 2);
    // dup() and fork() share the file: still one open file, one reference on the device.
    const child = proc.fork();
    proc.dup(dev);
    assert.equal(files.ofKind('vfio-cdev').length, 1);
    assert.equal(vdev.registration.read(), 2);
    assert.equal(
      proc.ioctlStruct(dev, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, { iommufd })
        .ret,
      0,
    );
    assert.equal(vdev.openCount.read(), 1);
    assert.equal(vdev.group.cdevDeviceOpenCount.read(), 1);
    assert.notEqual(emu.kernel.vfio.groups.get(1)!.openedFile, undefined);
    child.exit();
    proc.close(group1);
    assert.equal(emu.kernel.vfio.groups.get(1)!.openedFile, undefined);
    proc.close(container);
    proc.exit();
    assert.deepEqual(count(), [0, 0, 0, 0, 0, 0]);
    assert.equal(vdev.registration.read(), 1);
    assert.equal(vdev.openCount.read(), 0);
    assert.equal(vdev.group.cdevDeviceOpenCount.read(), 0);
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it('leaks() names a reference no file explains', () => {
    const emu = createEmulator();
    const vdev = emu.kernel.vfio.devices.get('0000:00:04.0')!;
    vdev.registration.inc();
    vdev.openCount.inc();
    vdev.group.cdevDeviceOpenCount.inc();
    assert.deepEqual(emu.kernel.leaks(), [
      'vfio0 has 1 registration references left',
      'vfio0 still has open count 1',
      'vfio group 0 still blocked by 1 cdev opens',
    ]);
  });
});

describe('the driver link in sysfs', () => {
  const DEV = '/sys/devices/pci0000:00/0000:00:04.0';

  it('unbinding from vfio-pci removes it, binding puts it back', () => {
    const emu = createEmulator();
    const sysfs = emu.kernel.sysfs;
    const proc = emu.spawn();
    // bind and unbind are 0200: even root opens them for writing only.
    const write = (path: string, text: string) =>
      proc.pwrite(proc.open(path, 1 /* O_WRONLY */), new TextEncoder().encode(text), 0n);
    assert.deepEqual(sysfs.lookup(`${DEV}/driver`), {
      kind: 'link',
      path: `${DEV}/driver`,
      target: '../../../bus/pci/drivers/vfio-pci',
    });
    assert.equal(sysfs.lookup('/sys/bus/pci/drivers/vfio-pci/0000:00:04.0')?.kind, 'link');
    assert.equal(write('/sys/bus/pci/drivers/vfio-pci/unbind', '0000:00:04.0\n'), 13);
    assert.equal(sysfs.lookup(`${DEV}/driver`), undefined);
    assert.equal(sysfs.lookup('/sys/bus/pci/drivers/vfio-pci/0000:00:04.0'), undefined);
    // The device itself stays: the PCI core still has it.
    assert.equal(sysfs.lookup(`${DEV}/vendor`)?.kind, 'attr');
    assert.equal(write('/sys/bus/pci/drivers/vfio-pci/bind', '0000:00:04.0\n'), 13);
    assert.equal(sysfs.lookup(`${DEV}/driver`)?.kind, 'link');
    proc.exit();
  });

  it('a device behind an IOMMU without cache coherency is refused: EINVAL, no node, no driver', () => {
    const platform = defaultPlatform();
    const unit = platform.iommus[0]!;
    const incoherent = { ...unit, caps: { ...unit.caps, cacheCoherent: false } };
    const emu = createEmulator({ platform: { ...platform, iommus: [incoherent] } });
    const sysfs = emu.kernel.sysfs;
    assert.equal(sysfs.lookup('/sys/devices/pci0000:00/0000:00:04.0/driver'), undefined);
    assert.equal(emu.kernel.devfs.lookup('/dev/vfio/devices/vfio0'), undefined);
    assert.equal(emu.kernel.devfs.lookup('/dev/vfio/0'), undefined);
    const proc = emu.spawn();
    const fd = proc.open('/sys/bus/pci/drivers/vfio-pci/bind', 1 /* O_WRONLY */);
    assert.equal(proc.pwrite(fd, new TextEncoder().encode('0000:00:04.0'), 0n), -Errno.EINVAL);
    assert.equal(sysfs.lookup('/sys/devices/pci0000:00/0000:00:04.0/driver'), undefined);
    assert.equal(
      sysfs.lookup('/sys/devices/pci0000:00/0000:00:04.0/vfio-dev/vfio0/dev'),
      undefined,
    );
    assert.equal(emu.kernel.vfio.groups.size, 0);
    proc.exit();
    emu.kernel.shutdown();
  });

  it('a device vfio-pci refused at boot (no IOMMU, mode off) has no driver', () => {
    const emu = createEmulator();
    assert.equal(emu.kernel.sysfs.lookup('/sys/devices/pci0000:00/0000:00:06.0/driver'), undefined);
    assert.equal(
      emu.kernel.sysfs.lookup('/sys/devices/pci0000:00/0000:00:06.0/vendor')?.kind,
      'attr',
    );
  });
});
