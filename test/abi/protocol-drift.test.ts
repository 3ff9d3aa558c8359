/**
 * The shim protocol as src/server/protocol.ts declares it against native/shim/protocol.h: a C
 * program including protocol.h prints every constant and the size, offset, width and signedness
 * of every field of its structs; each must equal the TS side, and each constant and struct
 * protocol.h defines must have a TS counterpart. The codec is checked against the TS tables.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as p from '../../src/server/protocol.ts';
import {
  decodeStruct,
  encodeStruct,
  type FieldTable,
  type StructSpec,
} from '../../src/uapi/struct.ts';
import { isIntegerMacro, parseHeader } from './c-header.ts';
import {
  haveGcc,
  PROBE_END,
  probeMember,
  probeSize,
  probeStart,
  probeValue,
  runProbe,
} from './c-probe.ts';
import { FIELD_WIDTH } from './ts-tables.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SHIM_DIR = join(ROOT, 'native', 'shim');

const STRUCTS: readonly StructSpec<FieldTable>[] = [
  p.emuReq,
  p.emuRep,
  p.emuCreds,
  p.emuSeg,
  p.emuMmapReq,
  p.emuNewfd,
  p.emuNote,
  p.emuPollEnt,
];

/** Each protocol.h constant and the TS value that stands for it. */
function constants(): Map<string, bigint> {
  const out = new Map<string, bigint>([
    ['EMU_PROTO_VERSION', BigInt(p.PROTOCOL_VERSION)],
    ['EMU_FD_UNKNOWN', BigInt(p.FD_UNKNOWN)],
    ['EMU_WINDOW_MIN', BigInt(p.WINDOW_MIN)],
    ['EMU_WINDOW_MAX', BigInt(p.WINDOW_MAX)],
    ['EMU_RW_MAX', BigInt(p.RW_MAX)],
    ['EMU_MSG_MAX', BigInt(p.MESSAGE_MAX)],
    ['EMU_MMAP_FILE', BigInt(p.MmapKind.FILE)],
    ['EMU_MMAP_TRAPPED', BigInt(p.MmapKind.TRAPPED)],
    ['SEEK_SET', BigInt(p.Whence.SET)],
    ['SEEK_CUR', BigInt(p.Whence.CUR)],
    ['SEEK_END', BigInt(p.Whence.END)],
  ]);
  for (const [k, v] of Object.entries(p.Op)) out.set(`EMU_OP_${k}`, BigInt(v));
  for (const [k, v] of Object.entries(p.ReqFlag)) out.set(`EMU_REQ_${k}`, BigInt(v));
  for (const [k, v] of Object.entries(p.ReplyFlag)) out.set(`EMU_REP_${k}`, BigInt(v));
  for (const [k, v] of Object.entries(p.HelloFlag)) out.set(`EMU_HELLO_${k}`, BigInt(v));
  for (const [k, v] of Object.entries(p.NoteKind)) out.set(`EMU_NOTE_${k}`, BigInt(v));
  for (const [k, v] of Object.entries(p.DupCall)) out.set(`EMU_DUP_${k}`, BigInt(v));
  for (const [v, k] of Object.entries(p.SyncCall))
    out.set(`EMU_SYNC_${k.toUpperCase()}`, BigInt(v));
  return out;
}

test('protocol.ts matches native/shim/protocol.h', { skip: !haveGcc() && 'no gcc' }, () => {
  const header = parseHeader(readFileSync(join(SHIM_DIR, 'protocol.h'), 'utf8'));
  const diffs: string[] = [];
  const expected = new Map<string, bigint>();
  let source = probeStart(['protocol.h', 'unistd.h']);

  for (const spec of STRUCTS) {
    const type = `struct ${spec.name}`;
    const members = header.structs.get(spec.name) ?? [];
    if (members.length === 0) diffs.push(`${type}: not in protocol.h`);
    source += probeSize(type);
    expected.set(`sizeof ${type}`, BigInt(spec.size));
    for (const [field, f] of Object.entries(spec.fields)) {
      const member = members.find((m) => m.name === field);
      if (member === undefined) {
        diffs.push(`${type}: no member ${field}`);
        continue;
      }
      source += probeMember(type, field, member);
      expected.set(`offsetof ${type}.${field}`, BigInt(f.offset));
      expected.set(`sizeof ${type}.${field}`, BigInt(FIELD_WIDTH[f.type]));
      expected.set(`signed ${type}.${field}`, f.type === 's32' ? 1n : 0n);
    }
    for (const m of members)
      if (spec.fields[m.name] === undefined) diffs.push(`${type}.${m.name}: not in protocol.ts`);
  }
  for (const tag of header.structs.keys())
    if (!STRUCTS.some((s) => s.name === tag)) diffs.push(`struct ${tag}: no table in protocol.ts`);

  const tsConstants = constants();
  for (const [name, value] of tsConstants) {
    source += probeValue(name);
    expected.set(`value ${name}`, BigInt.asUintN(64, value));
  }
  const cNames = [
    ...header.enumConstants,
    ...[...header.macros].filter(([, m]) => isIntegerMacro(m)).map(([n]) => n),
  ];
  for (const name of cNames)
    if (!tsConstants.has(name)) diffs.push(`${name}: protocol.h defines it, protocol.ts does not`);

  const measured = runProbe(source + PROBE_END, [SHIM_DIR]);
  for (const [key, want] of expected) {
    const got = measured.get(key);
    if (got === undefined) diffs.push(`${key}: not printed by the probe`);
    else if (got !== want) diffs.push(`${key}: TS ${want}, C ${got}`);
  }
  assert.deepEqual(diffs, [], `protocol.ts differs from protocol.h:\n${diffs.join('\n')}`);
});

