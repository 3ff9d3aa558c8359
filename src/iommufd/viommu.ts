/**
 * Virtual IOMMUs (drivers/iommu/iommufd/viommu.c, driver.c): IOMMU_VIOMMU_ALLOC, the VIOMMU
 * object (a slice of a physical IOMMU handed to a guest, on a NEST_PARENT paging HWPT),
 * IOMMU_VDEVICE_ALLOC (a device's identity in the guest, `virt_id`) with its tombstone when the
 * device goes. What a vIOMMU does is its driver's
 * (`ViommuOps`); only the mock IOMMU of the test interface has a vIOMMU driver
 * (selftest-viommu.ts). A device with no IOMMU has no IOMMU instance: every command refuses it.
 */
import type {
  Device,
  IommuNestedDomain,
  IommuOps,
  IommuUserData,
  IommuUserDataArray,
} from '../iommu/iommu.ts';
import { mockIommuOps } from '../iommu/mock-driver.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_VIOMMU_TYPE_DEFAULT,
  type iommuVdeviceAlloc,
  type iommuViommuAlloc,
  ULONG_MAX,
} from '../uapi/iommufd.ts';
import type { IommufdCtx } from './context.ts';
import type { IommufdDevice } from './device.ts';
import type { HwptPaging } from './hw-pagetable.ts';
import type { IommufdHwQueue } from './hw-queue.ts';
import { IommufdObject } from './object.ts';
import { mockViommuDriver } from './selftest-viommu.ts';
import type { Ucmd } from './ucmd.ts';
import type { IommufdVeventq } from './veventq.ts';

/** struct iommufd_viommu_ops: what a vIOMMU's driver does. */
export interface ViommuOps {
  /** destroy(): the driver's part of the vIOMMU goes (its mmap region, its page). */
  destroy?(viommu: IommufdViommu): void;
  /** alloc_domain_nested(): a nested domain of this vIOMMU (HWPT_ALLOC with pt_id a vIOMMU). */
  allocDomainNested?(
    viommu: IommufdViommu,
    flags: number,
    userData: IommuUserData,
  ): IommuNestedDomain | number;
  /** cache_invalidate(): IOMMU_HWPT_INVALIDATE with hwpt_id a vIOMMU; sets array.entryNum. */
  cacheInvalidate?(viommu: IommufdViommu, array: IommuUserDataArray): SyscallResult;
  /** get_hw_queue_size() non-zero: the driver has HW queues of `type`. */
  hwQueueSupports?(viommu: IommufdViommu, type: number): boolean;
  /**
   * hw_queue_init_phys(): the driver takes the queue at `basePa` (its memory pinned and
   * contiguous) as its queue `index`; on success it sets hwQueue.driverDestroy.
   */
  hwQueueInitPhys?(hwQueue: IommufdHwQueue, index: number, basePa: bigint): SyscallResult;
}

/** get_viommu_size() and viommu_init() of an IOMMU driver with vIOMMU support. */
export interface ViommuDriver {
  /** Whether the driver makes vIOMMUs of `type` (get_viommu_size() non-zero). */
  supports(dev: Device, type: number): boolean;
  /** viommu_init(): the driver's part, with the user's data if any; sets viommu.ops. */
  init(
    viommu: IommufdViommu,
    parent: HwptPaging,
    userData: IommuUserData | undefined,
  ): SyscallResult;
}

/** ops->get_viommu_size and ops->viommu_init: only the mock IOMMU has vIOMMU support. */
function viommuDriverOf(ops: IommuOps): ViommuDriver | undefined {
  return ops === mockIommuOps ? mockViommuDriver : undefined;
}

/**
 * iommufd_device_get_iommu_dev(): the physical IOMMU instance in front of a device (its unit, or
 * the mock IOMMU), undefined with none (a no-IOMMU device).
 */
export function deviceIommuInstance(idev: IommufdDevice): object | undefined {
  if (idev.igroup?.group === undefined || idev.dev.iommu === undefined) return undefined;
  return idev.dev.iommu.unit ?? idev.dev.iommu.ops;
}

