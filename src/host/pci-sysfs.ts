/**
 * The PCI core's sysfs for the machine's devices (drivers/pci/pci-sysfs.c, probe.c, iommu groups):
 * what drivers and tools (lspci, driverctl) walk to find a device, its resources, its IOMMU group
 * and its VFIO node, and the root bus's own directory. Binding files are pci-bus.ts's.
 */
import type { ReservedRegion } from '../platform/iommu.ts';
import { PciConfig, type PciDevice, RESET_ORDER, type ResetMethod } from '../platform/pci.ts';
import { Errno } from '../uapi/errno.ts';
import { CAP_SYS_ADMIN, capable } from './credentials.ts';
import type { SysFs } from './sysfs.ts';

const DEVICES = '/sys/devices/pci0000:00';

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

/** What the device's sysfs needs to know beyond the device itself. */
export interface PciSysfsContext {
  /** The name of the driver the device is bound to, if any (for `uevent`). */
  driverOf(): string | undefined;
  /** Reserved regions of the device's IOMMU group (`reserved_regions`). */
  groupReservedRegions(): readonly ReservedRegion[];
  /** Whether the device is alone on its bus (a bus reset then resets it alone). */
  aloneOnBus(): boolean;
  /** Logs as pci_warn() does. */
  warn(line: string): void;
}

/** pci_bus_add_device() of the root bus: its pci_bus directory and class link. */
export function addPciRootBusSysfs(sysfs: SysFs): void {
  const dir = `${DEVICES}/pci_bus/0000:00`;
  sysfs.add({ kind: 'attr', path: `${dir}/cpuaffinity`, mode: 0o444, show: () => '1\n' });
  sysfs.add({ kind: 'attr', path: `${dir}/cpulistaffinity`, mode: 0o444, show: () => '0\n' });
  sysfs.add({ kind: 'attr', path: `${dir}/rescan`, mode: 0o200, show: () => '', store: () => 0 });
  sysfs.add({ kind: 'link', path: `${dir}/device`, target: '../../../pci0000:00' });
  sysfs.add({ kind: 'link', path: `${dir}/subsystem`, target: '../../../../class/pci_bus' });
  sysfs.add({
    kind: 'link',
    path: '/sys/class/pci_bus/0000:00',
    target: '../../devices/pci0000:00/pci_bus/0000:00',
  });
}

/** The modalias of a device: "pci:v00001234d000011E8sv...". */
function modalias(dev: PciDevice): string {
  const x = (v: number, n: number) => v.toString(16).toUpperCase().padStart(n, '0');
  return (
    `pci:v${x(dev.configRead(0x00, 2), 8)}d${x(dev.configRead(0x02, 2), 8)}` +
    `sv${x(dev.configRead(0x2c, 2), 8)}sd${x(dev.configRead(0x2e, 2), 8)}` +
    `bc${x(dev.configRead(0x0b, 1), 2)}sc${x(dev.configRead(0x0a, 1), 2)}` +
    `i${x(dev.configRead(0x09, 1), 2)}`
  );
}

/** The device's uevent variables (pci_uevent()), with DRIVER= while it is bound. */
function ueventText(dev: PciDevice, driver: string | undefined): string {
  const x = (v: number, n: number) => v.toString(16).toUpperCase().padStart(n, '0');
  const cls = dev.configRead(0x09, 1) | (dev.configRead(0x0a, 2) << 8);
  return [
    ...(driver === undefined ? [] : [`DRIVER=${driver}`]),
    `PCI_CLASS=${x(cls, 4)}`,
    `PCI_ID=${x(dev.configRead(0x00, 2), 4)}:${x(dev.configRead(0x02, 2), 4)}`,
    `PCI_SUBSYS_ID=${x(dev.configRead(0x2c, 2), 4)}:${x(dev.configRead(0x2e, 2), 4)}`,
    `PCI_SLOT_NAME=${dev.bdf}`,
    `MODALIAS=${modalias(dev)}`,
    '',
  ].join('\n');
}

/** The number of address bits a DMA mask covers (dma_mask_bits). */
function maskBits(mask: bigint): number {
  let bits = 0;
  while (mask >> BigInt(bits) !== 0n) bits++;
  return bits;
}

