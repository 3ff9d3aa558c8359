/**
 * The VFIO container compatibility layer of iommufd (drivers/iommu/iommufd/vfio_compat.c):
 * IOMMU_VFIO_IOAS and the legacy VFIO_* container ioctls (nr < 0x80) issued on an iommufd.
 * The type1 map/unmap/info emulation is not built yet: those numbers answer ENOTTY for now
 * (see docs/decisions.md).
 */
import type { Task } from '../host/task.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION } from '../uapi/ioctl.ts';
import {
  IOMMU_VFIO_IOAS_CLEAR,
  IOMMU_VFIO_IOAS_GET,
  IOMMU_VFIO_IOAS_SET,
  type iommuVfioIoas,
} from '../uapi/iommufd.ts';
import { type Ioas, iommufdGetIoas } from './ioas.ts';
import type { IommufdCtx, Ucmd } from './main.ts';

export const VFIO_API_VERSION = 0;
export const VFIO_TYPE1_IOMMU = 1n;
export const VFIO_SPAPR_TCE_IOMMU = 2n;
export const VFIO_TYPE1v2_IOMMU = 3n;
export const VFIO_DMA_CC_IOMMU = 4n;
export const VFIO_NOIOMMU_IOMMU = 8n;
export const VFIO_UNMAP_ALL = 9n;

/** get_compat_ioas(): the compat IOAS with a reference, or -ENODEV when none is set. */
function getCompatIoas(ictx: IommufdCtx): Ioas | number {
  const ioas = ictx.vfioIoas;
  if (ioas === undefined || ioas.users === 0) return -Errno.ENODEV;
  ictx.lockObj(ioas);
  return ioas;
}

export function iommufdVfioIoas(ucmd: Ucmd<typeof iommuVfioIoas.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.__reserved) return -Errno.EOPNOTSUPP;
  switch (cmd.op) {
    case IOMMU_VFIO_IOAS_GET: {
      const ioas = getCompatIoas(ictx);
      if (typeof ioas === 'number') return ioas;
      cmd.ioas_id = ioas.id;
      ictx.putObject(ioas);
      return ucmd.respond();
    }
    case IOMMU_VFIO_IOAS_SET: {
      const ioas = iommufdGetIoas(ictx, cmd.ioas_id);
      if (ioas === undefined) return -Errno.ENOENT;
      ictx.vfioIoas = ioas;
      ictx.putObject(ioas);
      return 0;
    }
    case IOMMU_VFIO_IOAS_CLEAR:
      ictx.vfioIoas = undefined;
      return 0;
    default:
      return -Errno.EOPNOTSUPP;
  }
}

/** iommufd_vfio_check_extension(). The emulated kernel is built with VFIO no-IOMMU support. */
function checkExtension(ictx: IommufdCtx, type: bigint): SyscallResult {
  switch (type) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return ictx.noIommuMode ? 0 : 1;
    case VFIO_NOIOMMU_IOMMU:
      return 1;
    case VFIO_DMA_CC_IOMMU: {
      // Every domain iommufd creates enforces coherency on this platform.
      const ioas = getCompatIoas(ictx);
      if (typeof ioas === 'number') return ioas;
      ictx.putObject(ioas);
      return 1;
    }
    default:
      return 0;
  }
}

/** iommufd_vfio_ioctl(): the container ioctls on an iommufd; unknown ones are -ENOIOCTLCMD. */
export function iommufdVfioIoctl(
  ictx: IommufdCtx,
  _task: Task,
  cmd: number,
  arg: bigint,
): SyscallResult {
  switch (cmd) {
    case VFIO_GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
      return checkExtension(ictx, arg);
    default:
      return -Errno.ENOTTY;
  }
}