/** struct iommufd_viommu. */
export class IommufdViommu extends IommufdObject {
  readonly type = 'viommu';
  /** The vIOMMU type userspace asked for (IOMMU_VIOMMU_TYPE_*). */
  readonly viommuType: number;
  /** The nesting parent, held. */
  readonly hwpt: HwptPaging;
  /** viommu->iommu_dev: the physical IOMMU instance its devices must be behind. */
  readonly iommuInstance: object;
  readonly iommuOps: IommuOps;
  /** vdevs: the vDEVICEs by virt_id. */
  readonly vdevs = new Map<bigint, IommufdVdevice>();
  /** veventqs: at most one per type. */
  readonly veventqs: IommufdVeventq[] = [];
  /** Set by the driver's init. */
  ops: ViommuOps | undefined;
  /** The driver's own state (the mock driver's: mmap region, HW queues). */
  driverData: unknown;

  constructor(
    ictx: IommufdCtx,
    viommuType: number,
    hwpt: HwptPaging,
    iommuInstance: object,
    iommuOps: IommuOps,
  ) {
    super(ictx);
    this.viommuType = viommuType;
    this.hwpt = hwpt;
    this.iommuInstance = iommuInstance;
    this.iommuOps = iommuOps;
  }

  /** iommufd_viommu_get_vdev_id(): the virt_id of `dev`'s vDEVICE here, if it has one. */
  vdevIdOf(dev: Device): bigint | undefined {
    for (const vdev of this.vdevs.values()) if (vdev.idev.dev === dev) return vdev.virtId;
    return undefined;
  }

  /** iommufd_viommu_find_dev(): the device whose vDEVICE here has `virtId`. */
  findDev(virtId: bigint): Device | undefined {
    return this.vdevs.get(virtId)?.idev.dev;
  }

  /** iommufd_viommu_find_veventq(). */
  findVeventq(type: number): IommufdVeventq | undefined {
    return this.veventqs.find((q) => q.veventqType === type);
  }

  /** iommufd_viommu_destroy(). */
  destroy(): void {
    this.ops?.destroy?.(this);
    this.hwpt.users.dec();
    this.vdevs.clear();
  }

  describe(): string {
    return `${super.describe()} on hwpt ${this.hwpt.id}`;
  }
}

/** iommufd_get_viommu(): undefined means ENOENT. */
export function iommufdGetViommu(ictx: IommufdCtx, id: number): IommufdViommu | undefined {
  return ictx.getObject(id, 'viommu') as IommufdViommu | undefined;
}

/**
 * IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl): flags and the DEFAULT type (EOPNOTSUPP), the
 * device (ENOENT), its IOMMU's vIOMMU support for the type (EOPNOTSUPP: a no-IOMMU device and
 * the platform's units have none), then hwpt_id, a paging HWPT (ENOENT) that is a nesting parent
 * (EINVAL), then the driver's init with the data, if any. __reserved is never checked.
 */
export function iommufdViommuAlloc(ucmd: Ucmd<typeof iommuViommuAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.flags || cmd.type === IOMMU_VIOMMU_TYPE_DEFAULT) return -Errno.EOPNOTSUPP;
  using heldDev = ictx.getObjectRef(cmd.dev_id, 'device');
  if (heldDev === undefined) return -Errno.ENOENT;
  const idev = heldDev.obj as IommufdDevice;
  const instance = deviceIommuInstance(idev);
  if (instance === undefined) return -Errno.EOPNOTSUPP;
  const ops = idev.dev.iommu!.ops;
  const driver = viommuDriverOf(ops);
  if (driver === undefined || !driver.supports(idev.dev, cmd.type)) return -Errno.EOPNOTSUPP;
  using heldHwpt = ictx.getObjectRef(cmd.hwpt_id, 'hwpt-paging');
  if (heldHwpt === undefined) return -Errno.ENOENT;
  const hwpt = heldHwpt.obj as HwptPaging;
  if (!hwpt.nestParent) return -Errno.EINVAL;
  const viommu = ictx.allocObject(new IommufdViommu(ictx, cmd.type, hwpt, instance, ops));
  if (typeof viommu === 'number') return viommu;
  hwpt.users.inc();
  const userData: IommuUserData | undefined = cmd.data_len
    ? { type: cmd.type, uptr: cmd.data_uptr, len: cmd.data_len, task: ucmd.task }
    : undefined;
  let rc = driver.init(viommu, hwpt, userData);
  if (rc === 0) {
    cmd.out_viommu_id = viommu.id;
    rc = ucmd.respond();
  }
  if (rc) {
    ictx.abortAndDestroy(viommu);
    return rc;
  }
  ictx.finalize(viommu);
  return 0;
}

