/**
 * The simulated machine: physical memory, pinned user pages, I/O page tables, IOMMU units and
 * domains, PCI devices (edu) and the platform description. iommufd and VFIO import from here.
 */
export { DirectDmaPort, type DmaPort, IommuDmaPort } from './dma-port.ts';
export {
  type DmaCompletion,
  EDU_DMA_SIZE,
  EDU_DMA_START,
  EduDevice,
  EduDmaCmd,
  EduIrq,
  EduReg,
  EduStatus,
  QEMU_EDU_DMA_MASK,
} from './edu.ts';
export {
  IoPagetable,
  type PagetableWalk,
  Prot,
  Pte,
  type PtLeaf,
  type WalkResult,
  type WalkStep,
} from './io-pgtable.ts';
export {
  type Aperture,
  allocDomain,
  allocNoiommuDomain,
  type DmaAccess,
  DomainRegistry,
  type IommuCaps,
  type IommuDomain,
  type IommuFaultReason,
  IommuGroup,
  IommuUnit,
  type IommuUnitConfig,
  type ReservedRegion,
  type ReservedRegionType,
  type Translation,
} from './iommu.ts';
export { Machine, type MachineOptions, type MachineSnapshot } from './machine.ts';
export {
  type AccessSize,
  type IrqSink,
  isValidBdf,
  PciCommand,
  PciConfig,
  PciDevice,
  type PciDeviceSnapshot,
  PciMsi,
} from './pci.ts';
export { type FramePurpose, type FrameState, PhysMemory, type PhysStats } from './phys-memory.ts';
export { type FrameOwner, PinnedPages, type PinnedRun, type PinnedStats } from './pinned-pages.ts';
export {
  checkPlatform,
  type DeviceConfig,
  defaultPlatform,
  loadPlatformFile,
  type PlatformConfig,
  PlatformConfigError,
  parsePlatform,
  platformToJson,
} from './platform-config.ts';
export { PAGE_SHIFT, PAGE_SIZE, SZ_1G, SZ_2M, SZ_4K, U64_MAX } from './sizes.ts';
