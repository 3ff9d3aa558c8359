/**
 * `--inspect` on the command line: exec and serve start the inspector before the program, print
 * its URL on stderr (serve's stdout stays the environment only), show a running program's state,
 * and exec keeps it up after the program exits until SIGINT, then exits with the program's
 * status. A bare `--inspect` never swallows the program's name; a bad address is a usage error.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { InspectorState, RecordState, ReplayState } from '../src/inspector/state-types.ts';
import { cliScript } from './cli-runner.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = await cliScript();
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-inspect-'));
const NOIOMMU = ['--enable-unsafe-noiommu-mode', '--cap', 'CAP_SYS_RAWIO'];

after(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

/** Binds the no-IOMMU device, says so, and holds it until a line arrives on stdin. */
const BIND_WAIT_C = `\
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
	char line[16];

	if (dev < 0 || iommufd < 0 || ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind)) {
		perror("bind");
		return 1;
	}
	printf("bound as device %u\\n", bind.out_devid);
	fflush(stdout);
	if (read(0, line, sizeof(line)) < 0)
		return 2;
	return 0;
}
`;

/** The bundled no-IOMMU driver, built here. */
function buildDriver(): string {
  const binary = path.join(scratch, 'noiommu-edu-dma');
  if (fs.existsSync(binary)) return binary;
  const cc = spawnSync(
    'gcc',
    [
      '-O1',
      '-I',
      path.join(ROOT, 'include'),
      '-o',
      binary,
      path.join(ROOT, 'examples', 'noiommu-edu-dma.c'),
    ],
    { encoding: 'utf8' },
  );
  assert.equal(cc.status, 0, cc.stderr);
  return binary;
}

function buildBindWait(): string {
  const source = path.join(scratch, 'bind-wait.c');
  const binary = path.join(scratch, 'bind-wait');
  if (fs.existsSync(binary)) return binary;
  fs.writeFileSync(source, BIND_WAIT_C);
  const cc = spawnSync('gcc', ['-Wall', '-I', path.join(ROOT, 'include'), '-o', binary, source], {
    encoding: 'utf8',
  });
  assert.equal(cc.status, 0, cc.stderr);
  return binary;
}

interface Proc {
  readonly child: ChildProcessWithoutNullStreams;
  readonly out: { text: string };
  readonly err: { text: string };
  readonly exit: Promise<number | null>;
}

function start(command: string, args: readonly string[], env = process.env): Proc {
  const child = spawn(command, args, { cwd: ROOT, stdio: 'pipe', env });
  const out = { text: '' };
  const err = { text: '' };
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out.text += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err.text += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  exit.then(() => clearTimeout(timer));
  return { child, out, err, exit };
}

function cli(args: readonly string[]): Proc {
  return start(process.execPath, [CLI, ...args]);
}

