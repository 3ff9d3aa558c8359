/**
 * The PCI bus's driver core in sysfs: driver_override, the driver's bind, unbind, new_id and
 * remove_id, the bus's drivers_probe, the `driver` link present exactly while bound, and the
 * device lock an unbind waiting for the device's users holds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEmulator, type Emulator } from '../index.ts';
import { defaultPlatform, type PlatformConfig } from '../platform/platform-config.ts';
import { Errno } from '../uapi/errno.ts';
import { functionResetPossible } from '../vfio/pci-reset.ts';
import type { SimProcess } from './sim-process.ts';

const DEV = '/sys/devices/pci0000:00/0000:00:04.0';
const DRV = '/sys/bus/pci/drivers/vfio-pci';
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;

function read(proc: SimProcess, path: string): string | number {
  const fd = proc.open(path, O_RDONLY);
  if (fd < 0) return fd;
  const data = proc.pread(fd, 4096, 0n);
  proc.close(fd);
  return typeof data === 'number' ? data : new TextDecoder().decode(data);
}

/** open(O_WRONLY) + write, as `echo TEXT > PATH` does: the open's or the write's result. */
function write(proc: SimProcess, path: string, text: string): number {
  const fd = proc.open(path, O_WRONLY);
  if (fd < 0) return fd;
  const rc = proc.pwrite(fd, new TextEncoder().encode(text), 0n);
  proc.close(fd);
  return rc;
}

function bound(emu: Emulator, bdf: string): string | undefined {
  const link = emu.kernel.sysfs.lookup(`/sys/devices/pci0000:00/${bdf}/driver`);
  const back = emu.kernel.sysfs.lookup(`${DRV}/${bdf}`);
  assert.equal(link === undefined, back === undefined, 'the driver links come and go together');
  return link?.kind === 'link' ? link.target : undefined;
}

describe('driver_override', () => {
  it('boots as vfio-pci; a newline clears it, an empty write does nothing; PAGE_SIZE - 1 is too long', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    assert.equal(read(proc, `${DEV}/driver_override`), 'vfio-pci\n');
    assert.equal(write(proc, `${DEV}/driver_override`, ''), 0);
    assert.equal(read(proc, `${DEV}/driver_override`), 'vfio-pci\n', 'store is not called');
    assert.equal(write(proc, `${DEV}/driver_override`, '\n'), 1);
    assert.equal(read(proc, `${DEV}/driver_override`), '(null)\n');
    assert.equal(write(proc, `${DEV}/driver_override`, 'vfio-pci\n'), 9);
    assert.equal(read(proc, `${DEV}/driver_override`), 'vfio-pci\n');
    assert.equal(write(proc, `${DEV}/driver_override`, 'x'.repeat(4095)), -Errno.EINVAL);
    assert.equal(
      read(proc, `${DEV}/driver_override`),
      'vfio-pci\n',
      'a refused write changes nothing',
    );
    assert.equal(write(proc, `${DEV}/driver_override`, 'foo\nbar'), 7);
    assert.equal(read(proc, `${DEV}/driver_override`), 'foo\n', 'up to the first newline');
    assert.ok(bound(emu, '0000:00:04.0') !== undefined, 'setting it leaves the binding alone');
    emu.kernel.shutdown();
  });

  it('an override naming another driver keeps vfio-pci away; naming vfio-pci binds by drivers_probe', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    assert.equal(write(proc, `${DRV}/unbind`, '0000:00:04.0\n'), 13);
    assert.equal(bound(emu, '0000:00:04.0'), undefined);
    assert.equal(write(proc, `${DEV}/driver_override`, 'pci-stub\n'), 9);
    assert.equal(write(proc, '/sys/bus/pci/drivers_probe', '0000:00:04.0\n'), 13);
    assert.equal(bound(emu, '0000:00:04.0'), undefined, 'drivers_probe: no driver is no error');
    assert.equal(write(proc, `${DRV}/bind`, '0000:00:04.0'), -Errno.ENODEV);
    assert.equal(write(proc, `${DEV}/driver_override`, 'vfio-pci'), 8);
    assert.equal(write(proc, '/sys/bus/pci/drivers_probe', '0000:00:04.0'), 12);
    assert.equal(bound(emu, '0000:00:04.0'), '../../../bus/pci/drivers/vfio-pci');
    assert.ok(emu.kernel.devfs.lookup('/dev/vfio/devices/vfio0') !== undefined);
    emu.kernel.shutdown();
  });
});