/** struct iommufd_vdevice: a device's identity (`virtId`) in a vIOMMU. */
export class IommufdVdevice extends IommufdObject {
  readonly type = 'vdevice';
  readonly viommu: IommufdViommu;
  /** Held (users and short-term, the kernel's wait_cnt) until destroy. */
  readonly idev: IommufdDevice;
  readonly virtId: bigint;

  constructor(ictx: IommufdCtx, viommu: IommufdViommu, idev: IommufdDevice, virtId: bigint) {
    super(ictx);
    this.viommu = viommu;
    this.idev = idev;
    this.virtId = virtId;
  }

  /** iommufd_vdevice_destroy(): out of the vIOMMU, which it no longer holds, and off its device. */
  destroy(): void {
    if (this.viommu.vdevs.get(this.virtId) === this) this.viommu.vdevs.delete(this.virtId);
    this.viommu.users.dec();
    this.idev.vdev = undefined;
    this.ictx.putObject(this.idev);
  }

  describe(): string {
    return `${super.describe()} virt_id ${this.virtId} of device ${this.idev.id}`;
  }
}

/**
 * IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl): virt_id must fit an xarray index, then the
 * vIOMMU (ENOENT) and the device (ENOENT), which must be behind the vIOMMU's IOMMU (EINVAL),
 * and have no vDEVICE yet (EEXIST), nor may virt_id be taken in the vIOMMU (EEXIST). The vDEVICE
 * holds its device and its vIOMMU.
 */
export function iommufdVdeviceAlloc(ucmd: Ucmd<typeof iommuVdeviceAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.virt_id > ULONG_MAX) return -Errno.EINVAL;
  using heldViommu = ictx.getObjectRef(cmd.viommu_id, 'viommu');
  if (heldViommu === undefined) return -Errno.ENOENT;
  const viommu = heldViommu.obj as IommufdViommu;
  const idev = ictx.getObject(cmd.dev_id, 'device') as IommufdDevice | undefined;
  if (idev === undefined) return -Errno.ENOENT;
  const rc = vdeviceAlloc(ucmd, viommu, idev);
  // On success the vDEVICE keeps the reference the lookup took.
  if (rc) ictx.putObject(idev);
  return rc;
}

function vdeviceAlloc(
  ucmd: Ucmd<typeof iommuVdeviceAlloc.fields>,
  viommu: IommufdViommu,
  idev: IommufdDevice,
): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  const instance = deviceIommuInstance(idev);
  if (instance === undefined || instance !== viommu.iommuInstance) return -Errno.EINVAL;
  if (idev.vdev !== undefined) return -Errno.EEXIST;
  const vdev = ictx.allocObject(new IommufdVdevice(ictx, viommu, idev, cmd.virt_id));
  if (typeof vdev === 'number') return vdev;
  viommu.users.inc();
  idev.vdev = vdev;
  // xa_insert() of virt_id: taken is EEXIST.
  if (viommu.vdevs.has(cmd.virt_id)) {
    abortVdevice(vdev);
    return -Errno.EEXIST;
  }
  viommu.vdevs.set(cmd.virt_id, vdev);
  cmd.out_vdevice_id = vdev.id;
  const rc = ucmd.respond();
  if (rc) {
    abortVdevice(vdev);
    return rc;
  }
  ictx.finalize(vdev);
  return 0;
}

/** iommufd_vdevice_abort(): unlike destroy, the device reference is the caller's to drop. */
function abortVdevice(vdev: IommufdVdevice): void {
  if (vdev.viommu.vdevs.get(vdev.virtId) === vdev) vdev.viommu.vdevs.delete(vdev.virtId);
  vdev.viommu.users.dec();
  vdev.idev.vdev = undefined;
  vdev.ictx.abort(vdev);
}

/**
 * iommufd_device_remove_vdev() (the device's pre_destroy): a device that goes while it has a
 * vDEVICE takes the vDEVICE with it, leaving its id a tombstone until the iommufd is closed.
 */
export function iommufdDeviceRemoveVdev(idev: IommufdDevice): void {
  const vdev = idev.vdev;
  if (vdev === undefined) return;
  vdev.users.inc();
  const rc = idev.ictx.tombstone(vdev);
  if (rc) throw new Error(`the vDEVICE of ${idev.describe()} is still held (${rc})`);
}
