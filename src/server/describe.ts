/**
 * strace-like descriptions of the calls the server serves, for the trace: open flags by name,
 * `fd</path>` like `strace -y`, ioctls with their decoded structs, sysfs text quoted, and VFIO
 * region accesses as `4 bytes at BAR0+0x98` with the value moved.
 */
import * as fs from 'node:fs';
import type { File } from '../host/file.ts';
import type { UserMemory } from '../host/user-memory.ts';
import { formatStruct, ioctlInfo } from '../trace/decode.ts';
import {
  IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
  IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV,
  iommufdVeventHeader,
  iommuHwptPageResponse,
  iommuHwptPgfault,
} from '../uapi/iommufd.ts';
import { IOMMU_VEVENTQ_TYPE_SELFTEST, iommuViommuEventSelftest } from '../uapi/iommufd-test.ts';
import { decodeStruct, type FieldTable, type StructSpec } from '../uapi/struct.ts';
import { FD_UNKNOWN, type Request } from './protocol.ts';

const ACCESS = ['O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_ACCMODE'];
const { O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_NONBLOCK, O_DIRECTORY, O_NOFOLLOW } = fs.constants;
const O_CLOEXEC = 0o2000000;
const O_PATH = 0o10000000;
const FLAG_NAMES: [number, string][] = [
  [O_CREAT, 'O_CREAT'],
  [O_EXCL, 'O_EXCL'],
  [O_TRUNC, 'O_TRUNC'],
  [O_APPEND, 'O_APPEND'],
  [O_NONBLOCK, 'O_NONBLOCK'],
  [O_DIRECTORY, 'O_DIRECTORY'],
  [O_NOFOLLOW, 'O_NOFOLLOW'],
  [O_CLOEXEC, 'O_CLOEXEC'],
  [O_PATH, 'O_PATH'],
];

