/**
 * Decodes ioctl numbers and their structs for the trace, strace style:
 * `IOMMU_IOAS_MAP{size=40, flags=FIXED_IOVA|WRITEABLE|READABLE, ioas_id=2, ...}`.
 */
import * as ioctl from '../uapi/ioctl.ts';
import * as iommufd from '../uapi/iommufd.ts';
import { type Decoded, decodeStruct, type FieldTable, type StructSpec } from '../uapi/struct.ts';
import * as vfio from '../uapi/vfio.ts';

interface IoctlInfo {
  readonly name: string;
  /** The struct the argument points to; undefined for an argument passed by value or none. */
  readonly spec?: StructSpec<FieldTable>;
}

/** Flag names per struct field, for the fields worth spelling out. */
const flagNames: Record<string, Record<string, Record<number, string>>> = {
  iommu_ioas_map: { flags: { 1: 'FIXED_IOVA', 2: 'WRITEABLE', 4: 'READABLE' } },
  iommu_ioas_copy: { flags: { 1: 'FIXED_IOVA', 2: 'WRITEABLE', 4: 'READABLE' } },
  iommu_hwpt_alloc: {
    flags: { 1: 'NEST_PARENT', 2: 'DIRTY_TRACKING', 4: 'FAULT_ID_VALID', 8: 'PASID' },
  },
  vfio_irq_set: {
    flags: {
      1: 'DATA_NONE',
      2: 'DATA_BOOL',
      4: 'DATA_EVENTFD',
      8: 'ACTION_MASK',
      16: 'ACTION_UNMASK',
      32: 'ACTION_TRIGGER',
    },
  },
  vfio_region_info: { flags: { 1: 'READ', 2: 'WRITE', 4: 'MMAP', 8: 'CAPS' } },
};

function info(name: string, spec?: StructSpec<FieldTable>): IoctlInfo {
  return spec === undefined ? { name } : { name, spec };
}

/**
 * iommufd numbers are unique; VFIO device and container numbers overlap (the container ones are
 * answered by an iommufd), so the kind of file decides.
 */
const iommufdIoctls = new Map<number, IoctlInfo>([
  [ioctl.IOMMU_DESTROY, info('IOMMU_DESTROY', iommufd.iommuDestroy)],
  [ioctl.IOMMU_IOAS_ALLOC, info('IOMMU_IOAS_ALLOC', iommufd.iommuIoasAlloc)],
  [ioctl.IOMMU_IOAS_ALLOW_IOVAS, info('IOMMU_IOAS_ALLOW_IOVAS', iommufd.iommuIoasAllowIovas)],
  [ioctl.IOMMU_IOAS_COPY, info('IOMMU_IOAS_COPY', iommufd.iommuIoasCopy)],
  [ioctl.IOMMU_IOAS_IOVA_RANGES, info('IOMMU_IOAS_IOVA_RANGES', iommufd.iommuIoasIovaRanges)],
  [ioctl.IOMMU_IOAS_MAP, info('IOMMU_IOAS_MAP', iommufd.iommuIoasMap)],
  [ioctl.IOMMU_IOAS_UNMAP, info('IOMMU_IOAS_UNMAP', iommufd.iommuIoasUnmap)],
  [ioctl.IOMMU_OPTION, info('IOMMU_OPTION', iommufd.iommuOption)],
  [ioctl.IOMMU_VFIO_IOAS, info('IOMMU_VFIO_IOAS', iommufd.iommuVfioIoas)],
  [ioctl.IOMMU_HWPT_ALLOC, info('IOMMU_HWPT_ALLOC', iommufd.iommuHwptAlloc)],
  [ioctl.IOMMU_GET_HW_INFO, info('IOMMU_GET_HW_INFO', iommufd.iommuHwInfo)],
  [
    ioctl.IOMMU_IOAS_NOIOMMU_GET_PA,
    info('IOMMU_IOAS_NOIOMMU_GET_PA', iommufd.iommuIoasNoiommuGetPa),
  ],
  [ioctl.VFIO_GET_API_VERSION, info('VFIO_GET_API_VERSION')],
  [ioctl.VFIO_CHECK_EXTENSION, info('VFIO_CHECK_EXTENSION')],
  [ioctl.VFIO_SET_IOMMU, info('VFIO_SET_IOMMU')],
  [ioctl.VFIO_IOMMU_GET_INFO, info('VFIO_IOMMU_GET_INFO', vfio.vfioIommuType1Info)],
  [ioctl.VFIO_IOMMU_MAP_DMA, info('VFIO_IOMMU_MAP_DMA', vfio.vfioIommuType1DmaMap)],
  [ioctl.VFIO_IOMMU_UNMAP_DMA, info('VFIO_IOMMU_UNMAP_DMA', vfio.vfioIommuType1DmaUnmap)],
]);

