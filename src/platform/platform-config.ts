/**
 * The platform description: how much RAM, which IOMMU units, which PCI devices behind which unit
 * (or behind none), and the no-IOMMU module parameter. Built in (`defaultPlatform()`) or read from
 * a JSON platform file (`loadPlatformFile()`), whose format docs/platform.md documents and
 * platform-schema.ts checks. Every problem is reported at once, each with its JSON path.
 */
import { readFileSync, statSync } from 'node:fs';
import type { DmaCompletion } from './edu.ts';
import type { IommuUnitConfig, ReservedRegion } from './iommu.ts';
import { isValidBdf, type ResetMethod } from './pci.ts';
import { MAX_MEMORY_SIZE } from './phys-memory.ts';
import {
  DELAY_MS_RULE,
  MAX_DELAY_MS,
  PAGE_SIZES,
  type PlatformFile,
  type PlatformIssue,
  readPlatformFile,
} from './platform-schema.ts';
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
  /** How it can be reset; none for QEMU's edu. */
  readonly resetMethods: readonly ResetMethod[];
}

/** A whole machine. */
export interface PlatformConfig {
  /** Bytes of RAM. */
  readonly memorySize: bigint;
  /** vfio.enable_unsafe_noiommu_mode at boot; the VFIO layer reads it. */
  readonly enableUnsafeNoiommuMode: boolean;
  readonly iommus: readonly IommuUnitConfig[];
  readonly devices: readonly DeviceConfig[];
  /**
   * The kernel is built with CONFIG_IOMMUFD_TEST: IOMMU_TEST_CMD and the iommufd_mock bus its
   * mock devices sit on. Absent means true (docs/decisions.md).
   */
  readonly iommufdTest?: boolean;
  /**
   * Who owns /dev/iommu and the VFIO group and device nodes, as a udev rule would make it:
   * the user running the emulator ('invoking-user', the default) or fixed ids.
   */
  readonly deviceNodeOwner?: DeviceNodeOwner;
}

/** The owner a platform gives its iommufd and VFIO nodes. */
export type DeviceNodeOwner = 'invoking-user' | { readonly uid: number; readonly gid: number };

/** A platform file or config that does not describe a usable machine: every problem found. */
export class PlatformConfigError extends Error {
  /** Path of the first offending field, like "devices[2].bdf"; "file" or "json" for I/O and syntax. */
  readonly field: string;
  /** Every problem, each with its JSON path. */
  readonly issues: readonly PlatformIssue[];

  constructor(field: string, message: string, issues?: readonly PlatformIssue[], file?: string) {
    const all = issues ?? [{ field, message }];
    const where = file === undefined ? '' : `${file}: `;
    super(all.map((issue) => `${where}${issue.field}: ${issue.message}`).join('\n'));
    this.name = 'PlatformConfigError';
    this.field = field;
    this.issues = all;
  }

