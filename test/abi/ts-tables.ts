/**
 * What the TypeScript side declares about the uAPI: every struct table and every exported
 * constant of src/uapi, gathered for the drift tests.
 */
import { ALL_COMMANDS } from '../../src/uapi/commands.ts';
import * as ioctl from '../../src/uapi/ioctl.ts';
import * as iommufd from '../../src/uapi/iommufd.ts';
import type { FieldTable, FieldType, StructSpec } from '../../src/uapi/struct.ts';
import * as vfio from '../../src/uapi/vfio.ts';

export const FIELD_WIDTH: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 };

function isStructSpec(v: unknown): v is StructSpec<FieldTable> {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as StructSpec<FieldTable>).name === 'string' &&
    typeof (v as StructSpec<FieldTable>).size === 'number' &&
    typeof (v as StructSpec<FieldTable>).fields === 'object'
  );
}

/** Every struct table src/uapi exports. */
export function tsStructs(): StructSpec<FieldTable>[] {
  const values: unknown[] = [...Object.values(iommufd), ...Object.values(vfio)];
  return values.filter(isStructSpec);
}

/** TS names of constants whose C name begins with underscores. */
const C_NAMES: Record<string, string> = {
  VFIO_RESERVED_TYPE1_NESTING_IOMMU: '__VFIO_RESERVED_TYPE1_NESTING_IOMMU',
};

/** A constant's C name for a TS export name: asm-generic's `_IOC_*` are `IOC_*` here. */
function cName(tsName: string): string {
  return C_NAMES[tsName] ?? (tsName.startsWith('IOC_') ? `_${tsName}` : tsName);
}

/**
 * Every numeric constant src/uapi exports, by its C name: flags, enum values, ioctl numbers,
 * `IommufdCmd.X` as `IOMMUFD_CMD_X`, and each command table entry's name and number.
 */
export function tsConstants(): Map<string, bigint> {
  const out = new Map<string, bigint>();
  const add = (name: string, value: number | bigint): void => {
    const v = BigInt(value);
    const seen = out.get(name);
    if (seen !== undefined && seen !== v) throw new Error(`${name}: ${seen} and ${v} in src/uapi`);
    out.set(name, v);
  };
  for (const module of [ioctl, iommufd, vfio]) {
    for (const [name, value] of Object.entries(module)) {
      if (!/^[A-Z_][A-Za-z0-9_]*$/.test(name)) continue;
      if (typeof value === 'number' || typeof value === 'bigint') add(cName(name), value);
    }
  }
  for (const [key, value] of Object.entries(ioctl.IommufdCmd)) add(`IOMMUFD_CMD_${key}`, value);
  for (const command of ALL_COMMANDS) add(command.name, command.cmd);
  return out;
}
