/**
 * The legacy VFIO group node (drivers/vfio/group.c): /dev/vfio/<G> for a device behind an IOMMU,
 * /dev/vfio/noiommu-<G> for a no-IOMMU device, whose group is a placeholder VFIO allocates. A
 * single open (CAP_SYS_RAWIO for no-IOMMU), the mutual exclusion with devices bound through their
 * cdev, GET_STATUS, SET_CONTAINER / UNSET_CONTAINER with an iommufd (the emulated kernel is built
 * with CONFIG_IOMMUFD_VFIO_CONTAINER, so /dev/vfio/vfio is an iommufd too) and GET_DEVICE_FD.
 */
import { shouldFail } from '../fault/fault.ts';
import { CAP_SYS_RAWIO, capable } from '../host/credentials.ts';
import { File, type FileOperations, type MaybeBlocked } from '../host/file.ts';
import { type LongWalk, walkNow } from '../host/resched.ts';
import type { Task } from '../host/task.ts';
import { copyStructMinsz, copyToUser, getUser } from '../host/uaccess.ts';
import type { IommufdCtx } from '../iommufd/context.ts';
import { callOnContext, walkHolding } from '../iommufd/ctx-hold.ts';
import { iommufdFops } from '../iommufd/main.ts';
import {
  iommufdVfioCompatIoasCreate,
  iommufdVfioCompatSetNoIommu,
} from '../iommufd/vfio-compat.ts';
import { Counter } from '../lib/refcount.ts';
import { type IoctlCommand, VFIO_GROUP } from '../uapi/commands.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { encodeStruct } from '../uapi/struct.ts';
import {
  VFIO_GROUP_FLAGS_CONTAINER_SET,
  VFIO_GROUP_FLAGS_VIABLE,
  vfioGroupStatus,
} from '../uapi/vfio.ts';
import { dfGroupOpenWalk, VfioDeviceFile, vfioDeviceFops } from './device-cdev.ts';
import { pciCoreMatch } from './pci-match.ts';
import type { VfioDevice } from './vfio-main.ts';

/** The char major of VFIO group nodes (dynamic in Linux; fixed here). */
export const VFIO_GROUP_MAJOR = 243;
/** strndup_user()'s bound for the device name GET_DEVICE_FD reads. */
const NAME_MAX_BYTES = 4096;

/** struct vfio_group. */
export class VfioGroup {
  /** The iommu_group id (for no-IOMMU, the placeholder group's id). */
  readonly id: number;
  readonly noiommu: boolean;
  /** group->device_list: the registered devices GET_DEVICE_FD finds by name. */
  readonly devices: VfioDevice[] = [];
  /** group->drivers: devices registered in the group, counting those whose unbind waits. */
  drivers = 0;
  /** group->iommu_group == NULL: the last device went; an open group file gets ENODEV. */
  iommuGroupGone = false;
  /** group->opened_file: the open group node, if any (one opener at a time). */
  openedFile: File | undefined;
  /**
   * group->iommufd: the container set by SET_CONTAINER, whose file the group holds a reference
   * on until UNSET_CONTAINER or the group file's release.
   */
  iommufd: IommufdCtx | undefined;
  /** Devices of the group bound through their cdev: the group node cannot be opened then. */
  readonly cdevDeviceOpenCount = new Counter(() => `vfio group ${this.id} cdev device opens`);
  /** Whether some iommufd owns the group's DMA (a device bound through its cdev). */
  dmaOwnerClaimed: () => boolean;
  /** dev_warn() to the kernel log (no-IOMMU groups log every device fd they hand out). */
  readonly warn: (line: string) => void;

  constructor(
    id: number,
    noiommu: boolean,
    dmaOwnerClaimed: () => boolean,
    warn: (line: string) => void = () => {},
  ) {
    this.id = id;
    this.noiommu = noiommu;
    this.dmaOwnerClaimed = dmaOwnerClaimed;
    this.warn = warn;
  }

  get nodePath(): string {
    return this.noiommu ? `/dev/vfio/noiommu-${this.id}` : `/dev/vfio/${this.id}`;
  }

  /** vfio_device_block_group(): a cdev bind is refused while the group node is open. */
  block(): SyscallResult {
    if (this.openedFile !== undefined) return -Errno.EBUSY;
    this.cdevDeviceOpenCount.inc();
    return 0;
  }

  /** vfio_device_unblock_group(). */
  unblock(): void {
    this.cdevDeviceOpenCount.dec();
  }

  /** vfio_group_has_iommu(): a container is set. */
  get hasIommu(): boolean {
    return this.iommufd !== undefined;
  }

