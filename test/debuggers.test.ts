/**
 * The checkers and debuggers docs/shim.md names work on a shimmed program: an AddressSanitizer
 * build starts under `exec` (which turns off ASan's library-order check), serves its BAR accesses
 * and still reports a heap overflow; gdb runs a program whose BAR accesses are trapped once told to
 * pass SIGSEGV on.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cliScript } from './cli-runner.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = await cliScript();
const BAR_PROGRAM = path.join(ROOT, 'test', 'conformance', 'vfio_bar_mmap.c');
const TIMEOUT_MS = 120_000;

/** Opens /dev/iommu through the shim, then writes one byte past a heap block. */
const OVERFLOW_C = `\
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	printf("open %s\\n", fd >= 0 ? "ok" : "failed");
	fflush(stdout);
	volatile char *p = malloc(16);
	p[16] = 1;
	free((void *)p);
	return 0;
}
`;

let dir = '';

function gcc(args: string[]): boolean {
  return spawnSync('gcc', args, { stdio: 'ignore' }).status === 0;
}

function exec(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, 'exec', '--', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: TIMEOUT_MS,
    env: { ...process.env, ASAN_OPTIONS: undefined },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-debuggers-'));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

test('an AddressSanitizer build runs under exec and its checks still fire', (t) => {
  const bar = path.join(dir, 'bar-asan');
  const overflow = path.join(dir, 'overflow-asan');
  fs.writeFileSync(`${overflow}.c`, OVERFLOW_C);
  const asan = ['-std=gnu11', '-O1', '-g', '-fsanitize=address', '-I', path.join(ROOT, 'include')];
  if (!gcc([...asan, '-o', bar, BAR_PROGRAM]) || !gcc([...asan, '-o', overflow, `${overflow}.c`])) {
    t.skip('gcc cannot build with -fsanitize=address here');
    return;
  }
  const served = exec([bar]);
  assert.equal(served.status, 0, served.out);
  assert.match(served.out, /^ok 2 - registers_through_the_mapping$/m);
  assert.doesNotMatch(served.out, /^not ok/m);

  const caught = exec([overflow]);
  assert.match(caught.out, /^open ok$/m, 'the shim served the open');
  assert.match(caught.out, /ERROR: AddressSanitizer: heap-buffer-overflow/);
  assert.notEqual(caught.status, 0);
});

test('gdb runs a program whose BAR accesses the shim traps', (t) => {
  if (spawnSync('gdb', ['--version'], { stdio: 'ignore' }).status !== 0) {
    t.skip('gdb is not installed');
    return;
  }
  const plain = path.join(dir, 'bar');
  assert.ok(
    gcc(['-std=gnu11', '-O1', '-g', '-I', path.join(ROOT, 'include'), '-o', plain, BAR_PROGRAM]),
  );
  const r = exec([
    'gdb',
    '-q',
    '-batch',
    '-ex',
    'handle SIGSEGV nostop noprint pass',
    '-ex',
    'run',
    plain,
  ]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /^ok 3 - dma_programmed_through_the_mapping$/m);
  assert.doesNotMatch(r.out, /^not ok/m);
  assert.match(r.out, /exited normally/);
});
