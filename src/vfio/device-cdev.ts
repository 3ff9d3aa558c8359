/**
 * The VFIO device file (drivers/vfio/device_cdev.c and the device-file half of vfio_main.c /
 * iommufd.c): the cdev's open (CAP_SYS_RAWIO for a no-IOMMU device), VFIO_DEVICE_BIND_IOMMUFD,
 * which is the only call an unbound fd accepts, ATTACH/DETACH_IOMMUFD_PT, and unbind on the last
 * close; and the same file as VFIO_GROUP_GET_DEVICE_FD opens it through a group (dfGroupOpen),
 * already bound to the group's container, with the cdev-only calls left out.
 */
import { shouldFail } from '../fault/fault.ts';
import { mutant } from '../fault/mutant.ts';
import { CAP_SYS_RAWIO, capable } from '../host/credentials.ts';
import { File, type FileOperations, type MaybeBlocked } from '../host/file.ts';
import type { LongWalk } from '../host/resched.ts';
import type { Task } from '../host/task.ts';
import { checkZeroedUserThen, copyFromUser, copyStructMinsz, copyToUser } from '../host/uaccess.ts';
import type { IommufdCtx } from '../iommufd/context.ts';
import { callOnContext, teardownAfterRelease, walkHolding, whenFree } from '../iommufd/ctx-hold.ts';
import {
  iommufdDeviceAttachWalk,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplaceWalk,
  iommufdDeviceUnbind,
} from '../iommufd/device.ts';
import { iommufdCtxFromFd } from '../iommufd/main.ts';
import { iommufdVfioCompatIoasGetId } from '../iommufd/vfio-compat.ts';
import { type IoctlCommand, VFIO_DEVICE } from '../uapi/commands.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { type Decoded, decodeStruct } from '../uapi/struct.ts';
import {
  VFIO_DEVICE_ATTACH_PASID,
  VFIO_DEVICE_BIND_FLAG_TOKEN,
  VFIO_DEVICE_DETACH_PASID,
  vfioDeviceAttachIommufdPt,
  vfioDeviceBindIommufd,
  vfioDeviceDetachIommufdPt,
} from '../uapi/vfio.ts';
import type { VfioGroup } from './group.ts';
import {
  pciCoreClose,
  pciCoreIoctl,
  pciCoreMmap,
  pciCoreOpen,
  pciCoreRead,
  pciCoreWrite,
} from './pci-core.ts';
import type { VfioDevice } from './vfio-main.ts';

/** struct vfio_device_file: one open of a cdev. */
export class VfioDeviceFile {
  readonly device: VfioDevice;
  /** df->group: set for a file GET_DEVICE_FD opened, undefined for a cdev file. */
  readonly group: VfioGroup | undefined;
  /** Set once BIND_IOMMUFD (or the group open) succeeded: every other call is EINVAL until then. */
  accessGranted = false;
  ictx: IommufdCtx | undefined;
  devid = 0;

  constructor(device: VfioDevice, group?: VfioGroup) {
    this.device = device;
    this.group = group;
  }
}

function u32At(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset, true);
}

/** vfio_device_fops_cdev_open(). */
export function openVfioCdev(device: VfioDevice, task: Task): File | number {
  // vfio_device_try_get_registration(), paired with the put at release: the device cannot be
  // unbound while the file is open.
  if (!device.registration.incNotZero()) return -Errno.ENODEV;
  // No isolation and no translation: only a process that may do raw I/O gets such a device.
  if (device.noiommu && !capable(task.creds, CAP_SYS_RAWIO)) {
    device.registration.dec();
    return -Errno.EPERM;
  }
  // vfio_allocate_device_file().
  if (shouldFail('kmalloc')) {
    // mutant: cdev-open-unwind (without this put the device can never be unbound again)
    if (!mutant('cdev-open-unwind')) device.registration.dec();
    return -Errno.ENOMEM;
  }
  const df = new VfioDeviceFile(device);
  return new File('vfio-cdev', vfioDeviceFops, df, { major: 236, minor: device.index });
}

