/**
 * vfio-pci for the emulated devices (drivers/vfio/pci/vfio_pci_core.c, vfio_pci_intrs.c,
 * vfio_pci_rdwr.c): device/region/IRQ info, SET_IRQS with eventfds, reset, and region access by
 * file offset (index << 40). Config space is passed through except for the writes vfio-pci
 * virtualizes (only the command register reaches the device here; see docs/decisions.md).
 */
import { shouldFail } from '../fault/fault.ts';
import type { MmapBacking } from '../host/file.ts';
import type { EventfdRef, Task } from '../host/task.ts';
import { copyFromUser, copyStructMinsz, copyToUser } from '../host/uaccess.ts';
import { PciCommand } from '../platform/pci.ts';
import { type IoctlCommand, VFIO_DEVICE } from '../uapi/commands.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { encodeStruct } from '../uapi/struct.ts';
import * as v from '../uapi/vfio.ts';
import { deviceReset, functionResetPossible, getHotResetInfo, hotReset } from './pci-reset.ts';
import type { VfioDevice } from './vfio-main.ts';

const CONFIG_SIZE = 256n;
const U32_MAX = 0xffffffff;

function regionOf(pos: bigint): { index: number; offset: bigint } {
  return {
    index: Number(pos >> v.VFIO_PCI_OFFSET_SHIFT),
    offset: pos & ((1n << v.VFIO_PCI_OFFSET_SHIFT) - 1n),
  };
}

/** Size of BAR `index` (0 for an absent BAR). */
function barSize(device: VfioDevice, index: number): bigint {
  return device.pci.bars.find((b) => b.index === index)?.size ?? 0n;
}

/**
 * vfio_pci_core_enable(): memory decode on, bus mastering off, as vfio-pci leaves it at open, and
 * reset_works found once, by the reset it tries here (kept until the next first open).
 */
export function pciCoreOpen(device: VfioDevice): void {
  const pci = device.pci;
  device.resetWorks = functionResetPossible(device);
  const cmd = pci.configRead(4, 2);
  pci.configWrite(4, 2, (cmd | PciCommand.MEMORY) & ~PciCommand.MASTER);
  pci.setIrqSink({
    intx: (level) => intxLevel(device, level),
    msi: () => device.irq.msiTrigger?.signal(),
  });
}

/** vfio_pci_core_disable(): interrupts torn down, device disabled and reset. */
export function pciCoreClose(device: VfioDevice): void {
  disableIrqs(device);
  device.irq.errTrigger?.release();
  device.irq.errTrigger = undefined;
  device.irq.reqTrigger?.release();
  device.irq.reqTrigger = undefined;
  device.pci.setIrqSink(undefined);
  device.pci.configWrite(4, 2, 0);
  device.pci.reset();
}

/** INTx is level triggered and automasked: one signal, then masked until userspace unmasks. */
function intxLevel(device: VfioDevice, level: boolean): void {
  const irq = device.irq;
  if (!level || irq.mode !== 'intx' || irq.intxMasked) return;
  irq.intxMasked = true;
  irq.intxTrigger?.signal();
}

function disableIrqs(device: VfioDevice): void {
  const irq = device.irq;
  irq.intxTrigger?.release();
  irq.intxTrigger = undefined;
  irq.msiTrigger?.release();
  irq.msiTrigger = undefined;
  if (irq.mode === 'msi') setMsiEnable(device, false);
  irq.mode = 'none';
  irq.intxMasked = false;
}

/** vfio-pci enables MSI in the device's capability itself: userspace goes through SET_IRQS. */
function setMsiEnable(device: VfioDevice, on: boolean): void {
  const off = device.pci.msiOffset;
  if (off === undefined) return;
  const ctrl = device.pci.configRead(off + 2, 2);
  device.pci.configWrite(off + 2, 2, on ? ctrl | 1 : ctrl & ~1);
}

