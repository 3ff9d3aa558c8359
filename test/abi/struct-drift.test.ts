/**
 * The TypeScript struct tables and constants of src/uapi against the project's C headers
 * (include/linux/iommufd.h, vfio.h): a C program built against include/ prints sizeof, offsetof,
 * member width and signedness of every struct and field the tables declare, and the value of every
 * constant and ioctl number src/uapi exports; any difference fails.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CHeader, type CMember, parseHeader } from './c-header.ts';
import {
  haveGcc,
  PROBE_END,
  probeMember,
  probeSize,
  probeStart,
  probeValue,
  runProbe,
} from './c-probe.ts';
import { FIELD_WIDTH, tsConstants, tsStructs } from './ts-tables.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const INCLUDE = join(ROOT, 'include');
const HEADERS = ['linux/iommufd.h', 'linux/vfio.h'];

/**
 * Constants src/uapi exports that include/linux does not define, each with why. Anything else
 * missing from the headers is drift.
 */
const TS_ONLY: Record<string, string> = {
  ULONG_MAX: 'the kernel type limit, for u64 arithmetic',
  PAGE_SIZE: 'the page size of the emulated machine',
  PAGE_SHIFT: 'the page size of the emulated machine',
  VFIO_PCI_OFFSET_SHIFT: "vfio-pci's region offset shift (kernel-internal vfio_pci_core.h)",
  IOMMU_TEST_CMD: 'the self-test ioctl (tools/testing/selftests/iommu/iommufd_test.h)',
  IOMMUFD_CMD_TEST: 'the self-test ioctl number (iommufd_test.h)',
  IOMMU_IOAS_MAP_ALL_FLAGS: 'the flags IOAS_MAP and IOAS_COPY accept (ioas.c), not uAPI',
  IOMMU_HWPT_ALLOC_ALL_FLAGS: 'the flags HWPT_ALLOC accepts (hw_pagetable.c), not uAPI',
  _IOC_NRSHIFT: 'defined by <asm-generic/ioctl.h>, checked through <linux/ioctl.h>',
  _IOC_TYPESHIFT: 'defined by <asm-generic/ioctl.h>, checked through <linux/ioctl.h>',
  _IOC_SIZESHIFT: 'defined by <asm-generic/ioctl.h>, checked through <linux/ioctl.h>',
  _IOC_DIRSHIFT: 'defined by <asm-generic/ioctl.h>, checked through <linux/ioctl.h>',
  _IOC_NRBITS: 'defined by <asm-generic/ioctl.h>, checked through <linux/ioctl.h>',
  _IOC_TYPEBITS: 'defined by <asm-generic/ioctl.h>, checked through <linux/ioctl.h>',
  _IOC_SIZEBITS: 'defined by <asm-generic/ioctl.h>, checked through <linux/ioctl.h>',
};
/** Of TS_ONLY, the ones the probe can still print (the <linux/ioctl.h> macros). */
const FROM_IOCTL_H = Object.keys(TS_ONLY).filter((n) => n.startsWith('_IOC_'));

function readHeaders(): CHeader {
  const all: CHeader = { structs: new Map(), macros: new Map(), enumConstants: new Set() };
  for (const h of HEADERS) {
    const one = parseHeader(readFileSync(join(INCLUDE, h), 'utf8'));
    for (const [k, v] of one.structs) all.structs.set(k, v);
    for (const [k, v] of one.macros) all.macros.set(k, v);
    for (const k of one.enumConstants) all.enumConstants.add(k);
  }
  return all;
}

interface Resolved {
  /** What offsetof() takes: "flags", "__reserved[1]", "header.id". */
  readonly designator: string;
  readonly member: CMember;
  /** The outer struct's member this field lies in. */
  readonly outer: CMember;
}

/**
 * The C member a TS field stands for: a member of that name; for `__reserved1` with no such
 * member, the element `__reserved[1]` of the array; or a member of an embedded struct (TS tables
 * flatten `struct vfio_info_cap_header header` into id, version, next).
 */
function resolveField(
  header: CHeader,
  members: readonly CMember[],
  field: string,
): Resolved | undefined {
  const direct = members.find((m) => m.name === field);
  if (direct !== undefined) return { designator: field, member: direct, outer: direct };
  const indexed = /^(.*?)(\d+)$/.exec(field);
  const array = members.find((m) => m.array && m.name === indexed?.[1]);
  if (indexed !== null && array !== undefined)
    return { designator: `${array.name}[${indexed[2]}]`, member: array, outer: array };
  for (const outer of members) {
    if (!outer.aggregate || outer.array) continue;
    const inner = header.structs.get(outer.type.replace(/^(struct|union) /, ''));
    const member = inner?.find((m) => m.name === field);
    if (member !== undefined) return { designator: `${outer.name}.${field}`, member, outer };
  }
  return undefined;
}

test('src/uapi struct tables and constants match include/linux', {
  skip: !haveGcc() && 'no gcc',
}, () => {
  const header = readHeaders();
  const structs = tsStructs();
  const constants = tsConstants();
  const diffs: string[] = [];

  let source = probeStart(HEADERS);
  const expected = new Map<string, bigint>();
  for (const spec of structs) {
    const type = `struct ${spec.name}`;
    const members = header.structs.get(spec.name);
    if (members === undefined) {
      diffs.push(`${type}: not in include/linux`);
      continue;
    }
    source += probeSize(type);
    expected.set(`sizeof ${type}`, BigInt(spec.size));
    const covered = new Set<CMember>();
    for (const [field, f] of Object.entries(spec.fields)) {
      const resolved = resolveField(header, members, field);
      if (resolved === undefined) {
        diffs.push(`${type}: no member ${field}`);
        continue;
      }
      const { designator, member, outer } = resolved;
      covered.add(outer);
      source += probeMember(type, designator, member);
      expected.set(`offsetof ${type}.${designator}`, BigInt(f.offset));
      expected.set(`sizeof ${type}.${designator}`, BigInt(FIELD_WIDTH[f.type]));
      expected.set(`signed ${type}.${designator}`, f.type === 's32' ? 1n : 0n);
    }
    // Every member is in the table, or overlays one that is (a union), or is a flexible tail.
    for (const m of members) {
      const overlaid = [...covered].some(
        (c) => c.unionGroup !== undefined && c.unionGroup === m.unionGroup,
      );
      if (!m.flexible && !covered.has(m) && !overlaid)
        diffs.push(`${type}.${m.name}: not in the TS table`);
    }
  }
  for (const [name, value] of constants) {
    const inHeader = header.macros.has(name) || header.enumConstants.has(name);
    if (!inHeader && !FROM_IOCTL_H.includes(name)) {
      if (TS_ONLY[name] === undefined) diffs.push(`${name}: not defined by include/linux`);
      continue;
    }
    source += probeValue(name);
    expected.set(`value ${name}`, BigInt.asUintN(64, value));
  }
  const measured = runProbe(source + PROBE_END, [INCLUDE]);
  for (const [key, want] of expected) {
    const got = measured.get(key);
    if (got === undefined) diffs.push(`${key}: not printed by the probe`);
    else if (got !== want) diffs.push(`${key}: TS ${want}, C ${got}`);
  }
  assert.deepEqual(diffs, [], `src/uapi differs from include/linux:\n${diffs.join('\n')}`);
  assert.ok(expected.size > 300, `only ${expected.size} facts checked`);
});