  /** Drops the container (UNSET_CONTAINER, release): the iommufd_ctx_put(). */
  dropContainer(): void {
    const ictx = this.iommufd;
    this.iommufd = undefined;
    ictx?.file?.put();
  }
}

/** vfio_group_fops_open(). */
export function openVfioGroup(group: VfioGroup, task: Task): File | number {
  if (group.drivers === 0) return -Errno.ENODEV;
  if (group.noiommu && !capable(task.creds, CAP_SYS_RAWIO)) return -Errno.EPERM;
  if (group.cdevDeviceOpenCount.read() > 0) return -Errno.EBUSY;
  if (group.openedFile !== undefined) return -Errno.EBUSY;
  const file = new File('vfio-group', vfioGroupFops, group, {
    major: VFIO_GROUP_MAJOR,
    minor: group.id,
  });
  group.openedFile = file;
  return file;
}

/**
 * VFIO_GROUP_GET_STATUS: CONTAINER_SET and VIABLE once a container is set; before that viable
 * unless some owner claimed the DMA. With iommufd the ownership is claimed only at GET_DEVICE_FD,
 * so a group can show VIABLE and still have GET_DEVICE_FD refused (EPERM), as in the kernel.
 */
function getStatus(group: VfioGroup, task: Task, arg: bigint): SyscallResult {
  const spec = vfioGroupStatus;
  const status = copyStructMinsz(task, arg, spec);
  if (status === undefined) return -Errno.EFAULT;
  if (status.argsz < spec.minSize) return -Errno.EINVAL;
  if (group.iommuGroupGone) return -Errno.ENODEV;
  let flags = 0;
  if (group.hasIommu) flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
  else if (!group.dmaOwnerClaimed()) flags = VFIO_GROUP_FLAGS_VIABLE;
  const out = encodeStruct(spec, { argsz: status.argsz, flags });
  return copyToUser(task, arg, out) ? 0 : -Errno.EFAULT;
}

/**
 * VFIO_GROUP_SET_CONTAINER (arg: pointer to the container's fd): an IOMMU group gives the
 * container a compat IOAS (or uses the one set), a no-IOMMU group puts it in no-IOMMU mode.
 * Several groups may share one container; each holds a reference on its file.
 */
function setContainer(group: VfioGroup, task: Task, arg: bigint): SyscallResult {
  const fdBytes = getUser(task, arg, 4);
  if (fdBytes === undefined) return -Errno.EFAULT;
  const fd = new DataView(fdBytes.buffer, fdBytes.byteOffset, 4).getInt32(0, true);
  if (fd < 0 || !task.fds.isOpen(fd)) return -Errno.EBADF;
  if (group.hasIommu) return -Errno.EINVAL;
  if (group.iommuGroupGone) return -Errno.ENODEV;
  // iommufd_ctx_from_file(): /dev/iommu and /dev/vfio/vfio alike; anything else is not a container.
  const file = task.fds.fileOf(fd);
  if (file === undefined || file.fops !== iommufdFops) return -Errno.EBADFD;
  const ictx = file.privateData as IommufdCtx;
  const rc = group.noiommu ? iommufdVfioCompatSetNoIommu(ictx) : iommufdVfioCompatIoasCreate(ictx);
  if (rc) return rc;
  file.get();
  group.iommufd = ictx;
  return 0;
}

/**
 * VFIO_GROUP_UNSET_CONTAINER: EINVAL without one. With an iommufd container nothing counts the
 * group's open devices (they hold the context through their iommufd device), so it never is EBUSY.
 */
function unsetContainer(group: VfioGroup): SyscallResult {
  if (!group.hasIommu) return -Errno.EINVAL;
  group.dropContainer();
  return 0;
}

/**
 * strndup_user(arg, PAGE_SIZE): the NUL-terminated name at arg. strnlen_user() reads it a page
 * at a time (a page is readable or not) and has no injection point: EFAULT when unreadable
 * before its NUL, EINVAL when no NUL comes within PAGE_SIZE bytes. Then memdup_user() allocates
 * (ENOMEM) and copies (EFAULT).
 */
function strndupUser(task: Task, arg: bigint): string | number {
  const bytes: number[] = [];
  let at = arg;
  let name: string | undefined;
  while (name === undefined) {
    if (bytes.length >= NAME_MAX_BYTES) return -Errno.EINVAL;
    const inPage = 4096 - Number(at % 4096n);
    const n = Math.min(inPage, NAME_MAX_BYTES - bytes.length);
    const chunk = task.memory.read(at, n);
    if (chunk === undefined) return -Errno.EFAULT;
    const nul = chunk.indexOf(0);
    const end = nul >= 0 ? nul : chunk.length;
    for (let i = 0; i < end; i++) bytes.push(chunk[i]!);
    if (nul >= 0) name = Buffer.from(bytes).toString('latin1');
    at += BigInt(n);
  }
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  if (shouldFail('copy-from-user')) return -Errno.EFAULT;
  return name;
}

