/**
 * Long walks over a caller's memory (resched.ts): a task that may yield gets the same result,
 * errno and memory as one that may not, only later, with other work run in between; the rest of
 * the call runs with the call's fail-nth counter.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FailNth, withFailNth } from '../fault/fault.ts';
import { Errno } from '../uapi/errno.ts';
import { isBlocked, type MaybeBlocked } from './file.ts';
import { YIELD_BYTES } from './resched.ts';
import { SimulatedMemory } from './sim-memory.ts';
import type { Task } from './task.ts';
import { checkZeroedUserThen, clearUserThen, copyFromUser } from './uaccess.ts';

const MIB = 1024 * 1024;

function taskWith(memory: SimulatedMemory, yields: boolean): Task {
  const fds = {
    fileOf: () => undefined,
    isOpen: () => false,
    eventfd: () => -Errno.EBADF,
    getUnusedFd: () => -Errno.EMFILE,
    fdInstall: () => {
      throw new Error('no fds here');
    },
  };
  return { creds: undefined as never, memory, fds, yields, comm: () => 'test' };
}

/** The call's result and how many other event-loop turns ran before it came. */
async function settle(value: MaybeBlocked): Promise<{ ret: number; turnsBefore: number }> {
  if (!isBlocked(value)) return { ret: value, turnsBefore: 0 };
  let turns = 0;
  let done = false;
  const other = (): void => {
    if (done) return;
    turns++;
    setImmediate(other);
  };
  setImmediate(other);
  const ret = await value.blocked;
  done = true;
  return { ret, turnsBefore: turns };
}

function filled(length: number, byte: number): { memory: SimulatedMemory; addr: bigint } {
  const memory = new SimulatedMemory();
  const addr = memory.mmap(BigInt(length));
  assert.ok(memory.write(addr, new Uint8Array(length).fill(byte)));
  return { memory, addr };
}

describe('long user-memory walks', () => {
  it('a walk within one slice answers at once, even when the task may yield', () => {
    const { memory, addr } = filled(YIELD_BYTES, 0xff);
    const ret = clearUserThen(taskWith(memory, true), addr, YIELD_BYTES, (ok) => (ok ? 7 : -1));
    assert.equal(ret, 7);
    assert.ok(memory.read(addr, YIELD_BYTES)?.every((b) => b === 0));
  });

  it('a long clear yields, other work runs, and the memory and result are those of a clear at once', async () => {
    const length = 8 * YIELD_BYTES + 4096 * 3;
    const a = filled(length + 4096, 0xff);
    const b = filled(length + 4096, 0xff);
    const now = clearUserThen(taskWith(a.memory, false), a.addr, length, (ok) => (ok ? 0 : -14));
    const later = clearUserThen(taskWith(b.memory, true), b.addr, length, (ok) => (ok ? 0 : -14));
    assert.equal(now, 0);
    assert.ok(isBlocked(later));
    const { ret, turnsBefore } = await settle(later);
    assert.equal(ret, 0);
    assert.ok(turnsBefore >= 3, `${turnsBefore} other turns ran`);
    assert.deepEqual(b.memory.read(b.addr, length + 4096), a.memory.read(a.addr, length + 4096));
    assert.equal(b.memory.read(b.addr + BigInt(length), 1)?.[0], 0xff, 'no byte past the end');
  });

  it('a long clear into unmapped memory is EFAULT, with everything before the hole cleared', async () => {
    const { memory, addr } = filled(2 * MIB + YIELD_BYTES, 0xff);
    const length = 8 * YIELD_BYTES;
    const r = await settle(
      clearUserThen(taskWith(memory, true), addr, length, (ok) => (ok ? 0 : -Errno.EFAULT)),
    );
    assert.equal(r.ret, -Errno.EFAULT);
    assert.ok(memory.read(addr, 2 * MIB + YIELD_BYTES)?.every((b) => b === 0));
  });

  it('a long zero check finds a non-zero last byte, and a hole, as a check at once does', async () => {
    const length = 4 * YIELD_BYTES;
    const { memory, addr } = filled(length, 0);
    assert.ok(memory.write(addr + BigInt(length - 1), new Uint8Array([1])));
    const seen: (0 | 1 | undefined)[] = [];
    const then = (z: 0 | 1 | undefined): number => {
      seen.push(z);
      return 0;
    };
    await settle(checkZeroedUserThen(taskWith(memory, true), addr, length, then));
    await settle(checkZeroedUserThen(taskWith(memory, true), addr, length - 1, then));
    assert.ok(memory.write(addr + BigInt(length - 1), new Uint8Array([0])));
    await settle(checkZeroedUserThen(taskWith(memory, true), addr, length + 4096, then));
    assert.deepEqual(seen, [0, 1, undefined]);
  });

  it("the rest of the call runs with the call's fail-nth counter", async () => {
    const length = 2 * YIELD_BYTES;
    const { memory, addr } = filled(length, 0);
    const task = taskWith(memory, true);
    const counter = new FailNth();
    counter.arm(1);
    const value = withFailNth(counter, () =>
      checkZeroedUserThen(task, addr, length, () =>
        copyFromUser(task, addr, 8) === undefined ? -Errno.EFAULT : 0,
      ),
    );
    assert.ok(isBlocked(value));
    assert.equal((await settle(value)).ret, -Errno.EFAULT);
    assert.equal(counter.lastFired, 'copy-from-user');
  });
});
