import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventBus } from '../trace/events.ts';
import { FaultIns } from './fault-in.ts';

test('a fault-in says when the process is gone and when the access faults', async () => {
  const faultIns = new FaultIns(new EventBus());
  // A pid no process has (above pid_max's largest value).
  assert.equal(await faultIns.faultIn(1 << 23, 'none', { addr: 0x1000n, length: 1 }), 'gone');
  // Page 0 of this process is never mapped: the kernel's copy fails there too.
  assert.equal(await faultIns.faultIn(process.pid, 'self', { addr: 0x10n, length: 8 }), 'fault');
  const data = Uint8Array.of(1, 2, 3);
  assert.equal(
    await faultIns.faultIn(process.pid, 'self', { addr: 0x10n, length: 3, data }),
    'fault',
  );
  assert.equal(faultIns.pending, 0);
});
