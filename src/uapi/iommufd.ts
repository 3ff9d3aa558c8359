/**
 * The iommufd uAPI (include/uapi/linux/iommufd.h): struct layouts, flag bits and enum values.
 * Offsets and sizes are ABI facts; see ../../docs/architecture.md for the framing rules.
 */
import { defineStruct } from './struct.ts';

export const ULONG_MAX = (1n << 64n) - 1n;
export const PAGE_SIZE = 4096n;
export const PAGE_SHIFT = 12n;

export const iommuDestroy = defineStruct('iommu_destroy', 8, 'id', {
  size: { offset: 0, type: 'u32' },
  id: { offset: 4, type: 'u32' },
});

export const iommuIoasAlloc = defineStruct('iommu_ioas_alloc', 12, 'out_ioas_id', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  out_ioas_id: { offset: 8, type: 'u32' },
});

export const iommuIovaRange = defineStruct('iommu_iova_range', 16, 'last', {
  start: { offset: 0, type: 'u64' },
  last: { offset: 8, type: 'u64' },
});

export const iommuIoasIovaRanges = defineStruct(
  'iommu_ioas_iova_ranges',
  32,
  'out_iova_alignment',
  {
    size: { offset: 0, type: 'u32' },
    ioas_id: { offset: 4, type: 'u32' },
    num_iovas: { offset: 8, type: 'u32' },
    __reserved: { offset: 12, type: 'u32' },
    allowed_iovas: { offset: 16, type: 'u64' },
    out_iova_alignment: { offset: 24, type: 'u64' },
  },
);

export const iommuIoasAllowIovas = defineStruct('iommu_ioas_allow_iovas', 24, 'allowed_iovas', {
  size: { offset: 0, type: 'u32' },
  ioas_id: { offset: 4, type: 'u32' },
  num_iovas: { offset: 8, type: 'u32' },
  __reserved: { offset: 12, type: 'u32' },
  allowed_iovas: { offset: 16, type: 'u64' },
});

export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;
export const IOMMU_IOAS_MAP_ALL_FLAGS =
  IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

export const iommuIoasMap = defineStruct('iommu_ioas_map', 40, 'iova', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  ioas_id: { offset: 8, type: 'u32' },
  __reserved: { offset: 12, type: 'u32' },
  user_va: { offset: 16, type: 'u64' },
  length: { offset: 24, type: 'u64' },
  iova: { offset: 32, type: 'u64' },
});

export const iommuIoasMapFile = defineStruct('iommu_ioas_map_file', 40, 'iova', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  ioas_id: { offset: 8, type: 'u32' },
  fd: { offset: 12, type: 's32' },
  start: { offset: 16, type: 'u64' },
  length: { offset: 24, type: 'u64' },
  iova: { offset: 32, type: 'u64' },
});

export const iommuIoasCopy = defineStruct('iommu_ioas_copy', 40, 'src_iova', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  dst_ioas_id: { offset: 8, type: 'u32' },
  src_ioas_id: { offset: 12, type: 'u32' },
  length: { offset: 16, type: 'u64' },
  dst_iova: { offset: 24, type: 'u64' },
  src_iova: { offset: 32, type: 'u64' },
});

export const iommuIoasUnmap = defineStruct('iommu_ioas_unmap', 24, 'length', {
  size: { offset: 0, type: 'u32' },
  ioas_id: { offset: 4, type: 'u32' },
  iova: { offset: 8, type: 'u64' },
  length: { offset: 16, type: 'u64' },
});

export const IOMMU_OPTION_RLIMIT_MODE = 0;
export const IOMMU_OPTION_HUGE_PAGES = 1;
export const IOMMU_OPTION_OP_SET = 0;
export const IOMMU_OPTION_OP_GET = 1;

export const iommuOption = defineStruct('iommu_option', 24, 'val64', {
  size: { offset: 0, type: 'u32' },
  option_id: { offset: 4, type: 'u32' },
  op: { offset: 8, type: 'u16' },
  __reserved: { offset: 10, type: 'u16' },
  object_id: { offset: 12, type: 'u32' },
  val64: { offset: 16, type: 'u64' },
});

export const IOMMU_VFIO_IOAS_GET = 0;
export const IOMMU_VFIO_IOAS_SET = 1;
export const IOMMU_VFIO_IOAS_CLEAR = 2;