async function until<T>(what: string, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function urlOf(p: Proc): Promise<string> {
  return until(
    `the inspector's URL in:\n${p.err.text}`,
    () => /iommufd-emu: inspector at (http:\/\/127\.0\.0\.1:\d+\/)\n/.exec(p.err.text)?.[1],
  );
}

async function state(url: string): Promise<InspectorState> {
  const res = await fetch(`${url}api/state`);
  assert.equal(res.status, 200);
  return (await res.json()) as InspectorState;
}

describe('--inspect', { concurrency: 2 }, () => {
  test('exec --inspect PROGRAM: the program runs, the page follows it, exec waits for Ctrl-C', async () => {
    const prog = buildBindWait();
    // No `--`: a bare --inspect must not take the program's path as its HOST.
    const p = cli(['exec', ...NOIOMMU, '--inspect', prog]);
    const url = await urlOf(p);
    await until('the bind', () => (/bound as device 1/.test(p.out.text) ? true : undefined));
    const running = await state(url);
    assert.deepEqual(running.program, { command: [prog], state: 'running', exitStatus: null });
    const dev = running.devices.find((d) => d.bdf === '0000:00:06.0')!;
    assert.deepEqual(dev.bound, { context: 0, devid: 1 });
    assert.equal(dev.unsafe, true);
    p.child.stdin.end('\n');
    await until('the hold', () => (/the inspector stays at/.test(p.err.text) ? true : undefined));
    const exited = await state(url);
    assert.deepEqual(exited.program, { command: [prog], state: 'exited', exitStatus: 0 });
    assert.deepEqual(exited.contexts, []);
    p.child.kill('SIGINT');
    assert.equal(await p.exit, 0, p.err.text);
  });

  test('serve --inspect: the URL on stderr, the environment alone on stdout', async () => {
    const prog = buildBindWait();
    const writeEnv = path.join(scratch, 'serve.env');
    const p = cli(['serve', ...NOIOMMU, '--inspect=127.0.0.1', '--write-env', writeEnv]);
    const url = await urlOf(p);
    await until('the env file', () => (fs.existsSync(writeEnv) ? true : undefined));
    const env = fs.readFileSync(writeEnv, 'utf8');
    const vars = Object.fromEntries(
      [...env.matchAll(/^export (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]),
    );
    const client = start(prog, [], { ...process.env, ...vars });
    await until('the bind', () => (/bound as device 1/.test(client.out.text) ? true : undefined));
    const serving = await state(url);
    assert.equal(serving.program.state, 'serving');
    assert.deepEqual(serving.devices.find((d) => d.bdf === '0000:00:06.0')!.bound, {
      context: 0,
      devid: 1,
    });
    client.child.stdin.end('\n');
    assert.equal(await client.exit, 0, client.err.text);
    p.child.kill('SIGTERM');
    assert.equal(await p.exit, 0, p.err.text);
    assert.equal(p.out.text, env, 'stdout carries exactly the environment');
  });

  test('a bad address, or --inspect while joining another emulator, is a usage error', async () => {
    const bad = cli(['exec', '--inspect=no:such:thing', '--', 'true']);
    assert.equal(await bad.exit, 125);
    assert.match(bad.err.text, /--inspect=no:such:thing: expected PORT, HOST or HOST:PORT/);
    const joined = start(process.execPath, [CLI, 'exec', '--inspect', '--', 'true'], {
      ...process.env,
      IOMMUFD_EMU_SOCKET: path.join(scratch, 'elsewhere.sock'),
    });
    assert.equal(await joined.exit, 125);
    assert.match(joined.err.text, /--inspect belong to the emulator/);
  });

  test('replay FILE --inspect steps through a recorded run, forward and back', async () => {
    const rec = path.join(scratch, 'demo.rec');
    const recording = cli(['exec', ...NOIOMMU, '--record', rec, '--', buildDriver()]);
    assert.equal(await recording.exit, 0, recording.err.text);
    const p = cli(['replay', rec, '--inspect']);
    const url = await urlOf(p);
    const record = (await (await fetch(`${url}api/record`)).json()) as RecordState;
    const map = record.calls.findIndex((c) => c.text.includes('IOMMU_IOAS_MAP,')) + 1;
    const unmap = record.calls.findIndex((c) => c.text.includes('IOMMU_IOAS_UNMAP,')) + 1;
    assert.ok(map > 1 && unmap > map, JSON.stringify(record.calls.map((c) => c.text)));
    const dma = record.events.find((e) => e.kind === 'dma');
    assert.ok(dma?.cause !== undefined && dma.cause < dma.seq);
    const step = async (to: number, headers: Record<string, string> = {}) => {
      const res = await fetch(`${url}api/step?to=${to}`, { method: 'POST', headers });
      return { status: res.status, body: (await res.json()) as ReplayState };
    };
    const before = await state(url);
    assert.equal(before.program.state, 'replaying');
    assert.deepEqual(before.replay, {
      file: rec,
      steps: record.calls.length,
      step: 0,
      line: 0,
      divergence: null,
    });
    assert.deepEqual(before.contexts, []);

    assert.equal((await step(map)).body.step, map);
    const mapped = await state(url);
    assert.equal(mapped.replay!.line, record.calls[map - 1]!.line);
    assert.equal(mapped.contexts[0]!.ioas[0]!.areas.length, 1);
    assert.equal(mapped.pinned.pinnedPages, '0x10');
    // Back one call: the MAP has not happened.
    assert.equal((await step(map - 1)).body.step, map - 1);
    const unmapped = await state(url);
    assert.equal(unmapped.contexts[0]!.ioas[0]!.areas.length, 0);
    assert.equal(unmapped.pinned.pinnedPages, '0x0');
    // Forward past the UNMAP, then to the end, where every file is closed.
    await step(unmap);
    assert.equal((await state(url)).contexts[0]!.ioas[0]!.areas.length, 0);
    assert.equal((await step(1_000_000)).body.step, record.calls.length);
    assert.deepEqual((await state(url)).contexts, []);

    assert.equal((await step(1, { origin: 'http://elsewhere.example' })).status, 403);
    assert.equal((await fetch(`${url}api/step?to=1`)).status, 405);
    p.child.kill('SIGINT');
    assert.equal(await p.exit, 0, p.err.text);
  });
});
