/**
 * The iommufd module and its file: what iommufd keeps per emulated kernel (the misc devices
 * /dev/iommu and /dev/vfio/vfio, the module parameter, the live contexts and the mappings of
 * their regions) and iommufd_fops: open, the ioctl op table and its framing, DESTROY, OPTION,
 * mmap of driver regions, release. Mirrors the file half of drivers/iommu/iommufd/main.c; the
 * object table each open holds is context.ts.
 */
import { shouldFail } from '../fault/fault.ts';
import type { CharDevNode } from '../host/devfs.ts';
import { File, type FileOperations, type MaybeBlocked, S_IFCHR } from '../host/file.ts';
import { BackgroundWork } from '../host/resched.ts';
import type { Task } from '../host/task.ts';
import { checkZeroedUserThen, copyFromUser, copyToUser, getUser } from '../host/uaccess.ts';
import type { MmId } from '../host/user-memory.ts';
import type { MockBus } from '../iommu/mock-driver.ts';
import type { PhysMemory } from '../platform/phys-memory.ts';
import type { EventBus } from '../trace/events.ts';
import { IOMMUFD, type IommufdCommand } from '../uapi/commands.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { IO, IOMMUFD_CMD_BASE, IOMMUFD_TYPE, IommufdCmd, iocNr } from '../uapi/ioctl.ts';
import * as uapi from '../uapi/iommufd.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import { IOMMUFD_TEST_MEMORY_LIMIT_DEFAULT } from '../uapi/iommufd-test.ts';
import type { FieldTable, StructSpec } from '../uapi/struct.ts';
import type { Accounting } from './accounting.ts';
import { type AccountMode, IommufdCtx, type MmapHold, type MmapRegion } from './context.ts';
import { callOnContext } from './ctx-hold.ts';
import { iommufdGetHwInfo } from './device.ts';
import { iommufdFaultAlloc } from './eventq.ts';
import { iommufdIoasNoiommuGetPa } from './get-pa.ts';
import {
  iommufdHwptAlloc,
  iommufdHwptGetDirtyBitmap,
  iommufdHwptInvalidate,
  iommufdHwptSetDirtyTracking,
} from './hw-pagetable.ts';
import { iommufdHwQueueAlloc } from './hw-queue.ts';
import * as ioas from './ioas.ts';
import type { IoptEnv } from './iopt-area.ts';
import type { PagePinner } from './pages.ts';
import { iommufdTest } from './selftest.ts';
import { Ucmd } from './ucmd.ts';
import { iommufdVeventqAlloc } from './veventq.ts';
import { iommufdVfioIoas, iommufdVfioIoctl } from './vfio-compat.ts';
import { iommufdVdeviceAlloc, iommufdViommuAlloc } from './viommu.ts';

/** The misc devices: iommu (10:123) and, when iommufd provides it, vfio (VFIO_MINOR 196). */
const IOMMU_RDEV: Rdev = { major: 10, minor: 123 };
const VFIO_RDEV: Rdev = { major: 10, minor: 196 };
interface Rdev {
  readonly major: number;
  readonly minor: number;
}

