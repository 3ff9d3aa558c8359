/**
 * The kernel's test interface (drivers/iommu/iommufd/iommufd_test.h, CONFIG_IOMMUFD_TEST): the
 * IOMMU_TEST_CMD struct, its ops and the mock driver's constants. Not a uAPI header, so the
 * drift tests do not compare it with include/linux; test/conformance/iommufd_test.h is the C
 * side the conformance programs build against.
 *
 * struct iommu_test_cmd is a header (size, op, id) and a union of one struct per op, then `last`.
 * A field table cannot overlap, so there is one table per op: each covers the header, its union
 * member and `last`, and they all have the size of the whole struct.
 */
import { defineStruct, type FieldTable } from './struct.ts';

export const IOMMU_TEST_OP_ADD_RESERVED = 1;
export const IOMMU_TEST_OP_MOCK_DOMAIN = 2;
export const IOMMU_TEST_OP_MD_CHECK_MAP = 3;
export const IOMMU_TEST_OP_MD_CHECK_REFS = 4;
export const IOMMU_TEST_OP_CREATE_ACCESS = 5;
export const IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6;
export const IOMMU_TEST_OP_ACCESS_PAGES = 7;
export const IOMMU_TEST_OP_ACCESS_RW = 8;
export const IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9;
export const IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10;
export const IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11;
export const IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12;
export const IOMMU_TEST_OP_DIRTY = 13;
export const IOMMU_TEST_OP_MD_CHECK_IOTLB = 14;
export const IOMMU_TEST_OP_TRIGGER_IOPF = 15;
export const IOMMU_TEST_OP_DEV_CHECK_CACHE = 16;
export const IOMMU_TEST_OP_TRIGGER_VEVENT = 17;
export const IOMMU_TEST_OP_PASID_ATTACH = 18;
export const IOMMU_TEST_OP_PASID_REPLACE = 19;
export const IOMMU_TEST_OP_PASID_DETACH = 20;
export const IOMMU_TEST_OP_PASID_CHECK_HWPT = 21;
export const IOMMU_TEST_OP_DMABUF_GET = 22;
export const IOMMU_TEST_OP_DMABUF_REVOKE = 23;

/** The mock domain's IOVA window. */
export const MOCK_APERTURE_START = 1n << 24n;
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n;
/** The mock domain's page: half a CPU page, so IOVA alignment below PAGE_SIZE gets exercised. */
export const MOCK_PAGE_SIZE = 2048n;

/** dev_flags of MOCK_DOMAIN_FLAGS. HUGE_IOVA (1 << 1) is gone since the iommupt mock domains. */
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0;
export const MOCK_FLAGS_DEVICE_PASID = 1 << 2;

export const MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3;
export const MOCK_DEV_CACHE_ID_MAX = 3;
export const MOCK_DEV_CACHE_NUM = 4;
/** A mock device's cache entries before any invalidation. */
export const IOMMU_TEST_DEV_CACHE_DEFAULT = 0xbaddad;
/** The PASID width of a MOCK_FLAGS_DEVICE_PASID device (pasid-num-bits). */
export const MOCK_PASID_WIDTH = 20;
/** The PASID whose set_dev_pasid fails every second time (to make a replace fail). */
export const IOMMU_TEST_PASID_RESERVED = 1024;

/** GET_HW_INFO of a mock device: out_data_type and struct iommu_test_hw_info. */
export const IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
export const IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;
export const iommuTestHwInfo = defineStruct('iommu_test_hw_info', 8, 'test_reg', {
  flags: { offset: 0, type: 'u32' },
  test_reg: { offset: 4, type: 'u32' },
});

/** SET_TEMP_MEMORY_LIMIT: smaller than one batch element (a ulong and a u32) is refused. */
export const IOMMUFD_TEST_MEMORY_LIMIT_MIN = 12;
export const IOMMUFD_TEST_MEMORY_LIMIT_DEFAULT = 65536;

const TEST_CMD_SIZE = 72;
const header = {
  size: { offset: 0, type: 'u32' },
  op: { offset: 4, type: 'u32' },
  id: { offset: 8, type: 'u32' },
  __reserved: { offset: 12, type: 'u32' },
  last: { offset: 64, type: 'u32' },
} as const satisfies FieldTable;

