import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SimProcess } from '../host/sim-process.ts';
import { createEmulator, type Emulator } from '../index.ts';
import { iommuGroupDmaOwnerClaimed } from '../iommu/iommu.ts';
import { QEMU_VTD_CAP_REG, QEMU_VTD_ECAP_REG } from '../iommu/unit-driver.ts';
import { defaultPlatform, type PlatformConfig } from '../platform/platform-config.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as v from '../uapi/vfio.ts';

const PARAM = '/sys/module/iommufd/parameters/allow_unsafe_interrupts';

/**
 * The default machine, except that dmar0 (edu 04.0) cannot isolate MSIs; edu 05.0 sits behind
 * dmar1, which can; edu 06.0 has no IOMMU (no-IOMMU mode on).
 */
function platform(): PlatformConfig {
  const base = defaultPlatform();
  const dmar0 = { ...base.iommus[0]!, isolatedMsi: false };
  const dmar1 = { ...base.iommus[0]!, name: 'dmar1' };
  const devices = base.devices.map((d) =>
    d.bdf === '0000:00:05.0' ? { ...d, iommu: 'dmar1' } : d,
  );
  return { ...base, enableUnsafeNoiommuMode: true, iommus: [dmar0, dmar1], devices };
}

function bind(proc: SimProcess, devfd: number, iommufd: number): number {
  return proc.ioctlStruct(devfd, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, {
    iommufd,
  }).ret;
}

function readParam(proc: SimProcess): string {
  const fd = proc.open(PARAM, 0);
  assert.ok(fd >= 0, `open ${PARAM}: ${fd}`);
  const bytes = proc.pread(fd, 16, 0n);
  proc.close(fd);
  assert.ok(bytes instanceof Uint8Array);
  return new TextDecoder().decode(bytes);
}

function writeParam(proc: SimProcess, text: string): number {
  const fd = proc.open(PARAM, 1);
  if (fd < 0) return fd;
  const rc = proc.pwrite(fd, new TextEncoder().encode(text), 0n);
  proc.close(fd);
  return rc;
}

function setup(): { emu: Emulator; proc: SimProcess; iommufd: number; warnings: string[] } {
  const emu = createEmulator({ platform: platform() });
  const warnings: string[] = [];
  emu.kernel.events.subscribe((e) => {
    if (e.kind === 'log' && e.level === 'warn') warnings.push(e.message);
  });
  const proc = emu.spawn();
  const iommufd = proc.open('/dev/iommu');
  assert.ok(iommufd >= 0);
  return { emu, proc, iommufd, warnings };
}

