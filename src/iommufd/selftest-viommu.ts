/**
 * The mock IOMMU's vIOMMU driver (the vIOMMU half of drivers/iommu/iommufd/selftest.c): vIOMMUs
 * of IOMMU_VIOMMU_TYPE_SELFTEST, whose data is a loopback (out_data = in_data) and an mmap
 * region of two pages on the iommufd whose first word is in_data; nested domains allocated
 * through them; cache invalidation, which clears entries of the cache of the mock device
 * behind a vDEVICE; and HW queues of IOMMU_HW_QUEUE_TYPE_SELFTEST, at most two, queue 1 only
 * after queue 0, which it then holds (so they go in descending order); a destroyed queue frees
 * slot 0 whatever its index, as 7.3's mock does.
 */

import { shouldFail } from '../fault/fault.ts';
import { copyFromUser, copyToUser } from '../host/uaccess.ts';
import {
  type IommuUserData,
  type IommuUserDataArray,
  iommuCopyStructFromUser,
} from '../iommu/iommu.ts';
import { isMockDevice, MockDevice, mockAllocNested } from '../iommu/mock-driver.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { IOMMU_HWPT_ALLOC_PASID, PAGE_SIZE } from '../uapi/iommufd.ts';
import {
  IOMMU_HW_QUEUE_TYPE_SELFTEST,
  IOMMU_TEST_HW_QUEUE_MAX,
  IOMMU_TEST_INVALIDATE_FLAG_ALL,
  IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
  IOMMU_VIOMMU_TYPE_SELFTEST,
  iommuViommuInvalidateSelftest,
  iommuViommuSelftest,
  MOCK_DEV_CACHE_ID_MAX,
} from '../uapi/iommufd-test.ts';
import { decodeStruct, writeFields } from '../uapi/struct.ts';
import type { HwptPaging } from './hw-pagetable.ts';
import type { IommufdHwQueue } from './hw-queue.ts';
import type { IommufdViommu, ViommuDriver, ViommuOps } from './viommu.ts';

/** The mock vIOMMU's own state: its mmap region of two pages (present only with data). */
export interface MockViommuData {
  mmap: { readonly offset: bigint; readonly page: Uint8Array } | undefined;
  /** Its HW queues by index (IOMMU_TEST_HW_QUEUE_MAX of them). */
  readonly hwQueues: (IommufdHwQueue | undefined)[];
}

/**
 * struct mock_hw_queue's own part: the slot its destroy clears, and the queue it depends on
 * (held). 7.3's mock never stores the index it was given, so the slot is always 0 (decision 232).
 */
interface MockHwQueueData {
  readonly slot: number;
  readonly prev: IommufdHwQueue | undefined;
}

const MMAP_LENGTH = 2n * PAGE_SIZE;

/** mock_viommu_destroy(): the mmap region goes. */
function mockViommuDestroy(viommu: IommufdViommu): void {
  const data = viommu.driverData as MockViommuData;
  if (data.mmap !== undefined) viommu.ictx.destroyMmap(viommu, data.mmap.offset);
  data.mmap = undefined;
}

/** mock_viommu_alloc_domain_nested(): a nested mock domain whose attach needs a vDEVICE. */
function mockViommuAllocDomainNested(
  viommu: IommufdViommu,
  flags: number,
  userData: IommuUserData,
) {
  if (flags & ~IOMMU_HWPT_ALLOC_PASID) return -Errno.EOPNOTSUPP;
  return mockAllocNested(userData, viommu);
}

const INV = iommuViommuInvalidateSelftest;

/**
 * mock_viommu_cache_invalidate(): no record of the right type is a probe; otherwise the whole
 * array is read first (EINVAL for another type, EFAULT, E2BIG for a longer record with a
 * non-zero tail), then each record clears one cache entry (or all, with FLAG_ALL) of the mock
 * device whose vDEVICE has `vdev_id`: EOPNOTSUPP for an unknown flag, EINVAL for a cache id past
 * 3 or an unknown vdev_id stops the batch.
 */
function mockViommuCacheInvalidate(
  viommu: IommufdViommu,
  array: IommuUserDataArray,
): SyscallResult {
  if (array.entryNum === 0 && array.type === IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) return 0;
  const records: Uint8Array[] = [];
  let rc = readWholeArray(array, records);
  let done = 0;
  if (rc === 0) {
    for (const bytes of records) {
      const cur = decodeStruct(INV, bytes);
      if (cur.flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL) {
        rc = -Errno.EOPNOTSUPP;
        break;
      }
      if (cur.cache_id > MOCK_DEV_CACHE_ID_MAX) {
        rc = -Errno.EINVAL;
        break;
      }
      const dev = viommu.findDev(BigInt(cur.vdev_id));
      if (dev === undefined || !isMockDevice(dev)) {
        rc = -Errno.EINVAL;
        break;
      }
      if (cur.flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) dev.cache.fill(0);
      else dev.cache[cur.cache_id] = 0;
      done++;
    }
  }
  array.entryNum = done;
  return rc;
}

