/**
 * A client SIGKILLed while its map pins (decisions 280-282): the server goes on with the pin
 * of a process that is gone, undoes it, and is left with nothing: no pin, no charge, no frame,
 * no object, no bug; and a client that comes after is served.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Kernel } from '../../src/boot/kernel.ts';
import { checkInvariants } from '../../src/check/invariants.ts';
import { ensureNative } from '../../src/cli/native.ts';
import { CAP_FULL_SET } from '../../src/host/credentials.ts';
import { startServer } from '../../src/server/server.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');

/** Runs the program; SIGKILLs it once it says "busy". Resolves with its stdout. */
function runUntilBusy(guard: string, binary: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(guard, [binary, binary], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('busy')) child.kill('SIGKILL');
    });
    child.on('exit', (code, signal) => resolve(`${out.trim()} (${code ?? signal})`));
  });
}

describe('a client killed while its map pins', () => {
  it('leaves nothing behind once the server has undone the pin', async () => {
    const native = ensureNative(() => {});
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-pin-kill-'));
    const kernel = new Kernel({});
    const bugs: string[] = [];
    kernel.events.subscribe(
      (e) => {
        if (e.kind === 'log' && e.level === 'bug') bugs.push(e.message);
      },
      ['log'],
    );
    const server = await startServer(kernel, path.join(dir, 'emu.sock'), {
      testbedDir: path.join(dir, 'root'),
      grantedCaps: CAP_FULL_SET,
    });
    try {
      const binary = path.join(dir, 'pin_kill');
      const build = spawnSync(
        'gcc',
        [
          '-O1',
          '-Wall',
          '-Werror',
          '-pthread',
          '-I',
          path.join(ROOT, 'include'),
          '-o',
          binary,
          path.join(HERE, 'pin_kill.c'),
        ],
        { encoding: 'utf8' },
      );
      assert.equal(build.status, 0, build.stderr);
      const { LD_PRELOAD: _, ...rest } = process.env;
      const env = {
        ...rest,
        IOMMUFD_EMU_PRELOAD: native.shim,
        IOMMUFD_EMU_SOCKET: server.socketPath,
      };
      assert.equal(await runUntilBusy(native.guard, binary, env), 'busy (SIGKILL)');
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
      assert.equal(await runUntilBusy(native.guard, binary, env), 'busy (SIGKILL)');
    } finally {
      await server.close();
      kernel.shutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
