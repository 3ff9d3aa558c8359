/**
 * QEMU's educational PCI device "edu" (1234:11e8), as docs/edu.md describes it:
 * identification and liveness registers, an asynchronous factorial unit, interrupt raise/ack with
 * INTx level or MSI signalling, and a DMA engine between a 4 KiB internal buffer (device address
 * 0x40000) and memory. DMA is asynchronous: the copy happens at completion time, against the
 * mappings live then, and the start bit clears when it is done.
 */
import type { EventBus } from '../trace/events.ts';
import type { DmaPort } from './dma-port.ts';
import type { IommuGroup } from './iommu.ts';
import { type AccessSize, PciDevice, type ResetMethod } from './pci.ts';
import { U64_MAX } from './sizes.ts';

/** BAR0 register offsets. */
export const EduReg = {
  ID: 0x00n,
  LIVENESS: 0x04n,
  FACTORIAL: 0x08n,
  STATUS: 0x20n,
  IRQ_STATUS: 0x24n,
  IRQ_RAISE: 0x60n,
  IRQ_ACK: 0x64n,
  DMA_SRC: 0x80n,
  DMA_DST: 0x88n,
  DMA_COUNT: 0x90n,
  DMA_CMD: 0x98n,
} as const;

/** Status register (0x20) bits. */
export const EduStatus = { COMPUTING: 0x01, IRQ_FACT: 0x80 } as const;

/** DMA command register (0x98) bits. */
export const EduDmaCmd = {
  RUN: 0x1n,
  /** Set: edu buffer -> RAM (pci_dma_write). Clear: RAM -> edu buffer (pci_dma_read). */
  TO_RAM: 0x2n,
  IRQ: 0x4n,
} as const;

/** Interrupt causes in the interrupt status register (0x24). */
export const EduIrq = { FACTORIAL: 0x1, DMA: 0x100 } as const;

export const EDU_VENDOR_ID = 0x1234;
export const EDU_DEVICE_ID = 0x11e8;
export const EDU_REVISION = 0x10;
/** Class 0x00ff00 (PCI_CLASS_OTHERS written as the class word). */
export const EDU_CLASS = 0x00ff00;
export const EDU_ID_VALUE = 0x010000ed;
export const EDU_BAR0_SIZE = 0x100000n;
export const EDU_MSI_OFFSET = 0x40;
/** The internal buffer's device-side address and size. */
export const EDU_DMA_START = 0x40000n;
export const EDU_DMA_SIZE = 4096n;
/** QEMU's default dma_mask: 28 bits. */
export const QEMU_EDU_DMA_MASK = 0x0fffffffn;
/** QEMU arms the DMA timer 100 ms ahead. */
export const QEMU_DMA_DELAY_MS = 100;

/**
 * When a started DMA completes: 'prompt' on the next event-loop turn (setImmediate), 'qemu' after
 * QEMU's 100 ms, or after a given delay.
 */
export type DmaCompletion = 'prompt' | 'qemu' | { readonly delayMs: number };

export interface EduOptions {
  readonly bdf: string;
  readonly events: EventBus;
  readonly dma: DmaPort;
  readonly group?: IommuGroup;
  /** RAM-side addresses are ANDed with this (default: all 64 bits). */
  readonly dmaMask?: bigint;
  readonly dmaCompletion?: DmaCompletion;
  readonly resetMethods?: readonly ResetMethod[];
}

const U32 = 0xffffffffn;
const ALL_ONES: Readonly<Record<AccessSize, bigint>> = {
  1: 0xffn,
  2: 0xffffn,
  4: 0xffffffffn,
  8: U64_MAX,
};

function hex16(value: bigint): string {
  return `0x${value.toString(16).padStart(16, '0')}`;
}

/** uint32 factorial, as QEMU's worker thread computes it. */
export function eduFactorial(n: number): number {
  let ret = 1;
  for (let val = n >>> 0; val > 0; val--) {
    ret = Math.imul(ret, val) >>> 0;
    // Once 2^32 divides the product it stays 0; stop instead of looping up to 4 billion times.
    if (ret === 0) break;
  }
  return ret;
}

/** The edu device. */
export class EduDevice extends PciDevice {
  /** Liveness register: the NOT of the last value written. */
  private liveness = 0;
  private factorial = 0;
  private status = 0;
  private irqStatus = 0;
  private dmaSrc = 0n;
  private dmaDst = 0n;
  private dmaCount = 0n;
  private dmaCmd = 0n;
  private readonly buffer = new Uint8Array(Number(EDU_DMA_SIZE));
  private mask: bigint;
  private completion: DmaCompletion;
  /** Cancels the pending factorial completion; set while one is pending. */
  private factTimer: (() => void) | undefined;
  /** Cancels the pending DMA completion; set while one is pending. */
  private dmaTimer: (() => void) | undefined;
  private idleWaiters: (() => void)[] = [];
  private dead = false;

