/**
 * The platform file's format as a zod schema: one description that checks a file (every problem
 * at once, each with its JSON path) and that emits the JSON Schema editors use to complete and
 * check a file as it is typed (`iommufd-emu platform --print-schema`, docs/platform.schema.json).
 *
 * The schema checks the shape and the range of each field; what needs several fields at once
 * (unique names, known IOMMU references, apertures that fit the table) is checkPlatform's.
 */
import { z } from 'zod';
import type { ReservedRegionType } from './iommu.ts';
import { SZ_1G, SZ_2M, SZ_4K, U64_MAX } from './sizes.ts';

const SUFFIXES: Readonly<Record<string, bigint>> = {
  '': 1n,
  k: 1n << 10n,
  kib: 1n << 10n,
  m: 1n << 20n,
  mib: 1n << 20n,
  g: 1n << 30n,
  gib: 1n << 30n,
  t: 1n << 40n,
  tib: 1n << 40n,
};

/** A value as a message shows it. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `"${value}"`;
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/** A zod error option: `what`, and the value that was given. */
function expected(what: string) {
  return { error: (issue: { input?: unknown }) => `${what}, got ${describe(issue.input)}` };
}

const boolean = () => z.boolean(expected('expected true or false'));

const U64_PATTERN = /^\s*(0x[0-9a-fA-F]+|[0-9]+)\s*(|[kKmMgGtT](?:i?[bB])?)\s*$/;

/** The value of a u64 string ("0x1000", "4096", "4GiB"), or undefined if it is none. */
function u64FromString(text: string): bigint | undefined {
  const match = U64_PATTERN.exec(text);
  const scale = match === null ? undefined : SUFFIXES[(match[2] ?? '').toLowerCase()];
  if (match === null || scale === undefined) return undefined;
  const value = BigInt(match[1] ?? '') * scale;
  return value > U64_MAX ? undefined : value;
}

/**
 * A u64: a JSON integer (exact below 2^53) or a string in decimal or 0x hex, optionally with a
 * binary size suffix (K, KiB, M, MiB, G, GiB, T, TiB).
 */
const U64_EXPECTED = 'expected a u64 (integer, "0x..." or a size like "4GiB")';
/** Every check of a u64 says the same, once: the first that fails stops the others. */
const U64_ERROR = { ...expected(U64_EXPECTED), abort: true };
const u64 = z
  .union(
    [
      z
        .number(U64_ERROR)
        .int(U64_ERROR)
        .nonnegative(U64_ERROR)
        .max(Number.MAX_SAFE_INTEGER, U64_ERROR),
      z
        .string(U64_ERROR)
        .regex(U64_PATTERN, U64_ERROR)
        .refine((v) => u64FromString(v) !== undefined, U64_ERROR),
    ],
    expected(U64_EXPECTED),
  )
  .transform((v) => (typeof v === 'number' ? BigInt(v) : (u64FromString(v) ?? 0n)))
  .meta({ description: 'a u64: an integer, "0x..." or a size like "4GiB"' });

export const PAGE_SIZES = { '4KiB': SZ_4K, '2MiB': SZ_2M, '1GiB': SZ_1G } as const;

const REGION_TYPES = [
  'direct',
  'direct-relaxable',
  'reserved',
  'msi',
  'sw-msi',
] as const satisfies readonly ReservedRegionType[];

const reservedRegion = z.strictObject({
  start: u64,
  last: u64,
  type: z.enum(REGION_TYPES, expected(`expected one of ${REGION_TYPES.join(', ')}`)),
});

const nonNegativeInteger = () =>
  z
    .number(expected('must be a non-negative integer'))
    .int(expected('must be a non-negative integer'))
    .nonnegative(expected('must be a non-negative integer'));

const iommuUnit = z.strictObject({
  name: z
    .string(expected('expected a string'))
    .regex(/^[A-Za-z0-9_.-]+$/, expected('bad name (letters, digits, "_", "." and "-" only)')),
  pageSizes: z
    .array(
      z.enum(['4KiB', '2MiB', '1GiB'], expected('expected "4KiB", "2MiB" or "1GiB"')),
      expected('expected an array'),
    )
    .optional()
    .meta({ description: 'default: 4KiB, 2MiB and, with 3 levels or more, 1GiB' }),
  aperture: z
    .strictObject({ start: u64, last: u64 })
    .optional()
    .meta({ description: 'default: all that the levels translate, [0, 2^(12+9*levels) - 1]' }),
  levels: z
    .number(expected('must be an integer from 2 to 6'))
    .int(expected('must be an integer from 2 to 6'))
    .min(2, expected('must be an integer from 2 to 6'))
    .max(6, expected('must be an integer from 2 to 6'))
    .optional()
    .meta({ description: 'default 4' }),
  dirtyTracking: boolean().optional(),
  cacheCoherent: boolean().optional(),
  isolatedMsi: boolean()
    .optional()
    .meta({ description: 'interrupt remapping: MSIs are isolated (default true)' }),
  hwInfo: z
    .enum(['none', 'intel-vtd'], expected('expected "none" or "intel-vtd"'))
    .optional()
    .meta({ description: 'what IOMMU_GET_HW_INFO reports (default "none")' }),
  reservedRegions: z
    .array(reservedRegion, expected('expected an array'))
    .optional()
    .meta({ description: 'default: the x86 MSI window 0xfee00000-0xfeefffff' }),
});