/** iommu_copy_struct_from_full_user_array() of 12-byte records, after kzalloc of the array. */
function readWholeArray(array: IommuUserDataArray, out: Uint8Array[]): SyscallResult {
  // kzalloc of no record allocates nothing (ZERO_SIZE_PTR): no failure point then.
  if (array.entryNum && shouldFail('kmalloc')) return -Errno.ENOMEM;
  if (array.type !== IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) return -Errno.EINVAL;
  if (!array.entryNum) return -Errno.EINVAL;
  for (let i = 0; i < array.entryNum; i++) {
    const at = array.uptr + BigInt(array.entryLen) * BigInt(i);
    // copy_struct_from_user(): a short record is zero-extended, a long one's tail must be 0.
    const bytes = copyFromUser(array.task, at, array.entryLen);
    if (bytes === undefined) return -Errno.EFAULT;
    if (bytes.subarray(INV.size).some((b) => b !== 0)) return -Errno.E2BIG;
    const record = new Uint8Array(INV.size);
    record.set(bytes.subarray(0, INV.size));
    out.push(record);
  }
  return 0;
}

/**
 * mock_hw_queue_destroy(): slot 0 is emptied whatever the queue's index (decision 232: queue 1's
 * slot stays taken), and the queue before it is no longer held.
 */
function mockHwQueueDestroy(hwQueue: IommufdHwQueue): void {
  const data = hwQueue.driverData as MockHwQueueData;
  (hwQueue.viommu!.driverData as MockViommuData).hwQueues[data.slot] = undefined;
  // iommufd_hw_queue_undepend().
  data.prev?.users.dec();
}

/**
 * mock_hw_queue_init_phys(): an index below IOMMU_TEST_HW_QUEUE_MAX (EINVAL), free (EEXIST),
 * after a queue at the index before it (EIO); the physical address iommufd found must be what
 * the parent domain translates the queue's IOVA to (EFAULT); then the queue holds the one
 * before it (iommufd_hw_queue_depend()).
 */
function mockHwQueueInitPhys(hwQueue: IommufdHwQueue, index: number, basePa: bigint) {
  const viommu = hwQueue.viommu!;
  const state = viommu.driverData as MockViommuData;
  if (index >= IOMMU_TEST_HW_QUEUE_MAX) return -Errno.EINVAL;
  if (state.hwQueues[index] !== undefined) return -Errno.EEXIST;
  const prev = index ? state.hwQueues[index - 1] : undefined;
  if (index && prev === undefined) return -Errno.EIO;
  if (basePa !== viommu.hwpt.domain?.iovaToPhys(hwQueue.baseAddr)) return -Errno.EFAULT;
  prev?.users.inc();
  const data: MockHwQueueData = { slot: 0, prev };
  hwQueue.driverData = data;
  state.hwQueues[index] = hwQueue;
  hwQueue.driverDestroy = mockHwQueueDestroy;
  return 0;
}

const mockViommuOps: ViommuOps = {
  destroy: mockViommuDestroy,
  allocDomainNested: mockViommuAllocDomainNested,
  cacheInvalidate: mockViommuCacheInvalidate,
  hwQueueSupports: (_viommu, type) => type === IOMMU_HW_QUEUE_TYPE_SELFTEST,
  hwQueueInitPhys: mockHwQueueInitPhys,
};

const DATA = iommuViommuSelftest;

/**
 * mock_viommu_init(): with data (struct iommu_viommu_selftest, at least 8 bytes: EINVAL), two
 * zeroed pages whose first word is in_data, published as an mmap region of the iommufd; the
 * data goes back with out_data = in_data and the region's offset and length.
 */
function mockViommuInit(
  viommu: IommufdViommu,
  _parent: HwptPaging,
  userData: IommuUserData | undefined,
): SyscallResult {
  const state: MockViommuData = { mmap: undefined, hwQueues: [] };
  viommu.driverData = state;
  if (userData !== undefined) {
    const bytes = iommuCopyStructFromUser(userData, IOMMU_VIOMMU_TYPE_SELFTEST, DATA.size, 8);
    if (typeof bytes === 'number') return bytes;
    const data = decodeStruct(DATA, bytes);
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    const page = new Uint8Array(Number(MMAP_LENGTH));
    const offset = viommu.ictx.allocMmap(viommu, page);
    if (typeof offset === 'number') return offset;
    new DataView(page.buffer).setUint32(0, data.in_data, true);
    data.out_data = data.in_data;
    data.out_mmap_length = MMAP_LENGTH;
    data.out_mmap_offset = offset;
    const out = new Uint8Array(DATA.size);
    writeFields(DATA, out, data);
    if (!copyToUser(userData.task, userData.uptr, out.subarray(0, userData.len))) {
      viommu.ictx.destroyMmap(viommu, offset);
      return -Errno.EFAULT;
    }
    state.mmap = { offset, page };
  }
  viommu.ops = mockViommuOps;
  return 0;
}

/** mock_get_viommu_size() and mock_viommu_init(). */
export const mockViommuDriver: ViommuDriver = {
  supports: (dev, type) => dev instanceof MockDevice && type === IOMMU_VIOMMU_TYPE_SELFTEST,
  init: mockViommuInit,
};
