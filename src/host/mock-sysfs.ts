/**
 * The iommufd_mock bus in sysfs (CONFIG_IOMMUFD_TEST): the bus directory from boot, and each mock
 * device while it exists, under /sys/devices with its bus and IOMMU group links, as device_add()
 * and the iommu core make them for a device with no parent.
 */
import type { SysFs } from './sysfs.ts';

const BUS = '/sys/bus/iommufd_mock';

/** bus_register(): the bus directory and its drivers_autoprobe knob. */
export function addMockBusSysfs(sysfs: SysFs): void {
  sysfs.add({ kind: 'attr', path: `${BUS}/drivers_autoprobe`, mode: 0o644, show: () => '1\n' });
}

/** device_add() of mock device `name` in IOMMU group `groupId`. */
export function addMockDeviceSysfs(sysfs: SysFs, name: string, groupId: number): void {
  const dir = `/sys/devices/${name}`;
  sysfs.add({ kind: 'link', path: `${BUS}/devices/${name}`, target: `../../../devices/${name}` });
  sysfs.add({ kind: 'link', path: `${dir}/subsystem`, target: '../../bus/iommufd_mock' });
  sysfs.add({
    kind: 'link',
    path: `${dir}/iommu_group`,
    target: `../../kernel/iommu_groups/${groupId}`,
  });
  const group = `/sys/kernel/iommu_groups/${groupId}`;
  sysfs.add({
    kind: 'link',
    path: `${group}/devices/${name}`,
    target: `../../../../devices/${name}`,
  });
  // The mock IOMMU's default domain blocks DMA.
  sysfs.add({ kind: 'attr', path: `${group}/type`, mode: 0o444, show: () => 'blocked\n' });
}

/** device_unregister(): the device and its group (each mock device has a group of its own). */
export function removeMockDeviceSysfs(sysfs: SysFs, name: string, groupId: number): void {
  sysfs.remove(`${BUS}/devices/${name}`);
  sysfs.removeTree(`/sys/devices/${name}`);
  sysfs.removeTree(`/sys/kernel/iommu_groups/${groupId}`);
}
