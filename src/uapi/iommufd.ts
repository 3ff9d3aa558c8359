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
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1n << 0n;

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

export const iommuIoasNoiommuGetPa = defineStruct('iommu_ioas_noiommu_get_pa', 40, 'out_phys', {
  size: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  ioas_id: { offset: 8, type: 'u32' },
  __reserved: { offset: 12, type: 'u32' },
  iova: { offset: 16, type: 'u64' },
  length: { offset: 24, type: 'u64' },
  out_phys: { offset: 32, type: 'u64' },
});