describe("vfio-pci's bind, unbind, new_id and remove_id", () => {
  it('the kernel errnos: ENODEV, EBUSY, EINVAL, EEXIST', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    assert.equal(write(proc, `${DRV}/bind`, '0000:00:04.0'), -Errno.EBUSY, 'already bound');
    assert.equal(write(proc, `${DRV}/bind`, '0000:00:1f.0'), -Errno.ENODEV, 'no such device');
    assert.equal(write(proc, `${DRV}/unbind`, '0000:00:04.0 '), -Errno.ENODEV, 'not its name');
    assert.equal(write(proc, `${DRV}/unbind`, '0000:00:06.0'), -Errno.ENODEV, 'not bound');
    assert.equal(write(proc, '/sys/bus/pci/drivers_probe', 'nope'), -Errno.ENODEV);
    assert.equal(write(proc, `${DRV}/new_id`, '1234'), -Errno.EINVAL, 'fewer than 2 fields');
    assert.equal(write(proc, `${DRV}/new_id`, '1234 11e8 ffffffff ffffffff 0 0 5'), -Errno.EINVAL);
    assert.equal(write(proc, `${DRV}/new_id`, '1234 11e8'), 9);
    assert.equal(write(proc, `${DRV}/new_id`, '1234 11e8'), -Errno.EEXIST, 'it has that id now');
    assert.equal(write(proc, `${DRV}/remove_id`, '8086'), -Errno.EINVAL);
    assert.equal(write(proc, `${DRV}/remove_id`, '8086 1234'), -Errno.ENODEV);
    // The no-IOMMU device's probe fails with no-IOMMU mode off: bind says so, drivers_probe not.
    const lines: string[] = [];
    emu.kernel.events.subscribe((e) => {
      if (e.kind === 'log') lines.push(e.message);
    });
    assert.equal(write(proc, `${DRV}/bind`, '0000:00:06.0'), -Errno.EINVAL);
    assert.deepEqual(lines, [
      'vfio-pci 0000:00:06.0: probe with driver vfio-pci failed with error -22',
    ]);
    assert.equal(write(proc, '/sys/bus/pci/drivers_probe', '0000:00:06.0'), 12);
    assert.equal(bound(emu, '0000:00:06.0'), undefined);
    emu.kernel.shutdown();
  });

  it('new_id binds every unbound device it matches; without it or an override none binds', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    for (const bdf of ['0000:00:04.0', '0000:00:05.0']) {
      assert.equal(write(proc, `${DRV}/unbind`, bdf), 12);
      const dev = `/sys/bus/pci/devices/${bdf}`;
      assert.equal(write(proc, `${dev}/driver_override`, '\n'), 1);
    }
    assert.equal(emu.kernel.devfs.lookup('/dev/vfio/devices/vfio0'), undefined);
    assert.equal(write(proc, '/sys/bus/pci/drivers_probe', '0000:00:04.0'), 12);
    assert.equal(bound(emu, '0000:00:04.0'), undefined);
    assert.equal(write(proc, `${DRV}/bind`, '0000:00:04.0'), -Errno.ENODEV, 'nothing matches');
    assert.equal(write(proc, `${DRV}/new_id`, '0x1234 0x11e8\n'), 14);
    assert.ok(bound(emu, '0000:00:04.0') !== undefined);
    assert.ok(bound(emu, '0000:00:05.0') !== undefined);
    assert.equal(bound(emu, '0000:00:06.0'), undefined, 'its probe still fails');
    assert.equal(write(proc, `${DRV}/remove_id`, '1234 11e8'), 9);
    assert.equal(bound(emu, '0000:00:04.0') !== undefined, true, 'remove_id unbinds nothing');
    assert.equal(write(proc, `${DRV}/unbind`, '0000:00:04.0'), 12);
    assert.equal(write(proc, '/sys/bus/pci/drivers_probe', '0000:00:04.0'), 12);
    assert.equal(bound(emu, '0000:00:04.0'), undefined);
    emu.kernel.shutdown();
  });

  it('the device files follow the binding: uevent, vfio-dev, the group node', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    assert.match(read(proc, `${DEV}/uevent`) as string, /^DRIVER=vfio-pci\nPCI_CLASS=FF00\n/);
    assert.equal(read(proc, `${DEV}/vfio-dev/vfio0/dev`), '236:0\n');
    assert.equal(read(proc, `${DEV}/vfio-dev/vfio0/device/vendor`), '0x1234\n');
    assert.equal(read(proc, '/sys/class/vfio-dev/vfio0/subsystem/vfio0/dev'), '236:0\n');
    assert.equal(write(proc, `${DRV}/unbind`, '0000:00:04.0'), 12);
    assert.match(read(proc, `${DEV}/uevent`) as string, /^PCI_CLASS=FF00\nPCI_ID=1234:11E8\n/);
    assert.equal(read(proc, `${DEV}/vfio-dev/vfio0/dev`), -Errno.ENOENT);
    assert.equal(emu.kernel.devfs.lookup('/dev/vfio/0'), undefined);
    assert.equal(write(proc, `${DRV}/bind`, '0000:00:04.0'), 12);
    assert.equal(read(proc, `${DEV}/vfio-dev/vfio0/dev`), '236:0\n');
    assert.ok(emu.kernel.devfs.lookup('/dev/vfio/0') !== undefined);
    emu.kernel.shutdown();
  });

  it('an unbind waiting for an open cdev holds the device: its links go at once, a bind waits', async () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const cdev = proc.open('/dev/vfio/devices/vfio0');
    assert.ok(cdev >= 0);
    const unbind = proc.open(`${DRV}/unbind`, O_WRONLY);
    const bind = proc.open(`${DRV}/bind`, O_WRONLY);
    const override = proc.open(`${DEV}/driver_override`, O_WRONLY);
    const order: string[] = [];
    const text = new TextEncoder().encode('0000:00:04.0');
    const unbinding = proc.pwriteBlocking(unbind, text, 0n).then((n) => order.push(`unbind ${n}`));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(bound(emu, '0000:00:04.0'), undefined, 'driver_sysfs_remove() runs first');
    const binding = proc.pwriteBlocking(bind, text, 0n).then((n) => order.push(`bind ${n}`));
    // driver_override takes no device lock: it is stored at once.
    const setting = proc
      .pwriteBlocking(override, new TextEncoder().encode('vfio-pci'), 0n)
      .then((n) => order.push(`override ${n}`));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, ['override 8'], 'bind waits for the device lock, the override not');
    assert.equal(proc.close(cdev), 0);
    await Promise.all([unbinding, binding, setting]);
    assert.deepEqual(order, ['override 8', 'unbind 12', 'bind 12']);
    assert.ok(bound(emu, '0000:00:04.0') !== undefined);
    proc.exit();
    emu.kernel.shutdown();
  });

  it('drivers_probe during a waiting unbind returns at once and binds nothing', async () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const cdev = proc.open('/dev/vfio/devices/vfio0');
    assert.ok(cdev >= 0);
    const unbind = proc.open(`${DRV}/unbind`, O_WRONLY);
    const probe = proc.open('/sys/bus/pci/drivers_probe', O_WRONLY);
    const text = new TextEncoder().encode('0000:00:04.0');
    const unbinding = proc.pwriteBlocking(unbind, text, 0n);
    await new Promise((resolve) => setImmediate(resolve));
    // bus_rescan_devices_helper() sees dev->driver still set: nothing to attach.
    assert.equal(proc.pwrite(probe, text, 0n), 12);
    assert.equal(proc.close(cdev), 0);
    assert.equal(await unbinding, 12);
    assert.equal(bound(emu, '0000:00:04.0'), undefined, 'the device ends unbound');
    proc.exit();
    emu.kernel.shutdown();
  });

  it('new_id during a waiting unbind waits for the device lock, then probes the device', async () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    assert.equal(write(proc, `${DEV}/driver_override`, '\n'), 1);
    const cdev = proc.open('/dev/vfio/devices/vfio0');
    assert.ok(cdev >= 0);
    const unbind = proc.open(`${DRV}/unbind`, O_WRONLY);
    const newId = proc.open(`${DRV}/new_id`, O_WRONLY);
    const order: string[] = [];
    const unbinding = proc
      .pwriteBlocking(unbind, new TextEncoder().encode('0000:00:04.0'), 0n)
      .then((n) => order.push(`unbind ${n}`));
    await new Promise((resolve) => setImmediate(resolve));
    const adding = proc
      .pwriteBlocking(newId, new TextEncoder().encode('1234 11e8'), 0n)
      .then((n) => order.push(`new_id ${n}`));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, [], 'new_id waits for the device lock');
    assert.equal(proc.close(cdev), 0);
    await Promise.all([unbinding, adding]);
    assert.deepEqual(order, ['unbind 12', 'new_id 9']);
    assert.ok(bound(emu, '0000:00:04.0') !== undefined, 'probed once the unbind finished');
    proc.exit();
    emu.kernel.shutdown();
  });
});

