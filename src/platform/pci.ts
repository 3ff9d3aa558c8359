/**
 * The PCI device base: a conventional (non-express) function with a 256-byte configuration space,
 * its BARs, an optional MSI capability, the INTx pin and the bus-master gate on DMA.
 *
 * Config space is the hardware's, not VFIO's virtualised view. The command register's bus-master
 * bit gates DMA (and MSI, which is a memory write); INTx-disable gates the INTx pin. Subclasses
 * implement the BAR registers and use `dmaRead` / `dmaWrite` / `setIntx` / `sendMsi`.
 */
import type { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { type DeviceTimers, eventLoopTimers } from './device-timers.ts';
import type { DmaPort } from './dma-port.ts';
import { IommuDmaPort } from './dma-port.ts';
import type { IommuDomain, IommuGroup, IommuUnit } from './iommu.ts';
import { hex } from './sizes.ts';

/** Access sizes a CPU load or store can have. */
export type AccessSize = 1 | 2 | 4 | 8;

/** Where a device's interrupts go; VFIO wires this to eventfds. */
export interface IrqSink {
  /** The INTx line changed level (level-triggered: called on every change). */
  intx(level: boolean): void;
  /** An MSI message for `vector` was sent (edge: one call per message). */
  msi(vector: number): void;
}

/** Standard configuration header offsets and bits. */
export const PciConfig = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION: 0x08,
  CLASS_PROG: 0x09,
  CLASS_DEVICE: 0x0a,
  CACHE_LINE_SIZE: 0x0c,
  LATENCY_TIMER: 0x0d,
  HEADER_TYPE: 0x0e,
  BAR0: 0x10,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  CAPABILITY_LIST: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
  SIZE: 256,
} as const;

export const PciCommand = {
  IO: 0x1,
  MEMORY: 0x2,
  MASTER: 0x4,
  PARITY: 0x40,
  SERR: 0x100,
  INTX_DISABLE: 0x400,
} as const;

export const PciStatus = {
  INTERRUPT: 0x08,
  CAP_LIST: 0x10,
} as const;

/** MSI capability layout (64-bit, no per-vector masking). */
export const PciMsi = {
  CAP_ID: 0x05,
  FLAGS: 2,
  ADDRESS_LO: 4,
  ADDRESS_HI: 8,
  DATA_64: 12,
  SIZEOF_64: 14,
  FLAGS_ENABLE: 0x1,
  FLAGS_QSIZE: 0x70,
  FLAGS_64BIT: 0x80,
} as const;

/** One memory BAR. */
export interface BarInfo {
  readonly index: number;
  /** Size in bytes, a power of two; 0 for an absent BAR. */
  readonly size: bigint;
  readonly is64: boolean;
  readonly prefetchable: boolean;
}

/** The identity written into the configuration header. */
export interface PciIdentity {
  readonly vendorId: number;
  readonly deviceId: number;
  readonly revision: number;
  /** 24-bit class code: base class << 16 | sub-class << 8 | prog-if. */
  readonly classCode: number;
  readonly subsystemVendorId: number;
  readonly subsystemId: number;
  /** 0 = no INTx, 1..4 = INTA#..INTD#. */
  readonly interruptPin: number;
}

/**
 * How the device can be reset (what pci_reset_function() would find): a function-level reset, a
 * power-management reset (D3hot to D0 with No_Soft_Reset clear), or a secondary bus reset through
 * the bridge above it (so never on the root bus).
 */
export type ResetMethod = 'flr' | 'pm' | 'bus';

/** The order pci_reset_function() tries methods in (pci_reset_fn_methods). */
export const RESET_ORDER: readonly ResetMethod[] = ['flr', 'pm', 'bus'];

export interface PciDeviceOptions {
  readonly bdf: string;
  readonly type: string;
  readonly events: EventBus;
  readonly dma: DmaPort;
  readonly identity: PciIdentity;
  readonly bars: readonly BarInfo[];
  /** Config offset of a 64-bit, 1-vector, unmaskable MSI capability, if the device has one. */
  readonly msiOffset?: number;
  /** The IOMMU group, when behind an IOMMU; the device adds itself to it. */
  readonly group?: IommuGroup;
  readonly resetMethods?: readonly ResetMethod[];
}