const vfioDeviceIoctls = new Map<number, IoctlInfo>([
  [ioctl.VFIO_DEVICE_BIND_IOMMUFD, info('VFIO_DEVICE_BIND_IOMMUFD', vfio.vfioDeviceBindIommufd)],
  [
    ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    info('VFIO_DEVICE_ATTACH_IOMMUFD_PT', vfio.vfioDeviceAttachIommufdPt),
  ],
  [
    ioctl.VFIO_DEVICE_DETACH_IOMMUFD_PT,
    info('VFIO_DEVICE_DETACH_IOMMUFD_PT', vfio.vfioDeviceDetachIommufdPt),
  ],
  [ioctl.VFIO_DEVICE_GET_INFO, info('VFIO_DEVICE_GET_INFO', vfio.vfioDeviceInfo)],
  [ioctl.VFIO_DEVICE_GET_REGION_INFO, info('VFIO_DEVICE_GET_REGION_INFO', vfio.vfioRegionInfo)],
  [ioctl.VFIO_DEVICE_GET_IRQ_INFO, info('VFIO_DEVICE_GET_IRQ_INFO', vfio.vfioIrqInfo)],
  [ioctl.VFIO_DEVICE_SET_IRQS, info('VFIO_DEVICE_SET_IRQS', vfio.vfioIrqSet)],
  [ioctl.VFIO_DEVICE_RESET, info('VFIO_DEVICE_RESET')],
  [ioctl.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info('VFIO_DEVICE_GET_PCI_HOT_RESET_INFO')],
]);

const vfioGroupIoctls = new Map<number, IoctlInfo>([
  [ioctl.VFIO_GROUP_GET_STATUS, info('VFIO_GROUP_GET_STATUS', vfio.vfioGroupStatus)],
]);

/** The ioctl's name and struct, given the kind of file it was issued on. */
export function ioctlInfo(fileKind: string, cmd: number): IoctlInfo | undefined {
  if (fileKind === 'vfio-dev') return vfioDeviceIoctls.get(cmd);
  if (fileKind === 'vfio-group') return vfioGroupIoctls.get(cmd);
  return iommufdIoctls.get(cmd);
}

function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

function formatFlags(names: Record<number, string>, value: number): string {
  if (value === 0) return '0';
  const parts: string[] = [];
  let rest = value;
  for (const [bit, name] of Object.entries(names)) {
    if (value & Number(bit)) {
      parts.push(name);
      rest &= ~Number(bit);
    }
  }
  if (rest) parts.push(hex(rest));
  return parts.join('|');
}

/** `{field=value, ...}` with u64 fields in hex, sizes and ids in decimal, reserved fields left out when 0. */
export function formatStruct<F extends FieldTable>(spec: StructSpec<F>, value: Decoded<F>): string {
  const parts: string[] = [];
  const names = flagNames[spec.name] ?? {};
  for (const [field, fspec] of Object.entries(spec.fields)) {
    const v = (value as Record<string, number | bigint>)[field]!;
    if (field.startsWith('__reserved') || field === 'pad') {
      if (v !== 0 && v !== 0n) parts.push(`${field}=${hex(v)}`);
      continue;
    }
    const fieldNames = names[field];
    if (fieldNames !== undefined) parts.push(`${field}=${formatFlags(fieldNames, Number(v))}`);
    else if (fspec.type === 'u64') parts.push(`${field}=${hex(v)}`);
    else parts.push(`${field}=${v}`);
  }
  return `{${parts.join(', ')}}`;
}

/** Decodes the struct at the start of `bytes` (zero-extended if short). */
export function decodeArg(spec: StructSpec<FieldTable>, bytes: Uint8Array): string {
  const buf = new Uint8Array(spec.size);
  buf.set(bytes.subarray(0, spec.size));
  return formatStruct(spec, decodeStruct(spec, buf));
}