describe('the PCI core files', () => {
  it('resourceN is 0600 with no read method; modalias, reserved_regions, the root bus', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const user = emu.spawn({ uid: 4242, gid: 4242, capEff: 0n });
    assert.equal(read(proc, `${DEV}/resource0`), -Errno.EIO);
    assert.equal(read(user, `${DEV}/resource0`), -Errno.EACCES);
    assert.equal(read(proc, `${DEV}/resource1`), -Errno.ENOENT, 'edu has one BAR');
    assert.equal(
      read(user, `${DEV}/modalias`),
      'pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00\n',
    );
    assert.equal(
      read(user, '/sys/kernel/iommu_groups/0/reserved_regions'),
      '0x00000000fee00000 0x00000000feefffff msi\n',
    );
    assert.equal(
      read(user, '/sys/bus/pci/devices/0000:00:05.0/subsystem/devices/0000:00:04.0/device'),
      '0x11e8\n',
    );
    assert.equal(read(user, '/sys/class/pci_bus/0000:00/device/0000:00:06.0/vendor'), '0x1234\n');
    assert.equal(read(user, `${DRV}/module/parameters/disable_idle_d3`), 'N\n');
    emu.kernel.shutdown();
  });
});

describe('permissions at open (may_open, kernfs_fop_open)', () => {
  it('a write-only attribute opens for writing only, even for root', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    assert.equal(proc.open(`${DRV}/unbind`, O_RDWR), -Errno.EACCES);
    assert.equal(proc.open(`${DRV}/unbind`, O_RDONLY), -Errno.EACCES);
    assert.equal(proc.open(`${DEV}/vendor`, O_WRONLY), -Errno.EACCES);
    emu.kernel.shutdown();
  });

  it('a user without CAP_DAC_OVERRIDE reads 0644 files, writes none of root', () => {
    const emu = createEmulator();
    const user = emu.spawn({ uid: 4242, gid: 4242, capEff: 0n });
    assert.equal(read(user, `${DEV}/driver_override`), 'vfio-pci\n');
    assert.equal(write(user, `${DEV}/driver_override`, 'vfio-pci'), -Errno.EACCES);
    assert.equal(write(user, `${DRV}/unbind`, '0000:00:04.0'), -Errno.EACCES);
    assert.equal(
      write(user, '/sys/module/vfio/parameters/enable_unsafe_noiommu_mode', 'Y'),
      -Errno.EACCES,
    );
    assert.ok(bound(emu, '0000:00:04.0') !== undefined);
    emu.kernel.shutdown();
  });

  it('owner, group and other bits of the nodes; CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH', () => {
    const emu = createEmulator({
      platform: defaultPlatformWith({ uid: 0, gid: 4243 }),
    });
    const stranger = emu.spawn({ uid: 4242, gid: 4242, capEff: 0n });
    const member = emu.spawn({ uid: 4242, gid: 4242, groups: [4243], capEff: 0n });
    const fsgid = emu.spawn({ uid: 4242, gid: 4243, capEff: 0n });
    // /dev/iommu is 0660: its group may open it, others may not.
    assert.equal(stranger.open('/dev/iommu'), -Errno.EACCES);
    assert.ok(member.open('/dev/iommu') >= 0);
    assert.ok(fsgid.open('/dev/iommu') >= 0);
    // The VFIO cdev is 0600: root's alone, whatever the group.
    assert.equal(member.open('/dev/vfio/devices/vfio0'), -Errno.EACCES);
    assert.equal(member.open('/dev/vfio/0'), -Errno.EACCES);
    // /dev/vfio/vfio is 0666.
    assert.ok(stranger.open('/dev/vfio/vfio') >= 0);
    const dacOverride = emu.spawn({ uid: 4242, gid: 4242, capEff: 1n << 1n });
    assert.ok(dacOverride.open('/dev/vfio/devices/vfio1') >= 0);
    const readSearch = emu.spawn({ uid: 4242, gid: 4242, capEff: 1n << 2n });
    assert.equal(readSearch.open('/dev/vfio/devices/vfio0', O_RDWR), -Errno.EACCES);
    assert.ok(readSearch.open('/dev/vfio/devices/vfio0', O_RDONLY) >= 0, 'reading only');
    assert.deepEqual(emu.kernel.vfs.stat(stranger.task(), '/dev/vfio/devices/vfio0'), {
      mode: 0o020600,
      owner: { uid: 0, gid: 4243 },
      rdev: { major: 236, minor: 0 },
    });
    for (const p of [stranger, member, fsgid, dacOverride, readSearch]) p.exit();
    emu.kernel.shutdown();
  });

  it('the default platform gives the nodes to the user running the emulator', () => {
    const emu = createEmulator();
    const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const proc = emu.spawn();
    for (const path of ['/dev/iommu', '/dev/vfio/0', '/dev/vfio/devices/vfio0']) {
      const st = emu.kernel.vfs.stat(proc.task(), path);
      assert.ok(typeof st === 'object');
      assert.deepEqual(st.owner, me, path);
    }
    const st = emu.kernel.vfs.stat(proc.task(), '/dev/vfio/vfio');
    assert.ok(typeof st === 'object');
    assert.deepEqual(st.owner, { uid: 0, gid: 0 });
    emu.kernel.shutdown();
  });
});