/** vfio_iommufd_physical_bind() + first open: the device becomes an iommufd DEVICE. */
function dfOpen(df: VfioDeviceFile, ictx: IommufdCtx): SyscallResult {
  const device = df.device;
  // A device is open through one cdev fd at a time.
  if (device.openCount.read() !== 0) return -Errno.EINVAL;
  const idev = iommufdDeviceBind(ictx, device.dev);
  if (typeof idev === 'number') return idev;
  // open_device (vfio_pci_core_enable) allocates too; its failure unbinds again.
  if (shouldFail('kmalloc')) {
    iommufdDeviceUnbind(idev);
    return -Errno.ENOMEM;
  }
  device.iommufdDevice = idev;
  df.devid = idev.id;
  device.openCount.inc();
  device.cdevOpened = true;
  pciCoreOpen(device);
  return 0;
}

/** vfio_df_close(): detach, unbind, and the device goes back to its reset state. */
function dfClose(df: VfioDeviceFile): void {
  const device = df.device;
  device.openCount.dec();
  device.cdevOpened = false;
  pciCoreClose(device);
  const idev = device.iommufdDevice!;
  for (const pasid of device.pasids) iommufdDeviceDetach(idev, pasid);
  device.pasids.clear();
  if (device.iommufdAttached) {
    iommufdDeviceDetach(idev);
    device.iommufdAttached = false;
  }
  iommufdDeviceUnbind(idev);
  device.iommufdDevice = undefined;
}

/**
 * vfio_df_group_open(): a group's device file, opened with the group's container. The group
 * path may open a device several times; the first open binds it to the container's iommufd
 * (a DEVICE object whose id nobody learns), runs open_device and attaches it to the compat IOAS
 * (ENODEV when the user cleared it). A no-IOMMU device binds to nothing: its first open needs
 * CAP_SYS_RAWIO and a container with no compat IOAS (EPERM), as nothing will translate. A walk:
 * the attach fills the compat IOAS's new domain a batch per step.
 */
export function* dfGroupOpenWalk(df: VfioDeviceFile, task: Task): LongWalk<SyscallResult> {
  const device = df.device;
  const ictx = df.group!.iommufd;
  if (ictx === undefined) return -Errno.EINVAL;
  const first = device.openCount.read() === 0;
  if (device.noiommu && first) {
    if (!capable(task.creds, CAP_SYS_RAWIO) || iommufdVfioCompatIoasGetId(ictx) >= 0)
      return -Errno.EPERM;
  }
  if (first) {
    if (!device.noiommu) {
      const idev = iommufdDeviceBind(ictx, device.dev);
      if (typeof idev === 'number') return idev;
      // open_device (vfio_pci_core_enable) allocates too; its failure unbinds again.
      if (shouldFail('kmalloc')) {
        iommufdDeviceUnbind(idev);
        return -Errno.ENOMEM;
      }
      device.iommufdDevice = idev;
    } else if (shouldFail('kmalloc')) {
      return -Errno.ENOMEM;
    }
    device.openCount.inc();
    pciCoreOpen(device);
    if (!device.noiommu) {
      const ioasId = iommufdVfioCompatIoasGetId(ictx);
      // A walk: QEMU maps guest RAM into the container before it asks for the device.
      const rc =
        ioasId < 0
          ? ioasId
          : yield* iommufdDeviceAttachWalk(device.iommufdDevice!, { value: ioasId });
      if (rc) {
        dfGroupClose(df);
        return rc;
      }
      device.iommufdAttached = true;
    }
  } else {
    device.openCount.inc();
  }
  df.ictx = ictx;
  df.accessGranted = true;
  return 0;
}