/** `O_RDWR|O_CLOEXEC`. */
export function openFlags(flags: number): string {
  const parts = [ACCESS[flags & 3]!];
  let rest = flags & ~3;
  for (const [bit, name] of FLAG_NAMES) {
    if (rest & bit) {
      parts.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) parts.push(`0x${rest.toString(16)}`);
  return parts.join('|');
}

/**
 * `3</dev/iommu>`, or just the path when the shim did not say which fd. The path is escaped, so
 * that a name with a newline cannot start a line of its own in the trace.
 */
export function fdLabel(fd: number, path: string): string {
  const shown = escaped(Buffer.from(path));
  return fd === FD_UNKNOWN ? shown : `${fd}<${shown}>`;
}

/** The fd number a request carries in a0 bits 32-63. */
export function requestFd(req: Request): number {
  return req.a0hi;
}

/** A C string literal of short text, strace style: "0x1234\n". */
export function quote(bytes: Uint8Array, max = 32): string {
  return `"${escaped(bytes.subarray(0, max))}"${bytes.byteLength > max ? '...' : ''}`;
}

/** A path as a whole C string literal: `"/dev/iommu"`. */
export function quotePath(path: string): string {
  return quote(Buffer.from(path), Number.POSITIVE_INFINITY);
}

/** Bytes as the inside of a C string literal: printable ASCII as is, the rest escaped. */
function escaped(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) {
    if (b === 0x0a) out += '\\n';
    else if (b === 0x09) out += '\\t';
    else if (b === 0x22 || b === 0x5c) out += `\\${String.fromCharCode(b)}`;
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

const REGION_NAMES = ['BAR0', 'BAR1', 'BAR2', 'BAR3', 'BAR4', 'BAR5', 'ROM', 'CONFIG', 'VGA'];
/** vfio-pci region offsets: index << 40. */
const REGION_SHIFT = 40n;

/** A position in a file: `BAR0+0x98` for a VFIO device, else the plain offset. */
export function position(file: File, pos: bigint): string {
  if (file.fops.name !== 'vfio-dev') return `0x${pos.toString(16)}`;
  const index = Number(pos >> REGION_SHIFT);
  const offset = pos & ((1n << REGION_SHIFT) - 1n);
  return `${REGION_NAMES[index] ?? `region${index}`}+0x${offset.toString(16)}`;
}

/** A little-endian value of 1..8 bytes as hex, or the bytes quoted. */
export function value(bytes: Uint8Array): string {
  if (bytes.byteLength === 0 || bytes.byteLength > 8) return quote(bytes);
  let v = 0n;
  for (let i = bytes.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return `0x${v.toString(16)}`;
}

/** The size of one event of each vEVENTQ type (its data after the header). */
const VEVENT_DATA_SIZE: Record<number, number> = {
  [IOMMU_VEVENTQ_TYPE_ARM_SMMUV3]: 32,
  [IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV]: 16,
  [IOMMU_VEVENTQ_TYPE_SELFTEST]: iommuViommuEventSelftest.size,
};

/**
 * The records an event queue's fd moved, decoded: fault records read, page responses written,
 * vEVENTQ headers (with the event's bytes) read. Undefined for any other file.
 */
function eventqRecords(
  file: File,
  data: Uint8Array,
  ret: number,
  direction: 'read' | 'write',
): string | undefined {
  const bytes = data.subarray(0, ret);
  const each = <F extends FieldTable>(spec: StructSpec<F>): string => {
    const out: string[] = [];
    for (let at = 0; at + spec.size <= bytes.length; at += spec.size)
      out.push(formatStruct(spec, decodeStruct(spec, bytes.subarray(at, at + spec.size))));
    return `[${out.join(', ')}]`;
  };
  switch (file.fops.name) {
    case 'iommufd-pgfault':
      return direction === 'read' ? each(iommuHwptPgfault) : each(iommuHwptPageResponse);
    case 'iommufd-viommu-event': {
      // Each header but a lost-events one is followed by an event of the queue's type.
      const type = (file.privateData as { readonly veventqType?: number }).veventqType ?? 0;
      const dataLen = VEVENT_DATA_SIZE[type] ?? 0;
      const out: string[] = [];
      const header = iommufdVeventHeader;
      let at = 0;
      while (at + header.size <= bytes.length) {
        const h = decodeStruct(header, bytes.subarray(at, at + header.size));
        at += header.size;
        if (h.flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) {
          out.push(formatStruct(header, h));
          continue;
        }
        const end = Math.min(bytes.length, at + dataLen);
        out.push(`${formatStruct(header, h)} ${quote(bytes.subarray(at, end))}`);
        at = end;
      }
      return `[${out.join(', ')}]`;
    }
    default:
      return undefined;
  }
}

/**
 * One read or write: `read(5</sys/.../vendor>, "0x1234\n", 4096) = 7`, or for a device
 * `pread(4</dev/vfio/devices/vfio0>, 4 bytes at BAR0+0x98) = 4 (0x0)`.
 */
export function describeIo(
  label: string,
  file: File,
  count: number,
  pos: bigint | undefined,
  data: Uint8Array | undefined,
  ret: number,
  direction: 'read' | 'write' = 'read',
): string {
  if (file.fops.name === 'sysfs') {
    const shown = data === undefined || ret < 0 ? '' : `${quote(data)}, `;
    return `${label}, ${shown}${count}`;
  }
  const records =
    data === undefined || ret <= 0 ? undefined : eventqRecords(file, data, ret, direction);
  if (records !== undefined) return `${label}, ${count} bytes: ${records}`;
  const at = pos === undefined ? '' : ` at ${position(file, pos)}`;
  const moved = data !== undefined && ret > 0 ? `: ${value(data.subarray(0, ret))}` : '';
  return `${label}, ${count} bytes${at}${moved}`;
}

/**
 * The struct an ioctl names, read through the call's memory (the prefetched window, so free):
 * call before the handler for the input, after it for the output.
 */
export function ioctlStruct(
  file: File,
  cmd: number,
  arg: bigint,
  memory: UserMemory,
): Uint8Array | undefined {
  const spec = ioctlInfo(file.fops.name, cmd)?.spec;
  if (spec === undefined) return undefined;
  const whole = memory.read(arg, spec.size);
  if (whole !== undefined) return whole;
  // A struct shorter than ours at the end of a mapping: as many bytes as its size says.
  const lead = memory.read(arg, 4);
  if (lead === undefined) return undefined;
  const size = new DataView(lead.buffer, lead.byteOffset, 4).getUint32(0, true);
  return size >= 4 && size < spec.size ? memory.read(arg, size) : undefined;
}

/**
 * One access through a trapped mapping: `5</dev/vfio/devices/vfio0>, BAR0+0x98, 4, w, 0x1` for a
 * store, `..., 4, r` for a load (its value is the line's result).
 */
export function describeMmio(
  label: string,
  file: File,
  size: number,
  pos: bigint,
  stored: Uint8Array | undefined,
): string {
  const where = `${label}, ${position(file, pos)}, ${size}`;
  return stored === undefined ? `${where}, r` : `${where}, w, ${value(stored)}`;
}

const PROT_NAMES: [number, string][] = [
  [1, 'PROT_READ'],
  [2, 'PROT_WRITE'],
  [4, 'PROT_EXEC'],
];
const MAP_TYPES: Record<number, string> = {
  1: 'MAP_SHARED',
  2: 'MAP_PRIVATE',
  3: 'MAP_SHARED_VALIDATE',
};
const MAP_FLAG_NAMES: [number, string][] = [
  [0x10, 'MAP_FIXED'],
  [0x20, 'MAP_ANONYMOUS'],
  [0x4000, 'MAP_NORESERVE'],
  [0x8000, 'MAP_POPULATE'],
  [0x10000, 'MAP_NONBLOCK'],
  [0x100000, 'MAP_FIXED_NOREPLACE'],
  [0x2000, 'MAP_LOCKED'],
];

function bitNames(value: number, names: [number, string][], first: string[]): string {
  const parts = [...first];
  let rest = value;
  for (const [bit, name] of names) {
    if (rest & bit) {
      parts.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) parts.push(`0x${rest.toString(16)}`);
  return parts.join('|');
}

/** `PROT_READ|PROT_WRITE`, `PROT_NONE`. */
export function protNames(prot: number): string {
  return prot === 0 ? 'PROT_NONE' : bitNames(prot, PROT_NAMES, []);
}

/** `MAP_SHARED|MAP_FIXED`. */
export function mapFlagNames(flags: number): string {
  const type = MAP_TYPES[flags & 0xf];
  const rest = flags & ~0xf;
  if (type === undefined) return bitNames(flags, MAP_FLAG_NAMES, []);
  return bitNames(rest, MAP_FLAG_NAMES, [type]);
}

/** mmap's arguments: `NULL, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, 5</dev/...>, BAR0+0x0`. */
export function describeMmap(
  label: string,
  file: File,
  addr: bigint,
  length: bigint,
  prot: number,
  flags: number,
  offset: bigint,
): string {
  const at = addr === 0n ? 'NULL' : `0x${addr.toString(16)}`;
  return `${at}, ${length}, ${protNames(prot)}, ${mapFlagNames(flags)}, ${label}, ${position(file, offset)}`;
}

const POLL_NAMES: [number, string][] = [
  [0x1, 'POLLIN'],
  [0x2, 'POLLPRI'],
  [0x4, 'POLLOUT'],
  [0x8, 'POLLERR'],
  [0x10, 'POLLHUP'],
  [0x20, 'POLLNVAL'],
  [0x40, 'POLLRDNORM'],
  [0x80, 'POLLRDBAND'],
  [0x100, 'POLLWRNORM'],
  [0x200, 'POLLWRBAND'],
];

/** `POLLIN|POLLOUT`, `0`. */
export function pollNames(mask: number): string {
  return mask === 0 ? '0' : bitNames(mask, POLL_NAMES, []);
}
