/**
 * `iommufd-emu check -- PROGRAM`: fail-nth swept over an unmodified C program through the shim.
 * The bundled no-IOMMU driver (bind, attach, map, GET_PA walk, DMA by physical address, unmap,
 * detach) must sweep clean, and the half-built-device mutant must be caught by the same sweep.
 * A program whose calls depend on its addresses passes as many injection points in every run
 * (check and exec --fail-nth turn address randomization off).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cliScript } from './cli-runner.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = await cliScript();
const BUILD = join(ROOT, 'examples', 'build');
const DRIVER = join(BUILD, 'noiommu-edu-dma.sweep');
const LAYOUT = join(BUILD, 'check-program-layout');

function compile(source: string, binary: string): void {
  mkdirSync(BUILD, { recursive: true });
  const cc = spawnSync('gcc', ['-O1', '-I', join(ROOT, 'include'), '-o', binary, source], {
    encoding: 'utf8',
  });
  assert.equal(cc.status, 0, cc.stderr);
}

function build(): void {
  compile(join(ROOT, 'examples', 'noiommu-edu-dma.c'), DRIVER);
}

/** Whether this host lets a process turn off its address randomization (a container may not). */
function canFixLayout(): boolean {
  return spawnSync('setarch', ['-R', 'true']).status === 0;
}

function cli(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 240_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function check(...args: string[]): { status: number | null; out: string } {
  return cli('check', ...args);
}

describe('check -- PROGRAM', { concurrency: 2 }, () => {
  test('the no-IOMMU driver flow sweeps clean through fail-nth', () => {
    build();
    const r = check('--enable-unsafe-noiommu-mode', '--', DRIVER);
    assert.equal(r.status, 0, r.out);
    const m = /(\d+) injection points, (\d+) runs, 0 violations/.exec(r.out);
    assert.ok(m !== null, r.out);
    assert.ok(
      Number(m[1]) > 50,
      `only ${m[1]} injection points: the sweep did not reach the driver's calls`,
    );
    assert.equal(Number(m[2]), Number(m[1]) + 1);
  });

  test('the half-built device destroy mutant is caught, with a replay line', () => {
    build();
    const r = check('--mutant', 'halfbuilt-destroy', '--enable-unsafe-noiommu-mode', '--', DRIVER);
    assert.equal(r.status, 99, r.out);
    assert.match(r.out, /bug: emulator bug in ioctl 0x3b76/);
    assert.match(r.out, /leak: /);
    assert.match(
      r.out,
      /replay: IOMMUFD_EMU_MUTANT=halfbuilt-destroy iommufd-emu exec --fail-nth \d+ --enable-unsafe-noiommu-mode -- /,
    );
  });

  test('every run of a program whose calls depend on its addresses passes as many injection points', {
    skip: canFixLayout() ? false : 'this host refuses personality(ADDR_NO_RANDOMIZE)',
  }, () => {
    compile(join(ROOT, 'test', 'check-program', 'layout.c'), LAYOUT);
    // The counting run of a sweep, four times: with randomization, 1 to 16 opens each time.
    const counts: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = check('--nth', '0', '--', LAYOUT);
      assert.equal(r.status, 0, r.out);
      const m = /\(nothing injected\): (\d+) injection points passed/.exec(r.out);
      assert.ok(m !== null, r.out);
      counts.push(Number(m[1]));
    }
    assert.deepEqual(
      counts,
      counts.map(() => counts[0]),
    );
    // exec --fail-nth, the replay line of a swept run, lays the program out as check does.
    const past = cli('exec', '--fail-nth', String(counts[0]! + 1), '--', LAYOUT);
    assert.equal(past.status, 0, past.out);
    assert.match(
      past.out,
      new RegExp(`nothing injected: the run passed only ${counts[0]} injection points`),
    );
  });
});