  constructor(options: EduOptions) {
    super({
      bdf: options.bdf,
      type: 'edu',
      events: options.events,
      dma: options.dma,
      identity: {
        vendorId: EDU_VENDOR_ID,
        deviceId: EDU_DEVICE_ID,
        revision: EDU_REVISION,
        classCode: EDU_CLASS,
        subsystemVendorId: 0x1af4,
        subsystemId: 0x1100,
        interruptPin: 1,
      },
      bars: [{ index: 0, size: EDU_BAR0_SIZE, is64: false, prefetchable: false }],
      msiOffset: EDU_MSI_OFFSET,
      ...(options.group === undefined ? {} : { group: options.group }),
      ...(options.resetMethods === undefined ? {} : { resetMethods: options.resetMethods }),
    });
    this.mask = options.dmaMask ?? U64_MAX;
    this.completion = options.dmaCompletion ?? 'prompt';
  }

  /** The dma_mask property: RAM-side addresses are clamped to it. */
  get dmaMask(): bigint {
    return this.mask;
  }

  set dmaMask(mask: bigint) {
    this.mask = mask & U64_MAX;
  }

  get dmaCompletion(): DmaCompletion {
    return this.completion;
  }

  set dmaCompletion(completion: DmaCompletion) {
    this.completion = completion;
  }

  /** A copy of the internal DMA buffer (device side, not reachable through BAR0). */
  dmaBuffer(): Uint8Array {
    return this.buffer.slice();
  }

  barRead(bar: number, offset: bigint, size: AccessSize): bigint {
    return bar === 0 ? this.mmioRead(offset, size) : ALL_ONES[size];
  }

  barWrite(bar: number, offset: bigint, size: AccessSize, value: bigint): void {
    if (bar === 0) this.mmioWrite(offset, size, value);
  }

  /**
   * A load from BAR0. 1- and 2-byte or unaligned loads fail QEMU's access check and read 0;
   * 8-byte loads below 0x80 and unimplemented offsets read all ones. Reads have no side effects.
   */
  mmioRead(offset: bigint, size: AccessSize): bigint {
    if (size < 4 || offset % BigInt(size) !== 0n) return 0n;
    if (offset < 0x80n && size !== 4) return ALL_ONES[size];
    let value: bigint;
    switch (offset) {
      case EduReg.ID:
        value = BigInt(EDU_ID_VALUE);
        break;
      case EduReg.LIVENESS:
        value = BigInt(this.liveness);
        break;
      case EduReg.FACTORIAL:
        value = BigInt(this.factorial);
        break;
      case EduReg.STATUS:
        value = BigInt(this.status);
        break;
      case EduReg.IRQ_STATUS:
        value = BigInt(this.irqStatus);
        break;
      case EduReg.DMA_SRC:
        value = this.dmaSrc;
        break;
      case EduReg.DMA_DST:
        value = this.dmaDst;
        break;
      case EduReg.DMA_COUNT:
        value = this.dmaCount;
        break;
      case EduReg.DMA_CMD:
        value = this.dmaCmd;
        break;
      default:
        value = U64_MAX;
    }
    return value & ALL_ONES[size];
  }

  /**
   * A store to BAR0. Invalid sizes and unaligned stores are dropped, as are 8-byte stores below
   * 0x80 and stores to read-only or unimplemented offsets (0x84, 0x8c, 0x94, 0x9c included).
   */
  mmioWrite(offset: bigint, size: AccessSize, value: bigint): void {
    if (this.dead || size < 4 || offset % BigInt(size) !== 0n) return;
    if (offset < 0x80n && size !== 4) return;
    // A 4-byte store carries only 32 bits: it zero-extends into the 64-bit DMA registers.
    const val = value & ALL_ONES[size];
    const low = Number(val & U32);
    switch (offset) {
      case EduReg.LIVENESS:
        this.liveness = ~low >>> 0;
        break;
      case EduReg.FACTORIAL:
        if ((this.status & EduStatus.COMPUTING) !== 0) break;
        this.factorial = low;
        this.status |= EduStatus.COMPUTING;
        this.scheduleFactorial();
        break;
      case EduReg.STATUS:
        if ((low & EduStatus.IRQ_FACT) !== 0) this.status |= EduStatus.IRQ_FACT;
        else this.status &= ~EduStatus.IRQ_FACT;
        break;
      case EduReg.IRQ_RAISE:
        this.raiseIrq(low);
        break;
      case EduReg.IRQ_ACK:
        this.lowerIrq(low);
        break;
      case EduReg.DMA_SRC:
        if (!this.dmaRunning()) this.dmaSrc = val;
        break;
      case EduReg.DMA_DST:
        if (!this.dmaRunning()) this.dmaDst = val;
        break;
      case EduReg.DMA_COUNT:
        if (!this.dmaRunning()) this.dmaCount = val;
        break;
      case EduReg.DMA_CMD:
        if ((val & EduDmaCmd.RUN) === 0n || this.dmaRunning()) break;
        this.dmaCmd = val;
        this.scheduleDma();
        break;
    }
  }

