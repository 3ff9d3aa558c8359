/**
 * ioctl number encoding (asm-generic/ioctl.h) and every iommufd and VFIO command number.
 * Both families use type ';' (0x3b) and `_IO()`: no direction or size bits.
 */
export const IOC_NRBITS = 8;
export const IOC_TYPEBITS = 8;
export const IOC_SIZEBITS = 14;
export const IOC_NRSHIFT = 0;
export const IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS;
export const IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS;
export const IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS;

export function IO(type: number, nr: number): number {
  return ((type << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT)) >>> 0;
}
export function iocNr(cmd: number): number {
  return (cmd >>> IOC_NRSHIFT) & 0xff;
}
export function iocType(cmd: number): number {
  return (cmd >>> IOC_TYPESHIFT) & 0xff;
}

export const IOMMUFD_TYPE = 0x3b;
export const IOMMUFD_CMD_BASE = 0x80;

/** iommufd command numbers (`_IOC_NR`), dense from 0x80. */
export const IommufdCmd = {
  DESTROY: 0x80,
  IOAS_ALLOC: 0x81,
  IOAS_ALLOW_IOVAS: 0x82,
  IOAS_COPY: 0x83,
  IOAS_IOVA_RANGES: 0x84,
  IOAS_MAP: 0x85,
  IOAS_UNMAP: 0x86,
  OPTION: 0x87,
  VFIO_IOAS: 0x88,
  HWPT_ALLOC: 0x89,
  GET_HW_INFO: 0x8a,
  HWPT_SET_DIRTY_TRACKING: 0x8b,
  HWPT_GET_DIRTY_BITMAP: 0x8c,
  HWPT_INVALIDATE: 0x8d,
  FAULT_QUEUE_ALLOC: 0x8e,
  IOAS_MAP_FILE: 0x8f,
  VIOMMU_ALLOC: 0x90,
  VDEVICE_ALLOC: 0x91,
  IOAS_CHANGE_PROCESS: 0x92,
  VEVENTQ_ALLOC: 0x93,
  HW_QUEUE_ALLOC: 0x94,
  IOAS_NOIOMMU_GET_PA: 0x95,
  /** CONFIG_IOMMUFD_TEST only. */
  TEST: 0xa0,
} as const;

export const IOMMU_DESTROY = IO(IOMMUFD_TYPE, IommufdCmd.DESTROY);
export const IOMMU_IOAS_ALLOC = IO(IOMMUFD_TYPE, IommufdCmd.IOAS_ALLOC);
export const IOMMU_IOAS_ALLOW_IOVAS = IO(IOMMUFD_TYPE, IommufdCmd.IOAS_ALLOW_IOVAS);
export const IOMMU_IOAS_COPY = IO(IOMMUFD_TYPE, IommufdCmd.IOAS_COPY);
export const IOMMU_IOAS_IOVA_RANGES = IO(IOMMUFD_TYPE, IommufdCmd.IOAS_IOVA_RANGES);
export const IOMMU_IOAS_MAP = IO(IOMMUFD_TYPE, IommufdCmd.IOAS_MAP);
export const IOMMU_IOAS_UNMAP = IO(IOMMUFD_TYPE, IommufdCmd.IOAS_UNMAP);
export const IOMMU_OPTION = IO(IOMMUFD_TYPE, IommufdCmd.OPTION);
export const IOMMU_VFIO_IOAS = IO(IOMMUFD_TYPE, IommufdCmd.VFIO_IOAS);
export const IOMMU_HWPT_ALLOC = IO(IOMMUFD_TYPE, IommufdCmd.HWPT_ALLOC);
export const IOMMU_GET_HW_INFO = IO(IOMMUFD_TYPE, IommufdCmd.GET_HW_INFO);
export const IOMMU_HWPT_SET_DIRTY_TRACKING = IO(IOMMUFD_TYPE, IommufdCmd.HWPT_SET_DIRTY_TRACKING);
export const IOMMU_HWPT_GET_DIRTY_BITMAP = IO(IOMMUFD_TYPE, IommufdCmd.HWPT_GET_DIRTY_BITMAP);
export const IOMMU_HWPT_INVALIDATE = IO(IOMMUFD_TYPE, IommufdCmd.HWPT_INVALIDATE);
export const IOMMU_FAULT_QUEUE_ALLOC = IO(IOMMUFD_TYPE, IommufdCmd.FAULT_QUEUE_ALLOC);
export const IOMMU_IOAS_MAP_FILE = IO(IOMMUFD_TYPE, IommufdCmd.IOAS_MAP_FILE);
export const IOMMU_VIOMMU_ALLOC = IO(IOMMUFD_TYPE, IommufdCmd.VIOMMU_ALLOC);
export const IOMMU_VDEVICE_ALLOC = IO(IOMMUFD_TYPE, IommufdCmd.VDEVICE_ALLOC);
export const IOMMU_IOAS_CHANGE_PROCESS = IO(IOMMUFD_TYPE, IommufdCmd.IOAS_CHANGE_PROCESS);
export const IOMMU_VEVENTQ_ALLOC = IO(IOMMUFD_TYPE, IommufdCmd.VEVENTQ_ALLOC);
export const IOMMU_HW_QUEUE_ALLOC = IO(IOMMUFD_TYPE, IommufdCmd.HW_QUEUE_ALLOC);
export const IOMMU_IOAS_NOIOMMU_GET_PA = IO(IOMMUFD_TYPE, IommufdCmd.IOAS_NOIOMMU_GET_PA);
export const IOMMU_TEST_CMD = IO(IOMMUFD_TYPE, IommufdCmd.TEST);