/** vfio_df_group_close(): the last close of the device closes it and unbinds it. */
function dfGroupClose(df: VfioDeviceFile): void {
  const device = df.device;
  device.openCount.dec();
  df.ictx = undefined;
  if (device.openCount.read() !== 0) return;
  pciCoreClose(device);
  const idev = device.iommufdDevice;
  if (idev === undefined) return;
  if (device.iommufdAttached) {
    iommufdDeviceDetach(idev);
    device.iommufdAttached = false;
  }
  iommufdDeviceUnbind(idev);
  device.iommufdDevice = undefined;
}

/** VFIO_DEVICE_BIND_IOMMUFD. */
function ioctlBindIommufd(df: VfioDeviceFile, task: Task, arg: bigint): MaybeBlocked {
  const spec = vfioDeviceBindIommufd;
  const argszBytes = copyFromUser(task, arg, 4);
  if (argszBytes === undefined) return -Errno.EFAULT;
  const userSize = u32At(argszBytes, 0);
  if (userSize < spec.minSize) return -Errno.EINVAL;
  if (userSize <= spec.size) return bindCopied(df, task, arg, userSize);
  // copy_struct_from_user() of a tail that may be gigabytes: other clients run meanwhile.
  const tail = arg + BigInt(spec.size);
  return checkZeroedUserThen(task, tail, userSize - spec.size, (zeroed) => {
    if (zeroed === undefined) return -Errno.EFAULT;
    if (zeroed === 0) return -Errno.E2BIG;
    return bindCopied(df, task, arg, userSize);
  });
}

/** BIND once the tail past the struct is known to be zeroes. */
function bindCopied(df: VfioDeviceFile, task: Task, arg: bigint, userSize: number): SyscallResult {
  const spec = vfioDeviceBindIommufd;
  const copied = copyFromUser(task, arg, Math.min(userSize, spec.size));
  if (copied === undefined) return -Errno.EFAULT;
  const buf = new Uint8Array(spec.size);
  buf.set(copied);
  const bind = decodeStruct(spec, buf);
  if (bind.iommufd < 0 || bind.flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN) return -Errno.EINVAL;
  // BIND is for cdev files only: a group's device file came bound.
  if (df.group !== undefined) return -Errno.EINVAL;
  let rc = df.device.group.block();
  if (rc) return rc;
  rc = bindLocked(df, task, arg, bind);
  if (rc) df.device.group.unblock();
  return rc;
}

/** The part of BIND that runs with the group blocked. */
function bindLocked(
  df: VfioDeviceFile,
  task: Task,
  arg: bigint,
  bind: Decoded<typeof vfioDeviceBindIommufd.fields>,
): SyscallResult {
  const spec = vfioDeviceBindIommufd;
  if (df.accessGranted) return -Errno.EINVAL;
  if (bind.flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
    // These devices are not SR-IOV VFs: they take no token, so giving one is EINVAL.
    if (copyFromUser(task, bind.token_uuid_ptr, 16) === undefined) return -Errno.EFAULT;
    return -Errno.EINVAL;
  }
  const ictx = iommufdCtxFromFd(task, bind.iommufd);
  if (typeof ictx === 'number') return ictx;
  ictx.file!.get();
  const rc = dfOpen(df, ictx);
  if (rc) {
    ictx.file!.put();
    return rc;
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, df.devid, true);
  if (!copyToUser(task, arg + BigInt(spec.fields.out_devid.offset), out)) {
    dfClose(df);
    ictx.file!.put();
    return -Errno.EFAULT;
  }
  df.ictx = ictx;
  df.accessGranted = true;
  return 0;
}

/**
 * VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach the first time, replace after that. A new domain is
 * filled with the IOAS's areas a batch per step; a served call that takes more than a slice
 * holds the context meanwhile (ctx-hold.ts).
 */
function ioctlAttachPt(df: VfioDeviceFile, task: Task, arg: bigint): MaybeBlocked {
  return walkHolding(df.ictx!, task, attachPtWalk(df, task, arg));
}

