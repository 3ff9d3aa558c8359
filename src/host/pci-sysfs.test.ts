import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Kernel } from '../boot/kernel.ts';
import { SimProcess } from './sim-process.ts';

const kernels: Kernel[] = [];
after(() => {
  for (const k of kernels) k.shutdown();
});

function boot(): Kernel {
  const k = new Kernel();
  kernels.push(k);
  return k;
}

const DIR = '/sys/bus/pci/devices/0000:00:04.0';

describe('PCI sysfs files', () => {
  it('config: the whole space for a CAP_SYS_ADMIN opener, 64 bytes for another', () => {
    const k = boot();
    const root = new SimProcess(k);
    const fd = root.open(`${DIR}/config`, 0);
    assert.ok(fd >= 0);
    const all = root.pread(fd, 4096, 0n);
    assert.ok(all instanceof Uint8Array);
    assert.equal(all.length, 256);
    assert.equal(all[0], 0x34, 'vendor 0x1234, low byte');
    const user = new SimProcess(k, { uid: 1000, capEff: 0n });
    const ufd = user.open(`${DIR}/config`, 0);
    const some = user.pread(ufd, 4096, 0n);
    assert.ok(some instanceof Uint8Array);
    assert.equal(some.length, 64);
    assert.deepEqual(some, all.subarray(0, 64));
  });

  it('config: root writes go straight to the device, in aligned pieces, up to its size', () => {
    const k = boot();
    const root = new SimProcess(k);
    const pci = k.machine.device('0000:00:04.0')!;
    const fd = root.open(`${DIR}/config`, 2 /* O_RDWR */);
    assert.ok(fd >= 0);
    // The command register: memory decode and bus mastering on.
    assert.equal(root.pwrite(fd, new Uint8Array([0x06, 0x00]), 4n), 2);
    assert.equal(pci.configRead(0x04, 2), 0x0006);
    // A byte at an odd offset, then the rest: the cache line size and latency timer.
    assert.equal(root.pwrite(fd, new Uint8Array([0x10, 0x20]), 0x0cn), 2);
    assert.equal(pci.configRead(0x0c, 1), 0x10);
    // Read-only bits stay (the vendor id); past the end is EFBIG, a write clipped to it.
    assert.equal(root.pwrite(fd, new Uint8Array([0xff, 0xff]), 0n), 2);
    assert.equal(pci.configRead(0x00, 2), 0x1234);
    assert.equal(root.pwrite(fd, new Uint8Array([1]), 256n), -27 /* EFBIG */);
    assert.equal(root.pwrite(fd, new Uint8Array(8), 252n), 4);
    // Root's 0644 file: others cannot open it for writing.
    const user = new SimProcess(k, { uid: 1000, capEff: 0n });
    assert.equal(user.open(`${DIR}/config`, 1 /* O_WRONLY */), -13 /* EACCES */);
  });

  it('resource: BAR0 where the firmware put it, 1 MiB, 32-bit memory', () => {
    const k = boot();
    const p = new SimProcess(k);
    const fd = p.open(`${DIR}/resource`, 0);
    const text = new TextDecoder().decode(p.pread(fd, 4096, 0n) as Uint8Array);
    const lines = text.trimEnd().split('\n');
    assert.equal(lines.length, 7);
    assert.equal(lines[0], '0x00000000fe000000 0x00000000fe0fffff 0x0000000000040200');
    const next = new TextDecoder().decode(
      p.pread(p.open('/sys/bus/pci/devices/0000:00:05.0/resource', 0), 4096, 0n) as Uint8Array,
    );
    assert.match(next, /^0x00000000fe100000 0x00000000fe1fffff /);
  });
});
