/**
 * Programs that bypass libc never reach the host's iommufd or VFIO nodes: `exec` refuses those
 * LD_PRELOAD cannot reach (static, Go, another architecture) before they start, and the guard's
 * seccomp filter answers EPERM to a raw open of a host node from anything that does start, while
 * a program's ordinary opens, and its opens through the shim, work as before.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkProgram } from '../src/cli/program-check.ts';
import { type ChildRun, runCli } from './child.ts';

const TIMEOUT_MS = 120_000;

/**
 * Opens each path twice: through libc's open() (the shim's) and through a raw openat system call
 * (nothing the shim sees), and prints what each gave.
 */
const OPENER_C = `\
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		int fd = open(argv[i], O_RDWR);
		printf("libc %s %s\\n", argv[i], fd >= 0 ? "ok" : strerrorname_np(errno));
		long raw = syscall(SYS_openat, AT_FDCWD, argv[i], O_RDWR);
		printf("raw %s %s\\n", argv[i], raw >= 0 ? "ok" : strerrorname_np(errno));
		if (fd >= 0)
			close(fd);
		if (raw >= 0)
			close((int)raw);
	}
	return 0;
}
`;

/** A note as Go's linker writes it (owner "Go", type 4), in the section Go names for it. */
const GO_LIKE_C = `\
__attribute__((section(".note.go.buildid"), aligned(4), used))
static const struct { unsigned namesz, descsz, type; char name[4]; char desc[8]; } note = {
	3, 8, 4, "Go", "abcdefg"
};
int main(void) { return 0; }
`;

let dir = '';
let why: string | undefined;

function gcc(out: string, source: string, flags: readonly string[]): void {
  const src = `${out}.c`;
  fs.writeFileSync(src, source);
  const r = spawnSync('gcc', ['-O1', '-Wall', '-Werror', ...flags, '-o', out, src], {
    encoding: 'utf8',
  });
  if (r.error !== undefined) throw new Error(`gcc is not installed (${r.error.message})`);
  assert.equal(r.status, 0, `${src} does not compile:\n${r.stderr}`);
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-bypass-'));
  try {
    gcc(path.join(dir, 'opener'), OPENER_C, []);
    gcc(path.join(dir, 'go-like'), GO_LIKE_C, []);
  } catch (err) {
    why = (err as Error).message;
    return;
  }
  // A static libc (libc.a) is part of Debian's libc6-dev, not of every distribution's.
  const r = spawnSync(
    'gcc',
    ['-static', '-o', path.join(dir, 'opener-static'), path.join(dir, 'opener.c')],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) why = `gcc -static does not link here (no static libc):\n${r.stderr}`;
});

after(() => {
  if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
});

/** `iommufd-emu exec -- ARGS` from the sources, killed after TIMEOUT_MS. */
function exec(args: readonly string[]): Promise<ChildRun> {
  return runCli(['exec', '--', ...args], { timeoutMs: TIMEOUT_MS });
}

/** What the opener printed: `${how} ${path}` to `ok` or an errno name. */
function results(stdout: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of stdout.trim().split('\n')) {
    const [how, file, result] = line.split(' ');
    map.set(`${how} ${file}`, result!);
  }
  return map;
}

describe('programs LD_PRELOAD cannot reach are refused before they start', () => {
  test('a statically linked program: exit 126, said in words, never run', async (t) => {
    if (why !== undefined) return t.skip(why);
    const r = await exec([path.join(dir, 'opener-static'), '/dev/iommu']);
    assert.equal(r.code, 126, r.stderr);
    assert.match(r.stderr, /^iommufd-emu: cannot run .*opener-static: it is statically linked/m);
    assert.equal(r.stdout, '', 'the program ran');
  });

  test('a script whose interpreter is static is refused for its interpreter', (t) => {
    if (why !== undefined) return t.skip(why);
    const script = path.join(dir, 'script');
    fs.writeFileSync(script, `#!${path.join(dir, 'opener-static')} -x\n`, { mode: 0o755 });
    const found = checkProgram(script, process.env);
    assert.equal(found.kind, 'refused');
    assert.match(
      found.kind === 'refused' ? found.why : '',
      /^its interpreter .*opener-static is statically linked/,
    );
  });

  test('a Go binary (its build id note) and a foreign machine are refused', (t) => {
    if (why !== undefined) return t.skip(why);
    const go = checkProgram(path.join(dir, 'go-like'), process.env);
    assert.equal(go.kind, 'refused');
    assert.match(go.kind === 'refused' ? go.why : '', /is a Go program/);
    // The same dynamically linked program with its machine patched to AArch64 (183).
    const arm = path.join(dir, 'arm');
    const bytes = fs.readFileSync(path.join(dir, 'opener'));
    bytes.writeUInt16LE(183, 18);
    fs.writeFileSync(arm, bytes, { mode: 0o755 });
    const foreign = checkProgram(arm, process.env);
    assert.equal(foreign.kind, 'refused');
    assert.match(foreign.kind === 'refused' ? foreign.why : '', /64-bit AArch64 program/);
    assert.equal(checkProgram(path.join(dir, 'opener'), process.env).kind, 'served');
  });
});

describe('the guard: a raw open of a host node is refused whatever libc does', () => {
  test('raw openat of /dev/iommu and /dev/vfio/* gets EPERM; the shim serves libc opens', async (t) => {
    if (why !== undefined) return t.skip(why);
    const nodes = ['/dev/iommu', '/dev/vfio/devices/vfio0', '/dev/vfio/vfio', '/dev/../dev/iommu'];
    const r = await exec([path.join(dir, 'opener'), ...nodes, '/dev/null']);
    assert.equal(r.code, 0, r.stderr);
    const got = results(r.stdout);
    // Through the shim: the emulator's nodes (vfio/vfio is the group path, not on main yet).
    assert.equal(got.get('libc /dev/iommu'), 'ok');
    assert.equal(got.get('libc /dev/vfio/devices/vfio0'), 'ok');
    // Bypassing it: refused by the guard, where the host alone would say ENOENT or open them.
    for (const node of nodes) assert.equal(got.get(`raw ${node}`), 'EPERM', node);
    // An ordinary file is untouched either way.
    assert.equal(got.get('libc /dev/null'), 'ok');
    assert.equal(got.get('raw /dev/null'), 'ok');
  });

  test('relative paths resolve from the cwd; another node of the same device is refused', async (t) => {
    if (why !== undefined) return t.skip(why);
    // The VFIO container's node (misc 10:196) made under another name, where root can make one.
    const made = spawnSync('mknod', [path.join(dir, 'container'), 'c', '10', '196']);
    const other = made.status === 0 ? ['container'] : [];
    const r = await exec([
      'sh',
      '-c',
      `cd /dev && exec ${path.join(dir, 'opener')} iommu ../dev/vfio/x null ${other.map((f) => path.join(dir, f)).join(' ')}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const got = results(r.stdout);
    assert.equal(got.get('raw iommu'), 'EPERM');
    assert.equal(got.get('raw ../dev/vfio/x'), 'EPERM');
    assert.equal(got.get('raw null'), 'ok');
    if (other.length === 0) return t.skip('mknod needs root: the device-number check is untested');
    assert.equal(got.get(`raw ${path.join(dir, 'container')}`), 'EPERM');
    assert.equal(got.get(`libc ${path.join(dir, 'container')}`), 'EPERM');
  });
});
