import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkInvariants } from '../check/invariants.ts';
import { createEmulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as t from '../uapi/iommufd-test.ts';

const PAGE = Number(u.PAGE_SIZE);
const IOVA = t.MOCK_APERTURE_START;

/** A process with an iommufd, an IOAS and 4 pages of its memory mapped at IOVA. */
function setup() {
  const emu = createEmulator();
  const proc = emu.spawn();
  const fd = proc.open('/dev/iommu');
  const ioas = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {}).out.out_ioas_id;
  const buf = proc.alloc(4 * PAGE, new Uint8Array(4 * PAGE).fill(7));
  const map = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
    flags: u.IOMMU_IOAS_MAP_FIXED_IOVA | u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE,
    ioas_id: ioas,
    user_va: buf,
    length: BigInt(4 * PAGE),
    iova: IOVA,
  });
  assert.equal(map.ret, 0);
  const test = <F extends Parameters<typeof proc.ioctlStruct>[2]['fields']>(
    spec: Parameters<typeof proc.ioctlStruct<F>>[2],
    value: Parameters<typeof proc.ioctlStruct<F>>[3],
  ) => proc.ioctlStruct(fd, ioctl.IOMMU_TEST_CMD, spec, value);
  const refs = (n: number, pages = 4) =>
    test(t.testCheckRefs, {
      op: t.IOMMU_TEST_OP_MD_CHECK_REFS,
      uptr: buf,
      length: BigInt(pages * PAGE),
      refs: n,
    }).ret;
  return { emu, proc, fd, ioas, buf, test, refs };
}

describe('access objects', () => {
  it('pin once with the domain, are told of an unmap, and leave nothing at exit', () => {
    const { emu, proc, fd, ioas, buf, test, refs } = setup();
    const created = test(t.testCreateAccess, {
      op: t.IOMMU_TEST_OP_CREATE_ACCESS,
      id: ioas,
      flags: t.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
    });
    assert.equal(created.ret, 0);
    const afd = created.out.out_access_fd;
    assert.ok(afd > fd);
    const pinned = test(t.testAccessPages, {
      op: t.IOMMU_TEST_OP_ACCESS_PAGES,
      id: afd,
      iova: IOVA,
      length: BigInt(2 * PAGE),
      uptr: buf,
    });
    assert.equal(pinned.ret, 0);
    assert.equal(refs(1, 2), 0);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    // A domain over the same pages: still one pin each.
    const md = test(t.testMockDomain, { op: t.IOMMU_TEST_OP_MOCK_DOMAIN, id: ioas });
    assert.equal(md.ret, 0);
    assert.equal(refs(1), 0);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    // The unmap asks the access to let go; its item is gone after.
    const unmap = proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, {
      ioas_id: ioas,
      iova: IOVA,
      length: BigInt(4 * PAGE),
    });
    assert.equal(unmap.ret, 0);
    assert.equal(refs(0), 0);
    const gone = test(t.testDestroyAccessPages, {
      op: t.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
      id: afd,
      access_pages_id: pinned.out.out_access_pages_id,
    });
    assert.equal(gone.ret, -Errno.ENOENT);
    assert.deepEqual(checkInvariants(emu.kernel), []);
    proc.exit();
    assert.equal(emu.kernel.machine.pinned.stats().pins, 0n);
    assert.deepEqual(emu.kernel.leaks(), []);
  });

  it('copies through the IOAS, and the fd names the access whatever iommufd is used', () => {
    const { emu, proc, fd, ioas, buf, test } = setup();
    const afd = test(t.testCreateAccess, { op: t.IOMMU_TEST_OP_CREATE_ACCESS, id: ioas }).out
      .out_access_fd;
    const src = proc.alloc(PAGE, new Uint8Array(PAGE).fill(0xab));
    const rw = test(t.testAccessRw, {
      op: t.IOMMU_TEST_OP_ACCESS_RW,
      id: afd,
      iova: IOVA + BigInt(PAGE - 2),
      length: 4n,
      uptr: src,
      flags: t.MOCK_ACCESS_RW_WRITE | t.MOCK_ACCESS_RW_SLOW_PATH,
    });
    assert.equal(rw.ret, 0);
    assert.deepEqual(
      [...proc.memory.read(buf + BigInt(PAGE - 3), 6)!],
      [7, 0xab, 0xab, 0xab, 0xab, 7],
    );
    // The iommufd fd itself is no access fd.
    const bad = test(t.testAccessRw, {
      op: t.IOMMU_TEST_OP_ACCESS_RW,
      id: fd,
      iova: IOVA,
      length: 4n,
      uptr: src,
    });
    assert.equal(bad.ret, -Errno.EBADFD);
    // Closing the iommufd keeps the context for the access; closing the access ends both.
    assert.equal(proc.close(fd), 0);
    assert.equal(emu.kernel.iommufd.contexts.size, 1);
    assert.equal(proc.close(afd), 0);
    assert.equal(emu.kernel.iommufd.contexts.size, 0);
    assert.deepEqual(emu.kernel.leaks(), []);
    proc.exit();
  });

  it('shows in VmPin of /proc/<pid>/status', () => {
    const { proc, ioas, test } = setup();
    const vmPin = () => {
      const sfd = proc.open(`/proc/${proc.pid}/status`, 0);
      const text = new TextDecoder().decode(proc.pread(sfd, 4096, 0n) as Uint8Array);
      proc.close(sfd);
      return /^VmPin:\s+(\d+) kB$/m.exec(text)?.[1];
    };
    assert.equal(vmPin(), '0');
    assert.equal(test(t.testMockDomain, { op: t.IOMMU_TEST_OP_MOCK_DOMAIN, id: ioas }).ret, 0);
    assert.equal(vmPin(), String((4 * PAGE) / 1024));
    proc.exit();
  });
});
