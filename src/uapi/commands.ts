/**
 * Every ioctl command of each kind of file, with the name its uAPI header gives it and the struct
 * its argument points to: the one table the dispatchers register their handlers by and the trace
 * decodes from. test/abi-drift.test.ts checks each name, number and struct against include/linux.
 */
import * as nr from './ioctl.ts';
import * as iommufd from './iommufd.ts';
import * as iommufdTest from './iommufd-test.ts';
import type { FieldTable, StructSpec } from './struct.ts';
import * as vfio from './vfio.ts';

/** O_CLOEXEC on x86-64 and arm64 (include/uapi/asm-generic/fcntl.h). */
const O_CLOEXEC = 0o2000000;

/** One ioctl command as userspace names it. */
export interface IoctlCommand<F extends FieldTable = FieldTable> {
  /** The macro's name in include/linux/*.h, e.g. "IOMMU_IOAS_MAP". */
  readonly name: string;
  /** The ioctl number (`_IO(';', nr)`). */
  readonly cmd: number;
  /** The struct the argument points to; undefined when the argument is a value, or no struct. */
  readonly spec: StructSpec<F> | undefined;
  /**
   * The command may create a file and return its fd (get_unused_fd_flags + fd_install), with
   * these open flags on the new fd. The server reserves an fd in the caller before the call.
   */
  readonly createsFd?: CreatesFd;
}

/**
 * How a command that may create a file opens its fd. `when` narrows it to the calls whose
 * argument asks for one (a multiplexed command such as IOMMU_TEST_CMD), given the argument's
 * first bytes as the shim read them, or undefined when it could not: then an fd is reserved
 * anyway, and closed again if the call does not take it.
 */
export interface CreatesFd {
  readonly flags: number;
  readonly when?: (arg: Uint8Array) => boolean;
  /** The new fd's open flags when the argument says them (a dma-buf's open_flags). */
  readonly flagsOf?: (arg: Uint8Array) => number;
}

/** An iommufd command: every one takes a struct led by its size. */
export interface IommufdCommand<F extends FieldTable = FieldTable> extends IoctlCommand<F> {
  readonly spec: StructSpec<F>;
}

function withStruct<F extends FieldTable>(
  name: string,
  cmd: number,
  spec: StructSpec<F>,
): IommufdCommand<F> {
  return { name, cmd, spec };
}

function command<F extends FieldTable>(
  name: string,
  cmd: number,
  spec?: StructSpec<F>,
): IoctlCommand<F> {
  return { name, cmd, spec };
}

