import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  bytesDifference,
  bytesToHex,
  hexToBytes,
  parseRecord,
  RECORD_FORMAT,
  RECORD_VERSION,
  RecordError,
  recordSteps,
  toHex,
} from './record.ts';

const HEADER = JSON.stringify({
  kind: 'record',
  format: RECORD_FORMAT,
  version: RECORD_VERSION,
  emulator: '0.0.0',
  platform: {},
  enableUnsafeNoiommuMode: false,
  grantedCaps: '0x0',
  program: ['./prog'],
  testbed: '/tmp/x',
});

const CALL = JSON.stringify({
  kind: 'call',
  conn: 1,
  op: 'IOCTL',
  opcode: 5,
  flags: 1,
  seq: 2,
  obj: 1,
  a0: '0x300003b80',
  a1: '0x7ffd0000',
  creds: {},
  payload: '0c000000',
  memory: [],
  fds: [],
  lookups: [],
  reply: { ret: 0, flags: 0, v0: '0x0', v1: '0x0', payload: '' },
});

test('a record reads back as its header and numbered lines, grouped into steps', () => {
  const text = [
    HEADER,
    '{"kind":"log","level":"warn","message":"taint","text":"[warn] taint"}',
    '',
    CALL,
    '{"kind":"syscall","pid":1,"tid":1,"call":"ioctl","detail":"3, X","ret":0,"text":"ioctl(3, X) = 0"}',
    '{"kind":"device-work","device":"0000:00:04.0","work":"dma"}',
    '{"kind":"dma","device":"0000:00:04.0","dir":"read","addr":"0x1000","length":4,"path":"iommu","pa":"0x2000","text":"[dma] ..."}',
    '{"kind":"end","status":0}',
  ].join('\n');
  const record = parseRecord(text);
  assert.equal(record.header.testbed, '/tmp/x');
  assert.deepEqual(
    record.lines.map((l) => [l.line, l.entry.kind]),
    [
      [2, 'log'],
      [4, 'call'],
      [5, 'syscall'],
      [6, 'device-work'],
      [7, 'dma'],
      [8, 'end'],
    ],
  );
  const { boot, steps } = recordSteps(record);
  assert.deepEqual(
    boot.map((e) => e.text),
    ['[warn] taint'],
  );
  assert.deepEqual(
    steps.map((s) => [s.line, s.entry.kind, s.events.map((e) => e.kind)]),
    [
      [4, 'call', ['syscall']],
      [6, 'device-work', ['dma']],
      [8, 'end', []],
    ],
  );
});

test('what is not a record of this version is refused with its line', () => {
  assert.throws(() => parseRecord(''), RecordError);
  assert.throws(() => parseRecord(CALL), /line 1: not an iommufd-emu record/);
  assert.throws(
    () => parseRecord(HEADER.replace(`"version":${RECORD_VERSION}`, '"version":99')),
    /line 1: record version 99/,
  );
  assert.throws(
    () => parseRecord(`${HEADER}\n{"kind":"nonsense"}`),
    /line 2: unknown kind "nonsense"/,
  );
  assert.throws(() => parseRecord(`${HEADER}\n{oops`), /line 2: not JSON/);
  assert.throws(() => parseRecord(`${HEADER}\n[1]`), /line 2: not a JSON object/);
});

test('u64 and bytes are written as the trace writes them', () => {
  assert.equal(toHex(0x2000000n), '0x2000000');
  assert.equal(toHex(-1), '0xffffffffffffffff');
  assert.equal(bytesToHex(new Uint8Array([0x0c, 0, 0xff])), '0c00ff');
  assert.deepEqual([...hexToBytes('0c00ff')], [0x0c, 0, 0xff]);
});

test('two byte strings are compared from their first difference', () => {
  assert.equal(bytesDifference('0c00', '0c00'), undefined);
  assert.equal(
    bytesDifference('0c000000', '0c00ff00'),
    'at byte 2 of 4: recorded 0000, replayed ff00',
  );
  assert.equal(bytesDifference('0c00', ''), 'at byte 0 of 2: recorded 0c00, replayed nothing');
  assert.match(
    bytesDifference('00'.repeat(40), `${'00'.repeat(39)}01`)!,
    /^at byte 39 of 40: recorded 00, replayed 01$/,
  );
  assert.match(
    bytesDifference('ab'.repeat(40), 'cd'.repeat(40))!,
    /recorded (ab){16}\.\.\., replayed (cd){16}\.\.\.$/,
  );
});
