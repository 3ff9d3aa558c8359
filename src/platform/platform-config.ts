/**
 * The platform description: how much RAM, which IOMMU units, which PCI devices behind which unit
 * (or behind none), and the no-IOMMU module parameter. Built in (`defaultPlatform()`) or read from
 * a JSON platform file (`loadPlatformFile()`), whose format docs/platform.md documents. Validation
 * is hand-written and names the offending field.
 */
import { readFileSync } from 'node:fs';
import type { DmaCompletion } from './edu.ts';
import type { IommuUnitConfig, ReservedRegion, ReservedRegionType } from './iommu.ts';
import { isValidBdf } from './pci.ts';
import { MAX_MEMORY_SIZE } from './phys-memory.ts';
import { hex, PAGE_SIZE, SZ_1G, SZ_2M, SZ_4K, U64_MAX } from './sizes.ts';

/** Device models the machine can build. */
export type DeviceType = 'edu';

/** One PCI device. */
export interface DeviceConfig {
  /** Canonical lower-case PCI address, "0000:00:04.0". */
  readonly bdf: string;
  readonly type: DeviceType;
  /** Name of the IOMMU unit in front of it; absent for a device with no IOMMU. */
  readonly iommu?: string;
  /** IOMMU group id; absent gives the device a group of its own. Only with an IOMMU. */
  readonly group?: number;
  /** RAM-side DMA address mask (edu's dma_mask property). */
  readonly dmaMask: bigint;
  readonly dmaCompletion: DmaCompletion;
  /** Reserved regions only this device reports (on top of its IOMMU's). */
  readonly reservedRegions: readonly ReservedRegion[];
}

/** A whole machine. */
export interface PlatformConfig {
  /** Bytes of RAM. */
  readonly memorySize: bigint;
  /** vfio.enable_unsafe_noiommu_mode at boot; the VFIO layer reads it. */
  readonly enableUnsafeNoiommuMode: boolean;
  readonly iommus: readonly IommuUnitConfig[];
  readonly devices: readonly DeviceConfig[];
}

/** A platform file or config that does not describe a usable machine. */
export class PlatformConfigError extends Error {
  /** Path of the offending field, like "devices[2].bdf"; "file" or "json" for I/O and syntax. */
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'PlatformConfigError';
    this.field = field;
  }
}

/** The x86 interrupt (MSI) window every device behind an Intel or AMD IOMMU reports. */
export const X86_MSI_REGION: ReservedRegion = {
  start: 0xfee00000n,
  last: 0xfeefffffn,
  type: 'msi',
};

/**
 * The built-in machine: 4 GiB RAM, IOMMU "dmar0" (48-bit, 4K|2M|1G, MSI window reserved), edu
 * devices 0000:00:04.0 and 0000:00:05.0 behind it in separate groups, and edu 0000:00:06.0 with
 * no IOMMU. All with 64-bit DMA masks and prompt DMA completion; no-IOMMU mode off.
 */
export function defaultPlatform(): PlatformConfig {
  const edu = (bdf: string, iommu: string | undefined): DeviceConfig => ({
    bdf,
    type: 'edu',
    ...(iommu === undefined ? {} : { iommu }),
    dmaMask: U64_MAX,
    dmaCompletion: 'prompt',
    reservedRegions: [],
  });
  return {
    memorySize: 4n * SZ_1G,
    enableUnsafeNoiommuMode: false,
    iommus: [
      {
        name: 'dmar0',
        pgsizeBitmap: SZ_4K | SZ_2M | SZ_1G,
        aperture: { start: 0n, last: (1n << 48n) - 1n },
        levels: 4,
        caps: { dirtyTracking: false, cacheCoherent: true },
        isolatedMsi: true,
        reservedRegions: [X86_MSI_REGION],
      },
    ],
    devices: [
      edu('0000:00:04.0', 'dmar0'),
      edu('0000:00:05.0', 'dmar0'),
      edu('0000:00:06.0', undefined),
    ],
  };
}