/** Everything iommufd keeps per emulated kernel: the live contexts and the accounting. */
export class IommufdSubsystem {
  readonly contexts = new Set<IommufdCtx>();
  readonly events: EventBus;
  readonly accounting: Accounting;
  /** What every io_pagetable uses to pin and account pages. */
  readonly ioptEnv: IoptEnv;
  /** Objects a context could not free at release: refcount bugs, reported by leaks(). */
  readonly leaked: string[] = [];
  /**
   * The mappings of driver regions of every iommufd (the kernel's VMAs of the file), each holding
   * its region's owner (decision 231). One goes when the client's shim says it is unmapped, when
   * its address space goes, or when its context is released.
   */
  readonly mappings: MmapHold[] = [];
  /**
   * The allow_unsafe_interrupts module parameter: bind devices whose MSIs the platform cannot
   * isolate (with a warning) instead of refusing them with EPERM.
   */
  allowUnsafeInterrupts = false;
  /**
   * CONFIG_IOMMUFD_TEST: the mock bus IOMMU_TEST_CMD creates devices on. Undefined for a kernel
   * built without the test interface, where IOMMU_TEST_CMD is ENOTTY.
   */
  mockBus: MockBus | undefined;
  /** iommufd_test_memory_limit: the byte budget of the batches pages are read through. */
  testMemoryLimit = IOMMUFD_TEST_MEMORY_LIMIT_DEFAULT;
  /** Teardowns left by releases, done after them (ctx-hold.ts teardownAfterRelease). */
  readonly work: BackgroundWork;
  /** Contexts whose teardowns run as that work (a released one is in `contexts` no more). */
  readonly tearingDown = new Set<IommufdCtx>();

  /** The machine's RAM, where the test interface's dma-bufs are allocated. */
  readonly phys: PhysMemory | undefined;

  constructor(events: EventBus, accounting: Accounting, pinner: PagePinner, phys?: PhysMemory) {
    this.events = events;
    this.phys = phys;
    this.accounting = accounting;
    this.ioptEnv = { pinner, accounting };
    this.work = new BackgroundWork((err) => this.reportBug('background work', err));
  }

  /** Whether a call or kernel work holds a context now, between two of its batches. */
  held(): boolean {
    for (const ctx of this.contexts) if (ctx.hold.held) return true;
    for (const ctx of this.tearingDown) if (ctx.hold.held) return true;
    return false;
  }

  /** An exception outside any call (kernel work, a waiter): logged as the emulator bug it is. */
  reportBug(where: string, err: unknown): void {
    const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.events.log('bug', `emulator bug in ${where}: ${stack}`);
  }

  /** iommufd_fops_vma_close() of mappings that match: each lets go of its region's owner. */
  dropMappings(which: (m: MmapHold) => boolean): void {
    for (let i = this.mappings.length - 1; i >= 0; i--) {
      const m = this.mappings[i]!;
      if (!which(m)) continue;
      this.mappings.splice(i, 1);
      m.region.owner.users.dec();
    }
  }

  /**
   * A client unmapped (all of) one mapping of `offset` of the iommufd `ictx`; false if there
   * is none of that address space (a mapping inherited across fork holds nothing: decision 231).
   */
  unmapped(ictx: IommufdCtx, mm: MmId, offset: bigint): boolean {
    const m = this.mappings.findIndex(
      (h) => h.ictx === ictx && h.mm === mm && h.region.offset === offset,
    );
    if (m < 0) return false;
    const [hold] = this.mappings.splice(m, 1);
    hold!.region.owner.users.dec();
    return true;
  }

  /** Problems that outlived their owner: objects a release could not free, pinned pages, charges. */
  leaks(): string[] {
    const out = [...this.leaked];
    for (const ictx of this.contexts)
      out.push(`iommufd context still open with ${ictx.objectCount} objects`);
    const charged = this.accounting.total();
    if (charged !== 0n && this.contexts.size === 0)
      out.push(`${charged} pages still charged to RLIMIT_MEMLOCK`);
    let pinnedVm = 0n;
    for (const pages of this.accounting.pinnedVmByMm.values()) pinnedVm += pages;
    if (pinnedVm !== 0n && this.contexts.size === 0)
      out.push(`${pinnedVm} pages still counted in pinned_vm`);
    return out;
  }

  /** The /dev/iommu misc device (10:123, 0660 like the kernel's iommu_misc_dev). */
  devNode(): CharDevNode {
    return {
      path: '/dev/iommu',
      rdev: IOMMU_RDEV,
      mode: S_IFCHR | 0o660,
      open: (_task, _flags) => this.open('user'),
    };
  }