/** A timer's longest delay in Node (2^31-1 ms, about 24.8 days); a longer one fires at once. */
export const MAX_DELAY_MS = 0x7fffffff;
export const DELAY_MS_RULE = `must be a number of milliseconds from 0 to ${MAX_DELAY_MS}`;

const COMPLETION_EXPECTED = 'expected "prompt", "qemu" or {"delayMs": n}';
/** "prompt", "qemu", or an object checked as one (so a bad delay is named, not the union). */
const dmaCompletion = z.union(
  [
    z.enum(['prompt', 'qemu']),
    z.strictObject({
      delayMs: z
        .number(expected('expected a number of milliseconds'))
        .nonnegative(expected(DELAY_MS_RULE))
        .max(MAX_DELAY_MS, expected(DELAY_MS_RULE)),
    }),
  ],
  expected(COMPLETION_EXPECTED),
);

const RESET_METHODS = ['flr', 'pm', 'bus'] as const;

const device = z.strictObject({
  bdf: z
    .string(expected('expected a string'))
    .meta({ description: 'the PCI address, "0000:00:04.0"' }),
  type: z.literal('edu', {
    error: (issue) => `unknown device type ${describe(issue.input)} (known: edu)`,
  }),
  iommu: z
    .string({
      error: (issue) =>
        issue.input === undefined
          ? 'required: the IOMMU unit name, or null for a device with no IOMMU'
          : `expected a string or null, got ${describe(issue.input)}`,
    })
    .nullable()
    .meta({ description: 'the IOMMU unit in front of it, or null for none' }),
  group: nonNegativeInteger().optional(),
  dmaMask: u64.optional(),
  dmaCompletion: dmaCompletion.optional(),
  reservedRegions: z.array(reservedRegion, expected('expected an array')).optional(),
  reset: z
    .array(
      z.enum(RESET_METHODS, expected(`expected one of ${RESET_METHODS.join(', ')}`)),
      expected('expected an array'),
    )
    .optional()
    .meta({
      description:
        'how the device can be reset: "flr", "pm", "bus" (a secondary bus reset, not on bus 00); none for QEMU\'s edu',
    }),
});

const deviceNodeOwner = z
  .union(
    [
      z.literal('invoking-user'),
      z.strictObject({ uid: nonNegativeInteger(), gid: nonNegativeInteger() }),
    ],
    expected('expected "invoking-user" or { "uid": N, "gid": N }'),
  )
  .meta({
    description:
      'who owns /dev/iommu and the VFIO group and device nodes, as a udev rule would set it ' +
      '(default "invoking-user": the user running the emulator)',
  });

export const platformFileSchema = z
  .strictObject(
    {
      $schema: z.string().optional(),
      version: z.literal(1, expected('only version 1 is known')).optional(),
      memory: u64.optional().meta({ description: 'bytes of RAM (default 4GiB)' }),
      enableUnsafeNoiommuMode: boolean().optional(),
      iommufdTest: boolean()
        .optional()
        .meta({ description: 'the kernel has CONFIG_IOMMUFD_TEST (default true)' }),
      deviceNodeOwner: deviceNodeOwner.optional(),
      iommus: z.array(iommuUnit, expected('expected an array')).optional(),
      devices: z.array(device, expected('expected an array')).optional(),
    },
    expected('expected an object'),
  )
  .meta({ title: 'iommufd-emu platform file' });

/** A platform file as the schema read it: u64 fields are bigints, optional fields may be absent. */
export type PlatformFile = z.output<typeof platformFileSchema>;

/** One problem of a platform file: where (a JSON path like "iommus[0].levels") and what. */
export interface PlatformIssue {
  readonly field: string;
  readonly message: string;
}

/** A zod path as the JSON path people write: iommus[0].levels. */
function jsonPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const part of path) {
    if (typeof part === 'number') text += `[${part}]`;
    else text += text === '' ? String(part) : `.${String(part)}`;
  }
  return text === '' ? '(top level)' : text;
}

/** The file read through the schema, or every problem found in it. */
export function readPlatformFile(json: unknown): PlatformFile | PlatformIssue[] {
  const result = platformFileSchema.safeParse(json);
  if (result.success) return result.data;
  return result.error.issues.map((issue) => {
    // An unknown key is reported on its parent; name the key itself.
    const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
    const path = keys.length === 1 ? [...issue.path, keys[0]!] : issue.path;
    const message =
      keys.length === 1 ? 'unknown field' : issue.message.replace(/^Invalid input: /, '');
    return { field: jsonPath(path), message };
  });
}

/** The JSON Schema (draft 2020-12) of the platform file, for editors. */
export function platformJsonSchema(): unknown {
  return z.toJSONSchema(platformFileSchema, { io: 'input', unrepresentable: 'any' });
}