/** What the dispatcher decodes and the trace prints: the header and `last`. */
export const iommuTestCmd = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', header);

export const testAddReserved = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  start: { offset: 16, type: 'u64' },
  length: { offset: 24, type: 'u64' },
});

/** mock_domain and mock_domain_flags (the latter adds dev_flags). */
export const testMockDomain = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  out_stdev_id: { offset: 16, type: 'u32' },
  out_hwpt_id: { offset: 20, type: 'u32' },
  out_idev_id: { offset: 24, type: 'u32' },
  dev_flags: { offset: 28, type: 'u32' },
});

export const testMockDomainReplace = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  pt_id: { offset: 16, type: 'u32' },
});

export const testCheckMap = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  iova: { offset: 16, type: 'u64' },
  length: { offset: 24, type: 'u64' },
  uptr: { offset: 32, type: 'u64' },
});

export const testCheckRefs = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  length: { offset: 16, type: 'u64' },
  uptr: { offset: 24, type: 'u64' },
  refs: { offset: 32, type: 'u32' },
});

export const testMemoryLimit = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  limit: { offset: 16, type: 'u32' },
});

export const testDirty = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  flags: { offset: 16, type: 'u32' },
  iova: { offset: 24, type: 'u64' },
  length: { offset: 32, type: 'u64' },
  page_size: { offset: 40, type: 'u64' },
  uptr: { offset: 48, type: 'u64' },
  out_nr_dirty: { offset: 56, type: 'u64' },
});

/** check_iotlb and check_dev_cache share a layout: an index and the expected value. */
export const testCheckCache = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  cache_id: { offset: 16, type: 'u32' },
  value: { offset: 20, type: 'u32' },
});

/** pasid_attach, pasid_replace and pasid_detach (which has no pt_id). */
export const testPasidAttach = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  pasid: { offset: 16, type: 'u32' },
  pt_id: { offset: 20, type: 'u32' },
});

export const testPasidCheck = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  pasid: { offset: 16, type: 'u32' },
  hwpt_id: { offset: 20, type: 'u32' },
});

/** DMABUF_GET: a dma-buf of `length` bytes (rounded up to pages), opened with `open_flags`. */
export const testDmabufGet = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  length: { offset: 16, type: 'u32' },
  open_flags: { offset: 20, type: 'u32' },
});

export const testDmabufRevoke = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  dmabuf_fd: { offset: 16, type: 's32' },
  revoked: { offset: 20, type: 'u32' },
});

/** CREATE_ACCESS: the new access fd comes back in out_access_fd. */
export const MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0;
export const testCreateAccess = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  out_access_fd: { offset: 16, type: 'u32' },
  flags: { offset: 20, type: 'u32' },
});

export const testDestroyAccessPages = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  access_pages_id: { offset: 16, type: 'u32' },
});

/** ACCESS_PAGES flags; SYZ (syzkaller's nth-area IOVAs) is accepted by ACCESS_RW too. */
export const MOCK_FLAGS_ACCESS_WRITE = 1 << 0;
export const MOCK_FLAGS_ACCESS_SYZ = 1 << 16;
export const testAccessPages = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  flags: { offset: 16, type: 'u32' },
  out_access_pages_id: { offset: 20, type: 'u32' },
  iova: { offset: 24, type: 'u64' },
  length: { offset: 32, type: 'u64' },
  uptr: { offset: 40, type: 'u64' },
});

/** ACCESS_RW flags: the same bits as iommufd_access_rw()'s own. */
export const MOCK_ACCESS_RW_WRITE = 1 << 0;
export const MOCK_ACCESS_RW_SLOW_PATH = 1 << 2;
export const testAccessRw = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  iova: { offset: 16, type: 'u64' },
  length: { offset: 24, type: 'u64' },
  uptr: { offset: 32, type: 'u64' },
  flags: { offset: 40, type: 'u32' },
});

export const testAccessReplaceIoas = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  ioas_id: { offset: 16, type: 'u32' },
});