function defaultPlatformWith(owner: { uid: number; gid: number }): PlatformConfig {
  return { ...defaultPlatform(), deviceNodeOwner: owner };
}

describe('reset and reset_method', () => {
  function bootWithReset(): Emulator {
    const platform = defaultPlatform();
    const devices = platform.devices.map((d, i) =>
      i === 0 ? { ...d, resetMethods: ['pm', 'flr'] as const } : d,
    );
    return createEmulator({ platform: { ...platform, devices } });
  }

  it('list what the core found in its order; choosing, disabling and default', () => {
    const emu = bootWithReset();
    const proc = emu.spawn();
    const vdev = emu.kernel.vfio.devices.get('0000:00:04.0')!;
    assert.equal(read(proc, `${DEV}/reset_method`), 'flr pm\n');
    assert.equal(read(proc, '/sys/bus/pci/devices/0000:00:05.0/reset_method'), -Errno.ENOENT);
    assert.equal(read(proc, '/sys/bus/pci/devices/0000:00:05.0/reset'), -Errno.ENOENT);
    assert.equal(write(proc, `${DEV}/reset_method`, 'pm\n'), 3);
    assert.equal(read(proc, `${DEV}/reset_method`), 'pm\n');
    assert.equal(write(proc, `${DEV}/reset_method`, 'bus'), -Errno.EINVAL, 'not supported');
    assert.equal(write(proc, `${DEV}/reset_method`, 'flr nope'), -Errno.EINVAL);
    assert.equal(read(proc, `${DEV}/reset_method`), 'pm\n', 'a refused write changes nothing');
    assert.ok(functionResetPossible(vdev));
    assert.equal(write(proc, `${DEV}/reset_method`, '\n'), 1);
    assert.equal(read(proc, `${DEV}/reset_method`), '');
    assert.equal(functionResetPossible(vdev), false, 'VFIO finds no reset either');
    assert.equal(write(proc, `${DEV}/reset`, '1'), -Errno.ENOTTY);
    assert.equal(write(proc, `${DEV}/reset_method`, 'default'), 7);
    assert.equal(read(proc, `${DEV}/reset_method`), 'flr pm\n');
    emu.kernel.shutdown();
  });

  it('reset takes "1" only and keeps config space', () => {
    const emu = bootWithReset();
    const proc = emu.spawn();
    const pci = emu.kernel.machine.device('0000:00:04.0')!;
    pci.configWrite(0x04, 2, 0x0006);
    assert.equal(write(proc, `${DEV}/reset`, '2'), -Errno.EINVAL);
    assert.equal(write(proc, `${DEV}/reset`, 'yes'), -Errno.EINVAL);
    assert.equal(write(proc, `${DEV}/reset`, '1\n'), 2);
    assert.equal(pci.configRead(0x04, 2), 0x0006, 'restored after the reset');
    assert.equal(write(proc, `${DEV}/reset`, '+1'), 2, "kstrtoul takes a leading '+'");
    assert.equal(write(proc, `${DEV}/reset`, '0x1'), 3);
    assert.equal(write(proc, `${DEV}/reset`, '+-1'), -Errno.EINVAL);
    assert.equal(proc.open(`${DEV}/reset`, O_RDONLY), -Errno.EACCES);
    emu.kernel.shutdown();
  });
});