export const iommuVfioIoas = defineStruct('iommu_vfio_ioas', 12, '__reserved', {
  size: { offset: 0, type: 'u32' },
  ioas_id: { offset: 4, type: 'u32' },
  op: { offset: 8, type: 'u16' },
  __reserved: { offset: 10, type: 'u16' },
});

export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
export const IOMMU_HWPT_ALLOC_PASID = 1 << 3;
export const IOMMU_HWPT_ALLOC_ALL_FLAGS =
  IOMMU_HWPT_ALLOC_NEST_PARENT |
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
  IOMMU_HWPT_FAULT_ID_VALID |
  IOMMU_HWPT_ALLOC_PASID;

export const IOMMU_HWPT_DATA_NONE = 0;

export const iommuHwptAlloc = defineStruct('iommu_hwpt_alloc', 48, '__reserved', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  dev_id: { offset: 8, type: 'u32' },
  pt_id: { offset: 12, type: 'u32' },
  out_hwpt_id: { offset: 16, type: 'u32' },
  __reserved: { offset: 20, type: 'u32' },
  data_type: { offset: 24, type: 'u32' },
  data_len: { offset: 28, type: 'u32' },
  data_uptr: { offset: 32, type: 'u64' },
  fault_id: { offset: 40, type: 'u32' },
  __reserved2: { offset: 44, type: 'u32' },
});

export const IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0;
export const IOMMU_HW_INFO_TYPE_NONE = 0;
/** With IOMMU_HW_INFO_FLAG_INPUT_TYPE: the driver's own type. */
export const IOMMU_HW_INFO_TYPE_DEFAULT = 0;
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1n << 0n;
export const IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1n << 3n;

export const iommuHwInfo = defineStruct('iommu_hw_info', 40, '__reserved2', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  dev_id: { offset: 8, type: 'u32' },
  data_len: { offset: 12, type: 'u32' },
  data_uptr: { offset: 16, type: 'u64' },
  out_data_type: { offset: 24, type: 'u32' },
  out_max_pasid_log2: { offset: 28, type: 'u8' },
  __reserved0: { offset: 29, type: 'u8' },
  __reserved1: { offset: 30, type: 'u8' },
  __reserved2: { offset: 31, type: 'u8' },
  out_capabilities: { offset: 32, type: 'u64' },
});

export const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1 << 0;

export const iommuHwptSetDirtyTracking = defineStruct(
  'iommu_hwpt_set_dirty_tracking',
  16,
  '__reserved',
  {
    size: { offset: 0, type: 'u32' },
    flags: { offset: 4, type: 'u32' },
    hwpt_id: { offset: 8, type: 'u32' },
    __reserved: { offset: 12, type: 'u32' },
  },
);

export const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1 << 0;

export const iommuHwptGetDirtyBitmap = defineStruct('iommu_hwpt_get_dirty_bitmap', 48, 'data', {
  size: { offset: 0, type: 'u32' },
  hwpt_id: { offset: 4, type: 'u32' },
  flags: { offset: 8, type: 'u32' },
  __reserved: { offset: 12, type: 'u32' },
  iova: { offset: 16, type: 'u64' },
  length: { offset: 24, type: 'u64' },
  page_size: { offset: 32, type: 'u64' },
  data: { offset: 40, type: 'u64' },
});

export const IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0;
export const IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1;

export const iommuHwptInvalidate = defineStruct('iommu_hwpt_invalidate', 32, '__reserved', {
  size: { offset: 0, type: 'u32' },
  hwpt_id: { offset: 4, type: 'u32' },
  data_uptr: { offset: 8, type: 'u64' },
  data_type: { offset: 16, type: 'u32' },
  entry_len: { offset: 20, type: 'u32' },
  entry_num: { offset: 24, type: 'u32' },
  __reserved: { offset: 28, type: 'u32' },
});

/** struct iommu_hwpt_pgfault's flags and perm. */
export const IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0;
export const IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1;
export const IOMMU_PGFAULT_PERM_READ = 1 << 0;
export const IOMMU_PGFAULT_PERM_WRITE = 1 << 1;
export const IOMMU_PGFAULT_PERM_EXEC = 1 << 2;
export const IOMMU_PGFAULT_PERM_PRIV = 1 << 3;

