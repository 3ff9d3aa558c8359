/**
 * The legacy VFIO group node (drivers/vfio/group.c): /dev/vfio/<G> for a device behind an IOMMU,
 * /dev/vfio/noiommu-<G> for a no-IOMMU device, whose group is a placeholder VFIO allocates. Only
 * the parts the cdev path depends on are here: a single open (CAP_SYS_RAWIO for no-IOMMU), the
 * mutual exclusion with devices bound through their cdev, and VFIO_GROUP_GET_STATUS. The other
 * group ioctls (SET_CONTAINER, GET_DEVICE_FD) belong to the container path, roadmap item 1.
 */
import { CAP_SYS_RAWIO, capable } from '../host/credentials.ts';
import { File, type FileOperations } from '../host/file.ts';
import type { Task } from '../host/task.ts';
import { copyStructMinsz, copyToUser } from '../host/uaccess.ts';
import { Counter } from '../lib/refcount.ts';
import { type IoctlCommand, VFIO_GROUP } from '../uapi/commands.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { encodeStruct } from '../uapi/struct.ts';
import { VFIO_GROUP_FLAGS_VIABLE, vfioGroupStatus } from '../uapi/vfio.ts';
import type { VfioDevice } from './vfio-main.ts';

/** The char major of VFIO group nodes (dynamic in Linux; fixed here). */
export const VFIO_GROUP_MAJOR = 243;

/** struct vfio_group. */
export class VfioGroup {
  /** The iommu_group id (for no-IOMMU, the placeholder group's id). */
  readonly id: number;
  readonly noiommu: boolean;
  readonly devices: VfioDevice[] = [];
  /** group->opened_file: the open group node, if any (one opener at a time). */
  openedFile: File | undefined;
  /** Devices of the group bound through their cdev: the group node cannot be opened then. */
  readonly cdevDeviceOpenCount = new Counter(() => `vfio group ${this.id} cdev device opens`);
  /** Whether some iommufd owns the group's DMA (a device bound through its cdev). */
  dmaOwnerClaimed: () => boolean;

  constructor(id: number, noiommu: boolean, dmaOwnerClaimed: () => boolean) {
    this.id = id;
    this.noiommu = noiommu;
    this.dmaOwnerClaimed = dmaOwnerClaimed;
  }

  get nodePath(): string {
    return this.noiommu ? `/dev/vfio/noiommu-${this.id}` : `/dev/vfio/${this.id}`;
  }
}

/** vfio_device_block_group(): a cdev bind is refused while the group node is open. */
export function vfioDeviceBlockGroup(group: VfioGroup): SyscallResult {
  if (group.openedFile !== undefined) return -Errno.EBUSY;
  group.cdevDeviceOpenCount.inc();
  return 0;
}

export function vfioDeviceUnblockGroup(group: VfioGroup): void {
  group.cdevDeviceOpenCount.dec();
}

/** vfio_group_fops_open(). */
export function openVfioGroup(group: VfioGroup, task: Task): File | number {
  if (group.devices.length === 0) return -Errno.ENODEV;
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

/** VFIO_GROUP_GET_STATUS: with no container set, viable unless some owner claimed the DMA. */
function getStatus(group: VfioGroup, task: Task, arg: bigint): SyscallResult {
  const spec = vfioGroupStatus;
  const status = copyStructMinsz(task, arg, spec);
  if (status === undefined) return -Errno.EFAULT;
  if (status.argsz < spec.minSize) return -Errno.EINVAL;
  // No container can be set on a group yet (roadmap item 1), so CONTAINER_SET never shows.
  const flags = group.dmaOwnerClaimed() ? 0 : VFIO_GROUP_FLAGS_VIABLE;
  const out = encodeStruct(spec, { argsz: status.argsz, flags });
  return copyToUser(task, arg, out) ? 0 : -Errno.EFAULT;
}

interface GroupIoctlOp {
  readonly command: IoctlCommand;
  readonly handler: (group: VfioGroup, task: Task, arg: bigint) => SyscallResult;
}

/** vfio_group_fops_unl_ioctl()'s commands, each by its uAPI command; the rest are ENOTTY. */
const groupIoctlOps: readonly GroupIoctlOp[] = [
  { command: VFIO_GROUP.GET_STATUS, handler: getStatus },
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
    return op.handler(file.privateData as VfioGroup, task, arg);
  },
  release(file) {
    (file.privateData as VfioGroup).openedFile = undefined;
  },
};
