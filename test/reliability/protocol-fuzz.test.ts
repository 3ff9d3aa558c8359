/**
 * The seeded protocol fuzzer (protocol-fuzz.ts) at test size. `npm run soak` runs it longer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { protocolFuzz } from './protocol-fuzz.ts';

describe('the protocol fuzzer', () => {
  it('leaves no bug, no leak, and a server that still answers', async () => {
    const { frames } = await protocolFuzz({ seed: 13, runs: 10, length: 60 });
    assert.ok(frames > 200, `only ${frames} frames sent`);
  });
});