function irqCount(device: VfioDevice, index: number): number {
  switch (index) {
    case v.VFIO_PCI_INTX_IRQ_INDEX:
      return device.pci.configRead(0x3d, 1) !== 0 ? 1 : 0;
    case v.VFIO_PCI_MSI_IRQ_INDEX:
      return device.pci.msiOffset !== undefined ? 1 : 0;
    case v.VFIO_PCI_ERR_IRQ_INDEX:
    case v.VFIO_PCI_REQ_IRQ_INDEX:
      return 1;
    default:
      return 0;
  }
}

function getInfo(device: VfioDevice, task: Task, arg: bigint): SyscallResult {
  const spec = v.vfioDeviceInfo;
  const info = copyStructMinsz(task, arg, spec);
  if (info === undefined) return -Errno.EFAULT;
  if (info.argsz < spec.minSize) return -Errno.EINVAL;
  const out = encodeStruct(spec, {
    argsz: info.argsz,
    flags: v.VFIO_DEVICE_FLAGS_PCI | (device.resetWorks ? v.VFIO_DEVICE_FLAGS_RESET : 0),
    num_regions: v.VFIO_PCI_NUM_REGIONS,
    num_irqs: v.VFIO_PCI_NUM_IRQS,
    cap_offset: 0,
  });
  return copyToUser(task, arg, out.subarray(0, Math.min(info.argsz, spec.size)))
    ? 0
    : -Errno.EFAULT;
}

function getRegionInfo(device: VfioDevice, task: Task, arg: bigint): SyscallResult {
  const spec = v.vfioRegionInfo;
  const info = copyStructMinsz(task, arg, spec);
  if (info === undefined) return -Errno.EFAULT;
  if (info.argsz < spec.minSize) return -Errno.EINVAL;
  const offset = BigInt(info.index) << v.VFIO_PCI_OFFSET_SHIFT;
  let size = 0n;
  let flags = 0;
  if (info.index === v.VFIO_PCI_CONFIG_REGION_INDEX) {
    size = CONFIG_SIZE;
    flags = v.VFIO_REGION_INFO_FLAG_READ | v.VFIO_REGION_INFO_FLAG_WRITE;
  } else if (info.index <= 5) {
    size = barSize(device, info.index);
    if (size !== 0n) {
      flags =
        v.VFIO_REGION_INFO_FLAG_READ | v.VFIO_REGION_INFO_FLAG_WRITE | v.VFIO_REGION_INFO_FLAG_MMAP;
    }
  } else if (info.index === v.VFIO_PCI_ROM_REGION_INDEX) {
    size = 0n;
  } else {
    // VGA on a device that is not a VGA device, and no device-specific regions.
    return -Errno.EINVAL;
  }
  const out = encodeStruct(spec, {
    argsz: info.argsz,
    flags,
    index: info.index,
    cap_offset: 0,
    size,
    offset,
  });
  return copyToUser(task, arg, out) ? 0 : -Errno.EFAULT;
}

function getIrqInfo(device: VfioDevice, task: Task, arg: bigint): SyscallResult {
  const spec = v.vfioIrqInfo;
  const info = copyStructMinsz(task, arg, spec);
  if (info === undefined) return -Errno.EFAULT;
  if (info.argsz < spec.minSize || info.index >= v.VFIO_PCI_NUM_IRQS) return -Errno.EINVAL;
  // Every index exists, ERR too (7.3 dropped its PCI Express check). All but INTx are NORESIZE:
  // no emulated device has MSI-X, so there is no dynamic MSI-X to leave it off for.
  let flags = v.VFIO_IRQ_INFO_EVENTFD;
  if (info.index === v.VFIO_PCI_INTX_IRQ_INDEX)
    flags |= v.VFIO_IRQ_INFO_MASKABLE | v.VFIO_IRQ_INFO_AUTOMASKED;
  else flags |= v.VFIO_IRQ_INFO_NORESIZE;
  const out = encodeStruct(spec, {
    argsz: info.argsz,
    flags,
    index: info.index,
    count: irqCount(device, info.index),
  });
  return copyToUser(task, arg, out) ? 0 : -Errno.EFAULT;
}

