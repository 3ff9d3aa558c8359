/**
 * The VFIO uAPI (include/uapi/linux/vfio.h) for the device cdev path: struct layouts, flags and
 * region/IRQ indexes. VFIO structs begin with argsz; each handler decides its own minsz.
 */
import { defineStruct } from './struct.ts';

export const VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0;
export const vfioDeviceBindIommufd = defineStruct('vfio_device_bind_iommufd', 24, 'out_devid', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  iommufd: { offset: 8, type: 's32' },
  out_devid: { offset: 12, type: 'u32' },
  token_uuid_ptr: { offset: 16, type: 'u64' },
});

export const VFIO_DEVICE_ATTACH_PASID = 1 << 0;
export const vfioDeviceAttachIommufdPt = defineStruct(
  'vfio_device_attach_iommufd_pt',
  16,
  'pt_id',
  {
    argsz: { offset: 0, type: 'u32' },
    flags: { offset: 4, type: 'u32' },
    pt_id: { offset: 8, type: 'u32' },
    pasid: { offset: 12, type: 'u32' },
  },
);

export const VFIO_DEVICE_DETACH_PASID = 1 << 0;
export const vfioDeviceDetachIommufdPt = defineStruct(
  'vfio_device_detach_iommufd_pt',
  12,
  'flags',
  {
    argsz: { offset: 0, type: 'u32' },
    flags: { offset: 4, type: 'u32' },
    pasid: { offset: 8, type: 'u32' },
  },
);

export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
export const vfioDeviceInfo = defineStruct('vfio_device_info', 24, 'num_irqs', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  num_regions: { offset: 8, type: 'u32' },
  num_irqs: { offset: 12, type: 'u32' },
  cap_offset: { offset: 16, type: 'u32' },
  pad: { offset: 20, type: 'u32' },
});

export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const vfioRegionInfo = defineStruct('vfio_region_info', 32, 'offset', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  index: { offset: 8, type: 'u32' },
  cap_offset: { offset: 12, type: 'u32' },
  size: { offset: 16, type: 'u64' },
  offset: { offset: 24, type: 'u64' },
});

export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;
export const vfioIrqInfo = defineStruct('vfio_irq_info', 16, 'count', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  index: { offset: 8, type: 'u32' },
  count: { offset: 12, type: 'u32' },
});

export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK =
  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK =
  VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;
/** struct vfio_irq_set without its flexible data[] (which follows at offset 20). */
export const vfioIrqSet = defineStruct('vfio_irq_set', 20, 'count', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  index: { offset: 8, type: 'u32' },
  start: { offset: 12, type: 'u32' },
  count: { offset: 16, type: 'u32' },
});

export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;

export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
export const VFIO_PCI_NUM_IRQS = 5;

/** Region file offsets: index << 40 (VFIO_PCI_OFFSET_SHIFT). */
export const VFIO_PCI_OFFSET_SHIFT = 40n;

export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0;
export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1;
/** struct vfio_pci_hot_reset_info without its devices[] (from offset 12). */
export const vfioPciHotResetInfo = defineStruct('vfio_pci_hot_reset_info', 12, 'count', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  count: { offset: 8, type: 'u32' },
});

/** struct vfio_pci_hot_reset without its group_fds[] (from offset 12). */
export const vfioPciHotReset = defineStruct('vfio_pci_hot_reset', 12, 'count', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  count: { offset: 8, type: 'u32' },
});

export const vfioDeviceIoeventfd = defineStruct('vfio_device_ioeventfd', 32, 'fd', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  offset: { offset: 8, type: 'u64' },
  data: { offset: 16, type: 'u64' },
  fd: { offset: 24, type: 's32' },
  reserved: { offset: 28, type: 'u32' },
});

export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
/** struct vfio_device_feature without its data[] (from offset 8). */
export const vfioDeviceFeature = defineStruct('vfio_device_feature', 8, 'flags', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
});

export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;
export const vfioGroupStatus = defineStruct('vfio_group_status', 8, 'flags', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
});