  /** The error for a non-empty list of problems, of the file named (if any). */
  static of(issues: readonly PlatformIssue[], file?: string): PlatformConfigError {
    const first = issues[0] ?? { field: '(top level)', message: 'invalid' };
    return new PlatformConfigError(first.field, first.message, issues, file);
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
 * no IOMMU. All with 64-bit DMA masks and prompt DMA completion; no-IOMMU mode off; /dev/iommu
 * and the VFIO nodes owned by the user running the emulator.
 */
export function defaultPlatform(): PlatformConfig {
  const edu = (bdf: string, iommu: string | undefined): DeviceConfig => ({
    bdf,
    type: 'edu',
    ...(iommu === undefined ? {} : { iommu }),
    dmaMask: U64_MAX,
    dmaCompletion: 'prompt',
    reservedRegions: [],
    resetMethods: [],
  });
  return {
    memorySize: 4n * SZ_1G,
    enableUnsafeNoiommuMode: false,
    // As a udev rule giving a VFIO user its devices would.
    deviceNodeOwner: 'invoking-user',
    iommus: [
      {
        name: 'dmar0',
        pgsizeBitmap: SZ_4K | SZ_2M | SZ_1G,
        aperture: { start: 0n, last: (1n << 48n) - 1n },
        levels: 4,
        caps: { dirtyTracking: false, cacheCoherent: true },
        isolatedMsi: true,
        hwInfo: 'none',
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

/** Far more than any machine's description needs. */
const PLATFORM_FILE_MAX = 1 << 20;

/** Reads and validates a platform file. Never throws: a bad file gives a PlatformConfigError. */
export function loadPlatformFile(path: string): PlatformConfig | PlatformConfigError {
  let text: string;
  try {
    // A device or a pipe (/dev/zero) would never end, a huge file would fill the heap.
    const stat = statSync(path);
    if (!stat.isFile()) return new PlatformConfigError('file', `${path} is not a regular file`);
    if (stat.size > PLATFORM_FILE_MAX) {
      return new PlatformConfigError('file', `${path} is larger than ${PLATFORM_FILE_MAX} bytes`);
    }
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
  return parsePlatform(json, path);
}

/**
 * Validates a parsed platform file (JSON value) and converts it to a PlatformConfig: every problem
 * of the file's shape at once, else every problem of the machine it describes at once.
 */
export function parsePlatform(json: unknown, file?: string): PlatformConfig | PlatformConfigError {
  const read = readPlatformFile(json);
  if (Array.isArray(read)) return PlatformConfigError.of(read, file);
  const config = toConfig(read);
  const issues = platformIssues(config);
  return issues.length > 0 ? PlatformConfigError.of(issues, file) : config;
}

/**
 * Semantic checks on a typed config (also run by the Machine constructor): unique names and
 * addresses, known IOMMU references, groups that do not span units, apertures that fit the table.
 */
export function checkPlatform(config: PlatformConfig): PlatformConfigError | undefined {
  const issues = platformIssues(config);
  return issues.length > 0 ? PlatformConfigError.of(issues) : undefined;
}

/** The highest IOVA a table of `levels` levels translates. */
export function levelsTop(levels: number): bigint {
  const bits = 12n + 9n * BigInt(levels);
  return bits >= 64n ? U64_MAX : (1n << bits) - 1n;
}

function platformIssues(config: PlatformConfig): PlatformIssue[] {
  const issues: PlatformIssue[] = [];
  const fail = (field: string, message: string): void => {
    issues.push({ field, message });
  };
  const m = config.memorySize;
  if (m % PAGE_SIZE !== 0n || m < 2n * 1024n * 1024n || m > MAX_MEMORY_SIZE) {
    fail('memory', `must be a multiple of 4 KiB between 2 MiB and 1 TiB, got ${hex(m)}`);
  }
  const units = new Set<string>();
  for (const [i, unit] of config.iommus.entries()) {
    const at = `iommus[${i}]`;
    if (!/^[A-Za-z0-9_.-]+$/.test(unit.name)) fail(`${at}.name`, `bad name "${unit.name}"`);
    if (units.has(unit.name)) fail(`${at}.name`, `duplicate IOMMU name "${unit.name}"`);
    units.add(unit.name);
    if (!Number.isInteger(unit.levels) || unit.levels < 2 || unit.levels > 6) {
      fail(`${at}.levels`, `must be an integer from 2 to 6, got ${unit.levels}`);
      continue;
    }
    const sizes = unit.pgsizeBitmap;
    if ((sizes & SZ_4K) === 0n || (sizes & ~(SZ_4K | SZ_2M | SZ_1G)) !== 0n) {
      fail(`${at}.pageSizes`, 'must include "4KiB" and may add only "2MiB" and "1GiB"');
    } else if ((sizes & SZ_1G) !== 0n && unit.levels < 3) {
      fail(`${at}.pageSizes`, '1 GiB pages need at least 3 levels');
    }
    const top = levelsTop(unit.levels);
    const ap = unit.aperture;
    if (ap.start > ap.last || ap.start % PAGE_SIZE !== 0n || (ap.last + 1n) % PAGE_SIZE !== 0n) {
      fail(
        `${at}.aperture`,
        'start must be <= last, both on 4 KiB boundaries (last = boundary - 1)',
      );
    } else if (ap.last > top) {
      fail(
        `${at}.aperture.last`,
        `${hex(ap.last)} is beyond what ${unit.levels} levels translate (${hex(top)})`,
      );
    }
    const bad = badRegion(unit.reservedRegions);
    if (bad !== undefined) fail(`${at}.reservedRegions[${bad}]`, 'start must be <= last');
  }
  const bdfs = new Set<string>();
  const groupUnit = new Map<number, string>();
  /** Per bus ("DDDD:BB"), the first device seen and whether it declares the bus reset. */
  const busReset = new Map<string, { bdf: string; bus: boolean }>();
  for (const [i, dev] of config.devices.entries()) {
    const at = `devices[${i}]`;
    if (!isValidBdf(dev.bdf))
      fail(`${at}.bdf`, `expected "DDDD:BB:DD.F" (lower-case hex), got "${dev.bdf}"`);
    if (bdfs.has(dev.bdf)) fail(`${at}.bdf`, `duplicate device ${dev.bdf}`);
    bdfs.add(dev.bdf);
    if (dev.iommu !== undefined && !units.has(dev.iommu)) {
      fail(`${at}.iommu`, `no IOMMU named "${dev.iommu}"`);
    }
    if (dev.group !== undefined) {
      if (dev.iommu === undefined) fail(`${at}.group`, 'a device with no IOMMU has no IOMMU group');
      else if (!Number.isInteger(dev.group) || dev.group < 0) {
        fail(`${at}.group`, `must be a non-negative integer, got ${dev.group}`);
      } else {
        const owner = groupUnit.get(dev.group);
        if (owner !== undefined && owner !== dev.iommu) {
          fail(`${at}.group`, `group ${dev.group} is already behind IOMMU "${owner}"`);
        }
        groupUnit.set(dev.group, dev.iommu);
      }
    }
    if (dev.dmaMask < 0n || dev.dmaMask > U64_MAX) fail(`${at}.dmaMask`, 'must be a u64');
    const c = dev.dmaCompletion;
    if (typeof c === 'object' && !(c.delayMs >= 0 && c.delayMs <= MAX_DELAY_MS)) {
      fail(`${at}.dmaCompletion.delayMs`, DELAY_MS_RULE);
    }
    const bad = badRegion(dev.reservedRegions);
    if (bad !== undefined) fail(`${at}.reservedRegions[${bad}]`, 'start must be <= last');
    if (dev.resetMethods.includes('bus') && dev.bdf.slice(5, 7) === '00') {
      fail(`${at}.reset`, 'a device on the root bus (00) has no bridge above it to reset its bus');
    }
    // A secondary bus reset is the bridge's: every device of the bus has it, or none does.
    const bus = dev.resetMethods.includes('bus');
    const first = busReset.get(dev.bdf.slice(0, 7));
    if (first === undefined) busReset.set(dev.bdf.slice(0, 7), { bdf: dev.bdf, bus });
    else if (first.bus !== bus) {
      const has = (yes: boolean) => (yes ? 'has' : 'does not have');
      fail(
        `${at}.reset`,
        `"bus" is the bus's: ${first.bdf} ${has(first.bus)} it, ${dev.bdf} ${has(bus)} it`,
      );
    }
  }
  return issues;
}

/** The platform-file form of a config (for printing the effective platform). */
export function platformToJson(config: PlatformConfig): unknown {
  const regions = (list: readonly ReservedRegion[]): unknown[] =>
    list.map((r) => ({ start: hex(r.start), last: hex(r.last), type: r.type }));
  return {
    version: 1,
    memory: hex(config.memorySize),
    enableUnsafeNoiommuMode: config.enableUnsafeNoiommuMode,
    ...(config.iommufdTest === undefined ? {} : { iommufdTest: config.iommufdTest }),
    deviceNodeOwner: config.deviceNodeOwner ?? 'invoking-user',
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
      hwInfo: u.hwInfo,
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
      ...(d.resetMethods.length === 0 ? {} : { reset: d.resetMethods }),
    })),
  };
}

// ---- from the file's form to the config ------------------------------------------------------

const PAGE_SIZE_NAMES = Object.entries(PAGE_SIZES) as readonly (readonly [string, bigint])[];

type IommuUnitFile = NonNullable<PlatformFile['iommus']>[number];
type DeviceFile = NonNullable<PlatformFile['devices']>[number];

/**
 * An IOMMU unit, with defaults that follow what the file set: the aperture is all that the
 * levels translate, and 1 GiB pages come only with the 3 levels they need.
 */
function toIommu(unit: IommuUnitFile): IommuUnitConfig {
  const levels = unit.levels ?? 4;
  const pgsizeBitmap =
    unit.pageSizes === undefined
      ? SZ_4K | SZ_2M | (levels >= 3 ? SZ_1G : 0n)
      : unit.pageSizes.reduce((bits, name) => bits | PAGE_SIZES[name], 0n);
  return {
    name: unit.name,
    pgsizeBitmap,
    aperture: unit.aperture ?? { start: 0n, last: levelsTop(levels) },
    levels,
    caps: {
      dirtyTracking: unit.dirtyTracking ?? false,
      cacheCoherent: unit.cacheCoherent ?? true,
    },
    isolatedMsi: unit.isolatedMsi ?? true,
    hwInfo: unit.hwInfo ?? 'none',
    reservedRegions: unit.reservedRegions ?? [X86_MSI_REGION],
  };
}

function toDevice(dev: DeviceFile): DeviceConfig {
  return {
    bdf: dev.bdf,
    type: dev.type,
    ...(dev.iommu === null ? {} : { iommu: dev.iommu }),
    ...(dev.group === undefined ? {} : { group: dev.group }),
    dmaMask: dev.dmaMask ?? U64_MAX,
    dmaCompletion: dev.dmaCompletion ?? 'prompt',
    reservedRegions: dev.reservedRegions ?? [],
    resetMethods: dev.reset ?? [],
  };
}

function toConfig(file: PlatformFile): PlatformConfig {
  return {
    memorySize: file.memory ?? 4n * SZ_1G,
    enableUnsafeNoiommuMode: file.enableUnsafeNoiommuMode ?? false,
    ...(file.iommufdTest === undefined ? {} : { iommufdTest: file.iommufdTest }),
    ...(file.deviceNodeOwner === undefined ? {} : { deviceNodeOwner: file.deviceNodeOwner }),
    iommus: (file.iommus ?? []).map(toIommu),
    devices: (file.devices ?? []).map(toDevice),
  };
}

function badRegion(regions: readonly ReservedRegion[]): number | undefined {
  const i = regions.findIndex((r) => r.start > r.last);
  return i < 0 ? undefined : i;
}