/** Reads and validates a platform file. Never throws: a bad file gives a PlatformConfigError. */
export function loadPlatformFile(path: string): PlatformConfig | PlatformConfigError {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return new PlatformConfigError('file', `cannot read ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return new PlatformConfigError('json', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parsePlatform(json);
}

/** Validates a parsed platform file (JSON value) and converts it to a PlatformConfig. */
export function parsePlatform(json: unknown): PlatformConfig | PlatformConfigError {
  try {
    const config = readPlatform(json);
    return checkPlatform(config) ?? config;
  } catch (err) {
    if (err instanceof PlatformConfigError) return err;
    throw err;
  }
}

/**
 * Semantic checks on a typed config (also run by the Machine constructor): unique names and
 * addresses, known IOMMU references, groups that do not span units, apertures that fit the table.
 */
export function checkPlatform(config: PlatformConfig): PlatformConfigError | undefined {
  const fail = (field: string, message: string): PlatformConfigError =>
    new PlatformConfigError(field, message);
  const m = config.memorySize;
  if (m % PAGE_SIZE !== 0n || m < 2n * 1024n * 1024n || m > MAX_MEMORY_SIZE) {
    return fail('memory', `must be a multiple of 4 KiB between 2 MiB and 1 TiB, got ${hex(m)}`);
  }
  const units = new Set<string>();
  for (const [i, unit] of config.iommus.entries()) {
    const at = `iommus[${i}]`;
    if (!/^[A-Za-z0-9_.-]+$/.test(unit.name)) return fail(`${at}.name`, `bad name "${unit.name}"`);
    if (units.has(unit.name)) return fail(`${at}.name`, `duplicate IOMMU name "${unit.name}"`);
    units.add(unit.name);
    if (!Number.isInteger(unit.levels) || unit.levels < 2 || unit.levels > 6) {
      return fail(`${at}.levels`, `must be an integer from 2 to 6, got ${unit.levels}`);
    }
    const sizes = unit.pgsizeBitmap;
    if ((sizes & SZ_4K) === 0n || (sizes & ~(SZ_4K | SZ_2M | SZ_1G)) !== 0n) {
      return fail(`${at}.pageSizes`, 'must include "4KiB" and may add only "2MiB" and "1GiB"');
    }
    if ((sizes & SZ_1G) !== 0n && unit.levels < 3) {
      return fail(`${at}.pageSizes`, '1 GiB pages need at least 3 levels');
    }
    const top =
      12n + 9n * BigInt(unit.levels) >= 64n
        ? U64_MAX
        : (1n << (12n + 9n * BigInt(unit.levels))) - 1n;
    const ap = unit.aperture;
    if (ap.start > ap.last || ap.start % PAGE_SIZE !== 0n || (ap.last + 1n) % PAGE_SIZE !== 0n) {
      return fail(
        `${at}.aperture`,
        'start must be <= last, both on 4 KiB boundaries (last = boundary - 1)',
      );
    }
    if (ap.last > top) {
      return fail(
        `${at}.aperture.last`,
        `${hex(ap.last)} is beyond what ${unit.levels} levels translate (${hex(top)})`,
      );
    }
    const bad = badRegion(unit.reservedRegions);
    if (bad !== undefined) return fail(`${at}.reservedRegions[${bad}]`, 'start must be <= last');
  }
  const bdfs = new Set<string>();
  const groupUnit = new Map<number, string>();
  for (const [i, dev] of config.devices.entries()) {
    const at = `devices[${i}]`;
    if (!isValidBdf(dev.bdf))
      return fail(`${at}.bdf`, `expected "DDDD:BB:DD.F" (lower-case hex), got "${dev.bdf}"`);
    if (bdfs.has(dev.bdf)) return fail(`${at}.bdf`, `duplicate device ${dev.bdf}`);
    bdfs.add(dev.bdf);
    if (dev.iommu !== undefined && !units.has(dev.iommu)) {
      return fail(`${at}.iommu`, `no IOMMU named "${dev.iommu}"`);
    }
    if (dev.group !== undefined) {
      if (dev.iommu === undefined)
        return fail(`${at}.group`, 'a device with no IOMMU has no IOMMU group');
      if (!Number.isInteger(dev.group) || dev.group < 0) {
        return fail(`${at}.group`, `must be a non-negative integer, got ${dev.group}`);
      }
      const owner = groupUnit.get(dev.group);
      if (owner !== undefined && owner !== dev.iommu) {
        return fail(`${at}.group`, `group ${dev.group} is already behind IOMMU "${owner}"`);
      }
      groupUnit.set(dev.group, dev.iommu);
    }
    if (dev.dmaMask < 0n || dev.dmaMask > U64_MAX) return fail(`${at}.dmaMask`, 'must be a u64');
    const c = dev.dmaCompletion;
    if (typeof c === 'object' && (!Number.isFinite(c.delayMs) || c.delayMs < 0)) {
      return fail(`${at}.dmaCompletion.delayMs`, 'must be a non-negative number of milliseconds');
    }
    const bad = badRegion(dev.reservedRegions);
    if (bad !== undefined) return fail(`${at}.reservedRegions[${bad}]`, 'start must be <= last');
  }
  return undefined;
}

/** The platform-file form of a config (for printing the effective platform). */
export function platformToJson(config: PlatformConfig): unknown {
  const regions = (list: readonly ReservedRegion[]): unknown[] =>
    list.map((r) => ({ start: hex(r.start), last: hex(r.last), type: r.type }));
  return {
    version: 1,
    memory: hex(config.memorySize),
    enableUnsafeNoiommuMode: config.enableUnsafeNoiommuMode,
    iommus: config.iommus.map((u) => ({
      name: u.name,
      pageSizes: PAGE_SIZE_NAMES.filter(([, size]) => (u.pgsizeBitmap & size) !== 0n).map(
        ([name]) => name,
      ),
      aperture: { start: hex(u.aperture.start), last: hex(u.aperture.last) },
      levels: u.levels,
      dirtyTracking: u.caps.dirtyTracking,
      cacheCoherent: u.caps.cacheCoherent,
      isolatedMsi: u.isolatedMsi,
      reservedRegions: regions(u.reservedRegions),
    })),
    devices: config.devices.map((d) => ({
      bdf: d.bdf,
      type: d.type,
      iommu: d.iommu ?? null,
      ...(d.group === undefined ? {} : { group: d.group }),
      dmaMask: hex(d.dmaMask),
      dmaCompletion: d.dmaCompletion,
      reservedRegions: regions(d.reservedRegions),
    })),
  };
}

// ---- reading the JSON form ------------------------------------------------------------------

const PAGE_SIZE_NAMES: readonly (readonly [string, bigint])[] = [
  ['4KiB', SZ_4K],
  ['2MiB', SZ_2M],
  ['1GiB', SZ_1G],
];

const REGION_TYPES: readonly ReservedRegionType[] = [
  'direct',
  'direct-relaxable',
  'reserved',
  'msi',
  'sw-msi',
];

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

type JsonObject = Readonly<Record<string, unknown>>;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `"${value}"`;
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function object(value: unknown, field: string, allowed: readonly string[]): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PlatformConfigError(
      field || '(top level)',
      `expected an object, got ${describe(value)}`,
    );
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      const where = field === '' ? key : `${field}.${key}`;
      throw new PlatformConfigError(
        where,
        `unknown field (expected one of: ${allowed.join(', ')})`,
      );
    }
  }
  return value as JsonObject;
}

function array(value: unknown, field: string): readonly unknown[] {
  if (!Array.isArray(value))
    throw new PlatformConfigError(field, `expected an array, got ${describe(value)}`);
  return value;
}

function string(value: unknown, field: string): string {
  if (typeof value !== 'string')
    throw new PlatformConfigError(field, `expected a string, got ${describe(value)}`);
  return value;
}

function boolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean')
    throw new PlatformConfigError(field, `expected true or false, got ${describe(value)}`);
  return value;
}

function integer(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new PlatformConfigError(field, `expected an integer, got ${describe(value)}`);
  }
  return value;
}

/**
 * A u64: a JSON integer (exact below 2^53) or a string in decimal or 0x hex, optionally with a
 * binary size suffix (K, KiB, M, MiB, G, GiB, T, TiB).
 */
function u64(value: unknown, field: string): bigint {
  let result: bigint | undefined;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) {
    result = BigInt(value);
  } else if (typeof value === 'string') {
    const match = /^\s*(0x[0-9a-fA-F]+|[0-9]+)\s*([a-zA-Z]*)\s*$/.exec(value);
    const scale = match === null ? undefined : SUFFIXES[(match[2] ?? '').toLowerCase()];
    if (match !== null && scale !== undefined) result = BigInt(match[1] ?? '') * scale;
  }
  if (result === undefined || result > U64_MAX) {
    throw new PlatformConfigError(
      field,
      `expected a u64 (integer, "0x..." or a size like "4GiB"), got ${describe(value)}`,
    );
  }
  return result;
}

function readRegions(value: unknown, field: string): ReservedRegion[] {
  return array(value, field).map((item, i) => {
    const at = `${field}[${i}]`;
    const o = object(item, at, ['start', 'last', 'type']);
    const type = string(o.type, `${at}.type`);
    if (!(REGION_TYPES as readonly string[]).includes(type)) {
      throw new PlatformConfigError(
        `${at}.type`,
        `expected one of ${REGION_TYPES.join(', ')}, got "${type}"`,
      );
    }
    return {
      start: u64(o.start, `${at}.start`),
      last: u64(o.last, `${at}.last`),
      type: type as ReservedRegionType,
    };
  });
}

function readIommu(value: unknown, field: string): IommuUnitConfig {
  const o = object(value, field, [
    'name',
    'pageSizes',
    'aperture',
    'levels',
    'dirtyTracking',
    'cacheCoherent',
    'isolatedMsi',
    'reservedRegions',
  ]);
  let pgsizeBitmap = SZ_4K | SZ_2M | SZ_1G;
  if (o.pageSizes !== undefined) {
    pgsizeBitmap = 0n;
    for (const [i, item] of array(o.pageSizes, `${field}.pageSizes`).entries()) {
      const name = string(item, `${field}.pageSizes[${i}]`);
      const size = PAGE_SIZE_NAMES.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
      if (size === undefined) {
        throw new PlatformConfigError(
          `${field}.pageSizes[${i}]`,
          `expected "4KiB", "2MiB" or "1GiB", got "${name}"`,
        );
      }
      pgsizeBitmap |= size;
    }
  }
  const levels = o.levels === undefined ? 4 : integer(o.levels, `${field}.levels`);
  let aperture = { start: 0n, last: (1n << 48n) - 1n };
  if (o.aperture !== undefined) {
    const a = object(o.aperture, `${field}.aperture`, ['start', 'last']);
    aperture = {
      start: u64(a.start, `${field}.aperture.start`),
      last: u64(a.last, `${field}.aperture.last`),
    };
  }
  return {
    name: string(o.name, `${field}.name`),
    pgsizeBitmap,
    aperture,
    levels,
    caps: {
      dirtyTracking:
        o.dirtyTracking === undefined ? false : boolean(o.dirtyTracking, `${field}.dirtyTracking`),
      cacheCoherent:
        o.cacheCoherent === undefined ? true : boolean(o.cacheCoherent, `${field}.cacheCoherent`),
    },
    isolatedMsi:
      o.isolatedMsi === undefined ? true : boolean(o.isolatedMsi, `${field}.isolatedMsi`),
    reservedRegions:
      o.reservedRegions === undefined
        ? [X86_MSI_REGION]
        : readRegions(o.reservedRegions, `${field}.reservedRegions`),
  };
}

function readCompletion(value: unknown, field: string): DmaCompletion {
  if (value === 'prompt' || value === 'qemu') return value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const o = object(value, field, ['delayMs']);
    if (typeof o.delayMs !== 'number') {
      throw new PlatformConfigError(
        `${field}.delayMs`,
        `expected a number, got ${describe(o.delayMs)}`,
      );
    }
    return { delayMs: o.delayMs };
  }
  throw new PlatformConfigError(
    field,
    `expected "prompt", "qemu" or {"delayMs": n}, got ${describe(value)}`,
  );
}

function readDevice(value: unknown, field: string): DeviceConfig {
  const o = object(value, field, [
    'bdf',
    'type',
    'iommu',
    'group',
    'dmaMask',
    'dmaCompletion',
    'reservedRegions',
  ]);
  const type = string(o.type, `${field}.type`);
  if (type !== 'edu')
    throw new PlatformConfigError(`${field}.type`, `unknown device type "${type}" (known: edu)`);
  if (!('iommu' in o)) {
    throw new PlatformConfigError(
      `${field}.iommu`,
      'required: the IOMMU unit name, or null for a device with no IOMMU',
    );
  }
  const iommu = o.iommu === null ? undefined : string(o.iommu, `${field}.iommu`);
  const group = o.group === undefined ? undefined : integer(o.group, `${field}.group`);
  return {
    bdf: string(o.bdf, `${field}.bdf`),
    type,
    ...(iommu === undefined ? {} : { iommu }),
    ...(group === undefined ? {} : { group }),
    dmaMask: o.dmaMask === undefined ? U64_MAX : u64(o.dmaMask, `${field}.dmaMask`),
    dmaCompletion:
      o.dmaCompletion === undefined
        ? 'prompt'
        : readCompletion(o.dmaCompletion, `${field}.dmaCompletion`),
    reservedRegions:
      o.reservedRegions === undefined
        ? []
        : readRegions(o.reservedRegions, `${field}.reservedRegions`),
  };
}

function readPlatform(json: unknown): PlatformConfig {
  const o = object(json, '', ['version', 'memory', 'enableUnsafeNoiommuMode', 'iommus', 'devices']);
  if (o.version !== undefined && o.version !== 1) {
    throw new PlatformConfigError('version', `only version 1 is known, got ${describe(o.version)}`);
  }
  return {
    memorySize: o.memory === undefined ? 4n * SZ_1G : u64(o.memory, 'memory'),
    enableUnsafeNoiommuMode:
      o.enableUnsafeNoiommuMode === undefined
        ? false
        : boolean(o.enableUnsafeNoiommuMode, 'enableUnsafeNoiommuMode'),
    iommus:
      o.iommus === undefined
        ? []
        : array(o.iommus, 'iommus').map((u, i) => readIommu(u, `iommus[${i}]`)),
    devices:
      o.devices === undefined
        ? []
        : array(o.devices, 'devices').map((d, i) => readDevice(d, `devices[${i}]`)),
  };
}

function badRegion(regions: readonly ReservedRegion[]): number | undefined {
  const i = regions.findIndex((r) => r.start > r.last);
  return i < 0 ? undefined : i;
}
