/**
 * Decodes ioctl numbers and their structs for the trace, strace style:
 * `IOMMU_IOAS_MAP{size=40, flags=FIXED_IOVA|WRITEABLE|READABLE, ioas_id=2, ...}`.
 */
import {
  IOMMUFD,
  type IoctlCommand,
  VFIO_CONTAINER,
  VFIO_DEVICE,
  VFIO_GROUP,
} from '../uapi/commands.ts';
import { type Decoded, decodeStruct, type FieldTable, type StructSpec } from '../uapi/struct.ts';

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

function byNumber(...families: Record<string, IoctlCommand>[]): Map<number, IoctlCommand> {
  const out = new Map<number, IoctlCommand>();
  for (const family of families) {
    for (const command of Object.values(family)) {
      if (out.has(command.cmd)) throw new Error(`${command.name}: number taken twice`);
      out.set(command.cmd, command);
    }
  }
  return out;
}

/**
 * By kind of file, from the uAPI command tables the dispatchers register by. iommufd numbers are
 * unique; a VFIO device's and a container's overlap (the container ones are answered by an
 * iommufd), so the kind of file decides.
 */
const commandsByFileKind: Record<string, Map<number, IoctlCommand>> = {
  iommufd: byNumber(IOMMUFD, VFIO_CONTAINER),
  'vfio-dev': byNumber(VFIO_DEVICE),
  'vfio-group': byNumber(VFIO_GROUP),
};

/** The ioctl's name and struct, given the kind of file it was issued on. */
export function ioctlInfo(fileKind: string, cmd: number): IoctlCommand | undefined {
  return commandsByFileKind[fileKind]?.get(cmd);
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