function* attachPtWalk(df: VfioDeviceFile, task: Task, arg: bigint): LongWalk<SyscallResult> {
  const spec = vfioDeviceAttachIommufdPt;
  const attach = copyStructMinsz(task, arg, spec);
  if (attach === undefined) return -Errno.EFAULT;
  if (attach.argsz < spec.minSize) return -Errno.EINVAL;
  if (attach.flags & ~VFIO_DEVICE_ATTACH_PASID) return -Errno.EINVAL;
  if (attach.flags & VFIO_DEVICE_ATTACH_PASID) {
    const pasid = pasidArg(task, arg, attach.argsz, spec.size, spec.fields.pasid.offset);
    if (pasid < 0) return pasid;
    return yield* attachPasidWalk(df, task, arg, pasid, attach.pt_id);
  }
  const device = df.device;
  const idev = device.iommufdDevice!;
  const ptId = { value: attach.pt_id };
  const rc = device.iommufdAttached
    ? yield* iommufdDeviceReplaceWalk(idev, ptId)
    : yield* iommufdDeviceAttachWalk(idev, ptId);
  if (rc) return rc;
  device.iommufdAttached = true;
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, ptId.value, true);
  if (!copyToUser(task, arg + BigInt(spec.fields.pt_id.offset), out)) {
    iommufdDeviceDetach(idev);
    device.iommufdAttached = false;
    return -Errno.EFAULT;
  }
  return 0;
}

/**
 * The `pasid` field past the mandatory part: EINVAL when argsz does not reach its end, EFAULT when
 * unreadable; else the PASID (>= 0).
 */
function pasidArg(task: Task, arg: bigint, argsz: number, end: number, offset: number): number {
  if (argsz < end) return -Errno.EINVAL;
  const bytes = copyFromUser(task, arg + BigInt(offset), 4);
  if (bytes === undefined) return -Errno.EFAULT;
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
}

/**
 * vfio_iommufd_physical_pasid_attach_ioas(): attach the PASID the first time (its IDA entry
 * allocated first), replace after that; then pt_id goes back, undone if it cannot.
 */
function* attachPasidWalk(
  df: VfioDeviceFile,
  task: Task,
  arg: bigint,
  pasid: number,
  pt: number,
): LongWalk<SyscallResult> {
  const device = df.device;
  const idev = device.iommufdDevice!;
  const ptId = { value: pt };
  let rc: SyscallResult;
  if (device.pasids.has(pasid)) rc = yield* iommufdDeviceReplaceWalk(idev, ptId, pasid);
  else {
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    rc = yield* iommufdDeviceAttachWalk(idev, ptId, pasid);
    if (rc === 0) device.pasids.add(pasid);
  }
  if (rc) return rc;
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, ptId.value, true);
  if (!copyToUser(task, arg + BigInt(vfioDeviceAttachIommufdPt.fields.pt_id.offset), out)) {
    device.pasids.delete(pasid);
    iommufdDeviceDetach(idev, pasid);
    return -Errno.EFAULT;
  }
  return 0;
}

/** VFIO_DEVICE_DETACH_IOMMUFD_PT: detaching an unattached device is a no-op. */
function ioctlDetachPt(df: VfioDeviceFile, task: Task, arg: bigint): SyscallResult {
  const spec = vfioDeviceDetachIommufdPt;
  const detach = copyStructMinsz(task, arg, spec);
  if (detach === undefined) return -Errno.EFAULT;
  if (detach.argsz < spec.minSize) return -Errno.EINVAL;
  if (detach.flags & ~VFIO_DEVICE_DETACH_PASID) return -Errno.EINVAL;
  const device = df.device;
  if (detach.flags & VFIO_DEVICE_DETACH_PASID) {
    const pasid = pasidArg(task, arg, detach.argsz, spec.size, spec.fields.pasid.offset);
    if (pasid < 0) return pasid;
    // vfio_iommufd_physical_pasid_detach_ioas(): a PASID never attached is nothing to do.
    if (device.pasids.delete(pasid)) iommufdDeviceDetach(device.iommufdDevice!, pasid);
    return 0;
  }
  if (device.iommufdAttached) {
    iommufdDeviceDetach(device.iommufdDevice!);
    device.iommufdAttached = false;
  }
  return 0;
}