  registers(): Readonly<Record<string, bigint | number | boolean>> {
    return {
      liveness: this.liveness,
      factorial: this.factorial,
      status: this.status,
      irqStatus: this.irqStatus,
      dmaSrc: this.dmaSrc,
      dmaDst: this.dmaDst,
      dmaCount: this.dmaCount,
      dmaCmd: this.dmaCmd,
      dmaMask: this.mask,
    };
  }

  /** Resolves once no factorial or DMA is pending. */
  whenIdle(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  shutdown(): void {
    this.dead = true;
    this.factTimer?.();
    this.dmaTimer?.();
    this.factTimer = undefined;
    this.dmaTimer = undefined;
    this.wakeIdle();
  }

  // QEMU's edu has no reset handler: whatever reset the platform gives it (the PCI core's FLR, PM
  // or bus reset), its registers stay as they are; only config space and INTx reset.
  protected override onReset(): void {}

  // ---- internals ----------------------------------------------------------------------------

  private dmaRunning(): boolean {
    return (this.dmaCmd & EduDmaCmd.RUN) !== 0n;
  }

  private idle(): boolean {
    return this.factTimer === undefined && this.dmaTimer === undefined;
  }

  private wakeIdle(): void {
    if (!this.idle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }

  private raiseIrq(cause: number): void {
    this.irqStatus = (this.irqStatus | cause) >>> 0;
    if (this.irqStatus === 0) return;
    if (this.msiEnabled()) this.sendMsi(0);
    else this.setIntx(true);
  }

  private lowerIrq(cause: number): void {
    this.irqStatus = (this.irqStatus & ~cause) >>> 0;
    if (this.irqStatus === 0 && !this.msiEnabled()) this.setIntx(false);
  }

  /** QEMU's worker thread finishes at once; here that is the next event-loop turn. */
  private scheduleFactorial(): void {
    this.factTimer = this.timers.schedule(this.bdf, 'factorial', 0, () => {
      this.factTimer = undefined;
      this.factorial = eduFactorial(this.factorial);
      this.status &= ~EduStatus.COMPUTING;
      if ((this.status & EduStatus.IRQ_FACT) !== 0) this.raiseIrq(EduIrq.FACTORIAL);
      this.wakeIdle();
    });
  }

  private scheduleDma(): void {
    const c = this.completion;
    const delayMs = c === 'prompt' ? 0 : c === 'qemu' ? QEMU_DMA_DELAY_MS : c.delayMs;
    this.dmaTimer = this.timers.schedule(this.bdf, 'dma', delayMs, () => {
      this.dmaTimer = undefined;
      this.completeDma();
      this.wakeIdle();
    });
  }

  /** The timer callback: the whole copy happens now, through the mappings live now. */
  private completeDma(): void {
    if (!this.dmaRunning()) return;
    const count = this.dmaCount;
    if ((this.dmaCmd & EduDmaCmd.TO_RAM) === 0n) {
      if (this.bufferRangeOk(this.dmaDst, count)) {
        // A blocked read (IOMMU fault, bus mastering off) gives QEMU's unassigned-memory zeros.
        const data = this.dmaRead(this.clamp(this.dmaSrc), Number(count));
        this.buffer.set(data ?? new Uint8Array(Number(count)), Number(this.dmaDst - EDU_DMA_START));
      }
    } else if (this.bufferRangeOk(this.dmaSrc, count)) {
      const from = Number(this.dmaSrc - EDU_DMA_START);
      this.dmaWrite(this.clamp(this.dmaDst), this.buffer.slice(from, from + Number(count)));
    }
    this.dmaCmd &= ~EduDmaCmd.RUN;
    if ((this.dmaCmd & EduDmaCmd.IRQ) !== 0n) this.raiseIrq(EduIrq.DMA);
  }

  /**
   * The buffer side must lie in [0x40000, 0x41000) without wrapping. Newest QEMU logs a guest
   * error and skips the copy otherwise; the command still completes.
   */
  private bufferRangeOk(start: bigint, size: bigint): boolean {
    const end = (start + size) & U64_MAX;
    const dmaEnd = EDU_DMA_START + EDU_DMA_SIZE;
    if (end >= start && start >= EDU_DMA_START && end <= dmaEnd) return true;
    this.events.log(
      'warn',
      `${this.bdf}: EDU: DMA range ${hex16(start)}-${hex16((end - 1n) & U64_MAX)} out of bounds ` +
        `(${hex16(EDU_DMA_START)}-${hex16(dmaEnd - 1n)})!`,
    );
    return false;
  }

  /** The RAM-side address ANDed with dma_mask; QEMU logs when that changes it, then carries on. */
  private clamp(addr: bigint): bigint {
    const res = addr & this.mask;
    if (res !== addr) {
      this.events.log('warn', `${this.bdf}: EDU: clamping DMA ${hex16(addr)} to ${hex16(res)}!`);
    }
    return res;
  }
}