/** Plain-data view of a device, for snapshots and the inspector. */
export interface PciDeviceSnapshot {
  readonly bdf: string;
  readonly type: string;
  readonly vendorId: number;
  readonly deviceId: number;
  readonly iommu: string | null;
  readonly group: number | null;
  /** Id of the domain the device translates through; null when blocked or without an IOMMU. */
  readonly domain: number | null;
  readonly command: number;
  readonly busMaster: boolean;
  readonly msiEnabled: boolean;
  readonly intxAsserted: boolean;
  readonly registers: Readonly<Record<string, bigint | number | boolean>>;
}

const BDF_PATTERN = /^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/;

/** Whether `bdf` is a canonical lower-case PCI address like "0000:00:04.0" (device <= 0x1f). */
export function isValidBdf(bdf: string): boolean {
  return BDF_PATTERN.test(bdf);
}

/** A PCI function. */
export abstract class PciDevice {
  readonly bdf: string;
  readonly type: string;
  readonly events: EventBus;
  readonly dma: DmaPort;
  readonly bars: readonly BarInfo[];
  readonly group: IommuGroup | undefined;
  readonly msiOffset: number | undefined;
  readonly resetMethods: readonly ResetMethod[];
  /**
   * pdev->reset_methods: what pci_reset_function() tries, in order. The PCI core fills it when
   * the device is added (the declared methods that apply) and sysfs's `reset_method` changes it.
   */
  enabledResetMethods: readonly ResetMethod[] = [];
  /** How the device's asynchronous work is timed (record and replay choose it). */
  timers: DeviceTimers = eventLoopTimers;

  private readonly config = new Uint8Array(PciConfig.SIZE);
  private readonly resetConfig: Uint8Array;
  /** Bits software may change, per byte (QEMU's wmask). */
  private readonly wmask = new Uint8Array(PciConfig.SIZE);
  private sink: IrqSink | undefined;
  /** The device's INTx output, before INTx-disable gating. */
  private intxLine = false;
  /** The level the sink last saw. */
  private intxSignalled = false;

  constructor(options: PciDeviceOptions) {
    if (!isValidBdf(options.bdf)) throw new RangeError(`bad PCI address "${options.bdf}"`);
    this.bdf = options.bdf;
    this.type = options.type;
    this.events = options.events;
    this.dma = options.dma;
    this.bars = options.bars;
    this.group = options.group;
    this.msiOffset = options.msiOffset;
    this.resetMethods = options.resetMethods ?? [];
    this.enabledResetMethods = RESET_ORDER.filter((m) => this.resetMethods.includes(m));
    this.buildConfig(options.identity);
    this.resetConfig = this.config.slice();
    options.group?.devices.push(this);
  }

  /** The IOMMU unit in front of the device, or undefined for a no-IOMMU device. */
  get iommu(): IommuUnit | undefined {
    return this.dma instanceof IommuDmaPort ? this.dma.unit : undefined;
  }

  /** The domain the device's DMA translates through; undefined when blocked or no IOMMU. */
  get domain(): IommuDomain | undefined {
    return this.dma instanceof IommuDmaPort ? this.dma.domain : undefined;
  }

  /**
   * Attaches the device to `domain`, or blocks its DMA with undefined (the IOMMU driver's
   * attach_dev / blocking domain). -ENODEV for a device without an IOMMU, -EINVAL for a domain
   * the device's IOMMU cannot use.
   */
  setDomain(domain: IommuDomain | undefined): number {
    if (!(this.dma instanceof IommuDmaPort)) return -Errno.ENODEV;
    return this.dma.setDomain(domain);
  }

  // ---- configuration space ------------------------------------------------------------------

  /** A little-endian config read; all ones for an access outside the 256 bytes. */
  configRead(offset: number, size: 1 | 2 | 4): number {
    if (!Number.isInteger(offset) || offset < 0 || offset + size > PciConfig.SIZE) {
      return size === 4 ? 0xffffffff : (1 << (size * 8)) - 1;
    }
    let value = 0;
    for (let i = size - 1; i >= 0; i--) value = value * 256 + (this.config[offset + i] ?? 0);
    return value;
  }

