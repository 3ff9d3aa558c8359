/**
 * A small reliability storm in `npm test` (storm.ts): shimmed clients making real and random
 * calls are SIGKILLed at random moments while a bystander's calls must all succeed, and
 * afterwards the server holds nothing. `npm run soak` runs the full-size one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storm } from './storm.ts';

describe('SIGKILL storm', () => {
  it('clients killed at random moments leave nothing behind; a bystander is served', async () => {
    const r = await storm({ clients: 3, kills: 24, maxLifeMs: 400, bystanderRounds: 200 });
    assert.deepEqual(r.problems, []);
    assert.equal(r.kills, 24);
  });
});
