import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PM_PRESENT, PM_SWAP, PM_UFFD_WP } from './pagemap.ts';
import { CallMemory, findVma } from './proc-memory.ts';
import type { UserMemory } from './user-memory.ts';
import { isUffdFlags, type UffdSource, uffdVmas, userfaultRange } from './userfault.ts';

const PAGE = 0x1000n;

/** smaps text for VMAs given as [start, end, VmFlags]. */
function smaps(vmas: [bigint, bigint, string][]): string {
  return vmas
    .map(
      ([s, e, flags]) =>
        `${s.toString(16)}-${e.toString(16)} rw-p 00000000 00:00 0 \nSize: 4 kB\nKernelPageSize: 4 kB\nVmFlags: ${flags} \n`,
    )
    .join('');
}

/** A process whose pagemap entries are given per page (absent: not present). */
function source(text: string, pages: Map<bigint, bigint>): UffdSource {
  return {
    smaps: () => text,
    hostPagemap: (va, count) =>
      Array.from({ length: count }, (_, i) => pages.get(va + BigInt(i) * PAGE) ?? 0n),
  };
}

describe('userfaultfd ranges from smaps and pagemap', () => {
  const text = smaps([
    [0x10000n, 0x14000n, 'rd wr mr mw me ac'],
    [0x14000n, 0x18000n, 'rd wr mr mw me um ac'],
    [0x18000n, 0x1c000n, 'rd wr mr mw me uw ac'],
    [0x20000n, 0x24000n, 'rd wr sh mr mw me ms ui'],
    [0x24000n, 0x26000n, 'rd wr mr mw me ur ac'],
  ]);

  test('VmFlags um, uw and ui mark a registered VMA, and nothing else does', () => {
    assert.equal(isUffdFlags('VmFlags: rd wr mr mw me um ac '), true);
    assert.equal(isUffdFlags('VmFlags: rd wr uw'), true);
    assert.equal(isUffdFlags('VmFlags: rd wr sh ui'), true);
    assert.equal(isUffdFlags('VmFlags: rd wr ur'), true);
    assert.equal(isUffdFlags('VmFlags: rd wr mr mw me ac um2'), false);
    assert.equal(isUffdFlags('VmFlags: rd wr mr mw me ac'), false);
    assert.equal(findVma(text, 0x14000n)?.userfault, true);
    assert.equal(findVma(text, 0x10000n)?.userfault, undefined);
    const vmas = uffdVmas(text, 0x13000n, 0x21000n);
    assert.deepEqual(
      vmas.map((v) => [v.start, v.missing, v.wp, v.rwp]),
      [
        [0x10000n, false, false, false],
        [0x14000n, true, false, false],
        [0x18000n, false, true, false],
        [0x20000n, true, false, false],
      ],
    );
  });

  test('a missing page of a um VMA is faulted in from that page to the end of the access', () => {
    const pages = new Map([
      [0x14000n, PM_PRESENT],
      [0x16000n, PM_SWAP],
    ]);
    const src = source(text, pages);
    // Pages 0x14000 present, 0x15000 missing.
    assert.deepEqual(userfaultRange(src, 0x13800n, 0x3000, false), {
      addr: 0x15000n,
      length: 0x1800,
    });
    // A swapped page is no userfault (the kernel swaps it in); 0x17000 is missing.
    assert.deepEqual(userfaultRange(src, 0x16000n, 0x1800, false), {
      addr: 0x17000n,
      length: 0x800,
    });
    // Ordinary memory only: a plain fault.
    assert.equal(userfaultRange(src, 0x10000n, 0x4000, false), undefined);
  });

  test('a write-protected page of a uw VMA is a userfault for a write only', () => {
    const pages = new Map([
      [0x18000n, PM_PRESENT | PM_UFFD_WP],
      [0x19000n, PM_PRESENT],
    ]);
    const src = source(text, pages);
    assert.equal(userfaultRange(src, 0x18000n, 0x2000, false), undefined);
    assert.deepEqual(userfaultRange(src, 0x18100n, 0x100, true), { addr: 0x18100n, length: 0x100 });
    assert.equal(userfaultRange(src, 0x19000n, 0x1000, true), undefined);
  });

  test('a read-write protected page of a ur VMA is a userfault for a read too', () => {
    const pages = new Map([
      [0x24000n, PM_PRESENT],
      [0x25000n, PM_PRESENT | PM_UFFD_WP],
    ]);
    const src = source(text, pages);
    assert.equal(userfaultRange(src, 0x24000n, 0x1000, false), undefined);
    assert.deepEqual(userfaultRange(src, 0x24800n, 0x1000, false), {
      addr: 0x25000n,
      length: 0x800,
    });
  });

  test('a hole before the registered range leaves a plain fault', () => {
    const src = source(text, new Map());
    assert.equal(userfaultRange(src, 0x1c000n, 0x5000, false), undefined);
    // Minor mode: a page not mapped in this VMA waits for UFFDIO_CONTINUE.
    assert.deepEqual(userfaultRange(src, 0x20000n, 8, false), { addr: 0x20000n, length: 8 });
  });
});

