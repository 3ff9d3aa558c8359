import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { Command } from 'commander';
import { type CheckIo, type CheckOptions, registerCheckCommand, runCheck } from '../cli/check.ts';
import { activeMutant, setMutantForTest } from '../fault/mutant.ts';

afterEach(() => {
  setMutantForTest(undefined);
});

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
  it('sweeps a scenario clean with one summary line and exit 0 when not on a terminal', async () => {
    const r = await check({ scenario: 'noiommu-flow' });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^noiommu-flow: \d+ injection points, \d+ runs, 0 violations/m);
    assert.match(r.out, /^check: 1 scenarios, \d+ injection points, 0 violations$/m);
    assert.equal(r.err, '');
  });

  it('draws a one-line progress bar on a terminal', async () => {
    const r = await check({ scenario: 'ioas-basics' }, true);
    assert.equal(r.code, 0);
    assert.match(r.err, /^\rioas-basics \[#?\.+\] 1\/(\d+)\r/);
    const total = /1\/(\d+)/.exec(r.err)![1];
    assert.ok(r.err.includes(`\rioas-basics [${'#'.repeat(30)}] ${total}/${total}`));
    assert.ok(r.err.endsWith('\r\x1b[K'));
  });

  it('exits 1 and prints replay lines when a mutant is active', async () => {
    const r = await check({ scenario: 'noiommu-flow', mutant: 'halfbuilt-destroy' });
    assert.equal(r.code, 1);
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
    assert.equal(again.code, 1);
    assert.match(
      again.out,
      /> \[\d+\] ioctl\(\d+, VFIO_DEVICE_BIND_IOMMUFD\) = -EIO {3}<- injected kmalloc/,
    );
    assert.match(again.out, /bug: emulator bug/);
  });

  it('catches the cdev-open-unwind mutant where a cdev open fails under fail-nth', async () => {
    const r = await check({ scenario: 'iommu-device-flow', mutant: 'cdev-open-unwind' });
    assert.equal(r.code, 1, r.out);
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

  it('lists scenarios and mutants, and rejects bad usage with exit 2', async () => {
    const list = await check({ list: true });
    assert.match(list.out, /noiommu-flow/);
    assert.match(list.out, /halfbuilt-destroy/);
    assert.equal((await check({ scenario: 'nope' })).code, 2);
    assert.equal((await check({ mutant: 'nope' })).code, 2);
    assert.equal((await check({ nth: 3 })).code, 2);
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