function setIrqs(device: VfioDevice, task: Task, arg: bigint): SyscallResult {
  const spec = v.vfioIrqSet;
  const hdr = copyStructMinsz(task, arg, spec);
  if (hdr === undefined) return -Errno.EFAULT;
  // vfio_set_irqs_validate_and_prepare().
  if (
    hdr.argsz < spec.minSize ||
    hdr.index >= v.VFIO_PCI_NUM_IRQS ||
    hdr.count >= U32_MAX - hdr.start ||
    hdr.flags & ~(v.VFIO_IRQ_SET_DATA_TYPE_MASK | v.VFIO_IRQ_SET_ACTION_TYPE_MASK)
  ) {
    return -Errno.EINVAL;
  }
  const numIrqs = irqCount(device, hdr.index);
  if (hdr.start >= numIrqs || hdr.start + hdr.count > numIrqs) return -Errno.EINVAL;
  const dataType = hdr.flags & v.VFIO_IRQ_SET_DATA_TYPE_MASK;
  let elem: number;
  if (dataType === v.VFIO_IRQ_SET_DATA_NONE) elem = 0;
  else if (dataType === v.VFIO_IRQ_SET_DATA_BOOL) elem = 1;
  else if (dataType === v.VFIO_IRQ_SET_DATA_EVENTFD) elem = 4;
  else return -Errno.EINVAL;
  let data: Uint8Array = new Uint8Array(0);
  if (elem) {
    if (hdr.argsz - spec.minSize < hdr.count * elem) return -Errno.EINVAL;
    // memdup_user(): kmalloc, then the copy.
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    const d = copyFromUser(task, arg + BigInt(spec.minSize), hdr.count * elem);
    if (d === undefined) return -Errno.EFAULT;
    data = d;
  }
  const action = hdr.flags & v.VFIO_IRQ_SET_ACTION_TYPE_MASK;
  const handler = irqHandler(hdr.index, action);
  if (handler === undefined) return -Errno.ENOTTY;
  return handler(device, task, { flags: hdr.flags, start: hdr.start, count: hdr.count, data });
}

interface IrqSetArgs {
  readonly flags: number;
  readonly start: number;
  readonly count: number;
  readonly data: Uint8Array;
}

type IrqHandler = (device: VfioDevice, task: Task, args: IrqSetArgs) => SyscallResult;

/** vfio_pci_set_irqs_ioctl()'s table: an (index, action) pair with no handler is ENOTTY. */
function irqHandler(index: number, action: number): IrqHandler | undefined {
  switch (index) {
    case v.VFIO_PCI_INTX_IRQ_INDEX:
      if (action === v.VFIO_IRQ_SET_ACTION_MASK) return setIntxMask;
      if (action === v.VFIO_IRQ_SET_ACTION_UNMASK) return setIntxUnmask;
      if (action === v.VFIO_IRQ_SET_ACTION_TRIGGER) return setIntxTrigger;
      return undefined;
    case v.VFIO_PCI_MSI_IRQ_INDEX:
      // No masking support is exported for MSI.
      return action === v.VFIO_IRQ_SET_ACTION_TRIGGER ? setMsiTrigger : undefined;
    case v.VFIO_PCI_ERR_IRQ_INDEX:
      return action === v.VFIO_IRQ_SET_ACTION_TRIGGER ? setErrTrigger : undefined;
    case v.VFIO_PCI_REQ_IRQ_INDEX:
      return action === v.VFIO_IRQ_SET_ACTION_TRIGGER ? setReqTrigger : undefined;
    default:
      return undefined;
  }
}

function firstBool(args: IrqSetArgs): boolean {
  return (
    (args.flags & v.VFIO_IRQ_SET_DATA_NONE) !== 0 ||
    ((args.flags & v.VFIO_IRQ_SET_DATA_BOOL) !== 0 && args.data[0] !== 0)
  );
}

