/**
 * The mock IOMMU's vIOMMU driver (the vIOMMU half of drivers/iommu/iommufd/selftest.c): vIOMMUs
 * of IOMMU_VIOMMU_TYPE_SELFTEST, whose data is a loopback (out_data = in_data) and an mmap
 * region of two pages on the iommufd whose first word is in_data; nested domains allocated
 * through them; and cache invalidation, which clears entries of the cache of the mock device
 * behind a vDEVICE.
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
  IOMMU_TEST_INVALIDATE_FLAG_ALL,
  IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
  IOMMU_VIOMMU_TYPE_SELFTEST,
  iommuViommuInvalidateSelftest,
  iommuViommuSelftest,
  MOCK_DEV_CACHE_ID_MAX,
} from '../uapi/iommufd-test.ts';
import { decodeStruct, writeFields } from '../uapi/struct.ts';
import type { HwptPaging } from './hw-pagetable.ts';
import type { IommufdViommu, ViommuDriver, ViommuOps } from './viommu.ts';

/** The mock vIOMMU's own state: its mmap region of two pages (present only with data). */
export interface MockViommuData {
  mmap: { readonly offset: bigint; readonly page: Uint8Array } | undefined;
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

const mockViommuOps: ViommuOps = {
  destroy: mockViommuDestroy,
  allocDomainNested: mockViommuAllocDomainNested,
  cacheInvalidate: mockViommuCacheInvalidate,
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
  const state: MockViommuData = { mmap: undefined };
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
