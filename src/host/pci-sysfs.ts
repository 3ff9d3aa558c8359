/**
 * The PCI core's sysfs for the machine's devices (drivers/pci/pci-sysfs.c, iommu groups): what
 * drivers walk to find a device, its IOMMU group and its VFIO node.
 */
import type { PciDevice } from '../platform/pci.ts';
import type { SysFs } from './sysfs.ts';

function hex(value: number, digits: number): string {
  return `0x${value.toString(16).padStart(digits, '0')}\n`;
}

/**
 * driver_sysfs_add(): a device bound to a driver links to it (`driver`) and the driver's
 * directory links back to the device. Tools read `driver` to tell whether a device is bound.
 */
export function addDriverLinks(sysfs: SysFs, dev: PciDevice, driver: string): void {
  sysfs.add({
    kind: 'link',
    path: `/sys/devices/pci0000:00/${dev.bdf}/driver`,
    target: `../../../bus/pci/drivers/${driver}`,
  });
  sysfs.add({
    kind: 'link',
    path: `/sys/bus/pci/drivers/${driver}/${dev.bdf}`,
    target: `../../../../devices/pci0000:00/${dev.bdf}`,
  });
}

/** driver_sysfs_remove(): unbinding takes both links away. */
export function removeDriverLinks(sysfs: SysFs, dev: PciDevice, driver: string): void {
  sysfs.remove(`/sys/devices/pci0000:00/${dev.bdf}/driver`);
  sysfs.remove(`/sys/bus/pci/drivers/${driver}/${dev.bdf}`);
}

/** The PCI core's attributes and links of one device, whether or not a driver has it. */
export function addPciSysfs(sysfs: SysFs, dev: PciDevice): void {
  const dir = `/sys/devices/pci0000:00/${dev.bdf}`;
  const attr = (name: string, show: () => string) =>
    sysfs.add({ kind: 'attr', path: `${dir}/${name}`, mode: 0o444, show });
  attr('vendor', () => hex(dev.configRead(0x00, 2), 4));
  attr('device', () => hex(dev.configRead(0x02, 2), 4));
  attr('subsystem_vendor', () => hex(dev.configRead(0x2c, 2), 4));
  attr('subsystem_device', () => hex(dev.configRead(0x2e, 2), 4));
  attr('revision', () => hex(dev.configRead(0x08, 1), 2));
  attr('class', () => hex(dev.configRead(0x09, 1) | (dev.configRead(0x0a, 2) << 8), 6));
  attr('irq', () => '11\n');
  sysfs.add({
    kind: 'link',
    path: `/sys/bus/pci/devices/${dev.bdf}`,
    target: `../../../devices/pci0000:00/${dev.bdf}`,
  });
  if (dev.group !== undefined) {
    const id = dev.group.id;
    sysfs.add({
      kind: 'link',
      path: `${dir}/iommu_group`,
      target: `../../../kernel/iommu_groups/${id}`,
    });
    sysfs.add({
      kind: 'link',
      path: `/sys/kernel/iommu_groups/${id}/devices/${dev.bdf}`,
      target: `../../../../devices/pci0000:00/${dev.bdf}`,
    });
    sysfs.add({
      kind: 'attr',
      path: `/sys/kernel/iommu_groups/${id}/type`,
      mode: 0o444,
      show: () => 'DMA\n',
    });
  }
}
