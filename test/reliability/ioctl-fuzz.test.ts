/**
 * The bounded ioctl fuzzer (ioctl-fuzz.ts) at test size: a few thousand calls from a fixed seed.
 * `npm run soak` runs the same fuzzer for a million (docs/reliability.md).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type FuzzResult, fuzz } from './ioctl-fuzz.ts';

describe('the ioctl fuzzer', () => {
  it('finds no emulator bug, foreign errno, broken invariant or leak', async () => {
    const runs: FuzzResult[] = [];
    await fuzz({ seed: 13, runs: 30, length: 300, onRun: (r) => runs.push(r) });
    const calls = runs.reduce((n, r) => n + r.calls, 0);
    const ok = runs.reduce((n, r) => n + (r.results.get('0') ?? 0), 0);
    // The run must reach the kernel, not only its framing: some calls succeed.
    assert.ok(calls > 1000, `only ${calls} calls`);
    assert.ok(ok > calls / 20, `only ${ok} of ${calls} calls succeeded`);
  });
});
