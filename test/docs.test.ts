/**
 * The documents stand alone: a user of the package has README.md and docs/, nothing beside the
 * repository. No reference may leave it (the project's private notes, an absolute path of this
 * machine), every relative link must land on a file of the repository, and every docs/*.md named
 * must exist.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { platformJsonSchema } from '../src/platform/platform-schema.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function documents(): string[] {
  const docs = fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => path.join('docs', f));
  return ['README.md', ...docs];
}

/** Each line of each document, with where it is. */
function lines(): { where: string; text: string; file: string }[] {
  return documents().flatMap((file) =>
    fs
      .readFileSync(path.join(ROOT, file), 'utf8')
      .split('\n')
      .map((text, i) => ({ where: `${file}:${i + 1}`, text, file })),
  );
}

describe('the documents stand alone', () => {
  test('no reference to the shared notes or to a path of this machine', () => {
    const outside = lines().filter(({ text }) =>
      /(^|[\s`(])(\.\.\/)+shared\b|\bshared\/spec\b|(^|[\s`("'])\/(work|home\/\w+)\//.test(text),
    );
    assert.deepEqual(
      outside.map(({ where, text }) => `${where}: ${text.trim()}`),
      [],
    );
  });

  test('every relative link lands on a file inside the repository', () => {
    const broken: string[] = [];
    for (const { where, text, file } of lines()) {
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!.split('#')[0]!;
        if (target === '' || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
        const resolved = path.resolve(ROOT, path.dirname(file), target);
        if (!resolved.startsWith(`${ROOT}${path.sep}`) || !fs.existsSync(resolved))
          broken.push(`${where}: ${target}`);
      }
    }
    assert.deepEqual(broken, []);
  });

  test('every docs/*.md named exists', () => {
    const missing: string[] = [];
    for (const { where, text } of lines()) {
      for (const m of text.matchAll(/\bdocs\/([\w.-]+\.md)\b/g)) {
        if (!fs.existsSync(path.join(ROOT, 'docs', m[1]!))) missing.push(`${where}: docs/${m[1]}`);
      }
    }
    assert.deepEqual(missing, []);
  });

  test('docs/platform.schema.json is the JSON Schema the platform file schema emits', () => {
    const committed = JSON.parse(
      fs.readFileSync(path.join(ROOT, 'docs', 'platform.schema.json'), 'utf8'),
    ) as unknown;
    assert.deepEqual(
      committed,
      platformJsonSchema(),
      'regenerate it: iommufd-emu platform --print-schema > docs/platform.schema.json',
    );
  });
});
