/**
 * Record and replay (`exec --record FILE`, `iommufd-emu replay FILE`): real programs recorded
 * through the shim replay clean against a fresh emulator with no program, and a record whose
 * result, written-back bytes or trace line was edited is reported at that call, decoded.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RecordReplay, replayRecord } from '../src/server/replay.ts';
import { type CallLine, parseRecord, RecordError } from '../src/trace/record.ts';
import { escapeLine } from '../src/trace/writer.ts';
import { runCli } from './child.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CFLAGS = ['-std=gnu11', '-O1', '-Wall', '-I', join(ROOT, 'include')];
const DEMO_FLAGS = ['--enable-unsafe-noiommu-mode', '--cap', 'CAP_SYS_RAWIO'];

const gcc = spawnSync('gcc', ['--version']).status === 0;
let dir = '';

function build(source: string, name: string): string {
  const binary = join(dir, name);
  const r = spawnSync('gcc', [...CFLAGS, '-o', binary, source], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${source} does not compile:\n${r.stdout}${r.stderr}`);
  return binary;
}

/** Records `binary` under exec with `flags`; returns the record's path. */
async function record(binary: string, flags: readonly string[], name: string): Promise<string> {
  const file = join(dir, `${name}.rec`);
  const trace = join(dir, `${name}.trace`);
  const r = await runCli(['exec', ...flags, '--trace', trace, '--record', file, '--', binary]);
  assert.equal(r.code, 0, `exec --record ${name}:\n${r.stdout}\n${r.stderr}`);
  return file;
}