function eventfdArg(task: Task, args: IrqSetArgs): EventfdRef | undefined | number {
  const fd = new DataView(args.data.buffer, args.data.byteOffset, args.data.byteLength).getInt32(
    0,
    true,
  );
  return fd < 0 ? undefined : task.fds.eventfd(fd);
}

/** vfio_pci_set_intx_mask(). */
function setIntxMask(device: VfioDevice, _task: Task, args: IrqSetArgs): SyscallResult {
  if (device.irq.mode !== 'intx' || args.start !== 0 || args.count !== 1) return -Errno.EINVAL;
  // Masking through an eventfd is not implemented in vfio-pci either.
  if (args.flags & v.VFIO_IRQ_SET_DATA_EVENTFD) return -Errno.ENOTTY;
  if (firstBool(args)) device.irq.intxMasked = true;
  return 0;
}

/** vfio_pci_set_intx_unmask(): still asserted at unmask means signal again and stay masked. */
function setIntxUnmask(device: VfioDevice, _task: Task, args: IrqSetArgs): SyscallResult {
  if (device.irq.mode !== 'intx' || args.start !== 0 || args.count !== 1) return -Errno.EINVAL;
  // An unmask eventfd is watched by the kernel; the emulator cannot watch a client's eventfd.
  if (args.flags & v.VFIO_IRQ_SET_DATA_EVENTFD) return -Errno.EINVAL;
  if (!firstBool(args)) return 0;
  device.irq.intxMasked = false;
  if (device.pci.intxAsserted()) intxLevel(device, true);
  return 0;
}

/** vfio_pci_set_intx_trigger(). */
function setIntxTrigger(device: VfioDevice, task: Task, args: IrqSetArgs): SyscallResult {
  const irq = device.irq;
  if (irq.mode === 'intx' && args.count === 0 && args.flags & v.VFIO_IRQ_SET_DATA_NONE) {
    disableIrqs(device);
    return 0;
  }
  if (!(irq.mode === 'intx' || irq.mode === 'none') || args.start !== 0 || args.count !== 1)
    return -Errno.EINVAL;
  if (args.flags & v.VFIO_IRQ_SET_DATA_EVENTFD) {
    const trigger = eventfdArg(task, args);
    if (typeof trigger === 'number') return trigger;
    irq.intxTrigger?.release();
    irq.intxTrigger = trigger;
    if (irq.mode === 'none') {
      irq.mode = 'intx';
      irq.intxMasked = false;
    }
    return 0;
  }
  if (irq.mode !== 'intx') return -Errno.EINVAL;
  // Software loopback: signal the eventfd as if the line fired.
  if (firstBool(args)) irq.intxTrigger?.signal();
  return 0;
}

/** vfio_pci_set_msi_trigger(). */
function setMsiTrigger(device: VfioDevice, task: Task, args: IrqSetArgs): SyscallResult {
  const irq = device.irq;
  if (irq.mode === 'msi' && args.count === 0 && args.flags & v.VFIO_IRQ_SET_DATA_NONE) {
    disableIrqs(device);
    return 0;
  }
  if (!(irq.mode === 'msi' || irq.mode === 'none')) return -Errno.EINVAL;
  if (args.flags & v.VFIO_IRQ_SET_DATA_EVENTFD) {
    // No vector: enabling MSI with none fails (pci_alloc_irq_vectors); an empty block is a no-op.
    if (args.count === 0) return irq.mode === 'msi' ? 0 : -Errno.ERANGE;
    const trigger = eventfdArg(task, args);
    if (typeof trigger === 'number') return trigger;
    irq.msiTrigger?.release();
    irq.msiTrigger = trigger;
    if (irq.mode === 'none') {
      irq.mode = 'msi';
      setMsiEnable(device, true);
    }
    return 0;
  }
  if (irq.mode !== 'msi') return -Errno.EINVAL;
  if (firstBool(args)) irq.msiTrigger?.signal();
  return 0;
}

type CtxTrigger = 'errTrigger' | 'reqTrigger';

