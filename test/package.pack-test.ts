/**
 * The package as a user gets it: `npm pack` the checkout, install the tarball into a scratch
 * project offline (from the local npm cache, as CI has it after `npm ci`), make the installed
 * package read-only, and use it: `npx iommufd-emu --version`, `exec` of a small C program built
 * against the shipped headers, `demo`, and the library from JavaScript and from TypeScript.
 *
 * Slow (a build, a pack, an install): `npm run test:package`, which .ci/run runs; not in `npm test`.
 */
import assert from 'node:assert/strict';
import { type SpawnSyncOptions, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const VERSION = (
  JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-pack-'));
const project = path.join(scratch, 'project');
const cache = path.join(scratch, 'cache');
const installed = path.join(project, 'node_modules', 'iommufd-emu');

/** The environment of a user's shell: none of npm's own npm_* variables from `npm run`. */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.toLowerCase().startsWith('npm_') && k !== 'INIT_CWD') env[k] = v;
  }
  return { ...env, XDG_CACHE_HOME: cache, NO_COLOR: '1' };
}

function run(
  cmd: string,
  args: readonly string[],
  options: SpawnSyncOptions = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, {
    cwd: project,
    env: userEnv(),
    encoding: 'utf8',
    timeout: 300_000,
    ...options,
  });
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

function ok(r: { status: number | null; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.status, 0, `${what}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return r.stdout;
}

function writableBits(file: string, writable: boolean): void {
  const mode = fs.statSync(file).mode & 0o7777;
  fs.chmodSync(file, writable ? mode | 0o200 : mode & ~0o222);
}

/** Makes dir and everything below it read-only (or writable again). */
function chmodTree(dir: string, writable: boolean): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) chmodTree(p, writable);
    else if (entry.isFile()) writableBits(p, writable);
  }
  writableBits(dir, writable);
}

const IOAS_ALLOC_C = `\
#include <fcntl.h>
#include <linux/iommufd.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	int fd = open("/dev/iommu", O_RDWR);

	if (fd < 0 || ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) {
		perror("iommufd");
		return 1;
	}
	printf("ioas %u\\n", alloc.out_ioas_id);
	close(fd);
	return 0;
}
`;

const API_SAMPLE = `\
import { createEmulator, ioctl, iommufd } from 'iommufd-emu';

const emu = createEmulator({ enableUnsafeNoiommuMode: true });
const proc = emu.spawn();
const fd = proc.open('/dev/iommu');
const { ret, out } = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, iommufd.iommuIoasAlloc, {});
console.log(\`ret \${ret} ioas \${out.out_ioas_id}\`);
`;

interface LockEntry {
  readonly dev?: boolean;
  readonly [field: string]: unknown;
}

/** npm's registry as configured here (the user's, or npm's default). */
let registryUrl: string | undefined;
function registry(): string {
  if (registryUrl === undefined) {
    const r = spawnSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', env: userEnv() });
    const url = r.stdout.trim();
    registryUrl = url.endsWith('/') ? url : `${url}/`;
  }
  return registryUrl;
}

/**
 * The registry's tarball URL of a locked package. This checkout's lockfile omits it (npm can
 * leave `resolved` out), and without it even `npm ci` asks the registry for metadata to find it.
 */
function tarballUrl(key: string, version: string): string {
  const name = key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
  const base = name.includes('/') ? name.slice(name.indexOf('/') + 1) : name;
  return `${registry()}${name}/-/${base}-${version}.tgz`;
}

/**
 * The scratch project, with the package's runtime dependencies already locked at the versions the
 * checkout's lockfile pins. `npm ci` fills the npm cache with those tarballs but not with registry
 * metadata, and an offline install without a lock needs the metadata to resolve a range.
 */
function seedProject(): void {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  // A TypeScript user of a Node library has @types/node (and its one dependency) as well.
  const typesNode = ['node_modules/@types/node', 'node_modules/undici-types'];
  const runtime = Object.entries(lock.packages)
    .filter(
      ([key, entry]) =>
        key.startsWith('node_modules/') && (entry.dev !== true || typesNode.includes(key)),
    )
    .map(([key, entry]): [string, LockEntry] => [
      key,
      {
        ...Object.fromEntries(Object.entries(entry).filter(([field]) => field !== 'dev')),
        resolved: entry.resolved ?? tarballUrl(key, String(entry.version)),
      },
    ]);
  const dependencies = Object.fromEntries(
    runtime
      .filter(([key]) => !key.slice('node_modules/'.length).includes('node_modules/'))
      .map(([key, entry]) => [key.slice('node_modules/'.length), String(entry.version)]),
  );
  const manifest = { name: 'scratch', version: '1.0.0', private: true, type: 'module' };
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ ...manifest, dependencies }),
  );
  fs.writeFileSync(
    path.join(project, 'package-lock.json'),
    JSON.stringify({
      name: 'scratch',
      version: '1.0.0',
      lockfileVersion: 3,
      requires: true,
      packages: { '': { ...manifest, dependencies }, ...Object.fromEntries(runtime) },
    }),
  );
  // npm ci installs exactly the lock; it never asks the registry for metadata.
  ok(run('npm', ['ci', '--offline', '--no-audit', '--no-fund']), 'npm ci --offline (seed)');
}

