import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { EmuEvent } from '../trace/events.ts';
import {
  EDU_ID_VALUE,
  EduDevice,
  EduDmaCmd,
  EduIrq,
  EduReg,
  EduStatus,
  eduFactorial,
} from './edu.ts';
import { Machine } from './machine.ts';
import { type IrqSink, PciCommand, PciConfig, PciMsi } from './pci.ts';

const machines: Machine[] = [];

afterEach(() => {
  for (const m of machines.splice(0)) m.shutdown();
});

interface Rig {
  readonly machine: Machine;
  readonly edu: EduDevice;
  readonly events: EmuEvent[];
  readonly irqs: string[];
}

function rig(bdf = '0000:00:04.0'): Rig {
  const machine = new Machine();
  machines.push(machine);
  const edu = machine.device(bdf);
  assert.ok(edu instanceof EduDevice);
  const events: EmuEvent[] = [];
  machine.events.subscribe((e) => events.push(e));
  const irqs: string[] = [];
  const sink: IrqSink = {
    intx: (level) => irqs.push(level ? 'intx+' : 'intx-'),
    msi: (vector) => irqs.push(`msi${vector}`),
  };
  edu.setIrqSink(sink);
  return { machine, edu, events, irqs };
}

function r32(edu: EduDevice, offset: bigint): number {
  return Number(edu.mmioRead(offset, 4));
}

function w32(edu: EduDevice, offset: bigint, value: number | bigint): void {
  edu.mmioWrite(offset, 4, BigInt(value));
}

function logs(events: readonly EmuEvent[]): string[] {
  return events.flatMap((e) => (e.kind === 'log' ? [e.message] : []));
}