/** vfio_pci_set_ctx_trigger_single(): one eventfd slot of the ERR or REQ index. */
function setCtxTriggerSingle(
  device: VfioDevice,
  slot: CtxTrigger,
  task: Task,
  args: IrqSetArgs,
): SyscallResult {
  const irq = device.irq;
  if (args.start !== 0 || args.count > 1) return -Errno.EINVAL;
  if (args.flags & v.VFIO_IRQ_SET_DATA_EVENTFD) {
    if (args.count === 0) return -Errno.EINVAL;
    const trigger = eventfdArg(task, args);
    if (typeof trigger === 'number') return trigger;
    irq[slot]?.release();
    irq[slot] = trigger;
    return 0;
  }
  // DATA_NONE / DATA_BOOL: loopback with count 1, tear down with count 0; nothing set is EINVAL.
  const current = irq[slot];
  if (current === undefined) return -Errno.EINVAL;
  if (args.count === 0) {
    current.release();
    irq[slot] = undefined;
  } else if (firstBool(args)) {
    current.signal();
  }
  return 0;
}

/** vfio_pci_set_err_trigger(). */
function setErrTrigger(device: VfioDevice, task: Task, args: IrqSetArgs): SyscallResult {
  return setCtxTriggerSingle(device, 'errTrigger', task, args);
}

/** vfio_pci_set_req_trigger(). */
function setReqTrigger(device: VfioDevice, task: Task, args: IrqSetArgs): SyscallResult {
  return setCtxTriggerSingle(device, 'reqTrigger', task, args);
}

interface PciCoreIoctlOp {
  readonly command: IoctlCommand;
  readonly handler: (device: VfioDevice, task: Task, arg: bigint) => SyscallResult;
}

/** vfio_pci_core_ioctl()'s commands, each by its uAPI command. */
const pciCoreIoctlOps: readonly PciCoreIoctlOp[] = [
  { command: VFIO_DEVICE.GET_INFO, handler: getInfo },
  { command: VFIO_DEVICE.GET_REGION_INFO, handler: getRegionInfo },
  { command: VFIO_DEVICE.GET_IRQ_INFO, handler: getIrqInfo },
  { command: VFIO_DEVICE.SET_IRQS, handler: setIrqs },
  { command: VFIO_DEVICE.RESET, handler: deviceReset },
  { command: VFIO_DEVICE.GET_PCI_HOT_RESET_INFO, handler: getHotResetInfo },
  { command: VFIO_DEVICE.PCI_HOT_RESET, handler: hotReset },
];
const pciCoreIoctlOpsByCmd = new Map(pciCoreIoctlOps.map((op) => [op.command.cmd, op]));

/** The device commands registered here, for the trace's tests. */
export const pciCoreIoctlCommands: readonly IoctlCommand[] = pciCoreIoctlOps.map(
  (op) => op.command,
);

/** vfio_pci_core_ioctl(): the device ioctls after BIND; unknown ones are ENOTTY. */
export function pciCoreIoctl(
  device: VfioDevice,
  task: Task,
  cmd: number,
  arg: bigint,
): SyscallResult {
  const op = pciCoreIoctlOpsByCmd.get(cmd);
  if (op === undefined) return -Errno.ENOTTY;
  return op.handler(device, task, arg);
}

/**
 * vfio_pci_core_request(): an unbind asks the user to release the device, the `count`-th time
 * (0 first, then every 10 s): the REQ eventfd is signalled, with a notice every tenth time; with
 * none registered the first request says the unbind waits for the user.
 */
export function pciCoreRequest(
  device: VfioDevice,
  count: number,
  log: (level: 'info' | 'warn', line: string) => void,
): void {
  const trigger = device.irq.reqTrigger;
  if (trigger !== undefined) {
    if (count % 10 === 0)
      log('info', `vfio-pci ${device.pci.bdf}: Relaying device request to user (#${count})`);
    trigger.signal();
  } else if (count === 0) {
    log(
      'warn',
      `vfio-pci ${device.pci.bdf}: No device request channel registered, blocked until released by user`,
    );
  }
}