export const VFIO_TYPE = 0x3b;
export const VFIO_BASE = 100;

export const VFIO_GET_API_VERSION = IO(VFIO_TYPE, VFIO_BASE + 0);
export const VFIO_CHECK_EXTENSION = IO(VFIO_TYPE, VFIO_BASE + 1);
export const VFIO_SET_IOMMU = IO(VFIO_TYPE, VFIO_BASE + 2);
export const VFIO_GROUP_GET_STATUS = IO(VFIO_TYPE, VFIO_BASE + 3);
export const VFIO_GROUP_SET_CONTAINER = IO(VFIO_TYPE, VFIO_BASE + 4);
export const VFIO_GROUP_UNSET_CONTAINER = IO(VFIO_TYPE, VFIO_BASE + 5);
export const VFIO_GROUP_GET_DEVICE_FD = IO(VFIO_TYPE, VFIO_BASE + 6);
export const VFIO_DEVICE_GET_INFO = IO(VFIO_TYPE, VFIO_BASE + 7);
export const VFIO_DEVICE_GET_REGION_INFO = IO(VFIO_TYPE, VFIO_BASE + 8);
export const VFIO_DEVICE_GET_IRQ_INFO = IO(VFIO_TYPE, VFIO_BASE + 9);
export const VFIO_DEVICE_SET_IRQS = IO(VFIO_TYPE, VFIO_BASE + 10);
export const VFIO_DEVICE_RESET = IO(VFIO_TYPE, VFIO_BASE + 11);
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = IO(VFIO_TYPE, VFIO_BASE + 12);
export const VFIO_IOMMU_GET_INFO = IO(VFIO_TYPE, VFIO_BASE + 12);
export const VFIO_DEVICE_PCI_HOT_RESET = IO(VFIO_TYPE, VFIO_BASE + 13);
export const VFIO_IOMMU_MAP_DMA = IO(VFIO_TYPE, VFIO_BASE + 13);
export const VFIO_IOMMU_UNMAP_DMA = IO(VFIO_TYPE, VFIO_BASE + 14);
export const VFIO_DEVICE_FEATURE = IO(VFIO_TYPE, VFIO_BASE + 17);
export const VFIO_DEVICE_BIND_IOMMUFD = IO(VFIO_TYPE, VFIO_BASE + 18);
export const VFIO_DEVICE_ATTACH_IOMMUFD_PT = IO(VFIO_TYPE, VFIO_BASE + 19);
export const VFIO_DEVICE_DETACH_IOMMUFD_PT = IO(VFIO_TYPE, VFIO_BASE + 20);
