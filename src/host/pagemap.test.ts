import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkInvariants } from '../check/invariants.ts';
import { createEmulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import { PM_PFRAME_MASK, PM_PRESENT } from './pagemap.ts';

const O_RDONLY = 0;

function entries(bytes: Uint8Array | number): bigint[] {
  assert.ok(bytes instanceof Uint8Array, `read failed: ${String(bytes)}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: bigint[] = [];
  for (let i = 0; i < bytes.byteLength; i += 8) out.push(view.getBigUint64(i, true));
  return out;
}

describe('/proc/<pid>/pagemap', () => {
  it('gives each present page a frame that stays, and DMA by it reaches the page', () => {
    const emu = createEmulator();
    const proc = emu.spawn();
    const buf = proc.alloc(2 * 4096);
    proc.memory.write(buf, new Uint8Array([0x5a]));
    const fd = proc.open('/proc/self/pagemap', O_RDONLY);
    assert.ok(fd >= 0);
    const at = (buf / 4096n) * 8n;
    const [first, second] = entries(proc.pread(fd, 16, at));
    assert.ok((first! & PM_PRESENT) !== 0n && (first! & PM_PFRAME_MASK) !== 0n);
    assert.notEqual(first! & PM_PFRAME_MASK, second! & PM_PFRAME_MASK);
    // Read again: the same frame.
    assert.deepEqual(entries(proc.pread(fd, 8, at)), [first]);
    // The frame is the page: the machine reads the program's byte there.
    const pa = (first! & PM_PFRAME_MASK) * 4096n;
    assert.equal(emu.kernel.machine.phys.read(pa, 1)[0], 0x5a);
    // Whole entries at whole entries' offsets only; another process's pagemap is not ours.
    assert.equal(proc.pread(fd, 8, at + 4n), -Errno.EINVAL);
    assert.equal(proc.pread(fd, 12, at), -Errno.EINVAL);
    assert.equal(proc.open(`/proc/${proc.pid + 1}/pagemap`, O_RDONLY), -Errno.EACCES);
    // 0400: a write open needs CAP_DAC_OVERRIDE (may_open), and the file has no write.
    const rw = proc.open('/proc/self/pagemap', 2);
    assert.ok(rw >= 0);
    assert.equal(proc.pwrite(rw, new Uint8Array(8), 0n), -Errno.EINVAL);
    assert.deepEqual(entries(proc.pread(rw, 8, at)), [first]);
    proc.close(rw);
    const plain = emu.spawn({ capEff: 0n });
    assert.equal(plain.open('/proc/self/pagemap', 2), -Errno.EACCES);
    plain.exit();
    // The same address space through the task's own file and /proc/thread-self.
    for (const path of [
      `/proc/${proc.pid}/task/${proc.pid}/pagemap`,
      '/proc/thread-self/pagemap',
    ]) {
      const tfd = proc.open(path, O_RDONLY);
      assert.ok(tfd >= 0, path);
      assert.deepEqual(entries(proc.pread(tfd, 8, at)), [first], path);
      proc.close(tfd);
    }
    // The resident pins are the invariants' and not a leak; they go with the process.
    assert.deepEqual(checkInvariants(emu.kernel), []);
    assert.deepEqual(
      emu.kernel.leaks().filter((l) => l.includes('pins')),
      [],
    );
    proc.exit();
    assert.equal(emu.kernel.machine.pinned.stats().pins, 0n);
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it('shows frame numbers only to a file opened with CAP_SYS_ADMIN, and pins nothing then', () => {
    const emu = createEmulator();
    const proc = emu.spawn({ capEff: 0n });
    const buf = proc.alloc(4096);
    const fd = proc.open('/proc/self/pagemap', O_RDONLY);
    const [entry] = entries(proc.pread(fd, 8, (buf / 4096n) * 8n));
    assert.equal(entry! & PM_PRESENT, PM_PRESENT);
    assert.equal(entry! & PM_PFRAME_MASK, 0n);
    assert.equal(emu.kernel.machine.pinned.stats().pins, 0n);
    proc.exit();
  });
});
