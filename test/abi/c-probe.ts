/**
 * Builds and runs a small C program that prints `key value` lines (sizes, offsets, constants) as
 * the compiler sees them through the given include directories.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CMember } from './c-header.ts';

/** Compiles `source` with gcc against `includeDirs`, runs it, and returns its lines by key. */
export function runProbe(source: string, includeDirs: readonly string[]): Map<string, bigint> {
  const dir = mkdtempSync(join(tmpdir(), 'abi-probe-'));
  try {
    const file = join(dir, 'probe.c');
    const binary = join(dir, 'probe');
    writeFileSync(file, source);
    const flags = ['-std=gnu11', '-w', ...includeDirs.flatMap((d) => ['-I', d])];
    const cc = spawnSync('gcc', [...flags, '-o', binary, file], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`probe does not compile:\n${cc.stderr}`);
    const run = spawnSync(binary, [], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`probe failed: ${run.stderr}`);
    const out = new Map<string, bigint>();
    for (const line of run.stdout.split('\n')) {
      const at = line.lastIndexOf(' ');
      if (at > 0) out.set(line.slice(0, at), BigInt(line.slice(at + 1)));
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function haveGcc(): boolean {
  return spawnSync('gcc', ['--version']).status === 0;
}

/** The C source that opens a probe: the headers, then `main` (close it with PROBE_END). */
export function probeStart(headers: readonly string[]): string {
  return [
    '#include <stdio.h>',
    '#include <stddef.h>',
    ...headers.map((h) => `#include <${h}>`),
    '#define FIELD_OF(s, f) (((s *)0)->f)',
    'int main(void) {',
    '',
  ].join('\n');
}

export const PROBE_END = 'return 0;\n}\n';

function print(key: string, expr: string): string {
  return `  printf("%s %llu\\n", "${key}", (unsigned long long)(${expr}));\n`;
}

/** Lines for sizeof(type), e.g. type "struct iommu_ioas_map". */
export function probeSize(type: string): string {
  return print(`sizeof ${type}`, `sizeof(${type})`);
}

/**
 * Lines for one member: `offsetof`, `sizeof` and `signed` (1 for a signed integer) as far as C
 * allows them for that kind of member. `designator` may index an array: "__reserved[1]".
 */
export function probeMember(type: string, designator: string, member: CMember): string {
  if (member.bitfield) return '';
  const key = `${type}.${designator}`;
  let out = print(`offsetof ${key}`, `offsetof(${type}, ${designator})`);
  const indexed = designator.includes('[');
  if (member.flexible && !indexed) return out;
  out += print(`sizeof ${key}`, `sizeof(FIELD_OF(${type}, ${designator}))`);
  if ((member.array && !indexed) || member.aggregate) return out;
  out += print(`signed ${key}`, `(__typeof__(FIELD_OF(${type}, ${designator})))-1 < 0`);
  return out;
}

/** A line for the value of a macro or enum constant, as unsigned long long. */
export function probeValue(name: string): string {
  return print(`value ${name}`, name);
}