/**
 * VFIO_GROUP_GET_DEVICE_FD (arg: the device's name, e.g. "0000:00:03.0", with vfio-pci's
 * options after a space): a new device fd
 * (O_CLOEXEC, an anonymous "[vfio-device]" inode). The first open of a device binds it to the
 * container's iommufd and attaches it to the compat IOAS; a device may be open through several
 * such fds. ENODEV for a name not in the group.
 */
function getDeviceFd(group: VfioGroup, task: Task, arg: bigint): MaybeBlocked {
  const walk = getDeviceFdWalk(group, task, arg);
  const ictx = group.iommufd;
  return ictx === undefined ? walkNow(walk) : walkHolding(ictx, task, walk);
}

/** getDeviceFd() itself: the first open attaches the device a batch per step. */
function* getDeviceFdWalk(group: VfioGroup, task: Task, arg: bigint): LongWalk<SyscallResult> {
  const name = strndupUser(task, arg);
  if (typeof name === 'number') return name;
  const device = deviceFromName(group, name);
  if (typeof device === 'number') return device;
  const fd = task.fds.getUnusedFd();
  if (fd < 0) {
    putRegistration(device);
    return fd;
  }
  // vfio_allocate_device_file().
  if (shouldFail('kmalloc')) {
    putRegistration(device);
    return -Errno.ENOMEM;
  }
  const df = new VfioDeviceFile(device, group);
  const rc = yield* dfGroupOpenWalk(df, task);
  if (rc) {
    putRegistration(device);
    return rc;
  }
  const file = new File('vfio-device', vfioDeviceFops, df, { major: 0, minor: 0 });
  task.fds.fdInstall(fd, file, 'anon_inode:[vfio-device]');
  if (group.noiommu) {
    const who = `${task.comm()}:${task.creds.tid}`;
    group.warn(`vfio-pci ${device.pci.bdf}: vfio-noiommu device opened by user (${who})`);
  }
  return fd;
}

/**
 * vfio_device_get_from_name(): the first device of the group the driver's match() accepts, with
 * a registration reference (moved to the file on success); a match() error ends the search.
 */
function deviceFromName(group: VfioGroup, name: string): VfioDevice | number {
  for (const device of group.devices) {
    const match = pciCoreMatch(device, name);
    if (match < 0) return match;
    if (match > 0 && device.registration.incNotZero()) return device;
  }
  return -Errno.ENODEV;
}

function putRegistration(device: VfioDevice): void {
  if (device.registration.decAndTest()) device.released?.();
}

interface GroupIoctlOp {
  readonly command: IoctlCommand;
  readonly handler: (group: VfioGroup, task: Task, arg: bigint) => MaybeBlocked;
}

/** vfio_group_fops_unl_ioctl()'s commands, each by its uAPI command; the rest are ENOTTY. */
const groupIoctlOps: readonly GroupIoctlOp[] = [
  { command: VFIO_GROUP.GET_DEVICE_FD, handler: getDeviceFd },
  { command: VFIO_GROUP.GET_STATUS, handler: getStatus },
  { command: VFIO_GROUP.SET_CONTAINER, handler: setContainer },
  { command: VFIO_GROUP.UNSET_CONTAINER, handler: (group) => unsetContainer(group) },
];
const groupIoctlOpsByCmd = new Map(groupIoctlOps.map((op) => [op.command.cmd, op]));

/** The group commands registered here, for the trace's tests. */
export const vfioGroupIoctlCommands: readonly IoctlCommand[] = groupIoctlOps.map(
  (op) => op.command,
);

const vfioGroupFops: FileOperations = {
  name: 'vfio-group',
  ioctl(file, task, cmd, arg) {
    const op = groupIoctlOpsByCmd.get(cmd);
    if (op === undefined) return -Errno.ENOTTY;
    const group = file.privateData as VfioGroup;
    // GET_DEVICE_FD attaches to the container's IOAS: it waits for a call holding it.
    return callOnContext(group.iommufd, task, () => op.handler(group, task, arg));
  },
  /** vfio_group_fops_release(): the container goes; device fds from the group stay usable. */
  release(file) {
    const group = file.privateData as VfioGroup;
    group.dropContainer();
    group.openedFile = undefined;
  },
};
