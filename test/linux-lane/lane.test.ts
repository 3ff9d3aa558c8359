/**
 * The Linux lane's own logic, without a VM: reading the guest's serial log and the programs' TAP
 * output, comparing runs case by case, and the expectations file's consistency with the
 * conformance programs, the variants and docs/decisions.md.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cliArgv } from '../cli-runner.ts';
import {
  compareRuns,
  EXIT_STATUS,
  type Expectations,
  judge,
  loadExpectations,
  WHOLE_PROGRAM,
} from './compare.ts';
import { emulatorCommand, runUnderEmulator } from './programs.ts';
import { parseGuestLog, parseTap } from './results.ts';
import { readProgramInfo, VARIANTS } from './variants.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const SERIAL = [
  '@@lane begin vfio_info',
  'ok 1 - region_info',
  '#   test/conformance/vfio_info.c:99: expected 0x1, got 0x9',
  'not ok 2 - irq_info_req # got test/conformance/vfio_info.c:99: expected 0x1, got 0x9',
  'ok 3 - hugepages # SKIP no hugepages',
  '1..3',
  '@@lane end vfio_info exit=1',
  '@@lane begin sigkill',
  'ok 1 - first',
  '@@lane end sigkill exit=142',
  '@@lane begin hangs',
  'ok 1 - first',
].join('\r\n');

describe('reading results', () => {
  test('TAP lines become pass, fail and skip with their messages', () => {
    const cases = parseTap('ok 1 - a\nnot ok 2 - b # got x.c:1: bad\nok 3 - c # SKIP why\nnoise\n');
    assert.deepEqual(
      [...cases],
      [
        ['a', { outcome: 'pass', detail: '' }],
        ['b', { outcome: 'fail', detail: 'x.c:1: bad' }],
        ['c', { outcome: 'skip', detail: 'why' }],
      ],
    );
  });

  test('the serial log splits into programs; an alarm is a timeout; a cut-off run is unfinished', () => {
    const log = parseGuestLog(SERIAL);
    assert.equal(log.done, false);
    assert.deepEqual([...log.runs.keys()], ['vfio_info', 'sigkill', 'hangs']);
    assert.deepEqual(log.runs.get('vfio_info')!.end, { kind: 'exited', status: 1 });
    assert.equal(log.runs.get('vfio_info')!.cases.size, 3);
    assert.deepEqual(log.runs.get('sigkill')!.end, { kind: 'timeout' });
    assert.deepEqual(log.runs.get('hangs')!.end, { kind: 'unfinished' });
    assert.equal(parseGuestLog(`${SERIAL}\n@@lane end hangs exit=0\n@@lane done\n`).done, true);
  });
});

describe('comparing runs', () => {
  const linux = parseGuestLog(SERIAL).runs;
  const emulatorOf = (tap: string, status = 0) => ({
    cases: parseTap(tap),
    end: { kind: 'exited', status } as const,
    output: tap,
  });

  test('a case that differs is one difference; equal cases are none', () => {
    const emu = emulatorOf(
      'ok 1 - region_info\nok 2 - irq_info_req\nok 3 - hugepages # SKIP why\n',
      0,
    );
    const diffs = compareRuns('mixed-off', 'vfio_info', linux.get('vfio_info'), emu);
    assert.deepEqual(
      diffs.map((d) => [d.testCase, d.linux, d.emulator]),
      [
        ['irq_info_req', 'fail: test/conformance/vfio_info.c:99: expected 0x1, got 0x9', 'pass'],
        ['hugepages', 'skip: no hugepages', 'skip: why'],
      ],
    );
  });

  test('cases only one side reached, a program Linux never ran, and a bare exit difference', () => {
    const emu = emulatorOf('ok 1 - first\nok 2 - second\n');
    assert.deepEqual(
      compareRuns('v', 'sigkill', linux.get('sigkill'), emu).map((d) => [
        d.testCase,
        d.linux,
        d.emulator,
      ]),
      [['second', 'missing', 'pass']],
    );
    assert.deepEqual(
      compareRuns('v', 'gone', undefined, emu).map((d) => d.testCase),
      [WHOLE_PROGRAM],
    );
    const leaked = emulatorOf('ok 1 - first\n', 3);
    const same = { ...leaked, end: { kind: 'exited', status: 0 } as const };
    assert.deepEqual(
      compareRuns('v', 'p', same, leaked).map((d) => [d.testCase, d.linux, d.emulator]),
      [[EXIT_STATUS, 'exit 0', 'exit 3']],
    );
  });

  test('expectations explain matching differences only, and unmatched ones are reported', () => {
    const expectations: Expectations = {
      differences: [
        {
          kind: 'known',
          variant: '*',
          program: 'vfio_info',
          case: 'irq_info_req',
          reason: 'r',
          decision: 1,
        },
        {
          kind: 'artefact',
          variant: 'fail-nth',
          program: 'vfio_info',
          case: '*',
          reason: 'r',
          decision: 1,
        },
        { kind: 'known', variant: '*', program: 'other', case: '*', reason: 'r', decision: 1 },
      ],
      notRun: [],
    };
    const emu = emulatorOf(
      'ok 1 - region_info\nok 2 - irq_info_req\nok 3 - hugepages # SKIP why\n',
    );
    const v = judge(
      compareRuns('mixed-off', 'vfio_info', linux.get('vfio_info'), emu),
      expectations,
    );
    assert.deepEqual(
      v.explained.map((e) => e.difference.testCase),
      ['irq_info_req'],
    );
    assert.deepEqual(
      v.unexplained.map((d) => d.testCase),
      ['hugepages'],
    );
    assert.deepEqual(
      v.unused.map((e) => e.program),
      ['vfio_info', 'other'],
    );
  });
});

describe('running a program under the emulator', () => {
  const mixed = join(ROOT, 'test', 'linux-lane', 'platforms', 'mixed.json');

  test("starts the CLI the tests start, on the variant's platform file, not the program's", async () => {
    const argv = await emulatorCommand('/lane/bin/prog', mixed, [
      '--platform',
      'examples/other.json',
      '--enable-unsafe-noiommu-mode',
    ]);
    assert.deepEqual(argv, [
      ...(await cliArgv()),
      'exec',
      '--platform',
      mixed,
      '--enable-unsafe-noiommu-mode',
      '--',
      '/lane/bin/prog',
    ]);
    assert.equal(argv[0], process.execPath);
    assert.match(argv[1]!, /\/build\/test-cli\/cli-[0-9a-f]+\.mjs$/);
  });

  test("runs a program on the lane's machine and reads its cases and exit status", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lane-program-'));
    try {
      // A program that reports, as TAP, which no-IOMMU edu it sees: the lane's (behind a root
      // port at 11:00.0), not the default platform's (00:06.0).
      const program = join(dir, 'prog');
      writeFileSync(
        program,
        [
          '#!/bin/sh',
          'echo "ok 1 - started"',
          'if [ -e /sys/bus/pci/devices/0000:11:00.0 ] && [ ! -e /sys/bus/pci/devices/0000:00:06.0 ]',
          'then echo "ok 2 - lane_edu"',
          'else echo "not ok 2 - lane_edu # got $(ls /sys/bus/pci/devices)"',
          'fi',
          'exit 3',
          '',
        ].join('\n'),
        { mode: 0o755 },
      );
      const run = await runUnderEmulator(ROOT, program, mixed, [
        '--platform',
        'no-such-platform.json',
        '--enable-unsafe-noiommu-mode',
      ]);
      assert.deepEqual(
        [...run.cases],
        [
          ['started', { outcome: 'pass', detail: '' }],
          ['lane_edu', { outcome: 'pass', detail: '' }],
        ],
        run.output,
      );
      assert.deepEqual(run.end, { kind: 'exited', status: 3 }, run.output);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('test/linux-lane/expectations.json', () => {
  const expectations = loadExpectations(join(ROOT, 'test', 'linux-lane', 'expectations.json'));
  const decisions = readFileSync(join(ROOT, 'docs', 'decisions.md'), 'utf8');
  const conformance = join(ROOT, 'test', 'conformance');

  test('every entry names a conformance program, a variant and a docs/decisions.md entry', () => {
    const variants = new Set(['*', ...VARIANTS.map((v) => v.name)]);
    for (const e of [...expectations.differences, ...expectations.notRun]) {
      assert.ok(
        existsSync(join(conformance, `${e.program}.c`)),
        `no test/conformance/${e.program}.c`,
      );
      assert.match(
        decisions,
        new RegExp(`^${e.decision}\\. \\*\\*`, 'm'),
        `no decisions.md entry ${e.decision}`,
      );
    }
    for (const e of expectations.differences)
      assert.ok(variants.has(e.variant), `no variant ${e.variant}`);
  });

  test('every conformance program runs in some variant or says why it cannot', () => {
    const notRun = new Set(expectations.notRun.map((n) => n.program));
    for (const name of listPrograms(conformance)) {
      const info = readProgramInfo(conformance, name);
      assert.ok(notRun.has(name) || VARIANTS.some((v) => v.selects(info)), `${name} runs nowhere`);
    }
  });
});

function listPrograms(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.c'))
    .map((f) => f.slice(0, -2));
}
