import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isBlocked, type MaybeBlocked } from '../host/file.ts';
import type { ProcMemory } from '../host/proc-memory.ts';
import type { UserMemory } from '../host/user-memory.ts';
import type { UserfaultRange } from '../host/userfault.ts';
import { ServedMemory } from './client-memory.ts';
import type { FaultInOutcome, FaultIns } from './fault-in.ts';

/** One readable and writable mapping over everything. */
const ALL = { start: 0n, end: 1n << 47n, readable: true, writable: true };

/**
 * A process whose pages from `missing` on fail until faulted in (every access there is a
 * userfault), and a fault-in that answers `outcome` and marks what it faulted in.
 */
function world(outcome: FaultInOutcome, keepsTakingAway = false) {
  let present = 0x3000n;
  const faultIns: [bigint, number][] = [];
  const memory: UserMemory = {
    mm: 'pid1/mm1',
    read: (addr, length) => (addr + BigInt(length) <= present ? new Uint8Array(length) : undefined),
    write: () => false,
    vma: () => undefined,
  };
  const proc = {
    pid: 1,
    userfaultRange: (addr: bigint, length: number): UserfaultRange => {
      const from = addr > present ? addr : present;
      return { addr: from, length: Number(addr + BigInt(length) - from) };
    },
  } as unknown as ProcMemory;
  const helper = {
    faultIn: (_pid: number, _mm: string, range: UserfaultRange): Promise<FaultInOutcome> => {
      faultIns.push([range.addr, range.length]);
      // One page per round, as a handler that supplies the faulting page only.
      if (outcome === 'in' && !keepsTakingAway) present = range.addr + 0x1000n;
      return Promise.resolve(outcome);
    },
  } as unknown as FaultIns;
  const served = new ServedMemory(
    memory,
    { mapRanges: () => [ALL] },
    undefined,
    undefined,
    proc,
    helper,
  );
  return { served, faultIns };
}

/** A call that reads [0x1000, 0x6000) and fails with EFAULT if it cannot. */
function readingCall(served: ServedMemory, runs: { n: number }): () => MaybeBlocked {
  return () => {
    runs.n++;
    return served.read(0x1000n, 0x5000) === undefined ? -14 : 0;
  };
}

async function result(value: MaybeBlocked): Promise<number> {
  return isBlocked(value) ? value.blocked : (value as number);
}

describe('ServedMemory.settle', () => {
  test('a call that failed on a userfault runs again until its memory is in', async () => {
    const { served, faultIns } = world('in');
    const runs = { n: 0 };
    const call = readingCall(served, runs);
    const first = call();
    assert.equal(first, -14);
    assert.equal(await result(served.settle(first, call)), 0);
    assert.equal(runs.n, 4);
    assert.deepEqual(
      faultIns.map(([addr]) => addr),
      [0x3000n, 0x4000n, 0x5000n],
    );
  });

  test('where the kernel copy would fail too, or the process is gone, the failure stands', async () => {
    for (const outcome of ['fault', 'gone'] as const) {
      const { served, faultIns } = world(outcome);
      const runs = { n: 0 };
      const call = readingCall(served, runs);
      assert.equal(await result(served.settle(call(), call)), -14);
      assert.equal(runs.n, 1);
      assert.equal(faultIns.length, 1);
    }
  });

  test('a page that fails again where it was just faulted in ends the call', async () => {
    const { served, faultIns } = world('in', true);
    const runs = { n: 0 };
    const call = readingCall(served, runs);
    assert.equal(await result(served.settle(call(), call)), -14);
    assert.equal(runs.n, 2);
    assert.equal(faultIns.length, 1);
  });

  test('a call that succeeded, or failed without a userfault, is answered as it is', async () => {
    const { served, faultIns } = world('in');
    const runs = { n: 0 };
    const ok = (): MaybeBlocked => 0;
    assert.equal(served.settle(ok(), ok), 0);
    const einval = (): MaybeBlocked => {
      runs.n++;
      return -22;
    };
    assert.equal(served.settle(einval(), einval), -22);
    assert.equal(runs.n, 1);
    assert.equal(faultIns.length, 0);
  });
});