/** A record read from a fault queue's fd. */
export const iommuHwptPgfault = defineStruct('iommu_hwpt_pgfault', 40, 'cookie', {
  flags: { offset: 0, type: 'u32' },
  dev_id: { offset: 4, type: 'u32' },
  pasid: { offset: 8, type: 'u32' },
  grpid: { offset: 12, type: 'u32' },
  perm: { offset: 16, type: 'u32' },
  __reserved: { offset: 20, type: 'u32' },
  addr: { offset: 24, type: 'u64' },
  length: { offset: 32, type: 'u32' },
  cookie: { offset: 36, type: 'u32' },
});

export const IOMMUFD_PAGE_RESP_SUCCESS = 0;
export const IOMMUFD_PAGE_RESP_INVALID = 1;

/** A record written to a fault queue's fd. */
export const iommuHwptPageResponse = defineStruct('iommu_hwpt_page_response', 8, 'code', {
  cookie: { offset: 0, type: 'u32' },
  code: { offset: 4, type: 'u32' },
});

export const iommuFaultAlloc = defineStruct('iommu_fault_alloc', 16, 'out_fault_fd', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  out_fault_id: { offset: 8, type: 'u32' },
  out_fault_fd: { offset: 12, type: 'u32' },
});

export const IOMMU_VIOMMU_TYPE_DEFAULT = 0;
export const IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = 2;

/** min_size 24: data_len, __reserved (never checked) and data_uptr are optional. */
export const iommuViommuAlloc = defineStruct('iommu_viommu_alloc', 40, 'out_viommu_id', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  type: { offset: 8, type: 'u32' },
  dev_id: { offset: 12, type: 'u32' },
  hwpt_id: { offset: 16, type: 'u32' },
  out_viommu_id: { offset: 20, type: 'u32' },
  data_len: { offset: 24, type: 'u32' },
  __reserved: { offset: 28, type: 'u32' },
  data_uptr: { offset: 32, type: 'u64' },
});

export const iommuVdeviceAlloc = defineStruct('iommu_vdevice_alloc', 24, 'virt_id', {
  size: { offset: 0, type: 'u32' },
  viommu_id: { offset: 4, type: 'u32' },
  dev_id: { offset: 8, type: 'u32' },
  out_vdevice_id: { offset: 12, type: 'u32' },
  virt_id: { offset: 16, type: 'u64' },
});

export const iommuIoasChangeProcess = defineStruct('iommu_ioas_change_process', 8, '__reserved', {
  size: { offset: 0, type: 'u32' },
  __reserved: { offset: 4, type: 'u32' },
});

export const IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0;

/** The header in front of every record read from a vEVENTQ's fd. */
export const iommufdVeventHeader = defineStruct('iommufd_vevent_header', 8, 'sequence', {
  flags: { offset: 0, type: 'u32' },
  sequence: { offset: 4, type: 'u32' },
});

export const IOMMU_VEVENTQ_TYPE_DEFAULT = 0;
export const IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2;

/** min_size 28: the trailing __reserved is optional (but checked when given). */
export const iommuVeventqAlloc = defineStruct('iommu_veventq_alloc', 32, 'out_veventq_fd', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  viommu_id: { offset: 8, type: 'u32' },
  type: { offset: 12, type: 'u32' },
  veventq_depth: { offset: 16, type: 'u32' },
  out_veventq_id: { offset: 20, type: 'u32' },
  out_veventq_fd: { offset: 24, type: 'u32' },
  __reserved: { offset: 28, type: 'u32' },
});

export const IOMMU_HW_QUEUE_TYPE_DEFAULT = 0;
export const IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV = 1;

export const iommuHwQueueAlloc = defineStruct('iommu_hw_queue_alloc', 40, 'length', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  viommu_id: { offset: 8, type: 'u32' },
  type: { offset: 12, type: 'u32' },
  index: { offset: 16, type: 'u32' },
  out_hw_queue_id: { offset: 20, type: 'u32' },
  nesting_parent_iova: { offset: 24, type: 'u64' },
  length: { offset: 32, type: 'u64' },
});

export const iommuIoasNoiommuGetPa = defineStruct('iommu_ioas_noiommu_get_pa', 40, 'out_phys', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  ioas_id: { offset: 8, type: 'u32' },
  __reserved: { offset: 12, type: 'u32' },
  iova: { offset: 16, type: 'u64' },
  length: { offset: 24, type: 'u64' },
  out_phys: { offset: 32, type: 'u64' },
});