test('the codec puts every field where the tables say', () => {
  const creds = {
    pid: 11,
    tid: 12,
    uid: 13,
    euid: 14,
    gid: 15,
    egid: 16,
    capEff: 0x1700000018n,
    memlock: 0x19n,
    mmCookie: 0x20n,
  };
  const frame = p.encodeRequest({
    op: 0x21,
    flags: 0x22,
    seq: 0x23,
    obj: 0x24,
    a0: 0x25n,
    a1: 0x26n,
    creds,
    payload: new Uint8Array([1, 2]),
  });
  assert.deepEqual(decodeStruct(p.emuReq, frame), {
    len: p.HEADER_BYTES + p.CREDS_BYTES + 2,
    op: 0x21,
    flags: 0x22,
    seq: 0x23,
    obj: 0x24,
    a0: 0x25n,
    a1: 0x26n,
  });
  assert.deepEqual(decodeStruct(p.emuCreds, frame.subarray(p.HEADER_BYTES)), {
    pid: 11,
    tid: 12,
    uid: 13,
    euid: 14,
    gid: 15,
    egid: 16,
    cap_eff_lo: 0x18,
    cap_eff_hi: 0x17,
    memlock: 0x19n,
    mm_cookie: 0x20n,
  });
  const req = encodeStruct(p.emuReq, { len: 0, op: 5, flags: 1, seq: 7, obj: 9, a0: 3n, a1: 4n });
  const full = new Uint8Array(p.HEADER_BYTES + p.CREDS_BYTES);
  full.set(req);
  full.set(
    encodeStruct(p.emuCreds, { pid: 1, cap_eff_lo: 2, cap_eff_hi: 1, mm_cookie: 8n }),
    p.HEADER_BYTES,
  );
  new DataView(full.buffer).setUint32(0, full.byteLength, true);
  const decoded = p.decodeRequest(full);
  assert.ok(typeof decoded !== 'string', String(decoded));
  assert.equal(decoded.op, 5);
  assert.equal(decoded.seq, 7);
  assert.equal(decoded.obj, 9);
  assert.equal(decoded.a1, 4n);
  assert.equal(decoded.creds.capEff, 0x100000002n);
  assert.equal(decoded.creds.mmCookie, 8n);

  const reply = p.encodeReply({ op: 5, seq: 7, ret: -22, flags: 1, v0: 0x30n, v1: 0x31n });
  assert.deepEqual(decodeStruct(p.emuRep, reply), {
    len: p.HEADER_BYTES,
    op: 5,
    flags: 1,
    seq: 7,
    ret: -22,
    v0: 0x30n,
    v1: 0x31n,
  });
  const segs = p.encodeSegments([{ offset: 0x40, data: new Uint8Array(3) }]);
  assert.deepEqual(decodeStruct(p.emuSeg, segs), { off: 0x40, len: 3 });
  const mmap = encodeStruct(p.emuMmapReq, { prot: 3, flags: 1 });
  assert.deepEqual(p.decodeMmapRequest(mmap), { prot: 3, flags: 1 });
  const poll = encodeStruct(p.emuPollEnt, { obj: 6, events: 0x41 });
  assert.deepEqual(p.decodePollEntries(poll), [{ obj: 6, events: 0x41 }]);
  const newfd = new Uint8Array([...encodeStruct(p.emuNewfd, { fd: 7, obj: 0x42 }), 9, 8]);
  assert.deepEqual(p.splitNewfd(newfd), { fd: 7, obj: 0x42, window: new Uint8Array([9, 8]) });
});
