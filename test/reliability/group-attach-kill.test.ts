/**
 * A legacy VFIO program killed while its GET_DEVICE_FD attaches the device to 512 MiB of mapped
 * "guest RAM" (decision 290): the call goes on a batch per turn, holding the container's
 * context; the process dies meanwhile. The server undoes the attach (the dead process's pages
 * cannot be pinned), puts the device file, and is left with nothing; a program run after is
 * served to its end.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkInvariants } from '../../src/check/invariants.ts';
import { buildProgram, runAndKill, withServer } from './client-program.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

describe('a legacy VFIO program killed during GET_DEVICE_FD', () => {
  it('leaves nothing behind, and the next one is served', async () => {
    await withServer(async ({ native, dir, kernel, server, bugs }) => {
      const binary = buildProgram(path.join(HERE, 'group_attach.c'), dir);
      // The kill lands once the attach holds the container's context: in the middle of it.
      const held = () => [...kernel.iommufd.contexts].some((ctx) => ctx.hold.held);
      let killedHeld = false;
      const killed = await runAndKill(native, server.socketPath, binary, [], {
        word: 'getting',
        delayMs: 0,
        when: () => {
          killedHeld = held();
          return killedHeld;
        },
      });
      assert.ok(killedHeld, 'the attach held the context');
      assert.equal(`${killed.stdout.trim()} (${killed.signal})`, 'getting (SIGKILL)');
      await server.whenIdle();
      assert.deepEqual(bugs, []);
      assert.deepEqual(kernel.leaks(), []);
      assert.deepEqual(checkInvariants(kernel), []);
      assert.equal(kernel.machine.pinned.stats().pinnedPages, 0n);
      assert.equal(kernel.iommufd.accounting.total(), 0n);
      // The next program gets its device, through the same GET_DEVICE_FD walk.
      const next = await runAndKill(native, server.socketPath, binary, [], {
        word: 'never',
        delayMs: 0,
      });
      assert.equal(`${next.stdout.trim()} (${next.code})`, 'getting\ngot (0)');
      await server.whenIdle();
      assert.deepEqual(bugs, []);
      assert.deepEqual(kernel.leaks(), []);
    });
  });
});
