/**
 * `iommufd-emu serve` as scripts use it: `serve -- CMD` with CMD's status, a --write-env and a
 * --ready-fd that appear only once the socket serves, the kernel log to --log, a stdout that holds
 * the environment and nothing else.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ChildRun, CLI, collectChild, runCli } from './child.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TIMEOUT_MS = 120_000;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-serve-'));
const NOIOMMU = ['--enable-unsafe-noiommu-mode', '--cap', 'CAP_SYS_RAWIO'];

after(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

const BIND_C = `\
#include <fcntl.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
	int dev = open("/dev/vfio/devices/noiommu-vfio2", O_RDWR);
	int iommufd = open("/dev/iommu", O_RDWR);
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };

	if (dev < 0 || iommufd < 0 || ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind)) {
		perror("bind");
		return 1;
	}
	printf("bound as device %u\\n", bind.out_devid);
	return 0;
}
`;

let bindBinary: string | undefined;
function buildBind(): string {
  if (bindBinary !== undefined) return bindBinary;
  const source = path.join(scratch, 'bind.c');
  const binary = path.join(scratch, 'bind');
  fs.writeFileSync(source, BIND_C);
  const cc = spawnSync('gcc', ['-Wall', '-I', path.join(ROOT, 'include'), '-o', binary, source], {
    encoding: 'utf8',
  });
  assert.equal(cc.status, 0, cc.stderr);
  bindBinary = binary;
  return binary;
}

/** The CLI from the sources, killed after TIMEOUT_MS. */
function cli(args: readonly string[]): Promise<ChildRun> {
  return runCli(args, { timeoutMs: TIMEOUT_MS });
}

describe('serve', { concurrency: 3 }, () => {
  test('a socket it cannot listen on is a clear error, never a stack or a shortened path', async () => {
    const missing = await cli([
      'serve',
      '--socket',
      path.join(scratch, 'no', 'such', 'dir', 's.sock'),
    ]);
    assert.equal(missing.code, 125);
    assert.match(
      missing.stderr,
      /^iommufd-emu: cannot serve on .*: .*no[/]such[/]dir does not exist$/m,
    );
    const long = path.join(scratch, `${'x'.repeat(120)}.sock`);
    const tooLong = await cli(['serve', '--socket', long]);
    assert.equal(tooLong.code, 125);
    assert.match(tooLong.stderr, /holds at most 107 bytes/);
    assert.equal(fs.existsSync(long.slice(0, 107)), false, 'nothing bound at a cut path');
    assert.doesNotMatch(`${missing.stderr}${tooLong.stderr}`, /\n\s+at /);
  });

  test('serve -- CMD runs CMD in the served environment and exits with its status', async () => {
    const bind = buildBind();
    const log = path.join(scratch, 'kernel.log');
    const r = await cli(['serve', ...NOIOMMU, '--log', log, '--', bind]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^bound as device 1$/m);
    // The kernel log went to the file, not to stderr.
    assert.match(fs.readFileSync(log, 'utf8'), /Adding kernel taint for vfio-noiommu cdev/);
    assert.doesNotMatch(r.stderr, /taint/);
    const failed = await cli(['serve', '--', 'sh', '-c', 'exit 5']);
    assert.equal(failed.code, 5);
  });

  test('serve --check -- CMD checks the invariants after every call', async () => {
    const r = await cli(['serve', '--check', ...NOIOMMU, '--', buildBind()]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /invariant/);
  });

  test('--write-env and --ready-fd say when it serves; stdout is the environment only', async () => {
    const bind = buildBind();
    const writeEnv = path.join(scratch, 'emu.env');
    // fd 3 of the server is a file here (a shell would give it `3>&...`): poll it for READY=1.
    const readyFile = path.join(scratch, 'ready');
    const readyFd = fs.openSync(readyFile, 'w+');
    const child = spawn(
      process.execPath,
      [CLI, 'serve', ...NOIOMMU, '--write-env', writeEnv, '--ready-fd', '3'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe', readyFd] },
    );
    fs.closeSync(readyFd);
    const done = collectChild(child, TIMEOUT_MS);
    const deadline = Date.now() + TIMEOUT_MS;
    while (fs.readFileSync(readyFile, 'utf8') === '' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(fs.readFileSync(readyFile, 'utf8'), 'READY=1\n');
    const env = fs.readFileSync(writeEnv, 'utf8');
    assert.match(
      env,
      /^export LD_PRELOAD=\S+libiommufd-emu-shim\.so\nexport IOMMUFD_EMU_SOCKET=\S+\n$/,
    );
    const client = spawnSync('sh', ['-c', `. '${writeEnv}' && '${bind}'`], { encoding: 'utf8' });
    assert.equal(client.status, 0, client.stderr);
    assert.match(client.stdout, /^bound as device 1$/m);
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, env, 'stdout carries exactly the environment');
    assert.equal(fs.existsSync(writeEnv), false, 'the env file goes when the emulator does');
  });
});