interface CdevIoctlOp {
  readonly command: IoctlCommand;
  readonly handler: (df: VfioDeviceFile, task: Task, arg: bigint) => MaybeBlocked;
}

/**
 * vfio_device_fops_unl_ioctl()'s own commands, each by its uAPI command: BIND is the only one an
 * unbound fd accepts; the rest, after access is granted, go to vfio-pci (pci-core.ts).
 */
const cdevBindOp: CdevIoctlOp = { command: VFIO_DEVICE.BIND_IOMMUFD, handler: ioctlBindIommufd };
const cdevIoctlOps: readonly CdevIoctlOp[] = [
  { command: VFIO_DEVICE.ATTACH_IOMMUFD_PT, handler: ioctlAttachPt },
  { command: VFIO_DEVICE.DETACH_IOMMUFD_PT, handler: ioctlDetachPt },
];
const cdevIoctlOpsByCmd = new Map(cdevIoctlOps.map((op) => [op.command.cmd, op]));

/** The device commands registered here, for the trace's tests. */
export const cdevIoctlCommands: readonly IoctlCommand[] = [cdevBindOp, ...cdevIoctlOps].map(
  (op) => op.command,
);

/** vfio_device_fops: the cdev's files and the group's device files alike. */
export const vfioDeviceFops: FileOperations = {
  name: 'vfio-dev',
  ioctl(file, task, cmd, arg) {
    const df = file.privateData as VfioDeviceFile;
    if (cmd === cdevBindOp.command.cmd) return cdevBindOp.handler(df, task, arg);
    if (!df.accessGranted) return -Errno.EINVAL;
    // The cdev-only calls; on a group's device file they reach vfio-pci (ENOTTY).
    const op = df.group === undefined ? cdevIoctlOpsByCmd.get(cmd) : undefined;
    // While a call holds the context the device is bound to, its calls wait (ctx-hold.ts).
    return callOnContext(df.ictx, task, () =>
      op === undefined ? pciCoreIoctl(df.device, task, cmd, arg) : op.handler(df, task, arg),
    );
  },
  read(file, _task, length, pos) {
    const df = file.privateData as VfioDeviceFile;
    if (!df.accessGranted) return -Errno.EINVAL;
    return pciCoreRead(df.device, length, pos);
  },
  write(file, _task, data, pos) {
    const df = file.privateData as VfioDeviceFile;
    if (!df.accessGranted) return -Errno.EINVAL;
    return pciCoreWrite(df.device, data, pos);
  },
  mmap(file, _task, length, pgoff) {
    const df = file.privateData as VfioDeviceFile;
    if (!df.accessGranted) return -Errno.EINVAL;
    return pciCoreMmap(df.device, length, pgoff);
  },
  release(file) {
    const df = file.privateData as VfioDeviceFile;
    // The detach waits for a call holding the context, as the kernel's waits on its locks.
    const ictx = df.ictx;
    if (ictx?.hold.held === true) return whenFree(ictx, () => releaseDeviceFile(df));
    return releaseDeviceFile(df);
  },
};

/** vfio_device_fops_release(); a promise while what the detach left is torn down. */
function releaseDeviceFile(df: VfioDeviceFile): Promise<void> | undefined {
  const ictx = df.ictx;
  if (df.group !== undefined) {
    if (df.accessGranted) dfGroupClose(df);
    df.accessGranted = false;
  } else if (df.accessGranted) {
    dfClose(df);
    df.accessGranted = false;
    df.device.group.unblock();
    df.ictx!.file!.put();
    df.ictx = undefined;
  }
  // vfio_device_put_registration(): the last reference lets a waiting unbind go on.
  if (df.device.registration.decAndTest()) df.device.released?.();
  // What the detach left to unpin (the device's auto domain was the last of its IOAS).
  return ictx === undefined ? undefined : teardownAfterRelease(ictx);
}