  /**
   * /dev/vfio/vfio provided by iommufd (CONFIG_IOMMUFD_VFIO_CONTAINER; 10:196, 0666 like the
   * kernel's vfio_misc_dev): an iommufd context that charges pinned pages per mm, as VFIO's type1
   * does, and answers the container ioctls through vfio-compat.ts.
   */
  vfioDevNode(): CharDevNode {
    return {
      path: '/dev/vfio/vfio',
      rdev: VFIO_RDEV,
      mode: S_IFCHR | 0o666,
      open: (_task, _flags) => {
        if (!this.announcedVfio) {
          this.announcedVfio = true;
          this.events.log('info', 'IOMMUFD is providing /dev/vfio/vfio, not VFIO.');
        }
        return this.open('mm', 'vfio-container');
      },
    };
  }

  private announcedVfio = false;

  open(accountMode: AccountMode, kind: 'iommufd' | 'vfio-container' = 'iommufd'): File | number {
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    const ictx = new IommufdCtx(this, accountMode);
    const rdev = kind === 'iommufd' ? IOMMU_RDEV : VFIO_RDEV;
    const file = new File(kind, iommufdFops, ictx, rdev);
    ictx.file = file;
    this.contexts.add(ictx);
    return file;
  }
}

interface IoctlOp {
  readonly command: IommufdCommand;
  readonly spec: StructSpec<FieldTable>;
  readonly execute: (ucmd: Ucmd<FieldTable>) => MaybeBlocked;
}

function ioctlOp<F extends FieldTable>(
  command: IommufdCommand<F>,
  execute: (ucmd: Ucmd<F>) => MaybeBlocked,
): IoctlOp {
  return { command, spec: command.spec, execute } as unknown as IoctlOp;
}

function iommufdDestroy(ucmd: Ucmd<typeof uapi.iommuDestroy.fields>): SyscallResult {
  return ucmd.ictx.removeObject(ucmd.cmd.id);
}

/** iommufd_option(): on success only val64 is copied back. */
function iommufdOption(ucmd: Ucmd<typeof uapi.iommuOption.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) return -Errno.EOPNOTSUPP;
  let rc: SyscallResult;
  switch (cmd.option_id) {
    case uapi.IOMMU_OPTION_RLIMIT_MODE:
      rc = ioas.optionRlimitMode(ucmd);
      break;
    case uapi.IOMMU_OPTION_HUGE_PAGES:
      rc = ioas.ioasOptionHugePages(ucmd);
      break;
    default:
      return -Errno.EOPNOTSUPP;
  }
  if (rc) return rc;
  const val = new Uint8Array(8);
  new DataView(val.buffer).setBigUint64(0, cmd.val64, true);
  const at = ucmd.ubuffer + BigInt(uapi.iommuOption.fields.val64.offset);
  return copyToUser(ucmd.task, at, val) ? 0 : -Errno.EFAULT;
}