/** The record's lines as objects, and a way to write them back edited. */
function lines(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function writeLines(file: string, rows: readonly Record<string, unknown>[]): void {
  writeFileSync(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
}

/** The index of the first call line whose trace line (the next line) matches `pattern`. */
function callTraced(rows: readonly Record<string, unknown>[], pattern: RegExp): number {
  const i = rows.findIndex(
    (row, k) =>
      row.kind === 'call' &&
      rows[k + 1]?.kind === 'syscall' &&
      pattern.test(String(rows[k + 1]?.text)),
  );
  assert.ok(i >= 0, `no call traced as ${pattern}`);
  return i;
}

describe('record and replay', { skip: gcc ? false : 'gcc is not installed' }, () => {
  let demoRecord = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'iommufd-emu-record-'));
    const demo = build(join(ROOT, 'examples', 'noiommu-edu-dma.c'), 'demo');
    demoRecord = await record(demo, DEMO_FLAGS, 'demo');
  });

  after(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  test('the bundled example replays clean, and the record holds its calls, DMA and device work', async () => {
    const r = await runCli(['replay', demoRecord]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /replay of .*demo\.rec: \d+ requests and \d+ events matched the record/);
    const rows = lines(demoRecord);
    assert.equal(rows[0]?.kind, 'record');
    assert.equal((rows[0] as { enableUnsafeNoiommuMode?: unknown }).enableUnsafeNoiommuMode, true);
    const texts = rows.map((row) => String(row.text ?? ''));
    assert.ok(texts.some((t) => /^ioctl\(\d+<\/dev\/iommu>, IOMMU_IOAS_NOIOMMU_GET_PA, /.test(t)));
    assert.ok(texts.some((t) => /^\[dma\] 0000:00:06\.0 reads 256 bytes at PA 0x/.test(t)));
    assert.ok(rows.some((row) => row.kind === 'device-work' && row.work === 'dma'));
    assert.equal(rows.at(-1)?.kind, 'end');
    // One format: the record's event lines are the trace, line for line.
    const trace = readFileSync(demoRecord.replace(/\.rec$/, '.trace'), 'utf8');
    const recorded = rows.flatMap((row) => (typeof row.text === 'string' ? [row.text] : []));
    assert.deepEqual(recorded.map(escapeLine), trace.split('\n').slice(0, -1));
  });

  test('an edited result is reported at its call, decoded', async () => {
    const rows = lines(demoRecord);
    const i = callTraced(rows, /IOMMU_IOAS_ALLOC/);
    const call = rows[i] as unknown as CallLine;
    rows[i] = { ...call, reply: { ...call.reply!, ret: -17 } };
    const edited = join(dir, 'edited-result.rec');
    writeLines(edited, rows);
    const r = await runCli(['replay', edited]);
    assert.equal(r.code, 99, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `diverged at line ${i + 1}: the result differs: recorded -1 EEXIST \\(File exists\\), replayed 0`,
      ),
    );
    assert.match(
      r.stderr,
      /recorded: ioctl\(\d+<\/dev\/iommu>, IOMMU_IOAS_ALLOC, .* = -1 EEXIST \(File exists\)$/m,
    );
    assert.match(
      r.stderr,
      /replayed: ioctl\(\d+<\/dev\/iommu>, IOMMU_IOAS_ALLOC, \{size=12.* = 0$/m,
    );
  });

  test('an edited trace line and edited written-back bytes are reported where they are', async () => {
    const rows = lines(demoRecord);
    const i = callTraced(rows, /IOMMU_IOAS_NOIOMMU_GET_PA/);
    const traced = rows[i + 1]!;
    rows[i + 1] = { ...traced, ret: -22 };
    const editedTrace = join(dir, 'edited-trace.rec');
    writeLines(editedTrace, rows);
    const r = await runCli(['replay', '--error-exitcode', '3', editedTrace]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `diverged at line ${i + 2}: the trace line differs \\(ret: recorded -22, replayed 0\\)`,
      ),
    );
    assert.match(r.stderr, /recorded: ioctl\(\d+<\/dev\/iommu>, IOMMU_IOAS_NOIOMMU_GET_PA, /);

    // The PA the kernel wrote back: its last byte changed in the reply's window.
    const again = lines(demoRecord);
    const call = again[i] as unknown as CallLine;
    const payload = call.reply!.payload;
    const flipped = `${payload.slice(0, -2)}${payload.endsWith('ff') ? '00' : 'ff'}`;
    again[i] = { ...call, reply: { ...call.reply!, payload: flipped } };
    const editedBytes = join(dir, 'edited-bytes.rec');
    writeLines(editedBytes, again);
    const b = await runCli(['replay', editedBytes]);
    assert.equal(b.code, 99, b.stderr);
    assert.match(
      b.stderr,
      new RegExp(
        `diverged at line ${i + 1}: what the kernel wrote back differs at byte \\d+ of \\d+`,
      ),
    );
    assert.match(b.stderr, /replayed: ioctl\(.*IOMMU_IOAS_NOIOMMU_GET_PA, .*=> \{.*out_phys=0x/);
  });

  test('device work completes where the record says: without its mark, the poll that saw it diverges', async () => {
    const rows = lines(demoRecord);
    const i = rows.findIndex((row) => row.kind === 'device-work');
    const edited = join(dir, 'no-device-work.rec');
    writeLines(edited, [...rows.slice(0, i), ...rows.slice(i + 1)]);
    const result = await replayRecord(parseRecord(readFileSync(edited, 'utf8')));
    assert.equal(result.ok, false);
    if (result.ok) return;
    // The DMA event the work published is missing where the record has it.
    assert.equal(result.divergence.line, i + 1);
    assert.match(result.divergence.what, /the dma event differs|did not produce/);
  });

  test("a device's DMA carries the recorded program's bytes: a changed byte read comes back changed", async () => {
    const rows = lines(demoRecord);
    const works = rows.flatMap((row, i) => (row.kind === 'device-work' ? [i] : []));
    assert.equal(works.length, 2, 'the demo copies page 0 into the device, then out to page 1');
    const [toDevice, toRam] = works as [number, number];
    type Access = { op: string; bytes: string };
    const readAccess = (rows[toDevice]!.memory as Access[]).find((m) => m.op === 'read')!;
    const written = (rows[toRam]!.memory as Access[]).find((m) => m.op === 'write')!;
    assert.equal(written.bytes, readAccess.bytes, 'page 1 receives the bytes read from page 0');
    readAccess.bytes = `ff${readAccess.bytes.slice(2)}`;
    const edited = join(dir, 'edited-dma.rec');
    writeLines(edited, rows);
    const r = await runCli(['replay', edited]);
    assert.equal(r.code, 99, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `diverged at line ${toRam + 1}: the bytes written to the program's memory at 0x[0-9a-f]+ differ at byte 0 of 256: recorded ${written.bytes.slice(0, 8)}`,
      ),
    );
  });

  test('a replay steps forward to a line and keeps its emulator there (RecordReplay)', async () => {
    const rec = parseRecord(readFileSync(demoRecord, 'utf8'));
    const rows = lines(demoRecord);
    const alloc = callTraced(rows, /IOMMU_IOAS_ALLOC/) + 2;
    const seen: number[] = [];
    const replay = RecordReplay.open(rec);
    assert.ok(typeof replay !== 'string', String(replay));
    try {
      const first = await replay.run({ untilLine: alloc, onLine: (line) => seen.push(line) });
      assert.equal(first.ok, true);
      assert.equal(replay.position, alloc);
      assert.equal(seen.at(-1), alloc);
      // /dev/iommu is open and holds the IOAS just allocated; at the end every file is closed.
      assert.equal(replay.kernel.iommufd.contexts.size, 1);
      const rest = await replay.run();
      assert.equal(rest.ok, true, JSON.stringify(rest));
      assert.equal(replay.position, rows.length);
      assert.equal(replay.kernel.iommufd.contexts.size, 0);
    } finally {
      replay.close();
    }
  });

  // vfio_group_noiommu reads /proc/self/pagemap (the host's flags come from the record).
  for (const name of ['noiommu_get_pa', 'dma_iommu', 'vfio_group_noiommu']) {
    test(`the conformance program ${name} replays clean`, async () => {
      const source = join(ROOT, 'test', 'conformance', `${name}.c`);
      const first = readFileSync(source, 'utf8').split('\n', 1)[0] ?? '';
      const flags = /^\/\/ exec-args:(.*)$/.exec(first)?.[1]?.trim().split(/\s+/) ?? [];
      const file = await record(build(source, name), flags, name);
      const r = await runCli(['replay', file]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /matched the record/);
    });
  }

  test('serve --record records every program it serves; the record replays clean', async () => {
    const file = join(dir, 'serve.rec');
    const demo = join(dir, 'demo');
    const script = `${demo} > /dev/null && ${demo} > /dev/null`;
    const r = await runCli([
      'serve',
      ...DEMO_FLAGS,
      '--record',
      file,
      '--',
      '/bin/sh',
      '-c',
      script,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const rows = lines(file);
    assert.deepEqual((rows[0] as { program?: unknown }).program, ['/bin/sh', '-c', script]);
    const pids = new Set(
      rows.flatMap((row) => (row.kind === 'syscall' && row.call === 'ioctl' ? [row.pid] : [])),
    );
    assert.equal(pids.size, 2, 'both runs of the demo are in the record');
    const replay = await runCli(['replay', file]);
    assert.equal(replay.code, 0, replay.stderr);
  });

  test('a file that is not a record is refused with its line, and --record - is refused (exit 125)', async () => {
    const bad = join(dir, 'bad.rec');
    writeFileSync(bad, '{"kind":"syscall","text":"x"}\n');
    const r = await runCli(['replay', bad]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /^iommufd-emu: .*bad\.rec: line 1: not an iommufd-emu record/m);
    assert.throws(
      () => parseRecord('{"kind":"record","format":"iommufd-emu-record","version":9}'),
      RecordError,
    );
    const dash = await runCli(['exec', '--record', '-', '--', '/bin/true']);
    assert.equal(dash.code, 125);
    assert.match(dash.stderr, /--record -: a record goes to a file/);
  });
});
