import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { Command } from 'commander';
import { type FinalResults, Parser } from 'tap-parser';
import { type CheckIo, type CheckOptions, registerCheckCommand, runCheck } from '../cli/check.ts';
import { activeMutant, setMutantForTest } from '../fault/mutant.ts';

afterEach(() => {
  setMutantForTest(undefined);
});

/** TAP text through tap-parser, the TAP reference implementation's parser. */
function parseTap(text: string): FinalResults {
  let result: FinalResults | undefined;
  const parser = new Parser((r) => {
    result = r;
  });
  parser.end(text);
  assert.ok(result !== undefined, 'the TAP stream did not end');
  return result;
}

async function check(options: CheckOptions, progressBar = false) {
  let out = '';
  let err = '';
  const io: CheckIo = {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    progressBar,
  };
  const code = await runCheck(options, io);
  return { code, out, err };
}

describe('iommufd-emu check', () => {
  it('sweeps a scenario clean, with progress as plain lines when not on a terminal', async () => {
    const r = await check({ scenario: 'noiommu-flow' });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^noiommu-flow: \d+ injection points, \d+ runs, 0 violations/m);
    assert.match(r.out, /^check: 1 scenarios, \d+ injection points, 0 violations$/m);
    // The count first, then plain lines (no \r, no escapes) a log keeps.
    const points = Number(/^noiommu-flow: (\d+) injection points: (\d+) runs$/m.exec(r.err)?.[1]);
    assert.ok(points > 0, r.err);
    assert.match(
      r.err,
      new RegExp(`^noiommu-flow: run ${points + 1}/${points + 1}, [\\d.]+ runs/s, ETA 0 s$`, 'm'),
    );
    assert.ok(!r.err.includes('\r') && !r.err.includes('\x1b'), 'terminal control in a log');
  });

  it('draws a progress bar with rate and ETA on a terminal, and clears it', async () => {
    const r = await check({ scenario: 'ioas-basics' }, true);
    assert.equal(r.code, 0);
    const total = /^ioas-basics: \d+ injection points: (\d+) runs$/m.exec(r.err)?.[1];
    assert.ok(total !== undefined, r.err);
    assert.ok(r.err.includes(`ioas-basics [${'.'.repeat(30)}] 0/${total} `), r.err);
    assert.ok(r.err.includes(`ioas-basics [${'#'.repeat(30)}] ${total}/${total} `), r.err);
    assert.match(r.err, / [\d.]+ runs\/s, ETA \d+s/);
    assert.ok(r.err.endsWith('\x1b[2K'), 'the bar is cleared at the end');
  });

  it('reports as TAP that a TAP parser reads back: one test per run, failures with replay', async () => {
    const clean = await check({ scenario: 'ioas-basics', format: 'tap' });
    const parsed = parseTap(clean.out);
    assert.equal(parsed.ok, true);
    assert.equal(parsed.fail, 0);
    const points = Number(/ioas-basics: (\d+) injection points/.exec(clean.err)?.[1]);
    assert.equal(parsed.count, points + 2, 'the counting run, and one run per point and past it');

    const broken = await check({
      scenario: 'noiommu-flow',
      mutant: 'halfbuilt-destroy',
      format: 'tap',
    });
    assert.equal(broken.code, 99);
    const failed = parseTap(broken.out);
    assert.equal(failed.ok, false);
    assert.ok(failed.failures.length > 0);
    const first = failed.failures[0]!;
    assert.match(first.name, /^noiommu-flow: fail-nth \d+$/);
    const diag = first.diag as { replay: string; violations: string[] };
    assert.match(diag.replay, /^iommufd-emu check --scenario noiommu-flow --nth \d+/);
    assert.ok(diag.violations.some((v) => v.startsWith('bug: ')));
  });

  it('reports as JSON', async () => {
    const r = await check({
      scenario: 'noiommu-flow',
      mutant: 'halfbuilt-destroy',
      format: 'json',
    });
    const doc = JSON.parse(r.out) as {
      ok: boolean;
      violations: number;
      targets: { target: string; violations: { kind: string; nth: number; replay: string }[] }[];
    };
    assert.equal(doc.ok, false);
    assert.equal(doc.targets[0]!.target, 'noiommu-flow');
    assert.equal(doc.targets[0]!.violations.length, doc.violations);
    assert.ok(doc.targets[0]!.violations.some((v) => v.kind === 'bug' && v.nth > 0));
  });

  it('--max-runs stops the sweep early without calling it a violation', async () => {
    const r = await check({ scenario: 'ioas-basics', maxRuns: 3 });
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      /ioas-basics: \d+ injection points, 3 runs, 0 violations .*stopped by --max-runs/,
    );
  });

  it('exits with the error exit code (99) and prints replay lines when a mutant is active', async () => {
    const r = await check({ scenario: 'noiommu-flow', mutant: 'halfbuilt-destroy' });
    assert.equal(r.code, 99);
    assert.equal(activeMutant(), 'halfbuilt-destroy');
    const replay = /replay: (iommufd-emu check --scenario noiommu-flow --nth (\d+) .*)$/m.exec(
      r.out,
    );
    assert.ok(replay !== null, r.out);
    // The replay line reproduces the violation, with the call log.
    const again = await check({
      scenario: 'noiommu-flow',
      nth: Number(replay[2]),
      mutant: 'halfbuilt-destroy',
    });
    assert.equal(again.code, 99);
    assert.match(
      again.out,
      /> \[\d+\] ioctl\(\d+, VFIO_DEVICE_BIND_IOMMUFD\) = -EIO {3}<- injected kmalloc/,
    );
    assert.match(again.out, /bug: emulator bug/);
  });

  it('catches the cdev-open-unwind mutant where a cdev open fails under fail-nth', async () => {
    const r = await check({ scenario: 'iommu-device-flow', mutant: 'cdev-open-unwind' });
    assert.equal(r.code, 99, r.out);
    assert.match(
      r.out,
      /kmalloc in open\(\/dev\/vfio\/devices\/vfio0\)\): invariant: .*vfio0 has registration refcount 2 for 0 open cdev files/,
    );
    assert.match(r.out, /leak: vfio0 has 1 registration references left/);
    // Without the mutant the same sweep is clean.
    setMutantForTest(undefined);
    assert.equal((await check({ scenario: 'iommu-device-flow' })).code, 0);
  });

  it('runs the explorer and prints its seed', async () => {
    const r = await check({ explore: true, seed: 3, runs: 20, faults: true });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^explore: seed 3, 20 runs, \d+ calls, \d+ failed by injection: ok$/m);
  });

  it('lists scenarios and mutants, and rejects bad usage with exit 125', async () => {
    const list = await check({ list: true });
    assert.match(list.out, /noiommu-flow/);
    assert.match(list.out, /halfbuilt-destroy/);
    assert.equal((await check({ scenario: 'nope' })).code, 125);
    assert.equal((await check({ mutant: 'nope' })).code, 125);
    assert.equal((await check({ nth: 3 })).code, 125);
  });

  it('registers as a commander subcommand that sets the exit code', async () => {
    const program = new Command('iommufd-emu').exitOverride();
    registerCheckCommand(program);
    const saved = process.exitCode;
    const write = process.stdout.write;
    let out = '';
    process.stdout.write = ((t: string) => {
      out += t;
      return true;
    }) as typeof process.stdout.write;
    try {
      await program.parseAsync(['check', '--scenario', 'noiommu-flow', '--nth', '5'], {
        from: 'user',
      });
    } finally {
      process.stdout.write = write;
    }
    assert.equal(process.exitCode, saved);
    assert.match(out, /noiommu-flow with fail-nth 5: 5 injection points passed/);
  });
});