/** The op table, by _IOC_NR (iommufd_ioctl_ops[]): each op names its uAPI command. */
const ioctlOps = new Map<number, IoctlOp>(
  [
    ioctlOp(IOMMUFD.DESTROY, iommufdDestroy),
    ioctlOp(IOMMUFD.IOAS_ALLOC, ioas.iommufdIoasAllocIoctl),
    ioctlOp(IOMMUFD.IOAS_ALLOW_IOVAS, ioas.iommufdIoasAllowIovas),
    ioctlOp(IOMMUFD.IOAS_COPY, ioas.iommufdIoasCopy),
    ioctlOp(IOMMUFD.IOAS_IOVA_RANGES, ioas.iommufdIoasIovaRanges),
    ioctlOp(IOMMUFD.IOAS_MAP, ioas.iommufdIoasMap),
    ioctlOp(IOMMUFD.IOAS_UNMAP, ioas.iommufdIoasUnmap),
    ioctlOp(IOMMUFD.OPTION, iommufdOption),
    ioctlOp(IOMMUFD.VFIO_IOAS, iommufdVfioIoas),
    ioctlOp(IOMMUFD.HWPT_ALLOC, iommufdHwptAlloc),
    ioctlOp(IOMMUFD.GET_HW_INFO, iommufdGetHwInfo),
    ioctlOp(IOMMUFD.HWPT_SET_DIRTY_TRACKING, iommufdHwptSetDirtyTracking),
    ioctlOp(IOMMUFD.HWPT_GET_DIRTY_BITMAP, iommufdHwptGetDirtyBitmap),
    ioctlOp(IOMMUFD.HWPT_INVALIDATE, iommufdHwptInvalidate),
    ioctlOp(IOMMUFD.FAULT_QUEUE_ALLOC, iommufdFaultAlloc),
    ioctlOp(IOMMUFD.IOAS_MAP_FILE, ioas.iommufdIoasMapFile),
    ioctlOp(IOMMUFD.VIOMMU_ALLOC, iommufdViommuAlloc),
    ioctlOp(IOMMUFD.VDEVICE_ALLOC, iommufdVdeviceAlloc),
    ioctlOp(IOMMUFD.IOAS_CHANGE_PROCESS, ioas.iommufdIoasChangeProcess),
    ioctlOp(IOMMUFD.VEVENTQ_ALLOC, iommufdVeventqAlloc),
    ioctlOp(IOMMUFD.HW_QUEUE_ALLOC, iommufdHwQueueAlloc),
    ioctlOp(IOMMUFD.IOAS_NOIOMMU_GET_PA, iommufdIoasNoiommuGetPa),
  ].map((op) => [iocNr(op.command.cmd), op]),
);

/** With CONFIG_IOMMUFD_TEST the table reaches IOMMU_TEST_CMD; the numbers between are holes. */
const testOp = ioctlOp(IOMMUFD.TEST_CMD, iommufdTest);

/** The commands this file answers itself (the container ones: vfio-compat.ts). */
export const iommufdIoctlCommands: readonly IommufdCommand[] = [
  ...[...ioctlOps.values()].map((op) => op.command),
  testOp.command,
];

/** The highest command number the kernel's table has (IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA). */
const LAST_CMD = IommufdCmd.IOAS_NOIOMMU_GET_PA;

/** iommufd_fops_ioctl(). */
export function iommufdIoctl(ictx: IommufdCtx, task: Task, cmd: number, arg: bigint): MaybeBlocked {
  const nr = iocNr(cmd);
  const testInterface = ictx.subsystem.mockBus !== undefined;
  const last = testInterface ? IommufdCmd.TEST : LAST_CMD;
  if (nr < IOMMUFD_CMD_BASE || nr > last)
    return callOnContext(ictx, task, () => iommufdVfioIoctl(ictx, task, cmd, arg));

  // get_user(): not an injection point.
  const sizeBytes = getUser(task, arg, 4);
  if (sizeBytes === undefined) return -Errno.EFAULT;
  // Little-endian u32, read without a DataView (which would move the fresh array off-heap).
  const userSize =
    (sizeBytes[0]! | (sizeBytes[1]! << 8) | (sizeBytes[2]! << 16) | (sizeBytes[3]! << 24)) >>> 0;

  const op = testInterface && nr === IommufdCmd.TEST ? testOp : ioctlOps.get(nr);
  // A hole in the table, or a number with direction/size bits or another type: -ENOIOCTLCMD.
  if (op === undefined || IO(IOMMUFD_TYPE, nr) !== cmd) return -Errno.ENOTTY;
  if (userSize < op.spec.minSize) return -Errno.EINVAL;

  // copy_struct_from_user(): reject a non-zero tail beyond what we know, zero-extend a short one.
  // The tail may be gigabytes (size is a u32): other clients run while it is checked.
  const ksize = op.spec.size;
  const copyStruct = (): MaybeBlocked => {
    const copied = copyFromUser(task, arg, Math.min(userSize, ksize));
    if (copied === undefined) return -Errno.EFAULT;
    const buf = new Uint8Array(ksize);
    buf.set(copied);
    const ucmd = new Ucmd(ictx, task, arg, userSize, op.spec, buf);
    // Past the copy, where the kernel's handler would take the IOAS's locks.
    return callOnContext(ictx, task, () => op.execute(ucmd));
  };
  if (userSize <= ksize) return copyStruct();
  return checkZeroedUserThen(task, arg + BigInt(ksize), userSize - ksize, (zeroed) => {
    if (zeroed === undefined) return -Errno.EFAULT;
    if (zeroed === 0) return -Errno.E2BIG;
    return copyStruct();
  });
}