describe('bind: MSI isolation and allow_unsafe_interrupts', () => {
  it('refuses a device whose IOMMU cannot isolate MSIs with EPERM, leaving nothing behind', () => {
    const { emu, proc, iommufd, warnings } = setup();
    assert.equal(readParam(proc), 'N\n');
    const dev = proc.open('/dev/vfio/devices/vfio0');
    assert.ok(dev >= 0);
    assert.equal(bind(proc, dev, iommufd), -Errno.EPERM);
    const ictx = [...emu.kernel.iommufd.contexts][0]!;
    assert.equal(ictx.objectCount, 0, 'the half-built DEVICE object is gone');
    assert.equal(ictx.groups.size, 0, 'and so is its igroup');
    assert.equal(iommuGroupDmaOwnerClaimed(emu.kernel.iommu.device('0000:00:04.0')!.group!), false);
    assert.deepEqual(
      warnings.filter((w) => w.includes('MSI')),
      [],
    );
    // Still unbound: every other call is EINVAL, and the group node may be opened.
    assert.equal(proc.ioctl(dev, ioctl.VFIO_DEVICE_DETACH_IOMMUFD_PT, 0n), -Errno.EINVAL);
    const group = proc.open('/dev/vfio/0');
    assert.ok(group >= 0, `group node: ${group}`);
    proc.close(group);
    proc.close(dev);
    proc.close(iommufd);
    assert.deepEqual(emu.kernel.leaks(), []);
    emu.kernel.shutdown();
  });

  it('checks isolation per IOMMU: a device behind an isolating unit binds', () => {
    const { emu, proc, iommufd } = setup();
    const dev = proc.open('/dev/vfio/devices/vfio1');
    assert.equal(bind(proc, dev, iommufd), 0);
    proc.close(dev);
    proc.close(iommufd);
    emu.kernel.shutdown();
  });

  it('does not ask a no-IOMMU device about MSIs', () => {
    const { emu, proc, iommufd } = setup();
    const dev = proc.open('/dev/vfio/devices/noiommu-vfio2');
    assert.equal(bind(proc, dev, iommufd), 0);
    proc.close(dev);
    proc.close(iommufd);
    emu.kernel.shutdown();
  });

  it('binds with a warning once root sets the parameter; clearing it affects later binds only', () => {
    const { emu, proc, iommufd, warnings } = setup();
    const user = emu.spawn({ uid: 1000, capEff: 0n });
    assert.equal(writeParam(user, 'Y'), -Errno.EACCES);
    assert.equal(writeParam(proc, 'maybe'), -Errno.EINVAL);
    assert.equal(readParam(proc), 'N\n');
    assert.equal(writeParam(proc, 'Y\n'), 2);
    assert.equal(readParam(user), 'Y\n', 'anyone may read it (0644)');
    assert.equal(emu.kernel.iommufd.allowUnsafeInterrupts, true);

    const dev = proc.open('/dev/vfio/devices/vfio0');
    assert.equal(bind(proc, dev, iommufd), 0);
    assert.deepEqual(warnings, [
      'vfio-pci 0000:00:04.0: MSI interrupts are not secure, they cannot be isolated by the ' +
        'platform. Check that platform features like interrupt remapping are enabled. Use the ' +
        '"allow_unsafe_interrupts" module parameter to override',
    ]);
    const ioas = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    assert.equal(ioas.ret, 0);
    const attach = proc.ioctlStruct(
      dev,
      ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      v.vfioDeviceAttachIommufdPt,
      {
        pt_id: ioas.out.out_ioas_id,
      },
    );
    assert.equal(attach.ret, 0);

    // Back to N: the bound device stays bound; a new bind is refused again.
    assert.equal(writeParam(proc, '0'), 1);
    const other = proc.open('/dev/iommu');
    const dev2 = proc.open('/dev/vfio/devices/vfio0');
    assert.equal(bind(proc, dev2, other), -Errno.EINVAL, 'the device is open through dev already');
    proc.close(dev);
    assert.equal(bind(proc, dev2, other), -Errno.EPERM);
    proc.close(dev2);
    proc.close(other);
    proc.close(iommufd);
    assert.deepEqual(emu.kernel.leaks(), []);
    emu.kernel.shutdown();
  });
});

describe('GET_HW_INFO', () => {
  function hwInfo(hwInfoKind: 'none' | 'intel-vtd') {
    const base = defaultPlatform();
    const dmar0 = { ...base.iommus[0]!, hwInfo: hwInfoKind };
    const emu = createEmulator({ platform: { ...base, iommus: [dmar0] } });
    const proc = emu.spawn();
    const iommufd = proc.open('/dev/iommu');
    const dev = proc.open('/dev/vfio/devices/vfio0');
    assert.equal(bind(proc, dev, iommufd), 0);
    const data = proc.alloc(4096n);
    const r = proc.ioctlStruct(iommufd, ioctl.IOMMU_GET_HW_INFO, u.iommuHwInfo, {
      dev_id: 1,
      data_len: 32,
      data_uptr: data,
    });
    const blob = proc.memory.read(data, 32);
    emu.kernel.shutdown();
    return { r, blob };
  }

  it('reports TYPE_NONE with no blob by default, and ATS not supported', () => {
    const { r } = hwInfo('none');
    assert.equal(r.ret, 0);
    assert.equal(r.out.out_data_type, u.IOMMU_HW_INFO_TYPE_NONE);
    assert.equal(r.out.data_len, 0);
    assert.equal(r.out.out_capabilities, u.IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
  });

  it('reports QEMU intel-iommu registers in the VT-d blob with hwInfo "intel-vtd"', () => {
    const { r, blob } = hwInfo('intel-vtd');
    assert.equal(r.ret, 0);
    assert.equal(r.out.out_data_type, u.IOMMU_HW_INFO_TYPE_INTEL_VTD);
    assert.equal(r.out.data_len, 24);
    assert.equal(r.out.out_capabilities, u.IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
    assert.ok(blob instanceof Uint8Array);
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    assert.equal(view.getUint32(0, true), 0, 'no erratum flag');
    assert.equal(view.getBigUint64(8, true), QEMU_VTD_CAP_REG);
    assert.equal(view.getBigUint64(16, true), QEMU_VTD_ECAP_REG);
    assert.ok(
      blob.subarray(24).every((b) => b === 0),
      'zeroed past the blob',
    );
  });
});
