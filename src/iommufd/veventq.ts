/**
 * vEVENTQs (IOMMU_VEVENTQ_ALLOC, the vEVENTQ half of drivers/iommu/iommufd/eventq.c): a vIOMMU's
 * event queue, read through its fd as records with sequence numbers.
 */
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { IOMMU_VEVENTQ_TYPE_DEFAULT, type iommuVeventqAlloc } from '../uapi/iommufd.ts';
import type { Ucmd } from './main.ts';
import { iommufdGetViommu } from './viommu.ts';

/**
 * IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc): flags, __reserved (checked even though it lies
 * past min_size) and the DEFAULT type first, then the depth, then the vIOMMU lookup, which no
 * id can pass (ENOENT).
 */
export function iommufdVeventqAlloc(ucmd: Ucmd<typeof iommuVeventqAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.flags || cmd.__reserved || cmd.type === IOMMU_VEVENTQ_TYPE_DEFAULT)
    return -Errno.EOPNOTSUPP;
  if (!cmd.veventq_depth) return -Errno.EINVAL;
  const viommu = iommufdGetViommu(ucmd.ictx, cmd.viommu_id);
  if (viommu === undefined) return -Errno.ENOENT;
  ucmd.ictx.putObject(viommu);
  throw new Error('a vIOMMU object exists, but vEVENTQs are not emulated');
}