  /** A little-endian config write; only writable bits change, and some writes have effects. */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + size > PciConfig.SIZE) return;
    const oldCommand = this.command;
    const oldMsi = this.msiEnabled();
    for (let i = 0; i < size; i++) {
      const byte = Math.floor(value / 256 ** i) & 0xff;
      const mask = this.wmask[offset + i] ?? 0;
      const old = this.config[offset + i] ?? 0;
      this.config[offset + i] = (old & ~mask) | (byte & mask);
    }
    if (this.msiEnabled() && !oldMsi) {
      // Enabling MSI turns the INTx pin off (PCI 3.0); edu then signals by MSI only.
      this.intxLine = false;
    }
    if (this.command !== oldCommand || this.msiEnabled() !== oldMsi) this.updateIntx();
  }

  /** The command register. */
  get command(): number {
    return this.configRead(PciConfig.COMMAND, 2);
  }

  /** Bus master enable (command bit 2): without it the device cannot DMA or send MSIs. */
  get busMaster(): boolean {
    return (this.command & PciCommand.MASTER) !== 0;
  }

  /** Memory space enable (command bit 1): VFIO refuses BAR access without it. */
  get memoryDecode(): boolean {
    return (this.command & PciCommand.MEMORY) !== 0;
  }

  /** Whether the MSI capability is enabled (its control register's enable bit). */
  msiEnabled(): boolean {
    if (this.msiOffset === undefined) return false;
    return (this.configRead(this.msiOffset + PciMsi.FLAGS, 2) & PciMsi.FLAGS_ENABLE) !== 0;
  }

  /** The MSI message address and data software programmed. */
  msiMessage(): { readonly address: bigint; readonly data: number } | undefined {
    const cap = this.msiOffset;
    if (cap === undefined) return undefined;
    const lo = BigInt(this.configRead(cap + PciMsi.ADDRESS_LO, 4));
    const hi = BigInt(this.configRead(cap + PciMsi.ADDRESS_HI, 4));
    return { address: (hi << 32n) | lo, data: this.configRead(cap + PciMsi.DATA_64, 2) };
  }

  /**
   * The firmware's BAR assignment at boot: `address` goes into BAR `index` (naturally aligned).
   * The PCI core saves the assigned BARs and restores them after every reset (pci_restore_state),
   * so the reset image holds the address too.
   */
  assignBar(index: number, address: bigint): void {
    const bar = this.bars.find((b) => b.index === index);
    if (bar === undefined || bar.size === 0n || address % bar.size !== 0n) {
      throw new RangeError(`${this.bdf}: cannot place BAR ${index} at ${hex(address)}`);
    }
    const offset = PciConfig.BAR0 + 4 * index;
    const flags = this.configRead(offset, 1) & 0xf;
    this.configWrite(offset, 4, Number(address & 0xfffffff0n) | flags);
    if (bar.is64) this.configWrite(offset + 4, 4, Number(address >> 32n));
    this.resetConfig.set(this.config.subarray(offset, offset + (bar.is64 ? 8 : 4)), offset);
  }

  /** BAR `index`'s bus address as its registers hold it now (0 when absent). */
  barAddress(index: number): bigint {
    const bar = this.bars.find((b) => b.index === index);
    if (bar === undefined || bar.size === 0n) return 0n;
    const offset = PciConfig.BAR0 + 4 * index;
    const lo = BigInt(this.configRead(offset, 4)) & 0xfffffff0n;
    return bar.is64 ? lo | (BigInt(this.configRead(offset + 4, 4)) << 32n) : lo;
  }

  /** "0000:11", the segment and bus: the devices a secondary bus reset reaches share it. */
  get bus(): string {
    return this.bdf.slice(0, 7);
  }

  /**
   * A PCI function reset, and what vfio-pci's close leaves behind (pci_restore_state): config space
   * returns to power-on values with the assigned BARs, INTx deasserts. Device registers are the
   * subclass's business (`onReset`): they reset only for a device with a reset method.
   */
  reset(): void {
    this.config.set(this.resetConfig);
    this.intxLine = false;
    this.onReset();
    this.updateIntx();
  }

  /** pci_save_state(): a copy of config space, for restoreState() after a reset. */
  saveState(): Uint8Array {
    return this.config.slice();
  }

  /** pci_restore_state(): config space as saveState() found it. */
  restoreState(saved: Uint8Array): void {
    this.config.set(saved);
    this.updateIntx();
  }

  // ---- BARs -----------------------------------------------------------------------------------

  /** A CPU load from BAR `bar` at `offset`. */
  abstract barRead(bar: number, offset: bigint, size: AccessSize): bigint;
  /** A CPU store to BAR `bar` at `offset`. */
  abstract barWrite(bar: number, offset: bigint, size: AccessSize, value: bigint): void;
  /** Device-specific register state for snapshots. */
  abstract registers(): Readonly<Record<string, bigint | number | boolean>>;
  /** Waits for the device's asynchronous work (DMA, computations) to finish. */
  abstract whenIdle(): Promise<void>;
  /** Cancels pending work and timers; the device is dead afterwards. */
  abstract shutdown(): void;

  /** Subclass hook for function reset. */
  protected onReset(): void {}

  // ---- interrupts ---------------------------------------------------------------------------

  /** Routes interrupts to `sink` (undefined disconnects). A new sink learns the INTx level. */
  setIrqSink(sink: IrqSink | undefined): void {
    this.sink = sink;
    if (sink !== undefined && this.intxSignalled) sink.intx(true);
  }

  /** The INTx line level as the interrupt controller sees it. */
  intxAsserted(): boolean {
    return this.intxSignalled;
  }

  /** Drives the device's INTx output (level). */
  protected setIntx(level: boolean): void {
    this.intxLine = level;
    this.updateIntx();
  }

  /** Sends one MSI for `vector`, if MSI is enabled and bus mastering allows the message write. */
  protected sendMsi(vector: number): void {
    if (!this.msiEnabled()) return;
    if (!this.busMaster) {
      this.events.publish({
        kind: 'irq',
        device: this.bdf,
        irq: 'msi',
        detail: `vector ${vector} dropped: bus master disabled`,
      });
      return;
    }
    this.events.publish({ kind: 'irq', device: this.bdf, irq: 'msi', detail: `vector ${vector}` });
    this.sink?.msi(vector);
  }

  // ---- DMA ------------------------------------------------------------------------------------

  /**
   * The device reads memory at bus address `addr`. undefined when nothing was read (bus master
   * off, or an IOMMU fault).
   */
  protected dmaRead(addr: bigint, length: number): Uint8Array | undefined {
    if (length === 0) return new Uint8Array(0);
    this.publishDma('read', addr, length);
    if (!this.masterOrWarn('read', addr)) return undefined;
    return this.dma.read(addr, length);
  }

  /** The device writes memory at bus address `addr`; false when nothing was written. */
  protected dmaWrite(addr: bigint, data: Uint8Array): boolean {
    if (data.length === 0) return true;
    this.publishDma('write', addr, data.length);
    if (!this.masterOrWarn('write', addr)) return false;
    return this.dma.write(addr, data);
  }

  /** Common snapshot fields plus the subclass's registers. */
  snapshot(): PciDeviceSnapshot {
    return {
      bdf: this.bdf,
      type: this.type,
      vendorId: this.configRead(PciConfig.VENDOR_ID, 2),
      deviceId: this.configRead(PciConfig.DEVICE_ID, 2),
      iommu: this.iommu?.name ?? null,
      group: this.group?.id ?? null,
      domain: this.domain?.id ?? null,
      command: this.command,
      busMaster: this.busMaster,
      msiEnabled: this.msiEnabled(),
      intxAsserted: this.intxSignalled,
      registers: this.registers(),
    };
  }

  // ---- internals ----------------------------------------------------------------------------

  private publishDma(dir: 'read' | 'write', addr: bigint, length: number): void {
    if (!this.events.wants('dma')) return;
    const pa = this.dma.physical(addr, dir);
    this.events.publish({
      kind: 'dma',
      device: this.bdf,
      dir,
      addr,
      length,
      path: this.dma.path,
      pa,
    });
  }

  private masterOrWarn(dir: 'read' | 'write', addr: bigint): boolean {
    if (this.busMaster) return true;
    this.events.log('warn', `${this.bdf}: DMA ${dir} at ${hex(addr)} dropped: bus master disabled`);
    return false;
  }

  private updateIntx(): void {
    const pin = this.configRead(PciConfig.INTERRUPT_PIN, 1);
    const status = this.config[PciConfig.STATUS] ?? 0;
    this.config[PciConfig.STATUS] = this.intxLine
      ? status | PciStatus.INTERRUPT
      : status & ~PciStatus.INTERRUPT;
    const level = pin !== 0 && this.intxLine && (this.command & PciCommand.INTX_DISABLE) === 0;
    if (level === this.intxSignalled) return;
    this.intxSignalled = level;
    const detail = level ? 'assert' : 'deassert';
    this.events.publish({ kind: 'irq', device: this.bdf, irq: 'intx', detail });
    this.sink?.intx(level);
  }

  private buildConfig(id: PciIdentity): void {
    const c = this.config;
    const put = (offset: number, size: number, value: number): void => {
      for (let i = 0; i < size; i++) c[offset + i] = Math.floor(value / 256 ** i) & 0xff;
    };
    const writable = (offset: number, size: number, mask: number): void => {
      for (let i = 0; i < size; i++) this.wmask[offset + i] = Math.floor(mask / 256 ** i) & 0xff;
    };
    put(PciConfig.VENDOR_ID, 2, id.vendorId);
    put(PciConfig.DEVICE_ID, 2, id.deviceId);
    put(PciConfig.REVISION, 1, id.revision);
    put(PciConfig.CLASS_PROG, 3, id.classCode);
    put(PciConfig.HEADER_TYPE, 1, 0);
    put(PciConfig.SUBSYSTEM_VENDOR_ID, 2, id.subsystemVendorId);
    put(PciConfig.SUBSYSTEM_ID, 2, id.subsystemId);
    put(PciConfig.INTERRUPT_PIN, 1, id.interruptPin);
    const commandBits =
      PciCommand.IO |
      PciCommand.MEMORY |
      PciCommand.MASTER |
      PciCommand.PARITY |
      PciCommand.SERR |
      PciCommand.INTX_DISABLE;
    writable(PciConfig.COMMAND, 2, commandBits);
    writable(PciConfig.CACHE_LINE_SIZE, 1, 0xff);
    writable(PciConfig.LATENCY_TIMER, 1, 0xff);
    writable(PciConfig.INTERRUPT_LINE, 1, 0xff);
    for (const bar of this.bars) {
      if (bar.size === 0n) continue;
      const offset = PciConfig.BAR0 + 4 * bar.index;
      // Memory BAR: bit 0 = 0, bits 2:1 = type (0 = 32-bit, 2 = 64-bit), bit 3 = prefetchable.
      put(offset, 1, (bar.is64 ? 0x4 : 0) | (bar.prefetchable ? 0x8 : 0));
      // Address bits below the size are hard-wired to 0: that is how software sizes a BAR.
      const sizeMask = Number((0x100000000n - bar.size) & 0xfffffff0n);
      writable(offset, 4, sizeMask);
      if (bar.is64) writable(offset + 4, 4, 0xffffffff);
    }
    if (this.msiOffset !== undefined) {
      const cap = this.msiOffset;
      c[PciConfig.STATUS] = (c[PciConfig.STATUS] ?? 0) | PciStatus.CAP_LIST;
      put(PciConfig.CAPABILITY_LIST, 1, cap);
      put(cap, 1, PciMsi.CAP_ID);
      put(cap + 1, 1, 0);
      put(cap + PciMsi.FLAGS, 2, PciMsi.FLAGS_64BIT);
      writable(cap + PciMsi.FLAGS, 2, PciMsi.FLAGS_ENABLE | PciMsi.FLAGS_QSIZE);
      writable(cap + PciMsi.ADDRESS_LO, 4, 0xfffffffc);
      writable(cap + PciMsi.ADDRESS_HI, 4, 0xffffffff);
      writable(cap + PciMsi.DATA_64, 2, 0xffff);
    }
  }
}