/** The PCI core's attributes and links of one device, whether or not a driver has it. */
export function addPciSysfs(sysfs: SysFs, dev: PciDevice, ctx: PciSysfsContext): void {
  const dir = `${DEVICES}/${dev.bdf}`;
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
  attr('modalias', () => `${modalias(dev)}\n`);
  attr('numa_node', () => '-1\n');
  attr('local_cpus', () => '1\n');
  attr('local_cpulist', () => '0\n');
  attr('msi_bus', () => '1\n');
  attr('broken_parity_status', () => '0\n');
  attr('ari_enabled', () => '0\n');
  attr('power_state', () => 'D0\n');
  const bits = 'dmaMask' in dev && typeof dev.dmaMask === 'bigint' ? maskBits(dev.dmaMask) : 32;
  attr('dma_mask_bits', () => `${bits}\n`);
  attr('consistent_dma_mask_bits', () => `${bits}\n`);
  sysfs.add({
    kind: 'attr',
    path: `${dir}/uevent`,
    mode: 0o644,
    show: () => ueventText(dev, ctx.driverOf()),
    store: () => 0,
  });
  sysfs.add({ kind: 'link', path: `${dir}/subsystem`, target: '../../../bus/pci' });
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
    // pci_write_config(): straight to the device (no driver sees it), in the widest aligned
    // accesses; the file's 0644 and root owner keep everyone else out at open.
    size: PciConfig.SIZE,
    writeBytes: (data, pos) => {
      let off = pos;
      let at = 0;
      const le = (n: 1 | 2 | 4) => {
        let v = 0;
        for (let i = n - 1; i >= 0; i--) v = v * 256 + data[at + i]!;
        dev.configWrite(off, n, v);
        off += n;
        at += n;
      };
      if (off & 1 && at < data.length) le(1);
      if (off & 3 && data.length - at > 2) le(2);
      while (data.length - at > 3) le(4);
      if (data.length - at >= 2) le(2);
      if (data.length - at >= 1) le(1);
      return data.length;
    },
  });
  // pci_create_resource_files(): resourceN for every BAR, resourceN_wc for a prefetchable one.
  // They are for mmap; read() of a memory BAR's file is EIO (no read method).
  for (const bar of dev.bars) {
    if (bar.size === 0n) continue;
    const names = [
      `resource${bar.index}`,
      ...(bar.prefetchable ? [`resource${bar.index}_wc`] : []),
    ];
    for (const name of names) {
      sysfs.add({
        kind: 'attr',
        path: `${dir}/${name}`,
        mode: 0o600,
        show: () => '',
        readBytes: () => -Errno.EIO,
        store: () => -Errno.EIO,
      });
    }
  }
  addResetFiles(sysfs, dev, ctx);
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
    sysfs.add({
      kind: 'attr',
      path: `/sys/kernel/iommu_groups/${id}/reserved_regions`,
      mode: 0o444,
      show: () => reservedRegionsText(ctx.groupReservedRegions()),
    });
  }
}

/** iommu_group_show_resv_regions(): "start end type" per region, sorted by start. */
function reservedRegionsText(regions: readonly ReservedRegion[]): string {
  const h = (v: bigint) => `0x${v.toString(16).padStart(16, '0')}`;
  return [...regions]
    .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
    .map((r) => `${h(r.start)} ${h(r.last)} ${r.type === 'sw-msi' ? 'msi' : r.type}\n`)
    .join('');
}

/**
 * pci_init_reset_methods() and the `reset` and `reset_method` files, which exist only for a device
 * with some reset method: the declared methods that apply (a bus reset only for a function alone
 * on its bus), in the order pci_reset_function() tries them.
 */
function addResetFiles(sysfs: SysFs, dev: PciDevice, ctx: PciSysfsContext): void {
  const supported = RESET_ORDER.filter(
    (m) => dev.resetMethods.includes(m) && (m !== 'bus' || ctx.aloneOnBus()),
  );
  dev.enabledResetMethods = supported;
  if (supported.length === 0) return;
  const dir = `${DEVICES}/${dev.bdf}`;
  sysfs.add({
    kind: 'attr',
    path: `${dir}/reset_method`,
    mode: 0o644,
    show: () =>
      dev.enabledResetMethods.length === 0 ? '' : `${dev.enabledResetMethods.join(' ')}\n`,
    store: (_task, text) => {
      const methods = parseResetMethods(text, supported, ctx);
      if (typeof methods === 'number') return methods;
      dev.enabledResetMethods = methods;
      return 0;
    },
  });
  // reset_store(): "1" resets the function as pci_reset_function() does, config space kept.
  sysfs.add({
    kind: 'attr',
    path: `${dir}/reset`,
    mode: 0o200,
    show: () => '',
    store: (_task, text) => {
      if (parseUlong(text) !== 1n) return -Errno.EINVAL;
      if (dev.enabledResetMethods.length === 0) return -Errno.ENOTTY;
      const saved = dev.saveState();
      dev.reset();
      dev.restoreState(saved);
      return 0;
    },
  });
}

/** PCI_NUM_RESET_METHODS: how many methods the kernel knows (the list holds one fewer). */
const PCI_NUM_RESET_METHODS = 8;

/**
 * reset_method_store(): "" disables every method, "default" restores what the core found, else
 * space-separated names, each one the device supports (EINVAL for any other).
 */
function parseResetMethods(
  text: string,
  supported: readonly ResetMethod[],
  ctx: PciSysfsContext,
): readonly ResetMethod[] | number {
  const trimmed = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (trimmed === '') {
    ctx.warn('All device reset methods disabled by user');
    return [];
  }
  if (trimmed === 'default') return supported;
  const out: ResetMethod[] = [];
  for (const word of text.split(' ')) {
    const name = word.trim();
    if (name === '') continue;
    const method = supported.find((m) => m === name);
    if (method === undefined) return -Errno.EINVAL;
    if (out.length === PCI_NUM_RESET_METHODS - 1) return -Errno.EINVAL;
    out.push(method);
  }
  return out;
}

/** kstrtoul(text, 0): an optional '+', decimal, 0x hex or 0 octal, one trailing newline allowed. */
function parseUlong(text: string): bigint | undefined {
  const n = text.endsWith('\n') ? text.slice(0, -1) : text;
  const t = n.startsWith('+') ? n.slice(1) : n;
  if (/^0[xX][0-9a-fA-F]+$/.test(t)) return BigInt(t);
  if (/^0[0-7]*$/.test(t)) return BigInt(`0o${t.slice(1) || '0'}`);
  if (/^[1-9][0-9]*$/.test(t)) return BigInt(t);
  return undefined;
}