describe('edu config space', () => {
  it('has the identity and header of spec/edu.md §1', () => {
    const { edu } = rig();
    assert.equal(edu.configRead(PciConfig.VENDOR_ID, 2), 0x1234);
    assert.equal(edu.configRead(PciConfig.DEVICE_ID, 2), 0x11e8);
    assert.equal(edu.configRead(PciConfig.REVISION, 1), 0x10);
    assert.equal(edu.configRead(PciConfig.CLASS_PROG, 1), 0x00);
    assert.equal(edu.configRead(PciConfig.CLASS_DEVICE, 1), 0xff);
    assert.equal(edu.configRead(PciConfig.CLASS_DEVICE + 1, 1), 0x00);
    assert.equal(edu.configRead(PciConfig.SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
    assert.equal(edu.configRead(PciConfig.SUBSYSTEM_ID, 2), 0x1100);
    assert.equal(edu.configRead(PciConfig.HEADER_TYPE, 1), 0);
    assert.equal(edu.configRead(PciConfig.INTERRUPT_PIN, 1), 1);
    assert.equal(edu.configRead(PciConfig.STATUS, 2) & 0x10, 0x10, 'capabilities list');
    assert.equal(edu.configRead(PciConfig.CAPABILITY_LIST, 1), 0x40);
    assert.equal(edu.configRead(0x40, 1), PciMsi.CAP_ID);
    assert.equal(edu.configRead(0x41, 1), 0, 'last capability');
    assert.equal(edu.configRead(0x42, 2), 0x80, '64-bit, 1 vector, no masking, disabled');
    assert.equal(edu.configRead(0x100, 4), 0xffffffff, 'config space is 256 bytes');
  });

  it('sizes BAR0 as a 1 MiB 32-bit memory BAR and has no others', () => {
    const { edu } = rig();
    // The firmware placed it at the start of the MMIO window (Machine.assignBars).
    assert.equal(edu.configRead(PciConfig.BAR0, 4), 0xfe000000);
    assert.equal(edu.barAddress(0), 0xfe000000n);
    edu.configWrite(PciConfig.BAR0, 4, 0xffffffff);
    assert.equal(edu.configRead(PciConfig.BAR0, 4), 0xfff00000);
    edu.configWrite(PciConfig.BAR0 + 4, 4, 0xffffffff);
    assert.equal(edu.configRead(PciConfig.BAR0 + 4, 4), 0);
  });

  it('starts with bus mastering off and lets software set it', () => {
    const { edu } = rig();
    assert.equal(edu.busMaster, false);
    edu.configWrite(PciConfig.COMMAND, 2, edu.command | PciCommand.MEMORY | PciCommand.MASTER);
    assert.equal(edu.busMaster, true);
    assert.equal(edu.memoryDecode, true);
    edu.configWrite(PciConfig.DEVICE_ID, 2, 0);
    assert.equal(edu.configRead(PciConfig.DEVICE_ID, 2), 0x11e8, 'IDs are read-only');
    edu.reset();
    assert.equal(edu.busMaster, false);
  });
});

describe('edu BAR0 registers', () => {
  it('identifies itself and inverts liveness writes', () => {
    const { edu } = rig();
    assert.equal(r32(edu, EduReg.ID), EDU_ID_VALUE);
    w32(edu, EduReg.ID, 0);
    assert.equal(r32(edu, EduReg.ID), 0x010000ed);
    assert.equal(r32(edu, EduReg.LIVENESS), 0);
    w32(edu, EduReg.LIVENESS, 0x5a5aa5a5);
    assert.equal(r32(edu, EduReg.LIVENESS), 0xa5a55a5a);
    w32(edu, EduReg.LIVENESS, 0);
    assert.equal(r32(edu, EduReg.LIVENESS), 0xffffffff);
  });

  it('follows the access-size rules', () => {
    const { edu } = rig();
    assert.equal(edu.mmioRead(EduReg.ID, 8), 0xffffffffffffffffn, '8-byte read below 0x80');
    assert.equal(edu.mmioRead(EduReg.ID, 2), 0n, '2-byte access is invalid');
    assert.equal(edu.mmioRead(EduReg.ID, 1), 0n, '1-byte access is invalid');
    assert.equal(edu.mmioRead(0x02n, 4), 0n, 'unaligned access is invalid');
    edu.mmioWrite(EduReg.LIVENESS, 8, 0x1234n);
    assert.equal(r32(edu, EduReg.LIVENESS), 0, '8-byte write below 0x80 is ignored');
    edu.mmioWrite(EduReg.LIVENESS, 2, 0x1234n);
    assert.equal(r32(edu, EduReg.LIVENESS), 0, '2-byte write is dropped');
    for (const off of [
      0x0cn,
      0x1cn,
      0x28n,
      0x5cn,
      0x60n,
      0x64n,
      0x68n,
      0x7cn,
      0x84n,
      0x8cn,
      0x94n,
      0x9cn,
      0xa0n,
      0x40000n,
      0xffffcn,
    ]) {
      assert.equal(r32(edu, off), 0xffffffff, `offset ${off.toString(16)} is unimplemented`);
    }
    assert.equal(edu.mmioRead(0xa0n, 8), 0xffffffffffffffffn);
    assert.equal(edu.barRead(1, 0n, 4), 0xffffffffn);
  });

  it('computes factorials asynchronously in uint32, 13! wrapping', async () => {
    const { edu } = rig();
    w32(edu, EduReg.FACTORIAL, 10);
    assert.equal(r32(edu, EduReg.STATUS) & EduStatus.COMPUTING, EduStatus.COMPUTING);
    w32(edu, EduReg.FACTORIAL, 3);
    assert.equal(r32(edu, EduReg.FACTORIAL), 10, 'writes while computing are ignored');
    await edu.whenIdle();
    assert.equal(r32(edu, EduReg.STATUS) & EduStatus.COMPUTING, 0);
    assert.equal(r32(edu, EduReg.FACTORIAL), 3628800);
    w32(edu, EduReg.FACTORIAL, 13);
    await edu.whenIdle();
    assert.equal(r32(edu, EduReg.FACTORIAL), 1932053504, '13! mod 2^32');
    w32(edu, EduReg.FACTORIAL, 0);
    await edu.whenIdle();
    assert.equal(r32(edu, EduReg.FACTORIAL), 1);
    assert.equal(eduFactorial(0xffffffff), 0);
    assert.equal(eduFactorial(12), 479001600);
  });

  it('raises FACT_IRQ only when status bit 7 is set at completion', async () => {
    const { edu, irqs } = rig();
    w32(edu, EduReg.FACTORIAL, 5);
    await edu.whenIdle();
    assert.equal(r32(edu, EduReg.IRQ_STATUS), 0);
    w32(edu, EduReg.STATUS, 0xff);
    assert.equal(r32(edu, EduReg.STATUS), EduStatus.IRQ_FACT, 'only bit 7 is writable');
    w32(edu, EduReg.FACTORIAL, 5);
    await edu.whenIdle();
    assert.equal(r32(edu, EduReg.IRQ_STATUS), EduIrq.FACTORIAL);
    assert.deepEqual(irqs, ['intx+']);
    w32(edu, EduReg.STATUS, 0);
    assert.equal(r32(edu, EduReg.STATUS), 0);
  });

  it('raises and acks interrupts with INTx level semantics', () => {
    const { edu, irqs, events } = rig();
    w32(edu, EduReg.IRQ_RAISE, 0x1234);
    assert.equal(r32(edu, EduReg.IRQ_STATUS), 0x1234);
    assert.equal(edu.intxAsserted(), true);
    w32(edu, EduReg.IRQ_RAISE, 0x1);
    w32(edu, EduReg.IRQ_ACK, 0x1000);
    assert.equal(r32(edu, EduReg.IRQ_STATUS), 0x0235);
    assert.equal(edu.intxAsserted(), true, 'still pending causes keep the level up');
    w32(edu, EduReg.IRQ_ACK, 0xffffffff);
    assert.equal(edu.intxAsserted(), false);
    assert.deepEqual(irqs, ['intx+', 'intx-']);
    assert.ok(events.some((e) => e.kind === 'irq' && e.irq === 'intx' && e.detail === 'assert'));
    w32(edu, EduReg.IRQ_STATUS, 0x5);
    assert.equal(r32(edu, EduReg.IRQ_STATUS), 0, '0x24 is read-only');
  });

  it('masks INTx with the command register and lets a late sink see the level', () => {
    const { edu, irqs } = rig();
    w32(edu, EduReg.IRQ_RAISE, 1);
    edu.configWrite(PciConfig.COMMAND, 2, PciCommand.INTX_DISABLE);
    assert.equal(edu.intxAsserted(), false);
    assert.equal(edu.configRead(PciConfig.STATUS, 2) & 0x8, 0x8, 'interrupt status still shows it');
    edu.configWrite(PciConfig.COMMAND, 2, 0);
    assert.deepEqual(irqs, ['intx+', 'intx-', 'intx+']);
    const late: string[] = [];
    edu.setIrqSink({ intx: (l) => late.push(`intx${l ? '+' : '-'}`), msi: () => late.push('msi') });
    assert.deepEqual(late, ['intx+']);
  });

  it('sends one MSI per raise once MSI is enabled, and needs bus mastering for it', () => {
    const { edu, irqs } = rig();
    edu.configWrite(0x40 + PciMsi.FLAGS, 2, PciMsi.FLAGS_ENABLE);
    assert.equal(edu.msiEnabled(), true);
    w32(edu, EduReg.IRQ_RAISE, 1);
    assert.deepEqual(irqs, [], 'an MSI is a memory write: dropped without bus mastering');
    edu.configWrite(PciConfig.COMMAND, 2, PciCommand.MASTER);
    w32(edu, EduReg.IRQ_RAISE, 1);
    w32(edu, EduReg.IRQ_RAISE, 0);
    assert.deepEqual(irqs, ['msi0', 'msi0'], 'every raise with causes pending sends a message');
    w32(edu, EduReg.IRQ_ACK, 1);
    assert.deepEqual(irqs, ['msi0', 'msi0']);
    assert.equal(edu.intxAsserted(), false);
  });

  it('keeps the DMA register rules', async () => {
    const { edu } = rig();
    edu.mmioWrite(EduReg.DMA_SRC, 8, 0x1122334455667788n);
    assert.equal(edu.mmioRead(EduReg.DMA_SRC, 8), 0x1122334455667788n);
    assert.equal(edu.mmioRead(EduReg.DMA_SRC, 4), 0x55667788n, '4-byte read gives the low half');
    w32(edu, 0x84n, 0xdead);
    assert.equal(edu.mmioRead(EduReg.DMA_SRC, 8), 0x1122334455667788n, '0x84 is not a register');
    w32(edu, EduReg.DMA_SRC, 0xabcd);
    assert.equal(edu.mmioRead(EduReg.DMA_SRC, 8), 0xabcdn, '4-byte write zero-extends');
    edu.mmioWrite(EduReg.DMA_DST, 8, 0x40000n);
    edu.mmioWrite(EduReg.DMA_COUNT, 8, 0n);
    w32(edu, EduReg.DMA_CMD, EduDmaCmd.IRQ);
    assert.equal(edu.mmioRead(EduReg.DMA_CMD, 8), 0n, 'a command without bit 0 is ignored');
    edu.mmioWrite(EduReg.DMA_CMD, 8, EduDmaCmd.RUN | EduDmaCmd.IRQ | EduDmaCmd.TO_RAM);
    assert.equal(edu.mmioRead(EduReg.DMA_CMD, 8), 7n);
    w32(edu, EduReg.DMA_SRC, 0x9999);
    w32(edu, EduReg.DMA_COUNT, 0x10);
    w32(edu, EduReg.DMA_CMD, 1);
    assert.equal(edu.mmioRead(EduReg.DMA_SRC, 8), 0xabcdn, 'writes are ignored while running');
    assert.equal(edu.mmioRead(EduReg.DMA_COUNT, 8), 0n);
    assert.equal(edu.mmioRead(EduReg.DMA_CMD, 8), 7n);
    await edu.whenIdle();
    assert.equal(edu.mmioRead(EduReg.DMA_CMD, 8), 6n, 'bit 0 clears at completion, bits 1-2 stay');
    assert.equal(r32(edu, EduReg.IRQ_STATUS), EduIrq.DMA);
  });

  it('logs and skips an out-of-range buffer-side DMA, still completing', async () => {
    const { edu, events } = rig();
    edu.configWrite(PciConfig.COMMAND, 2, PciCommand.MASTER);
    edu.mmioWrite(EduReg.DMA_SRC, 8, 0x1000n);
    edu.mmioWrite(EduReg.DMA_DST, 8, 0x40f00n);
    edu.mmioWrite(EduReg.DMA_COUNT, 8, 0x200n);
    edu.mmioWrite(EduReg.DMA_CMD, 8, EduDmaCmd.RUN | EduDmaCmd.IRQ);
    await edu.whenIdle();
    assert.ok(
      logs(events).some((m) =>
        m.includes('EDU: DMA range 0x0000000000040f00-0x00000000000410ff out of bounds'),
      ),
    );
    assert.ok(!events.some((e) => e.kind === 'dma'), 'no transfer happened');
    assert.equal(edu.mmioRead(EduReg.DMA_CMD, 8), EduDmaCmd.IRQ);
    assert.equal(r32(edu, EduReg.IRQ_STATUS), EduIrq.DMA);
  });

  it('fills its buffer with zeros when a DMA read is blocked, as QEMU does', async () => {
    // The no-IOMMU edu reads physical memory directly, so the buffer can be filled first.
    const { machine, edu } = rig('0000:00:06.0');
    machine.phys.write(0x200000n, new Uint8Array(0x100).fill(0xa5));
    const readInto = async (): Promise<void> => {
      edu.mmioWrite(EduReg.DMA_SRC, 8, 0x200000n);
      edu.mmioWrite(EduReg.DMA_DST, 8, 0x40080n);
      edu.mmioWrite(EduReg.DMA_COUNT, 8, 0x100n);
      edu.mmioWrite(EduReg.DMA_CMD, 8, EduDmaCmd.RUN);
      await edu.whenIdle();
    };
    edu.configWrite(PciConfig.COMMAND, 2, PciCommand.MASTER);
    await readInto();
    assert.ok(
      edu
        .dmaBuffer()
        .subarray(0x80, 0x180)
        .every((b) => b === 0xa5),
    );
    edu.configWrite(PciConfig.COMMAND, 2, 0);
    await readInto();
    const buf = edu.dmaBuffer();
    assert.ok(
      buf.subarray(0x80, 0x180).every((b) => b === 0),
      'the blocked range reads as zeros',
    );
    // (An IOMMU fault takes the same path: dma_iommu.c checks it through a real domain.)
  });

  it('clamps the RAM-side address to dma_mask and logs it', async () => {
    const { edu, events } = rig();
    edu.dmaMask = 0x0fffffffn;
    edu.configWrite(PciConfig.COMMAND, 2, PciCommand.MASTER);
    edu.mmioWrite(EduReg.DMA_SRC, 8, 0x40000n);
    edu.mmioWrite(EduReg.DMA_DST, 8, 0x123456000n);
    edu.mmioWrite(EduReg.DMA_COUNT, 8, 8n);
    edu.mmioWrite(EduReg.DMA_CMD, 8, EduDmaCmd.RUN | EduDmaCmd.TO_RAM);
    await edu.whenIdle();
    assert.ok(
      logs(events).includes(
        '0000:00:04.0: EDU: clamping DMA 0x0000000123456000 to 0x0000000003456000!',
      ),
    );
    const dma = events.find((e) => e.kind === 'dma');
    assert.ok(dma?.kind === 'dma' && dma.addr === 0x3456000n && dma.dir === 'write');
  });

  it('can complete DMA on QEMU time (100 ms)', async () => {
    const { edu } = rig();
    edu.dmaCompletion = 'qemu';
    edu.mmioWrite(EduReg.DMA_DST, 8, 0x40000n);
    const start = Date.now();
    edu.mmioWrite(EduReg.DMA_CMD, 8, EduDmaCmd.RUN);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(edu.mmioRead(EduReg.DMA_CMD, 8), 1n, 'still running after an event-loop turn');
    await edu.whenIdle();
    assert.ok(Date.now() - start >= 90);
    assert.equal(edu.mmioRead(EduReg.DMA_CMD, 8), 0n);
  });

  it('keeps its registers across a function reset', () => {
    const { edu } = rig();
    w32(edu, EduReg.LIVENESS, 1);
    w32(edu, EduReg.IRQ_RAISE, 4);
    edu.reset();
    assert.equal(r32(edu, EduReg.LIVENESS), 0xfffffffe);
    assert.equal(r32(edu, EduReg.IRQ_STATUS), 4);
    assert.equal(edu.intxAsserted(), false);
  });
});
