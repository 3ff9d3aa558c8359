/**
 * A client SIGKILLed while its map pins (decisions 280-282): the server goes on with the pin
 * of a process that is gone, undoes it, and is left with nothing: no pin, no charge, no frame,
 * no object, no bug; and a client that comes after is served.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkInvariants } from '../../src/check/invariants.ts';
import type { NativeParts } from '../../src/cli/native.ts';
import { buildProgram, runAndKill, withServer } from './client-program.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Runs the program and SIGKILLs it once it says "busy": what it said, and how it ended. */
async function killedWhenBusy(
  native: NativeParts,
  socket: string,
  binary: string,
): Promise<string> {
  const run = await runAndKill(native, socket, binary, [], { word: 'busy', delayMs: 0 });
  return `${run.stdout.trim()} (${run.code ?? run.signal})`;
}

describe('a client killed while its map pins', () => {
  it('leaves nothing behind once the server has undone the pin', async () => {
    await withServer(async ({ native, dir, kernel, server, bugs }) => {
      const binary = buildProgram(path.join(HERE, 'pin_kill.c'), dir);
      assert.equal(await killedWhenBusy(native, server.socketPath, binary), 'busy (SIGKILL)');
      // The server is idle only once the dead client's map has returned (it holds its file).
      await server.whenIdle();
      const machine = kernel.machine;
      assert.equal(machine.pinned.stats().pinnedPages, 0n);
      assert.equal(machine.phys.stats().framesInUse, 0n);
      await kernel.machine.whenIdle();
      assert.deepEqual(bugs, []);
      assert.deepEqual(kernel.leaks(), []);
      assert.deepEqual(checkInvariants(kernel), []);
      assert.equal(kernel.iommufd.accounting.total(), 0n);
      // The next client is served: the same program gets as far as its own pin.
      assert.equal(await killedWhenBusy(native, server.socketPath, binary), 'busy (SIGKILL)');
    });
  });
});