/** /dev/iommu (include/uapi/linux/iommufd.h), by `enum iommufd_cmd` name. */
export const IOMMUFD = {
  DESTROY: withStruct('IOMMU_DESTROY', nr.IOMMU_DESTROY, iommufd.iommuDestroy),
  IOAS_ALLOC: withStruct('IOMMU_IOAS_ALLOC', nr.IOMMU_IOAS_ALLOC, iommufd.iommuIoasAlloc),
  IOAS_ALLOW_IOVAS: withStruct(
    'IOMMU_IOAS_ALLOW_IOVAS',
    nr.IOMMU_IOAS_ALLOW_IOVAS,
    iommufd.iommuIoasAllowIovas,
  ),
  IOAS_COPY: withStruct('IOMMU_IOAS_COPY', nr.IOMMU_IOAS_COPY, iommufd.iommuIoasCopy),
  IOAS_IOVA_RANGES: withStruct(
    'IOMMU_IOAS_IOVA_RANGES',
    nr.IOMMU_IOAS_IOVA_RANGES,
    iommufd.iommuIoasIovaRanges,
  ),
  IOAS_MAP: withStruct('IOMMU_IOAS_MAP', nr.IOMMU_IOAS_MAP, iommufd.iommuIoasMap),
  IOAS_UNMAP: withStruct('IOMMU_IOAS_UNMAP', nr.IOMMU_IOAS_UNMAP, iommufd.iommuIoasUnmap),
  OPTION: withStruct('IOMMU_OPTION', nr.IOMMU_OPTION, iommufd.iommuOption),
  VFIO_IOAS: withStruct('IOMMU_VFIO_IOAS', nr.IOMMU_VFIO_IOAS, iommufd.iommuVfioIoas),
  HWPT_ALLOC: withStruct('IOMMU_HWPT_ALLOC', nr.IOMMU_HWPT_ALLOC, iommufd.iommuHwptAlloc),
  GET_HW_INFO: withStruct('IOMMU_GET_HW_INFO', nr.IOMMU_GET_HW_INFO, iommufd.iommuHwInfo),
  HWPT_SET_DIRTY_TRACKING: withStruct(
    'IOMMU_HWPT_SET_DIRTY_TRACKING',
    nr.IOMMU_HWPT_SET_DIRTY_TRACKING,
    iommufd.iommuHwptSetDirtyTracking,
  ),
  HWPT_GET_DIRTY_BITMAP: withStruct(
    'IOMMU_HWPT_GET_DIRTY_BITMAP',
    nr.IOMMU_HWPT_GET_DIRTY_BITMAP,
    iommufd.iommuHwptGetDirtyBitmap,
  ),
  HWPT_INVALIDATE: withStruct(
    'IOMMU_HWPT_INVALIDATE',
    nr.IOMMU_HWPT_INVALIDATE,
    iommufd.iommuHwptInvalidate,
  ),
  /** Returns the fault queue's fd in out_fault_fd. */
  FAULT_QUEUE_ALLOC: {
    ...withStruct('IOMMU_FAULT_QUEUE_ALLOC', nr.IOMMU_FAULT_QUEUE_ALLOC, iommufd.iommuFaultAlloc),
    createsFd: { flags: O_CLOEXEC },
  },
  IOAS_MAP_FILE: withStruct(
    'IOMMU_IOAS_MAP_FILE',
    nr.IOMMU_IOAS_MAP_FILE,
    iommufd.iommuIoasMapFile,
  ),
  VIOMMU_ALLOC: withStruct('IOMMU_VIOMMU_ALLOC', nr.IOMMU_VIOMMU_ALLOC, iommufd.iommuViommuAlloc),
  VDEVICE_ALLOC: withStruct(
    'IOMMU_VDEVICE_ALLOC',
    nr.IOMMU_VDEVICE_ALLOC,
    iommufd.iommuVdeviceAlloc,
  ),
  IOAS_CHANGE_PROCESS: withStruct(
    'IOMMU_IOAS_CHANGE_PROCESS',
    nr.IOMMU_IOAS_CHANGE_PROCESS,
    iommufd.iommuIoasChangeProcess,
  ),
  /** Returns the vEVENTQ's fd in out_veventq_fd. */
  VEVENTQ_ALLOC: {
    ...withStruct('IOMMU_VEVENTQ_ALLOC', nr.IOMMU_VEVENTQ_ALLOC, iommufd.iommuVeventqAlloc),
    createsFd: { flags: O_CLOEXEC },
  },
  HW_QUEUE_ALLOC: withStruct(
    'IOMMU_HW_QUEUE_ALLOC',
    nr.IOMMU_HW_QUEUE_ALLOC,
    iommufd.iommuHwQueueAlloc,
  ),
  IOAS_NOIOMMU_GET_PA: withStruct(
    'IOMMU_IOAS_NOIOMMU_GET_PA',
    nr.IOMMU_IOAS_NOIOMMU_GET_PA,
    iommufd.iommuIoasNoiommuGetPa,
  ),
  /** CONFIG_IOMMUFD_TEST's command (iommufd_test.h); its union is decoded per op. */
  /**
   * CREATE_ACCESS returns a new access fd (out_access_fd); DMABUF_GET installs a dma-buf fd
   * opened with its open_flags (and returns 0, docs/decisions.md 250).
   */
  TEST_CMD: {
    ...withStruct('IOMMU_TEST_CMD', nr.IOMMU_TEST_CMD, iommufdTest.iommuTestCmd),
    createsFd: { flags: O_CLOEXEC, when: testCmdCreatesFd, flagsOf: testCmdFdFlags },
  },
} as const;

/** Of the test ops, CREATE_ACCESS and DMABUF_GET make a file; `op` is the u32 at offset 4. */
function testCmdCreatesFd(arg: Uint8Array): boolean {
  if (arg.byteLength < 8) return true;
  const op = new DataView(arg.buffer, arg.byteOffset, arg.byteLength).getUint32(4, true);
  return (
    op === iommufdTest.IOMMU_TEST_OP_CREATE_ACCESS || op === iommufdTest.IOMMU_TEST_OP_DMABUF_GET
  );
}

/**
 * The access fd is always O_CLOEXEC; a dma-buf's fd takes O_CLOEXEC from its open_flags
 * (get_unused_fd_flags), the u32 at offset 20.
 */
function testCmdFdFlags(arg: Uint8Array): number {
  const view = new DataView(arg.buffer, arg.byteOffset, arg.byteLength);
  if (arg.byteLength < 24 || view.getUint32(4, true) !== iommufdTest.IOMMU_TEST_OP_DMABUF_GET)
    return O_CLOEXEC;
  return view.getUint32(20, true) & O_CLOEXEC;
}

/** The type1 container ioctls (include/uapi/linux/vfio.h), as an iommufd answers them. */
export const VFIO_CONTAINER = {
  GET_API_VERSION: command('VFIO_GET_API_VERSION', nr.VFIO_GET_API_VERSION),
  /** arg: the IOMMU type, by value. */
  CHECK_EXTENSION: command('VFIO_CHECK_EXTENSION', nr.VFIO_CHECK_EXTENSION),
  /** arg: the IOMMU type, by value. */
  SET_IOMMU: command('VFIO_SET_IOMMU', nr.VFIO_SET_IOMMU),
  IOMMU_GET_INFO: command('VFIO_IOMMU_GET_INFO', nr.VFIO_IOMMU_GET_INFO, vfio.vfioIommuType1Info),
  IOMMU_MAP_DMA: command('VFIO_IOMMU_MAP_DMA', nr.VFIO_IOMMU_MAP_DMA, vfio.vfioIommuType1DmaMap),
  IOMMU_UNMAP_DMA: command(
    'VFIO_IOMMU_UNMAP_DMA',
    nr.VFIO_IOMMU_UNMAP_DMA,
    vfio.vfioIommuType1DmaUnmap,
  ),
  IOMMU_DIRTY_PAGES: command(
    'VFIO_IOMMU_DIRTY_PAGES',
    nr.VFIO_IOMMU_DIRTY_PAGES,
    vfio.vfioIommuType1DirtyBitmap,
  ),
} as const;

