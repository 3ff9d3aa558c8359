import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Machine } from './machine.ts';
import {
  defaultPlatform,
  loadPlatformFile,
  type PlatformConfig,
  PlatformConfigError,
  parsePlatform,
  platformToJson,
} from './platform-config.ts';

const example = {
  version: 1,
  memory: '1GiB',
  enableUnsafeNoiommuMode: true,
  iommus: [
    {
      name: 'dmar0',
      pageSizes: ['4KiB', '2MiB'],
      aperture: { start: '0x0', last: '0x7fffffffff' },
      levels: 3,
      reservedRegions: [{ start: '0xfee00000', last: '0xfeefffff', type: 'msi' }],
    },
  ],
  devices: [
    { bdf: '0000:00:04.0', type: 'edu', iommu: 'dmar0', group: 7 },
    { bdf: '0000:00:05.0', type: 'edu', iommu: 'dmar0', group: 7 },
    { bdf: '0000:00:06.0', type: 'edu', iommu: null, dmaMask: '0x0fffffff', dmaCompletion: 'qemu' },
    { bdf: '0000:00:07.0', type: 'edu', iommu: 'dmar0', dmaCompletion: { delayMs: 2 } },
  ],
};

function config(json: unknown): PlatformConfig {
  const c = parsePlatform(json);
  assert.ok(!(c instanceof PlatformConfigError), c instanceof PlatformConfigError ? c.message : '');
  return c;
}

function error(json: unknown): PlatformConfigError {
  const c = parsePlatform(json);
  assert.ok(c instanceof PlatformConfigError, 'expected a validation error');
  return c;
}

/** The example with one field replaced (path like ['devices', 0, 'bdf']); undefined deletes it. */
function patched(path: readonly (string | number)[], value: unknown): unknown {
  const copy = structuredClone(example) as unknown as Record<string | number, unknown>;
  let at: Record<string | number, unknown> = copy;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (value === undefined) delete at[last];
  else at[last] = value;
  return copy;
}

