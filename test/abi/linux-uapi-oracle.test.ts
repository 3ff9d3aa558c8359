/**
 * An outside oracle for include/: the project's include/linux/{iommufd,vfio}.h against the
 * kernel's own uAPI headers as Debian ships them (linux-libc-dev 7.x, unpacked into
 * build/linux-uapi by scripts/fetch-linux-uapi.sh). Both headers are read for the structs, members,
 * macros and enum constants they declare; one C program printing the size, offset, width and
 * signedness of every struct and member both declare, and the value of every integer macro and
 * enum constant both define, is built against each and the outputs must be equal.
 *
 * Without the unpacked headers the test is skipped locally and fails in CI (CI=true).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CHeader, type CMember, isIntegerMacro, parseHeader } from './c-header.ts';
import {
  haveGcc,
  PROBE_END,
  probeMember,
  probeSize,
  probeStart,
  probeValue,
  runProbe,
} from './c-probe.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const OURS = join(ROOT, 'include');
const KERNEL = join(ROOT, 'build', 'linux-uapi', 'usr', 'include');
/** Debian's multiarch directory for <asm/...>, which <linux/types.h> includes. */
const KERNEL_ASM = join(KERNEL, 'x86_64-linux-gnu');
const HEADERS = ['linux/iommufd.h', 'linux/vfio.h'];

const present = existsSync(join(KERNEL, 'linux', 'iommufd.h'));
const inCi = process.env.CI === 'true';
const skip = !haveGcc()
  ? 'no gcc'
  : !present && !inCi
    ? 'the kernel headers are not unpacked: run scripts/fetch-linux-uapi.sh (CI does)'
    : false;

function readAll(dir: string): CHeader[] {
  return HEADERS.map((h) => parseHeader(readFileSync(join(dir, h), 'utf8')));
}

/** A member both sides declare the same way, so the same probe lines apply to both. */
function sameKind(a: CMember, b: CMember): boolean {
  return (
    a.array === b.array &&
    a.flexible === b.flexible &&
    a.bitfield === b.bitfield &&
    a.aggregate === b.aggregate
  );
}

interface Plan {
  source: string;
  /** What one side defines and the other does not, for the report. */
  readonly onlyOurs: string[];
  readonly onlyKernel: string[];
  /** Declared differently (a member array in one, scalar in the other; a macro not integer). */
  readonly shapeDiffs: string[];
  facts: number;
}

function plan(ours: CHeader[], kernel: CHeader[]): Plan {
  const out: Plan = {
    source: probeStart(HEADERS),
    onlyOurs: [],
    onlyKernel: [],
    shapeDiffs: [],
    facts: 0,
  };
  for (let i = 0; i < HEADERS.length; i++) {
    const o = ours[i]!;
    const k = kernel[i]!;
    for (const [tag, members] of o.structs) {
      const theirs = k.structs.get(tag);
      if (theirs === undefined) {
        out.onlyOurs.push(`struct ${tag}`);
        continue;
      }
      const type = `struct ${tag}`;
      out.source += probeSize(type);
      out.facts++;
      for (const m of members) {
        const t = theirs.find((x) => x.name === m.name);
        if (t === undefined) out.onlyOurs.push(`${type}.${m.name}`);
        else if (!sameKind(m, t)) out.shapeDiffs.push(`${type}.${m.name}: declared differently`);
        else {
          out.source += probeMember(type, m.name, m);
          out.facts++;
        }
      }
      for (const t of theirs)
        if (!members.some((m) => m.name === t.name)) out.onlyKernel.push(`${type}.${t.name}`);
    }
    for (const tag of k.structs.keys())
      if (!o.structs.has(tag)) out.onlyKernel.push(`struct ${tag}`);

    const values = (h: CHeader): Set<string> =>
      new Set([
        ...h.enumConstants,
        ...[...h.macros].filter(([, m]) => isIntegerMacro(m)).map(([n]) => n),
      ]);
    const ov = values(o);
    const kv = values(k);
    for (const name of ov) {
      if (kv.has(name)) {
        out.source += probeValue(name);
        out.facts++;
      } else if (k.macros.has(name)) out.shapeDiffs.push(`${name}: not an integer in the kernel's`);
      else out.onlyOurs.push(name);
    }
    for (const name of kv) {
      if (ov.has(name)) continue;
      if (o.macros.has(name)) out.shapeDiffs.push(`${name}: not an integer in ours`);
      else out.onlyKernel.push(name);
    }
  }
  out.source += PROBE_END;
  return out;
}

test('include/linux agrees with the kernel uAPI headers (linux-libc-dev 7.x)', { skip }, (t) => {
  assert.ok(
    present,
    `CI=true and ${KERNEL} is missing: .ci/run must run scripts/fetch-linux-uapi.sh`,
  );
  const version = readFileSync(join(ROOT, 'build', 'linux-uapi', 'VERSION'), 'utf8').trim();
  const ours = readAll(OURS);
  const kernel = readAll(KERNEL);
  const p = plan(ours, kernel);
  const mine = runProbe(p.source, [OURS]);
  const theirs = runProbe(p.source, [KERNEL, KERNEL_ASM]);
  const diffs = [...p.shapeDiffs];
  for (const [key, value] of theirs) {
    const v = mine.get(key);
    if (v !== value) diffs.push(`${key}: ours ${v}, kernel ${value}`);
  }
  t.diagnostic(`${version}: ${p.facts} declarations compared (${theirs.size} values)`);
  t.diagnostic(`only in the kernel's headers (${p.onlyKernel.length}): ${p.onlyKernel.join(' ')}`);
  t.diagnostic(`only in ours (${p.onlyOurs.length}): ${p.onlyOurs.join(' ')}`);
  assert.deepEqual(diffs, [], `include/linux differs from ${version}:\n${diffs.join('\n')}`);
  assert.deepEqual(p.onlyOurs, [], 'include/linux declares what the kernel does not');
  assert.ok(p.facts > 500, `only ${p.facts} declarations compared`);
});
