/**
 * Little-endian C struct codec driven by field tables: one table per uAPI struct, written by hand
 * from the header, the way the kernel's IOCTL_OP() table names `struct` and `last` field.
 */
export type FieldType = 'u8' | 'u16' | 'u32' | 's32' | 'u64';

export interface FieldSpec {
  readonly offset: number;
  readonly type: FieldType;
}

export type FieldTable = Readonly<Record<string, FieldSpec>>;

/** The decoded value of each field: u64 as bigint (never a JS number), the rest as number. */
export type Decoded<F extends FieldTable> = {
  -readonly [K in keyof F]: F[K]['type'] extends 'u64' ? bigint : number;
};

export interface StructSpec<F extends FieldTable> {
  readonly name: string;
  /** sizeof(struct) in the kernel this emulator models. */
  readonly size: number;
  /** offsetofend(struct, last mandatory field): a user size below this is EINVAL. */
  readonly minSize: number;
  readonly fields: F;
}

const fieldWidth: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 };

/** Declares a struct; checks that fields fit and do not overlap, so a typo fails at load time. */
export function defineStruct<F extends FieldTable>(
  name: string,
  size: number,
  lastMandatory: keyof F & string,
  fields: F,
): StructSpec<F> {
  const used = new Uint8Array(size);
  for (const [field, spec] of Object.entries(fields)) {
    const end = spec.offset + fieldWidth[spec.type];
    if (end > size) throw new Error(`${name}.${field} ends at ${end}, past size ${size}`);
    for (let i = spec.offset; i < end; i++) {
      if (used[i]) throw new Error(`${name}.${field} overlaps another field`);
      used[i] = 1;
    }
  }
  const last = fields[lastMandatory]!;
  return { name, size, minSize: last.offset + fieldWidth[last.type], fields };
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes `bytes` (at least spec.size long: callers zero-extend first) into a plain object. */
export function decodeStruct<F extends FieldTable>(
  spec: StructSpec<F>,
  bytes: Uint8Array,
): Decoded<F> {
  if (bytes.length < spec.size)
    throw new RangeError(`${spec.name}: ${bytes.length} < ${spec.size}`);
  const view = viewOf(bytes);
  const out: Record<string, number | bigint> = {};
  for (const [field, { offset, type }] of Object.entries(spec.fields)) {
    switch (type) {
      case 'u8':
        out[field] = view.getUint8(offset);
        break;
      case 'u16':
        out[field] = view.getUint16(offset, true);
        break;
      case 'u32':
        out[field] = view.getUint32(offset, true);
        break;
      case 's32':
        out[field] = view.getInt32(offset, true);
        break;
      case 'u64':
        out[field] = view.getBigUint64(offset, true);
        break;
    }
  }
  return out as Decoded<F>;
}

/** Encodes `value` into a new buffer of spec.size bytes (bytes between fields are zero). */
export function encodeStruct<F extends FieldTable>(
  spec: StructSpec<F>,
  value: Partial<Decoded<F>>,
): Uint8Array {
  const bytes = new Uint8Array(spec.size);
  writeFields(spec, bytes, value);
  return bytes;
}

/** Writes the given fields of `value` into `bytes` in place. */
export function writeFields<F extends FieldTable>(
  spec: StructSpec<F>,
  bytes: Uint8Array,
  value: Partial<Decoded<F>>,
): void {
  const view = viewOf(bytes);
  for (const [field, v] of Object.entries(value) as [string, number | bigint | undefined][]) {
    const f = spec.fields[field];
    if (f === undefined || v === undefined) continue;
    switch (f.type) {
      case 'u8':
        view.setUint8(f.offset, Number(v));
        break;
      case 'u16':
        view.setUint16(f.offset, Number(v), true);
        break;
      case 'u32':
        view.setUint32(f.offset, Number(v) >>> 0, true);
        break;
      case 's32':
        view.setInt32(f.offset, Number(v), true);
        break;
      case 'u64':
        view.setBigUint64(f.offset, BigInt.asUintN(64, BigInt(v)), true);
        break;
    }
  }
}
