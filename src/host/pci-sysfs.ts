/**
 * The PCI core's sysfs for the machine's devices (drivers/pci/pci-sysfs.c, iommu groups): what
 * drivers walk to find a device, its IOMMU group and its VFIO node.
 */
import { PciConfig, type PciDevice } from '../platform/pci.ts';
import { CAP_SYS_ADMIN, capable } from './credentials.ts';
import type { SysFs } from './sysfs.ts';

/** What pci_read_config() lets a reader without CAP_SYS_ADMIN (at open) see of config space. */
const UNPRIVILEGED_CONFIG_SIZE = 64;
/** IORESOURCE_MEM, IORESOURCE_PREFETCH, IORESOURCE_MEM_64 and IORESOURCE_SIZEALIGN. */
const IORESOURCE_MEM = 0x200n;
const IORESOURCE_PREFETCH = 0x2000n;
const IORESOURCE_MEM_64 = 0x100000n;
const IORESOURCE_SIZEALIGN = 0x40000n;

/** The `resource` file: start, end and flags of the 6 BARs and the ROM (7 lines). */
function resourceText(dev: PciDevice): string {
  const h = (v: bigint) => `0x${v.toString(16).padStart(16, '0')}`;
  let out = '';
  for (let i = 0; i < 7; i++) {
    const bar = dev.bars.find((b) => b.index === i);
    if (bar === undefined || bar.size === 0n) {
      out += `${h(0n)} ${h(0n)} ${h(0n)}\n`;
      continue;
    }
    const start = dev.barAddress(i);
    let flags = IORESOURCE_MEM | IORESOURCE_SIZEALIGN;
    if (bar.prefetchable) flags |= IORESOURCE_PREFETCH;
    if (bar.is64) flags |= IORESOURCE_MEM_64;
    out += `${h(start)} ${h(start + bar.size - 1n)} ${h(flags)}\n`;
  }
  return out;
}

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
  attr('resource', () => resourceText(dev));
  // pci_read_config(): the whole space for an opener with CAP_SYS_ADMIN, else the first 64 bytes.
  sysfs.add({
    kind: 'attr',
    path: `${dir}/config`,
    mode: 0o644,
    show: () => '',
    readBytes: (opener) => {
      const size = capable(opener, CAP_SYS_ADMIN) ? PciConfig.SIZE : UNPRIVILEGED_CONFIG_SIZE;
      const out = new Uint8Array(size);
      for (let i = 0; i < size; i++) out[i] = dev.configRead(i, 1);
      return out;
    },
  });
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