const PROT_EXEC = 0x4;
const MAP_SHARED = 0x1;
const MAP_SHARED_VALIDATE = 0x3;

/** The region holding [pos, pos + length) of the file's mmap offsets, if one does. */
function mmapRegionAt(ictx: IommufdCtx, pos: bigint, length: number): MmapRegion | undefined {
  for (const region of ictx.mmaps.values()) {
    if (pos >= region.offset && pos + BigInt(length) <= region.offset + region.length)
      return region;
  }
  return undefined;
}

export const iommufdFops: FileOperations = {
  name: 'iommufd',
  ioctl(file, task, cmd, arg) {
    return iommufdIoctl(file.privateData as IommufdCtx, task, cmd, arg);
  },
  /**
   * iommufd_fops_mmap(): exactly a region a driver allocated (a vIOMMU's page), by its offset
   * and length (ENXIO otherwise), shared (EINVAL) and not executable (EPERM). Its accesses are
   * trapped and served from the region (decision 166).
   */
  mmap(file, task, length, pgoff, how) {
    const ictx = file.privateData as IommufdCtx;
    // The VMA is whole pages.
    const vmaLength = ((length + PAGE_SIZE - 1n) / PAGE_SIZE) * PAGE_SIZE;
    const type = (how?.flags ?? MAP_SHARED) & 0xf;
    if (type !== MAP_SHARED && type !== MAP_SHARED_VALIDATE) return -Errno.EINVAL;
    if ((how?.prot ?? 0) & PROT_EXEC) return -Errno.EPERM;
    const offset = pgoff * PAGE_SIZE;
    const region = mmapRegionAt(ictx, offset, 1);
    if (region === undefined || region.offset !== offset || region.length !== vmaLength)
      return -Errno.ENXIO;
    // iommufd_fops_vma_open(): the mapping holds the region's owner (IOMMU_DESTROY is EBUSY).
    region.owner.users.inc();
    ictx.subsystem.mappings.push({ mm: task.memory.mm, ictx, region });
    return { kind: 'trapped', regionOffset: offset };
  },
  mmioRead(file, _task, length, pos) {
    const region = mmapRegionAt(file.privateData as IommufdCtx, pos, length);
    if (region === undefined) return -Errno.EIO;
    const at = Number(pos - region.offset);
    return region.bytes.slice(at, at + length);
  },
  mmioWrite(file, _task, data, pos) {
    const region = mmapRegionAt(file.privateData as IommufdCtx, pos, data.length);
    if (region === undefined) return -Errno.EIO;
    region.bytes.set(data, Number(pos - region.offset));
    return data.length;
  },
  release(file) {
    return (file.privateData as IommufdCtx).release();
  },
};

/** iommufd_ctx_from_fd(): the context behind an fd of the caller, or -EBADF / -EBADFD. */
export function iommufdCtxFromFd(task: Task, fd: number): IommufdCtx | number {
  if (fd < 0 || !task.fds.isOpen(fd)) return -Errno.EBADF;
  const file = task.fds.fileOf(fd);
  if (file === undefined || file.fops !== iommufdFops) return -Errno.EBADFD;
  return file.privateData as IommufdCtx;
}