/** TRIGGER_IOPF: dev_id is a DEVICE object; addr is a plain (4-byte aligned) __u64. */
export const testTriggerIopf = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  dev_id: { offset: 16, type: 'u32' },
  pasid: { offset: 20, type: 'u32' },
  grpid: { offset: 24, type: 'u32' },
  perm: { offset: 28, type: 'u32' },
  addr: { offset: 32, type: 'u64' },
});

/** TRIGGER_VEVENT: dev_id is a DEVICE object. */
export const testTriggerVevent = defineStruct('iommu_test_cmd', TEST_CMD_SIZE, 'last', {
  ...header,
  dev_id: { offset: 16, type: 'u32' },
});

/** IOMMU_HWPT_ALLOC's data_type for the mock driver, and struct iommu_hwpt_selftest. */
export const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
/** Every IOTLB entry of a nested mock domain starts as the `iotlb` of its allocation data. */
export const IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;
export const MOCK_NESTED_DOMAIN_IOTLB_NUM = 4;
/** iommu_hwpt_selftest.pagetable_type of a paging domain: 2 KiB pages, or 1 MiB and 4 KiB. */
export const MOCK_IOMMUPT_DEFAULT = 0;
export const MOCK_IOMMUPT_HUGE = 1;
export const MOCK_HUGE_PAGE_SIZE = 512n * MOCK_PAGE_SIZE;
/** Its first version ended after `iotlb` (4 bytes): shorter data is EINVAL. */
export const iommuHwptSelftest = defineStruct('iommu_hwpt_selftest', 8, 'iotlb', {
  iotlb: { offset: 0, type: 'u32' },
  pagetable_type: { offset: 4, type: 'u32' },
});

/** IOMMU_HWPT_INVALIDATE of a nested mock domain: records of struct iommu_hwpt_invalidate_selftest. */
export const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID = 0xdadbeef;
/** The record's flag that invalidates every entry (iotlb_id or cache_id is then ignored). */
export const IOMMU_TEST_INVALIDATE_FLAG_ALL = 1 << 0;
export const iommuHwptInvalidateSelftest = defineStruct(
  'iommu_hwpt_invalidate_selftest',
  8,
  'iotlb_id',
  {
    flags: { offset: 0, type: 'u32' },
    iotlb_id: { offset: 4, type: 'u32' },
  },
);

/** IOMMU_VIOMMU_ALLOC's type for the mock driver, and struct iommu_viommu_selftest. */
export const IOMMU_VIOMMU_TYPE_SELFTEST = 0xdeadbeef;
export const iommuViommuSelftest = defineStruct('iommu_viommu_selftest', 24, 'out_data', {
  in_data: { offset: 0, type: 'u32' },
  out_data: { offset: 4, type: 'u32' },
  out_mmap_offset: { offset: 8, type: 'u64' },
  out_mmap_length: { offset: 16, type: 'u64' },
});

/** IOMMU_HWPT_INVALIDATE of a mock vIOMMU: records of struct iommu_viommu_invalidate_selftest. */
export const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID = 0xdadbeef;
export const iommuViommuInvalidateSelftest = defineStruct(
  'iommu_viommu_invalidate_selftest',
  12,
  'cache_id',
  {
    flags: { offset: 0, type: 'u32' },
    vdev_id: { offset: 4, type: 'u32' },
    cache_id: { offset: 8, type: 'u32' },
  },
);

/** IOMMU_VEVENTQ_ALLOC's type for the mock driver; each event is struct iommu_viommu_event_selftest. */
export const IOMMU_VEVENTQ_TYPE_SELFTEST = 0xbeefbeef;
export const iommuViommuEventSelftest = defineStruct('iommu_viommu_event_selftest', 4, 'virt_id', {
  virt_id: { offset: 0, type: 'u32' },
});

/** IOMMU_HW_QUEUE_ALLOC's type for the mock driver, and how many queues a mock vIOMMU has. */
export const IOMMU_HW_QUEUE_TYPE_SELFTEST = 0xdeadbeef;
export const IOMMU_TEST_HW_QUEUE_MAX = 2;
