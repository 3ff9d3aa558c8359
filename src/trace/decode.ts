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
  iommu_ioas_map_file: { flags: { 1: 'FIXED_IOVA', 2: 'WRITEABLE', 4: 'READABLE' } },
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

const fieldWidth = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 } as const;

function formatField(
  spec: StructSpec<FieldTable>,
  field: string,
  v: number | bigint,
): string | undefined {
  if (field.startsWith('__reserved') || field === 'pad') {
    return v !== 0 && v !== 0n ? `${field}=${hex(v)}` : undefined;
  }
  const fieldNames = flagNames[spec.name]?.[field];
  if (fieldNames !== undefined) return `${field}=${formatFlags(fieldNames, Number(v))}`;
  if (spec.fields[field]!.type === 'u64') return `${field}=${hex(v)}`;
  return `${field}=${v}`;
}

/** `{field=value, ...}` with u64 fields in hex, sizes and ids in decimal, reserved fields left out when 0. */
export function formatStruct<F extends FieldTable>(spec: StructSpec<F>, value: Decoded<F>): string {
  const parts: string[] = [];
  for (const field of Object.keys(spec.fields)) {
    const text = formatField(spec, field, (value as Record<string, number | bigint>)[field]!);
    if (text !== undefined) parts.push(text);
  }
  return `{${parts.join(', ')}}`;
}

/**
 * How many bytes of the struct the caller passed: its leading `size` or `argsz` (both families
 * lead with one), at most the struct's size; the whole struct when it has no such field.
 */
export function passedBytes(spec: StructSpec<FieldTable>, bytes: Uint8Array): number {
  const lead = spec.fields.size ?? spec.fields.argsz;
  if (lead === undefined || lead.offset !== 0 || lead.type !== 'u32' || bytes.byteLength < 4) {
    return spec.size;
  }
  const n = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  return Math.min(n, spec.size);
}

/**
 * Decodes the struct at the start of `bytes`, only the fields inside what the caller passed
 * (`...` marks the rest as not passed); with `after`, ` => {...}` adds the fields the call
 * changed.
 */
export function decodeArg(
  spec: StructSpec<FieldTable>,
  bytes: Uint8Array,
  after?: Uint8Array,
): string {
  const passed = passedBytes(spec, bytes);
  const before = decodeStruct(spec, zeroExtended(spec, bytes)) as Record<string, number | bigint>;
  const parts: string[] = [];
  const changed: string[] = [];
  const out =
    after === undefined
      ? undefined
      : (decodeStruct(spec, zeroExtended(spec, after)) as Record<string, number | bigint>);
  let cut = false;
  for (const [field, fspec] of Object.entries(spec.fields)) {
    if (fspec.offset + fieldWidth[fspec.type] > passed) {
      cut = true;
      continue;
    }
    const text = formatField(spec, field, before[field]!);
    if (text !== undefined) parts.push(text);
    if (out !== undefined && out[field] !== before[field]) {
      changed.push(formatField(spec, field, out[field]!) ?? `${field}=${hex(out[field]!)}`);
    }
  }
  if (cut) parts.push('...');
  const shown = `{${parts.join(', ')}}`;
  return changed.length === 0 ? shown : `${shown} => {${changed.join(', ')}}`;
}

function zeroExtended(spec: StructSpec<FieldTable>, bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength >= spec.size) return bytes;
  const buf = new Uint8Array(spec.size);
  buf.set(bytes.subarray(0, spec.size));
  return buf;
}

/**
 * `IOMMU_IOAS_ALLOC, {size=12, flags=0, out_ioas_id=0} => {out_ioas_id=2}` (strace's `=>`: the
 * fields the kernel wrote back), or the raw argument for a command without a struct. Only the
 * bytes the caller passed (its size/argsz) are decoded.
 */
export function describeIoctl(
  fileKind: string,
  cmd: number,
  arg: bigint,
  input: Uint8Array | undefined,
  output: Uint8Array | undefined,
): string {
  const info = ioctlInfo(fileKind, cmd);
  if (info === undefined) return `_IOC(${ioctlCode(cmd)}), 0x${arg.toString(16)}`;
  if (info.spec === undefined)
    return arg === 0n ? info.name : `${info.name}, 0x${arg.toString(16)}`;
  if (input === undefined) return `${info.name}, 0x${arg.toString(16)}`;
  const decoded = decodeArg(info.spec, input, output);
  return `${info.name}, ${decoded}`;
}

/** An ioctl number no table names, split as _IOC does: `_IOC_NONE, 0x3b, 0x99, 0`. */
function ioctlCode(cmd: number): string {
  const dir = ['_IOC_NONE', '_IOC_WRITE', '_IOC_READ', '_IOC_READ|_IOC_WRITE'][(cmd >>> 30) & 3];
  const type = (cmd >>> 8) & 0xff;
  const nr = cmd & 0xff;
  const size = (cmd >>> 16) & 0x3fff;
  return `${dir}, 0x${type.toString(16)}, 0x${nr.toString(16)}, ${size}`;
}
