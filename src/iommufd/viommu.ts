/**
 * Virtual IOMMUs: IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC and IOMMU_HW_QUEUE_ALLOC, with the
 * checks and lookups in the order of drivers/iommu/iommufd/viommu.c. A vIOMMU needs iommu_ops
 * with get_viommu_size / viommu_init; neither the emulated IOMMU units nor the no-IOMMU ops have
 * them, so VIOMMU_ALLOC stops there (EOPNOTSUPP) and no VIOMMU object can exist: every vIOMMU
 * lookup of the other commands is ENOENT.
 */
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_HW_QUEUE_TYPE_DEFAULT,
  IOMMU_VIOMMU_TYPE_DEFAULT,
  type iommuHwQueueAlloc,
  type iommuVdeviceAlloc,
  type iommuViommuAlloc,
  ULONG_MAX,
} from '../uapi/iommufd.ts';
import type { IommufdCtx, Ucmd } from './main.ts';
import type { IommufdObject } from './object.ts';

/** iommufd_get_viommu(): undefined means ENOENT (always, until a driver makes vIOMMUs). */
export function iommufdGetViommu(ictx: IommufdCtx, id: number): IommufdObject | undefined {
  return ictx.getObject(id, 'viommu');
}

/**
 * IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl): flags and the DEFAULT type (EOPNOTSUPP), the
 * device (ENOENT), then the driver's vIOMMU support (EOPNOTSUPP), all before hwpt_id is looked up.
 * __reserved, data_len and data_uptr are never checked. A no-IOMMU device answers as its ops
 * (iommufd_noiommu_ops, which have no vIOMMU support) do.
 */
export function iommufdViommuAlloc(ucmd: Ucmd<typeof iommuViommuAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.flags || cmd.type === IOMMU_VIOMMU_TYPE_DEFAULT) return -Errno.EOPNOTSUPP;
  const idev = ucmd.ictx.getObject(cmd.dev_id, 'device');
  if (idev === undefined) return -Errno.ENOENT;
  // No ops->get_viommu_size / ops->viommu_init on any emulated driver.
  ucmd.ictx.putObject(idev);
  return -Errno.EOPNOTSUPP;
}

/**
 * IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl): virt_id must fit an xarray index (always
 * true for a u64 on a 64-bit kernel), then the vIOMMU is looked up before the device.
 */
export function iommufdVdeviceAlloc(ucmd: Ucmd<typeof iommuVdeviceAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.virt_id > ULONG_MAX) return -Errno.EINVAL;
  const viommu = iommufdGetViommu(ucmd.ictx, cmd.viommu_id);
  if (viommu === undefined) return -Errno.ENOENT;
  ucmd.ictx.putObject(viommu);
  throw new Error('a vIOMMU object exists, but vDEVICEs are not emulated');
}

/**
 * IOMMU_HW_QUEUE_ALLOC (iommufd_hw_queue_alloc_ioctl): flags and the DEFAULT type (EOPNOTSUPP),
 * a zero length (EINVAL), the queue's last IOVA past 2^64 - 1 (EOVERFLOW), then the vIOMMU.
 */
export function iommufdHwQueueAlloc(ucmd: Ucmd<typeof iommuHwQueueAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.flags || cmd.type === IOMMU_HW_QUEUE_TYPE_DEFAULT) return -Errno.EOPNOTSUPP;
  if (!cmd.length) return -Errno.EINVAL;
  if (cmd.nesting_parent_iova + cmd.length - 1n > ULONG_MAX) return -Errno.EOVERFLOW;
  const viommu = iommufdGetViommu(ucmd.ictx, cmd.viommu_id);
  if (viommu === undefined) return -Errno.ENOENT;
  ucmd.ictx.putObject(viommu);
  throw new Error('a vIOMMU object exists, but HW queues are not emulated');
}
