/**
 * Unit tests of the shim's pure parts, compiled C programs that need no server: the MMIO trap's
 * x86-64 instruction decoder (native/shim/test/x86_decode.c, a table of instruction bytes and
 * what they must decode to).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const NATIVE = path.join(ROOT, 'native');

describe('shim units', () => {
  before(() => {
    const made = spawnSync('make', ['-s', '-C', NATIVE, 'tests'], { encoding: 'utf8' });
    assert.equal(made.status, 0, `make -C native tests failed:\n${made.stdout}${made.stderr}`);
  });

  test('x86-64 decoder: mov/movzx/movsx widths, registers, immediates; vector and string moves refused', {
    skip: process.arch !== 'x64' && 'the MMIO trap decodes x86-64 only',
  }, () => {
    const run = spawnSync(path.join(NATIVE, 'build', 'test', 'shim-x86-decode'), [], {
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    assert.match(run.stdout, /^ok x86_decode \(\d+ rows\)$/m);
  });
});
