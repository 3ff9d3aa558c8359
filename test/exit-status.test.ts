/**
 * The CLI's exit statuses never collide with a program's: its status passes through, the
 * emulator's findings use --error-exitcode (99 by default), and its own failures use 125/126/127
 * as env(1) does. Also the command line's manners: one error prefix, errors in words, declared
 * option conflicts, EPIPE, paths relative to where `npm run cli` was started, and the fail-nth
 * replay of one swept run naming the program's failing call.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ChildRun, type RunOptions, runCli } from './child.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TIMEOUT_MS = 120_000;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-exit-'));

after(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

/** The CLI from the sources, killed after TIMEOUT_MS. */
function cli(args: readonly string[], options: RunOptions = {}): Promise<ChildRun> {
  return runCli(args, { timeoutMs: TIMEOUT_MS, ...options });
}

/** A program that binds the no-IOMMU edu device to an iommufd: few calls, few injection points. */
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
	close(dev);
	close(iommufd);
	return 0;
}
`;

function buildBind(): string {
  const source = path.join(scratch, 'bind.c');
  const binary = path.join(scratch, 'bind');
  fs.writeFileSync(source, BIND_C);
  const cc = spawnSync('gcc', ['-Wall', '-I', path.join(ROOT, 'include'), '-o', binary, source], {
    encoding: 'utf8',
  });
  assert.equal(cc.status, 0, cc.stderr);
  return binary;
}

describe('exit statuses', { concurrency: 3 }, () => {
  test("the program's status passes through, and 128+N when signal N killed it", async () => {
    assert.equal((await cli(['exec', '--', 'sh', '-c', 'exit 7'])).code, 7);
    assert.equal((await cli(['exec', '--', 'sh', '-c', 'exit 2'])).code, 2);
    const killed = await cli(['exec', '--', 'sh', '-c', 'kill -TERM $$']);
    assert.equal(killed.code, 128 + os.constants.signals.SIGTERM);
  });

  test('127: program not found; 126: cannot be run; both said in words', async () => {
    const missing = await cli(['exec', '--', path.join(scratch, 'no-such-program')]);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /^iommufd-emu: cannot run .*no-such-program: no such file/m);
    assert.doesNotMatch(missing.stderr, /spawn|ENOENT/);
    const data = path.join(scratch, 'data.txt');
    fs.writeFileSync(data, 'not a program\n', { mode: 0o644 });
    const notExecutable = await cli(['exec', '--', data]);
    assert.equal(notExecutable.code, 126);
    assert.match(notExecutable.stderr, /permission denied/);
  });

  test('125: bad usage, with one error prefix', async () => {
    const unknown = await cli(['exec', '--no-such-option', '--', 'true']);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /^iommufd-emu: unknown option '--no-such-option'/);
    assert.doesNotMatch(unknown.stderr, /^error:/m);
    const reserved = await cli(['exec', '--error-exitcode', '126', '--', 'true']);
    assert.equal(reserved.code, 125);
    assert.match(reserved.stderr, /must be from 1 to 124/);
  });

  test('125: contradictory check options are refused', async () => {
    const both = await cli(['check', '--explore', '--nth', '3']);
    assert.equal(both.code, 125);
    assert.match(both.stderr, /'--explore' cannot be used with option '--nth/);
    // --seed implies --explore, so it conflicts with --scenario like --explore does.
    const implied = await cli(['check', '--seed', '3', '--scenario', 'ioas-basics']);
    assert.equal(implied.code, 125);
    const misplaced = await cli(['check', '--platform', 'x.json']);
    assert.equal(misplaced.code, 125);
    assert.match(misplaced.stderr, /apply to a PROGRAM/);
  });

  test('--help lists every exit status', async () => {
    for (const args of [['--help'], ['exec', '--help'], ['check', '--help']]) {
      const help = await cli(args);
      assert.equal(help.code, 0);
      for (const status of ['99', '125', '126', '127', '128+N'])
        assert.match(help.stdout, new RegExp(`^\\s+${status.replace('+', '\\+')}\\s`, 'm'));
    }
  });

  test('findings exit with --error-exitcode; the replay names the failing call', async () => {
    const bind = buildBind();
    const flags = ['--enable-unsafe-noiommu-mode', '--cap', 'CAP_SYS_RAWIO'];
    const clean = await cli(['exec', ...flags, '--', bind]);
    assert.equal(clean.code, 0, clean.stderr);
    const swept = await cli([
      'check',
      '--mutant',
      'halfbuilt-destroy',
      '--error-exitcode',
      '42',
      ...flags,
      '--',
      bind,
    ]);
    assert.equal(swept.code, 42, swept.stdout + swept.stderr);
    const replay = /replay: IOMMUFD_EMU_MUTANT=halfbuilt-destroy iommufd-emu exec (.*)$/m.exec(
      swept.stdout,
    );
    assert.ok(replay !== null, swept.stdout);
    const nth = /--fail-nth (\d+)/.exec(replay[1]!);
    assert.ok(nth !== null, replay[1]);
    const again = await cli(
      ['exec', '--fail-nth', nth[1]!, '--error-exitcode', '43', ...flags, '--', bind],
      { env: { ...process.env, IOMMUFD_EMU_MUTANT: 'halfbuilt-destroy' } },
    );
    assert.equal(again.code, 43, again.stderr);
    // The program's failing call, decoded, and the program's own output.
    assert.match(
      again.stderr,
      new RegExp(
        `fail-nth ${nth[1]}: \\S+ failed in .*ioctl\\(\\d+<[^>]+>, VFIO_DEVICE_BIND_IOMMUFD`,
      ),
    );
    assert.match(again.stderr, /^bind: /m);
    assert.match(again.stderr, /leaks after the program exited/);
    assert.doesNotMatch(/fail-nth \d+: .*/.exec(again.stderr)![0], /\.ts:\d+/);
    // check's own replay of that run names the same call, with no emulator stack.
    const replayed = await cli(['check', '--nth', nth[1]!, ...flags, '--', bind], {
      env: { ...process.env, IOMMUFD_EMU_MUTANT: 'halfbuilt-destroy' },
    });
    assert.match(
      replayed.stdout,
      /^ {2}> \[\d+\] ioctl\(\d+<[^>]+>, VFIO_DEVICE_BIND_IOMMUFD.* <- injected /m,
    );
    assert.doesNotMatch(replayed.stdout, /\.ts:\d+/);
  });
});

describe('command-line manners', { concurrency: 2 }, () => {
  test('a reader that closes the pipe early is no error (check --list | head)', async () => {
    const r = await cli(['check', '--list'], { closeStdout: true });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  test('under `npm run cli`, relative paths are the user directory', async () => {
    const user = fs.mkdtempSync(path.join(scratch, 'user-'));
    const r = await cli(['exec', '--trace', 'trace.txt', '--', 'true'], {
      env: { ...process.env, npm_lifecycle_event: 'cli', INIT_CWD: user },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(user, 'trace.txt')), 'the trace is not in INIT_CWD');
    assert.equal(fs.existsSync(path.join(ROOT, 'trace.txt')), false);
  });
});
