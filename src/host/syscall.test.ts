/**
 * The syscall boundary reports an emulator bug as an event, never on a terminal: the call fails
 * with EIO, the 'bug' event carries the stack, and nothing is written to stderr.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type EmuEvent, EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { runSyscall } from './syscall.ts';

test('an exception in a handler is EIO and a bug event with its stack, and no stderr output', () => {
  const events = new EventBus();
  const seen: EmuEvent[] = [];
  events.subscribe((e) => seen.push(e));
  const written: string[] = [];
  const original = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  let ret: number;
  try {
    ret = runSyscall(events, 'ioctl(3, 0x3b00)', undefined, function brokenHandler(): number {
      throw new Error('handler broke');
    });
  } finally {
    process.stderr.write = original;
  }
  assert.equal(ret, -Errno.EIO);
  assert.deepEqual(written, []);
  assert.equal(seen.length, 1);
  const bug = seen[0]!;
  assert.ok(bug.kind === 'log' && bug.level === 'bug');
  assert.match(bug.message, /^emulator bug in ioctl\(3, 0x3b00\): Error: handler broke/);
  assert.match(bug.message, /at brokenHandler/);
});