/* The type1 container uAPI, as iommufd's VFIO compatibility answers it (vfio_compat.c). */

/** VFIO_SET_IOMMU / VFIO_CHECK_EXTENSION arguments (passed by value). */
export const VFIO_TYPE1_IOMMU = 1n;
export const VFIO_SPAPR_TCE_IOMMU = 2n;
export const VFIO_TYPE1v2_IOMMU = 3n;
export const VFIO_DMA_CC_IOMMU = 4n;
export const VFIO_EEH = 5n;
/** Formerly VFIO_TYPE1_NESTING_IOMMU. */
export const VFIO_RESERVED_TYPE1_NESTING_IOMMU = 6n;
export const VFIO_SPAPR_TCE_v2_IOMMU = 7n;
export const VFIO_NOIOMMU_IOMMU = 8n;
export const VFIO_UNMAP_ALL = 9n;
export const VFIO_UPDATE_VADDR = 10n;

export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
/** struct vfio_iommu_type1_info; minsz ends at iova_pgsizes, cap_offset came later. */
export const vfioIommuType1Info = defineStruct('vfio_iommu_type1_info', 24, 'iova_pgsizes', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  iova_pgsizes: { offset: 8, type: 'u64' },
  cap_offset: { offset: 16, type: 'u32' },
  pad: { offset: 20, type: 'u32' },
});

/** struct vfio_info_cap_header: `next` is an offset from the start of the info buffer. */
export const vfioInfoCapHeader = defineStruct('vfio_info_cap_header', 8, 'next', {
  id: { offset: 0, type: 'u16' },
  version: { offset: 2, type: 'u16' },
  next: { offset: 4, type: 'u32' },
});

export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

/** struct vfio_iommu_type1_info_cap_iova_range without its iova_ranges[] (from offset 16). */
export const vfioIommuType1InfoCapIovaRange = defineStruct(
  'vfio_iommu_type1_info_cap_iova_range',
  16,
  'reserved',
  {
    id: { offset: 0, type: 'u16' },
    version: { offset: 2, type: 'u16' },
    next: { offset: 4, type: 'u32' },
    nr_iovas: { offset: 8, type: 'u32' },
    reserved: { offset: 12, type: 'u32' },
  },
);

/** struct vfio_iova_range: `end` is inclusive. */
export const vfioIovaRange = defineStruct('vfio_iova_range', 16, 'end', {
  start: { offset: 0, type: 'u64' },
  end: { offset: 8, type: 'u64' },
});

/** struct vfio_iommu_type1_info_dma_avail (12 bytes; 16 in the chain once padded). */
export const vfioIommuType1InfoDmaAvail = defineStruct(
  'vfio_iommu_type1_info_dma_avail',
  12,
  'avail',
  {
    id: { offset: 0, type: 'u16' },
    version: { offset: 2, type: 'u16' },
    next: { offset: 4, type: 'u32' },
    avail: { offset: 8, type: 'u32' },
  },
);

export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
export const vfioIommuType1DmaMap = defineStruct('vfio_iommu_type1_dma_map', 32, 'size', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  vaddr: { offset: 8, type: 'u64' },
  iova: { offset: 16, type: 'u64' },
  size: { offset: 24, type: 'u64' },
});

export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2;
/** struct vfio_iommu_type1_dirty_bitmap without its data[] (from offset 8). */
export const vfioIommuType1DirtyBitmap = defineStruct('vfio_iommu_type1_dirty_bitmap', 8, 'flags', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
});

/** struct vfio_iommu_type1_dma_unmap without its data[] (the dirty bitmap, from offset 24). */
export const vfioIommuType1DmaUnmap = defineStruct('vfio_iommu_type1_dma_unmap', 24, 'size', {
  argsz: { offset: 0, type: 'u32' },
  flags: { offset: 4, type: 'u32' },
  iova: { offset: 8, type: 'u64' },
  size: { offset: 16, type: 'u64' },
});