/** Splits an access into naturally aligned 8/4/2/1-byte pieces, like vfio_pci_core_do_io_rw. */
function pieces(offset: bigint, length: number): { at: bigint; size: 1 | 2 | 4 | 8 }[] {
  const out: { at: bigint; size: 1 | 2 | 4 | 8 }[] = [];
  let at = offset;
  let left = length;
  while (left > 0) {
    let size: 1 | 2 | 4 | 8 = 1;
    if (left >= 8 && at % 8n === 0n) size = 8;
    else if (left >= 4 && at % 4n === 0n) size = 4;
    else if (left >= 2 && at % 2n === 0n) size = 2;
    out.push({ at, size });
    at += BigInt(size);
    left -= size;
  }
  return out;
}

/** read()/pread() on the device fd. */
export function pciCoreRead(device: VfioDevice, length: number, pos: bigint): Uint8Array | number {
  const { index, offset } = regionOf(pos);
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  if (index === v.VFIO_PCI_CONFIG_REGION_INDEX) {
    if (offset >= CONFIG_SIZE) return new Uint8Array(0);
    const n = Math.min(length, Number(CONFIG_SIZE - offset));
    for (let i = 0; i < n; i++) out[i] = device.pci.configRead(Number(offset) + i, 1);
    return out.subarray(0, n);
  }
  const size = index <= 5 ? barSize(device, index) : 0n;
  if (size === 0n) return -Errno.EINVAL;
  if (offset >= size) return -Errno.EINVAL;
  const n = Math.min(length, Number(size - offset));
  for (const p of pieces(offset, n)) {
    const value = device.pci.barRead(index, p.at, p.size);
    const i = Number(p.at - offset);
    if (p.size === 8) view.setBigUint64(i, value, true);
    else if (p.size === 4) view.setUint32(i, Number(value & 0xffffffffn), true);
    else if (p.size === 2) view.setUint16(i, Number(value & 0xffffn), true);
    else view.setUint8(i, Number(value & 0xffn));
  }
  return out.subarray(0, n);
}

/** write()/pwrite() on the device fd. */
export function pciCoreWrite(device: VfioDevice, data: Uint8Array, pos: bigint): SyscallResult {
  const { index, offset } = regionOf(pos);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (index === v.VFIO_PCI_CONFIG_REGION_INDEX) {
    if (offset >= CONFIG_SIZE) return 0;
    const n = Math.min(data.length, Number(CONFIG_SIZE - offset));
    // Only the command register (0x04-0x05) reaches the device; the rest is virtualized away.
    for (let i = 0; i < n; i++) {
      const at = Number(offset) + i;
      if (at === 4 || at === 5) device.pci.configWrite(at, 1, data[i]!);
    }
    return n;
  }
  const size = index <= 5 ? barSize(device, index) : 0n;
  if (size === 0n || offset >= size) return -Errno.EINVAL;
  const n = Math.min(data.length, Number(size - offset));
  for (const p of pieces(offset, n)) {
    const i = Number(p.at - offset);
    let value: bigint;
    if (p.size === 8) value = view.getBigUint64(i, true);
    else if (p.size === 4) value = BigInt(view.getUint32(i, true));
    else if (p.size === 2) value = BigInt(view.getUint16(i, true));
    else value = BigInt(view.getUint8(i));
    device.pci.barWrite(index, p.at, p.size, value);
  }
  return n;
}

/** mmap() of a BAR: the accesses are trapped and replayed as region reads and writes. */
export function pciCoreMmap(
  device: VfioDevice,
  length: bigint,
  pgoff: bigint,
): MmapBacking | number {
  const { index, offset } = regionOf(pgoff << 12n);
  const size = index <= 5 ? barSize(device, index) : 0n;
  if (size === 0n || offset + length > size) return -Errno.EINVAL;
  return { kind: 'trapped', regionOffset: pgoff << 12n };
}