/** Memory that fails every access; `probe` says which failures were userfaults. */
function failing(): UserMemory {
  return { mm: 'm', read: () => undefined, write: () => false, vma: () => undefined };
}

/** The fault a call memory remembers (a function, so that no assertion narrows it). */
function faultOf(mem: CallMemory): CallMemory['userfault'] {
  return mem.userfault;
}

describe('CallMemory and userfaults', () => {
  test('the first access that must wait is remembered, with a write its bytes', () => {
    const asked: [bigint, number, boolean][] = [];
    const mem = new CallMemory(failing(), 0x1000n, new Uint8Array(16), {
      userfaults: {
        userfaultRange: (addr, length, write) => {
          asked.push([addr, length, write]);
          return addr >= 0x8000n ? { addr: addr + 4n, length: length - 4 } : undefined;
        },
      },
    });
    assert.equal(mem.read(0x4000n, 8), undefined);
    assert.equal(mem.userfault, undefined);
    assert.equal(mem.write(0x8000n, Uint8Array.of(1, 2, 3, 4, 5, 6)), false);
    assert.deepEqual(mem.userfault, { addr: 0x8004n, length: 2, data: Uint8Array.of(5, 6) });
    // Later failures do not replace the first.
    assert.equal(mem.read(0x9000n, 8), undefined);
    assert.equal(faultOf(mem)?.addr, 0x8004n);
    assert.equal(asked.length, 2);
  });

  test('restart() forgets the fault and what the run wrote, and reads the window again', () => {
    const window = Uint8Array.of(1, 2, 3, 4);
    // The caller's memory still holds the window as the shim read it; nothing else is readable.
    const caller: UserMemory = {
      ...failing(),
      read: (addr, length) => (addr === 0x1000n && length === 4 ? window.slice() : undefined),
    };
    const mem = new CallMemory(caller, 0x1000n, window, {
      userfaults: { userfaultRange: (addr, length) => ({ addr, length }) },
    });
    assert.equal(mem.write(0x1000n, Uint8Array.of(9, 9)), true);
    assert.equal(mem.read(0x5000n, 1), undefined);
    assert.notEqual(mem.userfault, undefined);
    mem.restart();
    assert.equal(mem.userfault, undefined);
    assert.deepEqual(mem.read(0x1000n, 4), window);
    assert.deepEqual(mem.written(), []);
  });

  test('a pin asks only during the call', () => {
    const mem = new CallMemory(failing(), 0n, new Uint8Array(0), {
      userfaults: { userfaultRange: (addr, length) => ({ addr, length }) },
    });
    assert.equal(mem.pinFaults(0x4000n, 0x2000n), true);
    assert.deepEqual(mem.userfault, { addr: 0x4000n, length: 0x2000 });
    mem.finish();
    mem.restart();
    assert.equal(mem.pinFaults(0x4000n, 0x2000n), false);
  });
});