/** A VFIO group node, /dev/vfio/<G>. */
export const VFIO_GROUP = {
  GET_STATUS: command('VFIO_GROUP_GET_STATUS', nr.VFIO_GROUP_GET_STATUS, vfio.vfioGroupStatus),
  /** arg: pointer to the container fd (__s32). */
  SET_CONTAINER: command('VFIO_GROUP_SET_CONTAINER', nr.VFIO_GROUP_SET_CONTAINER),
  UNSET_CONTAINER: command('VFIO_GROUP_UNSET_CONTAINER', nr.VFIO_GROUP_UNSET_CONTAINER),
  /** arg: pointer to the device name (a C string). Returns a new device fd. */
  GET_DEVICE_FD: {
    ...command('VFIO_GROUP_GET_DEVICE_FD', nr.VFIO_GROUP_GET_DEVICE_FD),
    createsFd: { flags: O_CLOEXEC },
  },
} as const;

/** A VFIO device fd (cdev or group-obtained): the VFIO core's and vfio-pci's ioctls. */
export const VFIO_DEVICE = {
  GET_INFO: command('VFIO_DEVICE_GET_INFO', nr.VFIO_DEVICE_GET_INFO, vfio.vfioDeviceInfo),
  GET_REGION_INFO: command(
    'VFIO_DEVICE_GET_REGION_INFO',
    nr.VFIO_DEVICE_GET_REGION_INFO,
    vfio.vfioRegionInfo,
  ),
  GET_IRQ_INFO: command('VFIO_DEVICE_GET_IRQ_INFO', nr.VFIO_DEVICE_GET_IRQ_INFO, vfio.vfioIrqInfo),
  SET_IRQS: command('VFIO_DEVICE_SET_IRQS', nr.VFIO_DEVICE_SET_IRQS, vfio.vfioIrqSet),
  RESET: command('VFIO_DEVICE_RESET', nr.VFIO_DEVICE_RESET),
  GET_PCI_HOT_RESET_INFO: command(
    'VFIO_DEVICE_GET_PCI_HOT_RESET_INFO',
    nr.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
    vfio.vfioPciHotResetInfo,
  ),
  PCI_HOT_RESET: command(
    'VFIO_DEVICE_PCI_HOT_RESET',
    nr.VFIO_DEVICE_PCI_HOT_RESET,
    vfio.vfioPciHotReset,
  ),
  IOEVENTFD: command('VFIO_DEVICE_IOEVENTFD', nr.VFIO_DEVICE_IOEVENTFD, vfio.vfioDeviceIoeventfd),
  FEATURE: command('VFIO_DEVICE_FEATURE', nr.VFIO_DEVICE_FEATURE, vfio.vfioDeviceFeature),
  BIND_IOMMUFD: command(
    'VFIO_DEVICE_BIND_IOMMUFD',
    nr.VFIO_DEVICE_BIND_IOMMUFD,
    vfio.vfioDeviceBindIommufd,
  ),
  ATTACH_IOMMUFD_PT: command(
    'VFIO_DEVICE_ATTACH_IOMMUFD_PT',
    nr.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    vfio.vfioDeviceAttachIommufdPt,
  ),
  DETACH_IOMMUFD_PT: command(
    'VFIO_DEVICE_DETACH_IOMMUFD_PT',
    nr.VFIO_DEVICE_DETACH_IOMMUFD_PT,
    vfio.vfioDeviceDetachIommufdPt,
  ),
} as const;

/** Every family, for the drift tests. */
export const ALL_COMMANDS: readonly IoctlCommand[] = [
  ...Object.values(IOMMUFD),
  ...Object.values(VFIO_CONTAINER),
  ...Object.values(VFIO_GROUP),
  ...Object.values(VFIO_DEVICE),
];

const fdCreators = new Map(
  ALL_COMMANDS.flatMap((c) => (c.createsFd === undefined ? [] : [[c.cmd, c.createsFd] as const])),
);

/**
 * How a command that may create a file opens its fd; undefined for every other command and for
 * a call whose argument (`arg`, its first bytes) asks for no file.
 */
export function createsFd(cmd: number, arg: Uint8Array | undefined): CreatesFd | undefined {
  const creates = fdCreators.get(cmd);
  if (creates?.when === undefined || arg === undefined) return creates;
  if (!creates.when(arg)) return undefined;
  return creates.flagsOf === undefined ? creates : { flags: creates.flagsOf(arg) };
}
