/**
 * The SIGKILL storm (storm.ts) at test size. `npm run soak` kills a thousand (docs/reliability.md).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storm } from './storm.ts';

describe('the SIGKILL storm', () => {
  it('leaves no leak, no bug and a serving server after each client killed mid-call', async () => {
    const result = await storm({ seed: 13, kills: 12, maxDelayMs: 40 });
    assert.deepEqual(result.problems, []);
    assert.equal(result.kills, 12);
    // The programs were served, not refused at their first call.
    assert.ok(result.calls > 12 * 20, `only ${result.calls} calls were served`);
    // Each program's first attack landed on its page table and was reported, not taken for a
    // bug, and its GET_PA answered as before (churn exits 15 otherwise).
    assert.ok(result.corruptions >= 12, `${result.corruptions} corruptions reported`);
  });
});