describe('the packed package, installed offline', () => {
  let tarball = '';

  before(() => {
    fs.mkdirSync(project);
    // npm pack runs `prepare`, which builds dist/.
    const packed = run('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: ROOT });
    const info = JSON.parse(ok(packed, 'npm pack')) as { filename: string }[];
    tarball = path.join(scratch, info[0]!.filename);
    seedProject();
    ok(
      run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball]),
      'npm install --offline <tarball>',
    );
    // A global or store install is read-only: nothing may be built inside the package.
    chmodTree(installed, false);
  });

  after(() => {
    if (fs.existsSync(installed)) chmodTree(installed, true);
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('ships what a user needs and nothing built locally', () => {
    const list = ok(run('tar', ['-tzf', tarball]), 'tar -t').split('\n');
    for (const needed of [
      'package/LICENSE',
      'package/bin/iommufd-emu.js',
      'package/dist/index.js',
      'package/dist/index.d.ts',
      'package/dist/cli/main.js',
      'package/dist/inspector/server.js',
      'package/dist/web/inspector/index.html',
      'package/native/Makefile',
      'package/include/linux/iommufd.h',
      'package/examples/noiommu-edu-dma.c',
    ])
      assert.ok(list.includes(needed), `${needed} is missing from the tarball`);
    // The inspector's page, as `npm run build` bundled it.
    assert.ok(
      list.some((f) => /^package\/dist\/web\/inspector\/assets\/index-[\w-]+\.js$/.test(f)),
      'the inspector page script is missing from the tarball',
    );
    const unwanted = list.filter((f) =>
      /(\.test\.|\.bench\.|\/build\/|\.so$|\.node$|\.o$|\/test\/|^package\/src\/)/.test(f),
    );
    assert.deepEqual(unwanted, []);
    const license = fs.readFileSync(path.join(installed, 'LICENSE'), 'utf8');
    assert.match(license, /GNU GENERAL PUBLIC LICENSE\s+Version 2, June 1991/);
  });

  test('npx iommufd-emu --version', () => {
    const out = ok(run('npx', ['--offline', 'iommufd-emu', '--version']), '--version');
    assert.equal(out.trim(), VERSION);
  });

  test('exec runs a program built against the shipped headers; the shim lands in the cache', () => {
    const source = path.join(project, 'ioas-alloc.c');
    const binary = path.join(project, 'ioas-alloc');
    fs.writeFileSync(source, IOAS_ALLOC_C);
    ok(run('gcc', ['-Wall', '-I', path.join(installed, 'include'), '-o', binary, source]), 'gcc');
    const out = ok(run('npx', ['--offline', 'iommufd-emu', 'exec', '--', binary]), 'exec');
    assert.match(out, /^ioas [1-9]\d*$/m);
    const shim = path.join(cache, 'iommufd-emu', VERSION, 'libiommufd-emu-shim.so');
    assert.ok(fs.existsSync(shim), `${shim} was not built`);
    assert.equal(fs.statSync(path.dirname(shim)).mode & 0o077, 0);
  });

  test('demo', () => {
    const out = ok(run('npx', ['--offline', 'iommufd-emu', 'demo']), 'demo');
    assert.match(out, /The driver exited with status 0/);
  });

  test('the library from JavaScript', () => {
    fs.writeFileSync(path.join(project, 'api.js'), API_SAMPLE);
    const out = ok(run(process.execPath, ['api.js']), 'node api.js');
    assert.match(out, /^ret 0 ioas [1-9]\d*$/m);
  });

  test('the library from TypeScript: its types check and the compiled program runs', () => {
    const dir = path.join(project, 'ts');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'api.ts'), API_SAMPLE);
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'es2023',
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          types: ['node'],
          outDir: 'out',
        },
        include: ['api.ts'],
      }),
    );
    // The scratch project has no typescript of its own: the checkout's compiler checks it.
    ok(run(path.join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', dir]), 'tsc');
    const out = ok(run(process.execPath, [path.join(dir, 'out', 'api.js')]), 'node out/api.js');
    assert.match(out, /^ret 0 ioas [1-9]\d*$/m);
  });
});
