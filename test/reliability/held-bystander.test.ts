/**
 * One client's big attach, unmap and exit cost that client time, not everyone's (decisions
 * 290-293): while an unmodified C program's attach pins and maps 512 MiB, while its unmap unpins
 * it, and while the server tears down what it left mapped at exit, its context is held, and
 * another client's request is answered meanwhile. Shown by order, not by time: the bystander's
 * reply arrives while the hold is still there.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkInvariants } from '../../src/check/invariants.ts';
import { credsOf, Peer, replies, statRequest, transport } from '../../src/server/_test-peer.ts';
import { buildProgram, runAndKill, withServer } from './client-program.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

describe("a client's big attach and unmap", () => {
  it('hold its own context only: a bystander is answered meanwhile', async () => {
    await withServer(async ({ native, dir, kernel, server }) => {
      const peer = await Peer.start();
      try {
        const binary = buildProgram(path.join(HERE, 'big_calls.c'), dir);
        const bystander = await transport(server, peer);
        const iommufd = kernel.iommufd;
        const contexts = () => new Set([...iommufd.contexts, ...iommufd.tearingDown]);
        const held = () => [...contexts()].some((ctx) => ctx.hold.held);
        // The attach publishes its domain when it ends: before that, the hold is the attach's.
        const step = () => {
          if ([...contexts()].some((ctx) => ctx.teardowns.length > 0)) return 'tearing down';
          const published = [...iommufd.contexts].flatMap((ctx) => ctx.publishedObjects());
          return published.some((o) => o.type === 'hwpt-paging') ? 'unmapping' : 'attaching';
        };
        // Each time the client's context is held, the bystander asks once; the step it was in, and
        // whether the hold was still there when the answer came.
        const answered: string[] = [];
        let asking = false;
        let asked = Promise.resolve();
        let seq = 2;
        const poll = setInterval(() => {
          if (asking || !held()) return;
          asking = true;
          const during = step();
          const before = replies(bystander);
          bystander.send(statRequest(credsOf(peer.pid), seq++));
          asked = bystander
            .until('the STAT reply', () => replies(bystander) > before, 30_000)
            .then(() => {
              answered.push(`${during} ${held() ? 'while held' : 'after'}`);
              asking = false;
            });
        }, 5);
        const run = runAndKill(native, server.socketPath, binary, [], { word: '\0', delayMs: 0 });
        const result = await run;
        assert.equal(
          `${result.stdout.trim()} (${result.code})`,
          'attaching\nunmapping\nexiting (0)',
        );
        // What it left is torn down after its release (once the server has seen the process go,
        // its context is released): the bystander still asks meanwhile.
        for (const end = Date.now() + 30_000; iommufd.contexts.size > 0; ) {
          assert.ok(Date.now() < end, "the client's context was never released");
          await new Promise((r) => setTimeout(r, 5));
        }
        await iommufd.work.whenIdle();
        clearInterval(poll);
        await asked;
        await peer.kill();
        await server.whenIdle();
        for (const during of ['attaching', 'unmapping', 'tearing down'])
          assert.ok(answered.includes(`${during} while held`), answered.join(', '));
        assert.deepEqual(kernel.leaks(), []);
        assert.deepEqual(checkInvariants(kernel), []);
        assert.equal(kernel.machine.pinned.stats().pinnedPages, 0n);
      } finally {
        await peer.kill();
      }
    });
  });
});