describe('platform files', () => {
  it('parses the documented example', () => {
    const c = config(example);
    assert.equal(c.memorySize, 1n << 30n);
    assert.equal(c.enableUnsafeNoiommuMode, true);
    assert.equal(c.iommus[0]?.pgsizeBitmap, 0x201000n);
    assert.equal(c.iommus[0]?.levels, 3);
    assert.deepEqual(c.iommus[0]?.caps, { dirtyTracking: false, cacheCoherent: true });
    assert.equal(c.iommus[0]?.isolatedMsi, true, 'MSIs are isolated unless the file says not');
    assert.equal(c.devices[2]?.iommu, undefined);
    assert.equal(c.devices[2]?.dmaMask, 0x0fffffffn);
    assert.equal(c.devices[2]?.dmaCompletion, 'qemu');
    assert.equal(c.devices[0]?.dmaMask, (1n << 64n) - 1n);
    assert.deepEqual(c.devices[3]?.dmaCompletion, { delayMs: 2 });
    const m = new Machine(c);
    assert.equal(m.device('0000:00:04.0')?.group, m.device('0000:00:05.0')?.group);
    assert.equal(m.device('0000:00:04.0')?.group?.id, 7);
    assert.equal(m.device('0000:00:07.0')?.group?.id, 0, 'auto groups skip explicit ids');
    m.shutdown();
  });

  it('round-trips the default platform through its file form', () => {
    const c = config(JSON.parse(JSON.stringify(platformToJson(defaultPlatform()))));
    assert.deepEqual(c, defaultPlatform());
  });

  it('names the bad field', () => {
    const cases: [readonly (string | number)[], unknown, string, RegExp][] = [
      [['memory'], 'lots', 'memory', /expected a u64/],
      [['memory'], '1MiB', 'memory', /between 2 MiB and 1 TiB/],
      [['memory'], 4097, 'memory', /multiple of 4 KiB/],
      [['enableUnsafeNoiommuMode'], 'yes', 'enableUnsafeNoiommuMode', /true or false/],
      [['version'], 2, 'version', /only version 1/],
      [['colour'], 'blue', 'colour', /unknown field/],
      [['iommus', 0, 'pageSizes'], ['64KiB'], 'iommus[0].pageSizes[0]', /"64KiB"/],
      [['iommus', 0, 'pageSizes'], ['2MiB'], 'iommus[0].pageSizes', /must include "4KiB"/],
      [['iommus', 0, 'levels'], 9, 'iommus[0].levels', /2 to 6/],
      [
        ['iommus', 0, 'aperture', 'last'],
        '0xffffffffffff',
        'iommus[0].aperture.last',
        /beyond what 3 levels/,
      ],
      [['iommus', 0, 'aperture', 'start'], '0x10', 'iommus[0].aperture', /4 KiB boundaries/],
      [
        ['iommus', 0, 'reservedRegions', 0, 'type'],
        'msix',
        'iommus[0].reservedRegions[0].type',
        /one of/,
      ],
      [
        ['iommus', 0, 'reservedRegions', 0, 'last'],
        '0x1',
        'iommus[0].reservedRegions[0]',
        /start must be <= last/,
      ],
      [['iommus', 0, 'name'], 'dm ar', 'iommus[0].name', /bad name/],
      [['iommus', 0, 'dirtyTracking'], 1, 'iommus[0].dirtyTracking', /true or false/],
      [['iommus', 0, 'isolatedMsi'], 'no', 'iommus[0].isolatedMsi', /true or false/],
      [['devices', 1, 'bdf'], '00:05.0', 'devices[1].bdf', /DDDD:BB:DD.F/],
      [['devices', 1, 'bdf'], '0000:00:04.0', 'devices[1].bdf', /duplicate device/],
      [['devices', 1, 'type'], 'nvme', 'devices[1].type', /unknown device type "nvme"/],
      [['devices', 1, 'iommu'], 'dmar9', 'devices[1].iommu', /no IOMMU named "dmar9"/],
      [['devices', 1, 'iommu'], undefined, 'devices[1].iommu', /required/],
      [['devices', 2, 'group'], 3, 'devices[2].group', /no IOMMU group/],
      [['devices', 1, 'group'], -1, 'devices[1].group', /non-negative/],
      [['devices', 1, 'dmaMask'], '0x1ffffffffffffffff', 'devices[1].dmaMask', /u64/],
      [['devices', 1, 'dmaCompletion'], 'slow', 'devices[1].dmaCompletion', /"prompt", "qemu"/],
      [
        ['devices', 1, 'dmaCompletion'],
        { delayMs: -1 },
        'devices[1].dmaCompletion.delayMs',
        /from 0 to 2147483647/,
      ],
      [
        ['devices', 1, 'dmaCompletion'],
        { delayMs: 2 ** 31 },
        'devices[1].dmaCompletion.delayMs',
        /from 0 to 2147483647/,
      ],
      [['devices', 1, 'extra'], true, 'devices[1].extra', /unknown field/],
      [['devices'], {}, 'devices', /expected an array/],
    ];
    for (const [path, value, field, message] of cases) {
      const e = error(patched(path, value));
      assert.equal(e.field, field, `${path.join('.')} = ${JSON.stringify(value)}: ${e.message}`);
      assert.match(e.message, message);
      assert.ok(e.message.startsWith(`${field}: `));
    }
    assert.equal(error([]).field, '(top level)');
  });

  it('reads isolatedMsi per IOMMU unit and prints it back', () => {
    const c = config(patched(['iommus', 0, 'isolatedMsi'], false));
    assert.equal(c.iommus[0]?.isolatedMsi, false);
    const json = platformToJson(c) as { iommus: { isolatedMsi: boolean }[] };
    assert.equal(json.iommus[0]?.isolatedMsi, false);
    const m = new Machine(c);
    assert.equal(m.iommus.get('dmar0')?.isolatedMsi, false);
    assert.equal(m.snapshot().iommus[0]?.isolatedMsi, false);
    m.shutdown();
  });

  it('reads hwInfo per IOMMU unit ("none" by default) and prints it back', () => {
    assert.equal(config(example).iommus[0]?.hwInfo, 'none');
    const c = config(patched(['iommus', 0, 'hwInfo'], 'intel-vtd'));
    assert.equal(c.iommus[0]?.hwInfo, 'intel-vtd');
    const json = platformToJson(c) as { iommus: { hwInfo: string }[] };
    assert.equal(json.iommus[0]?.hwInfo, 'intel-vtd');
    const bad = parsePlatform(patched(['iommus', 0, 'hwInfo'], 'amd'));
    assert.ok(bad instanceof PlatformConfigError);
    assert.equal(bad.field, 'iommus[0].hwInfo');
  });

  it('rejects a group shared across IOMMUs', () => {
    const json = structuredClone(example) as {
      iommus: unknown[];
      devices: Record<string, unknown>[];
    };
    json.iommus.push({ name: 'dmar1' });
    json.devices[1]!.iommu = 'dmar1';
    const e = error(json);
    assert.equal(e.field, 'devices[1].group');
    assert.match(e.message, /already behind IOMMU "dmar0"/);
  });

  it('makes the devices of one bus agree on the bus reset', () => {
    const json = {
      version: 1,
      iommus: [{ name: 'dmar0' }],
      devices: [
        { bdf: '0000:01:00.0', type: 'edu', iommu: 'dmar0', reset: ['bus'] },
        { bdf: '0000:02:00.0', type: 'edu', iommu: 'dmar0' },
        { bdf: '0000:01:00.1', type: 'edu', iommu: 'dmar0', reset: ['flr'] },
      ],
    };
    const e = error(json);
    assert.equal(e.field, 'devices[2].reset');
    assert.match(e.message, /0000:01:00.0 has it, 0000:01:00.1 does not have it/);
    json.devices[2]!.reset = ['flr', 'bus'];
    config(json);
  });

  it('loads files and reports I/O and syntax errors without throwing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'platform-'));
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify(example));
    assert.ok(!(loadPlatformFile(good) instanceof PlatformConfigError));
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ "memory": ');
    const syntax = loadPlatformFile(bad);
    assert.ok(syntax instanceof PlatformConfigError && syntax.field === 'json');
    const missing = loadPlatformFile(join(dir, 'nope.json'));
    assert.ok(missing instanceof PlatformConfigError && missing.field === 'file');
    // A device never ends and a huge file would fill the heap: both refused before reading.
    const device = loadPlatformFile('/dev/zero');
    assert.ok(device instanceof PlatformConfigError && /not a regular file/.test(device.message));
    const huge = join(dir, 'huge.json');
    writeFileSync(huge, ' '.repeat((1 << 20) + 1));
    const big = loadPlatformFile(huge);
    assert.ok(big instanceof PlatformConfigError && /larger than/.test(big.message));
  });

  it('makes the Machine refuse an invalid typed config', () => {
    const c = { ...defaultPlatform(), memorySize: 123n };
    assert.throws(() => new Machine(c), PlatformConfigError);
  });

  it('reports every problem of a file at once, each naming the file and the JSON path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommufd-emu-platform-'));
    const file = join(dir, 'three-errors.json');
    writeFileSync(
      file,
      JSON.stringify({
        memory: 'lots',
        iommus: [{ name: 'dmar0', levels: 9 }],
        devices: [{ bdf: '0000:00:04.0', type: 'edu', iommu: 'dmar0', colour: 'blue' }],
      }),
    );
    const e = loadPlatformFile(file);
    assert.ok(e instanceof PlatformConfigError);
    assert.deepEqual(
      e.issues.map((issue) => issue.field),
      ['memory', 'iommus[0].levels', 'devices[0].colour'],
    );
    const lines = e.message.split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, new RegExp(`^${file}: memory: expected a u64`));
    assert.match(
      lines[1]!,
      new RegExp(`^${file}: iommus\\[0\\]\\.levels: must be an integer from 2 to 6, got 9$`),
    );
    assert.match(lines[2]!, new RegExp(`^${file}: devices\\[0\\]\\.colour: unknown field$`));
    // The machine's own problems, too, come all at once.
    const semantic = parsePlatform({
      memory: '1MiB',
      devices: [
        { bdf: '0000:00:04.0', type: 'edu', iommu: 'dmar9' },
        { bdf: '0000:00:04.0', type: 'edu', iommu: null },
      ],
    });
    assert.ok(semantic instanceof PlatformConfigError);
    assert.deepEqual(
      semantic.issues.map((issue) => issue.field),
      ['memory', 'devices[0].iommu', 'devices[1].bdf'],
    );
  });

  it('fills defaults that follow the fields the file set', () => {
    const unit = (fields: object) =>
      config({ iommus: [{ name: 'dmar0', ...fields }], devices: [] }).iommus[0]!;
    assert.equal(unit({}).aperture.last, (1n << 48n) - 1n);
    // 3 levels translate 39 bits: the default aperture ends there, and 1 GiB pages stay.
    assert.equal(unit({ levels: 3 }).aperture.last, (1n << 39n) - 1n);
    assert.equal(unit({ levels: 3 }).pgsizeBitmap & (1n << 30n), 1n << 30n);
    // 2 levels: 30 bits, and no 1 GiB pages (they need 3 levels).
    assert.equal(unit({ levels: 2 }).aperture.last, (1n << 30n) - 1n);
    assert.equal(unit({ levels: 2 }).pgsizeBitmap & (1n << 30n), 0n);
    assert.equal(unit({ levels: 6 }).aperture.last, (1n << 64n) - 1n);
  });

  it('reads back the default platform as --print-default prints it', () => {
    assert.deepEqual(config(platformToJson(defaultPlatform())), defaultPlatform());
  });
});
