/**
 * Event queues: the FAULT object behind IOMMU_FAULT_QUEUE_ALLOC and the vEVENTQ behind
 * IOMMU_VEVENTQ_ALLOC, each published with an anonymous fd the user reads events from. Mirrors
 * the allocation paths of drivers/iommu/iommufd/eventq.c. The emulator cannot hand a new fd to a
 * client yet (the shim only creates fds in open()), so a fault queue fails where the kernel's
 * would if it could not make its file (docs/decisions.md); vEVENTQs need a vIOMMU, which no
 * emulated driver has.
 */
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_VEVENTQ_TYPE_DEFAULT,
  type iommuFaultAlloc,
  type iommuVeventqAlloc,
} from '../uapi/iommufd.ts';
import type { Ucmd } from './main.ts';
import { IommufdObject } from './object.ts';
import { iommufdGetViommu } from './viommu.ts';

/** struct iommufd_fault: never published while fault queue fds cannot be made. */
export class IommufdFault extends IommufdObject {
  readonly type = 'fault';

  /** iommufd_fault_destroy(): nothing is queued, nothing to answer. */
  destroy(): void {}
}

/**
 * IOMMU_FAULT_QUEUE_ALLOC (iommufd_fault_alloc). After the flags check and the object's id
 * reservation, iommufd_eventq_init() needs an anon_inode file and an fd in the caller: that step
 * fails here with ENOMEM (anon_inode_getfile()'s answer when it cannot allocate), the object is
 * aborted and no id is burnt.
 */
export function iommufdFaultAlloc(ucmd: Ucmd<typeof iommuFaultAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.flags) return -Errno.EOPNOTSUPP;
  const fault = ictx.allocObject(new IommufdFault(ictx));
  if (typeof fault === 'number') return fault;
  ictx.abortAndDestroy(fault);
  ictx.subsystem.events.log(
    'warn',
    'IOMMU_FAULT_QUEUE_ALLOC: fault queue fds are not emulated yet; answered ENOMEM',
  );
  return -Errno.ENOMEM;
}

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
