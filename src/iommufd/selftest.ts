/**
 * IOMMU_TEST_CMD, the iommufd half of drivers/iommu/iommufd/selftest.c (CONFIG_IOMMUFD_TEST):
 * the selftest object that owns a mock device bound to the context and attached to an IOAS or
 * HWPT, and the ops that let a program look inside iommufd (the mock domain's IOPTEs, the pin
 * count of its own pages, reserved IOVA, dirty bits, the mock device's cache). The mock IOMMU
 * driver and bus are src/iommu/mock-driver.ts.
 *
 * The access objects are selftest-access.ts, the dma-buf exporter selftest-dmabuf.ts.
 */
import { shouldFail } from '../fault/fault.ts';
import { walkNow } from '../host/resched.ts';
import { copyFromUser } from '../host/uaccess.ts';
import { IOMMU_NO_PASID } from '../iommu/iommu.ts';
import {
  isMockDevice,
  type MockDevice,
  MockDomain,
  MockNestedDomain,
} from '../iommu/mock-driver.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_PGFAULT_FLAGS_LAST_PAGE,
  IOMMU_PGFAULT_FLAGS_PASID_VALID,
  PAGE_SIZE,
  ULONG_MAX,
} from '../uapi/iommufd.ts';
import {
  IOMMU_TEST_OP_ACCESS_PAGES,
  IOMMU_TEST_OP_ACCESS_REPLACE_IOAS,
  IOMMU_TEST_OP_ACCESS_RW,
  IOMMU_TEST_OP_ADD_RESERVED,
  IOMMU_TEST_OP_CREATE_ACCESS,
  IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
  IOMMU_TEST_OP_DEV_CHECK_CACHE,
  IOMMU_TEST_OP_DIRTY,
  IOMMU_TEST_OP_DMABUF_GET,
  IOMMU_TEST_OP_DMABUF_REVOKE,
  IOMMU_TEST_OP_MD_CHECK_IOTLB,
  IOMMU_TEST_OP_MD_CHECK_MAP,
  IOMMU_TEST_OP_MD_CHECK_REFS,
  IOMMU_TEST_OP_MOCK_DOMAIN,
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
  IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
  IOMMU_TEST_OP_PASID_ATTACH,
  IOMMU_TEST_OP_PASID_CHECK_HWPT,
  IOMMU_TEST_OP_PASID_DETACH,
  IOMMU_TEST_OP_PASID_REPLACE,
  IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
  IOMMU_TEST_OP_TRIGGER_IOPF,
  IOMMU_TEST_OP_TRIGGER_VEVENT,
  IOMMU_VEVENTQ_TYPE_SELFTEST,
  IOMMUFD_TEST_MEMORY_LIMIT_MIN,
  iommuViommuEventSelftest,
  MOCK_DEV_CACHE_ID_MAX,
  MOCK_NESTED_DOMAIN_IOTLB_ID_MAX,
  MOCK_PAGE_SIZE,
  testAddReserved,
  testCheckCache,
  testCheckMap,
  testCheckRefs,
  testDirty,
  testMemoryLimit,
  testMockDomain,
  testMockDomainReplace,
  testPasidAttach,
  testPasidCheck,
  testTriggerIopf,
  testTriggerVevent,
} from '../uapi/iommufd-test.ts';
import { writeFields } from '../uapi/struct.ts';
import type { IommufdCtx, ObjectRef } from './context.ts';
import {
  type IommufdDevice,
  iommufdDeviceAttachWalk,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplaceWalk,
  iommufdDeviceUnbind,
} from './device.ts';
import { reportDeviceFault } from './eventq.ts';
import { HwPagetable, type HwptNested, type HwptPaging } from './hw-pagetable.ts';
import type { Ioas } from './ioas.ts';
import { IommufdObject } from './object.ts';
import {
  accessPages,
  accessReplaceIoas,
  accessRwOp,
  createAccess,
  destroyAccessPages,
} from './selftest-access.ts';
import { args, respond, type TestUcmd, userPage } from './selftest-cmd.ts';
import { dmabufGetOp, dmabufRevokeOp } from './selftest-dmabuf.ts';
import { viommuReportEvent } from './veventq.ts';
import type { IommufdViommu } from './viommu.ts';

/** struct selftest_obj (TYPE_IDEV): the mock device, its binding, and the context it lives in. */
export class SelftestObj extends IommufdObject {
  readonly type = 'selftest';
  readonly mockDev: MockDevice;
  /** Set once bound and attached: destroy() then detaches and unbinds. */
  idev: IommufdDevice | undefined;

  constructor(ictx: IommufdCtx, mockDev: MockDevice) {
    super(ictx);
    this.mockDev = mockDev;
  }

  /** iommufd_selftest_destroy(). */
  destroy(): void {
    if (this.idev !== undefined) {
      // PASIDs left attached: Linux WARNs when the unbind then finds the device still in use
      // (docs/decisions.md 100); they are detached first here.
      for (const pasid of [...this.idev.igroup!.pasidAttach.keys()])
        iommufdDeviceDetach(this.idev, pasid);
      iommufdDeviceDetach(this.idev);
      iommufdDeviceUnbind(this.idev);
      this.idev = undefined;
    }
    this.ictx.subsystem.mockBus!.destroy(this.mockDev);
  }

  describe(): string {
    return `${super.describe()} ${this.mockDev.name}`;
  }
}

/** iommufd_test_mock_domain(): selftest object, mock device, bind, attach to cmd.id. */
function mockDomain(ucmd: TestUcmd, withFlags: boolean): SyscallResult {
  const ictx = ucmd.ictx;
  const cmd = args(ucmd, testMockDomain);
  const mdev = ictx.subsystem.mockBus!.create(withFlags ? cmd.dev_flags : 0);
  // The selftest object is allocated before the device in the kernel; its id is reserved first.
  if (typeof mdev === 'number') return mdev;
  const sobj = ictx.allocObject(new SelftestObj(ictx, mdev));
  if (typeof sobj === 'number') {
    ictx.subsystem.mockBus!.destroy(mdev);
    return sobj;
  }
  const idev = iommufdDeviceBind(ictx, mdev);
  if (typeof idev === 'number') {
    ictx.abortAndDestroy(sobj);
    return idev;
  }
  const ptId = { value: cmd.id };
  let rc = walkNow(iommufdDeviceAttachWalk(idev, ptId));
  if (rc) {
    iommufdDeviceUnbind(idev);
    ictx.abortAndDestroy(sobj);
    return rc;
  }
  sobj.idev = idev;
  cmd.out_hwpt_id = ptId.value;
  cmd.out_stdev_id = sobj.id;
  cmd.out_idev_id = idev.id;
  rc = respond(ucmd, testMockDomain, cmd);
  if (rc) {
    ictx.abortAndDestroy(sobj);
    return rc;
  }
  ictx.finalize(sobj);
  return 0;
}

/** iommufd_test_mock_domain_replace(): cmd.id is the selftest object. */
function mockDomainReplace(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testMockDomainReplace);
  using held = ucmd.ictx.getObjectRef(cmd.id, 'selftest');
  if (held === undefined) return -Errno.ENOENT;
  const sobj = held.obj as SelftestObj;
  const ptId = { value: cmd.pt_id };
  const rc = walkNow(iommufdDeviceReplaceWalk(sobj.idev!, ptId));
  if (rc) return rc;
  cmd.pt_id = ptId.value;
  return respond(ucmd, testMockDomainReplace, cmd);
}

/** Reserved IOVA with no owner: it stays until the IOAS is destroyed. */
const NO_OWNER = null;

/** iommufd_test_add_reserved(): an empty or wrapping range is refused before the IOAS lookup. */
function addReserved(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testAddReserved);
  if (cmd.length === 0n) return -Errno.EINVAL;
  const last = cmd.start + cmd.length - 1n;
  if (last > ULONG_MAX) return -Errno.EOVERFLOW;
  using held = ucmd.ictx.getObjectRef(cmd.id, 'ioas');
  if (held === undefined) return -Errno.ENOENT;
  return (held.obj as Ioas).iopt.reserveIova(cmd.start, last, NO_OWNER);
}

/** get_md_pagetable(): a paging HWPT whose domain is the mock driver's (else EINVAL). */
function withMockDomain(
  ucmd: TestUcmd,
  id: number,
  fn: (domain: MockDomain, hwpt: HwptPaging) => SyscallResult,
): SyscallResult {
  using held = ucmd.ictx.getObjectRef(id, 'hwpt-paging');
  if (held === undefined) return -Errno.ENOENT;
  const hwpt = held.obj as HwptPaging;
  if (!(hwpt.domain instanceof MockDomain)) return -Errno.EINVAL;
  return fn(hwpt.domain, hwpt);
}

/** iommufd_test_md_check_pa(): every 2 KiB IOPTE of the range points at the user's page. */
function mdCheckMap(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testCheckMap);
  if (cmd.iova % MOCK_PAGE_SIZE || cmd.length % MOCK_PAGE_SIZE || cmd.uptr % MOCK_PAGE_SIZE)
    return -Errno.EINVAL;
  if (cmd.uptr + cmd.length > ULONG_MAX + 1n) return -Errno.EINVAL;
  return withMockDomain(ucmd, cmd.id, (domain) => {
    for (let off = 0n; off < cmd.length; off += MOCK_PAGE_SIZE) {
      const uptr = cmd.uptr + off;
      const page = userPage(ucmd, uptr - (uptr % PAGE_SIZE));
      if (typeof page === 'number') return page;
      const pte = domain.pte(cmd.iova + off);
      if (pte === undefined || page.pfn === undefined) return -Errno.EINVAL;
      if (pte.pa !== page.pfn * PAGE_SIZE + (uptr % PAGE_SIZE)) return -Errno.EINVAL;
    }
    return 0;
  });
}

/** iommufd_test_md_check_refs(): the FOLL_PIN count of every small page of the range. */
function mdCheckRefs(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testCheckRefs);
  if (cmd.length % PAGE_SIZE || cmd.uptr % PAGE_SIZE) return -Errno.EINVAL;
  if (cmd.uptr + cmd.length > ULONG_MAX + 1n) return -Errno.EINVAL;
  for (let off = 0n; off < cmd.length; off += PAGE_SIZE) {
    const page = userPage(ucmd, cmd.uptr + off);
    if (typeof page === 'number') return page;
    // Pages of a compound (huge) page are skipped.
    if (!page.compound && page.pins !== cmd.refs) return -Errno.EIO;
  }
  return 0;
}

/** The most IOPTEs one DIRTY marks: a bitmap of 16 MiB (the kernel's SZ_16M * BITS_PER_BYTE). */
const DIRTY_BITS_MAX = (16n << 20n) * 8n;

/**
 * iommufd_test_dirty(): mark dirty the IOPTE at iova + i * page_size for every bit i below
 * length / page_size set in the user's bitmap; out_nr_dirty counts the bits set, whether or not
 * an IOPTE is there.
 */
function dirty(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testDirty);
  const pageSize = cmd.page_size;
  if (!pageSize || !cmd.length || cmd.iova % pageSize || cmd.length % pageSize || !cmd.uptr)
    return -Errno.EINVAL;
  const max = cmd.length / pageSize;
  if (max > DIRTY_BITS_MAX) return -Errno.EOVERFLOW;
  return withMockDomain(ucmd, cmd.id, (domain) => {
    if (!domain.dirtyTracking) return -Errno.EINVAL;
    // kvzalloc() of the bitmap, then the copy of its whole bytes.
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    const bitmap = copyFromUser(ucmd.task, cmd.uptr, Number((max + 7n) / 8n));
    if (bitmap === undefined) return -Errno.EFAULT;
    let count = 0n;
    for (let byte = 0; byte < bitmap.length; byte++) {
      if (bitmap[byte] === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const i = BigInt(byte * 8 + bit);
        if (i >= max || !(bitmap[byte]! & (1 << bit))) continue;
        const pte = domain.pte(cmd.iova + i * pageSize);
        if (pte !== undefined) pte.leaf.dirty = true;
        count++;
      }
    }
    cmd.out_nr_dirty = count;
    return respond(ucmd, testDirty, cmd);
  });
}

/** iommufd_test_dev_check_cache(): cmd.id is the mock device's DEVICE object. */
function devCheckCache(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testCheckCache);
  using held = ucmd.ictx.getObjectRef(cmd.id, 'device');
  if (held === undefined) return -Errno.ENOENT;
  const dev = (held.obj as IommufdDevice).dev;
  if (!isMockDevice(dev)) return -Errno.EINVAL;
  if (cmd.cache_id > MOCK_DEV_CACHE_ID_MAX || dev.cache[cmd.cache_id] !== cmd.value)
    return -Errno.EINVAL;
  return 0;
}

/**
 * iommufd_test_md_check_iotlb(): entry `cache_id` of a nested mock domain's IOTLB is `value`
 * (ENOENT for anything but a nested HWPT, EINVAL for another driver's, an id past 3 or another
 * value).
 */
function mdCheckIotlb(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testCheckCache);
  using held = ucmd.ictx.getObjectRef(cmd.id, 'hwpt-nested');
  if (held === undefined) return -Errno.ENOENT;
  const domain = (held.obj as HwptNested).domain;
  if (!(domain instanceof MockNestedDomain)) return -Errno.EINVAL;
  if (cmd.cache_id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX || domain.iotlb[cmd.cache_id] !== cmd.value)
    return -Errno.EINVAL;
  return 0;
}

/**
 * iommufd_test_trigger_iopf(): a mock device (a DEVICE object: ENOENT; not a mock one: EINVAL)
 * reports a last-page page request with its `pasid` (PASID_VALID unless 0), `grpid`, `perm`
 * and `addr`. Whether anything was queued, the op succeeds.
 */
function triggerIopf(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testTriggerIopf);
  using held = ucmd.ictx.getObjectRef(cmd.dev_id, 'device');
  if (held === undefined) return -Errno.ENOENT;
  const idev = held.obj as IommufdDevice;
  if (!isMockDevice(idev.dev)) return -Errno.EINVAL;
  let flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE;
  if (cmd.pasid !== IOMMU_NO_PASID) flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID;
  reportDeviceFault(idev, {
    flags,
    pasid: cmd.pasid,
    grpid: cmd.grpid,
    perm: cmd.perm,
    addr: cmd.addr,
  });
  return 0;
}

/**
 * iommufd_test_trigger_vevent(): the mock device (a DEVICE object: ENOENT) reports an event
 * {virt_id} to the vIOMMU of the nested HWPT it is attached to, with the virt_id its vDEVICE had
 * when it attached: ENOENT if it is attached to none or that virt_id is 0; EOPNOTSUPP if the
 * vIOMMU has no vEVENTQ of IOMMU_VEVENTQ_TYPE_SELFTEST.
 */
function triggerVevent(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testTriggerVevent);
  using held = ucmd.ictx.getObjectRef(cmd.dev_id, 'device');
  if (held === undefined) return -Errno.ENOENT;
  const dev = (held.obj as IommufdDevice).dev;
  // A device of another driver has no mock state: nothing it could report (decision 165).
  if (!isMockDevice(dev)) return -Errno.ENOENT;
  const viommu = dev.viommu as IommufdViommu | undefined;
  if (viommu === undefined || dev.vdevId === 0n) return -Errno.ENOENT;
  const event = new Uint8Array(iommuViommuEventSelftest.size);
  writeFields(iommuViommuEventSelftest, event, { virt_id: Number(dev.vdevId & 0xffffffffn) });
  return viommuReportEvent(viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, event);
}

/** iommufd_test_get_selftest_obj(): cmd.id names the selftest object of a mock device. */
function selftestObj(ucmd: TestUcmd, id: number): ObjectRef<SelftestObj> | undefined {
  return ucmd.ictx.getObjectRef(id, 'selftest') as ObjectRef<SelftestObj> | undefined;
}

/** iommufd_test_pasid_attach(): attach a PASID of the mock device to pt_id (IOAS or HWPT). */
function pasidAttach(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testPasidAttach);
  using held = selftestObj(ucmd, cmd.id);
  if (held === undefined) return -Errno.ENOENT;
  const idev = held.obj.idev!;
  const ptId = { value: cmd.pt_id };
  let rc = walkNow(iommufdDeviceAttachWalk(idev, ptId, cmd.pasid));
  if (rc) return rc;
  cmd.pt_id = ptId.value;
  rc = respond(ucmd, testPasidAttach, cmd);
  if (rc) iommufdDeviceDetach(idev, cmd.pasid);
  return rc;
}

/** iommufd_test_pasid_replace(). */
function pasidReplace(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testPasidAttach);
  using held = selftestObj(ucmd, cmd.id);
  if (held === undefined) return -Errno.ENOENT;
  const ptId = { value: cmd.pt_id };
  const rc = walkNow(iommufdDeviceReplaceWalk(held.obj.idev!, ptId, cmd.pasid));
  if (rc) return rc;
  cmd.pt_id = ptId.value;
  return respond(ucmd, testPasidAttach, cmd);
}

/** iommufd_test_pasid_detach(): nothing attached there is no error. */
function pasidDetach(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testPasidAttach);
  using held = selftestObj(ucmd, cmd.id);
  if (held === undefined) return -Errno.ENOENT;
  iommufdDeviceDetach(held.obj.idev!, cmd.pasid);
  return 0;
}

/**
 * iommufd_test_pasid_check_hwpt(): the domain attached at `pasid` (PASID 0 is the RID's) is
 * hwpt_id's, or, for hwpt_id 0, there is none. EINVAL otherwise or for an id that is no HWPT.
 */
function pasidCheckHwpt(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testPasidCheck);
  using held = selftestObj(ucmd, cmd.id);
  if (held === undefined) return -Errno.ENOENT;
  const group = held.obj.mockDev.group!;
  const attached =
    cmd.pasid === IOMMU_NO_PASID
      ? group.hasHandle
        ? group.domain
        : undefined
      : group.pasidDomains.get(cmd.pasid);
  if (cmd.hwpt_id === 0) return attached === undefined ? 0 : -Errno.EINVAL;
  using hwpt = ucmd.ictx.getObjectRef(cmd.hwpt_id, 'any');
  if (hwpt === undefined) return -Errno.ENOENT;
  if (!(hwpt.obj instanceof HwPagetable)) return -Errno.EINVAL;
  return attached === hwpt.obj.domain ? 0 : -Errno.EINVAL;
}

/** IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT: a kernel-wide setting; it only changes batch sizes. */
function setTempMemoryLimit(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testMemoryLimit);
  if (cmd.limit < IOMMUFD_TEST_MEMORY_LIMIT_MIN) return -Errno.EINVAL;
  ucmd.ictx.subsystem.testMemoryLimit = cmd.limit;
  return 0;
}

/** iommufd_test(): the op switch. */
export function iommufdTest(ucmd: TestUcmd): SyscallResult {
  switch (ucmd.cmd.op) {
    case IOMMU_TEST_OP_ADD_RESERVED:
      return addReserved(ucmd);
    case IOMMU_TEST_OP_MOCK_DOMAIN:
      return mockDomain(ucmd, false);
    case IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
      return mockDomain(ucmd, true);
    case IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE:
      return mockDomainReplace(ucmd);
    case IOMMU_TEST_OP_MD_CHECK_MAP:
      return mdCheckMap(ucmd);
    case IOMMU_TEST_OP_MD_CHECK_REFS:
      return mdCheckRefs(ucmd);
    case IOMMU_TEST_OP_MD_CHECK_IOTLB:
      return mdCheckIotlb(ucmd);
    case IOMMU_TEST_OP_TRIGGER_IOPF:
      return triggerIopf(ucmd);
    case IOMMU_TEST_OP_TRIGGER_VEVENT:
      return triggerVevent(ucmd);
    case IOMMU_TEST_OP_CREATE_ACCESS:
      return createAccess(ucmd);
    case IOMMU_TEST_OP_ACCESS_REPLACE_IOAS:
      return accessReplaceIoas(ucmd);
    case IOMMU_TEST_OP_ACCESS_PAGES:
      return accessPages(ucmd);
    case IOMMU_TEST_OP_ACCESS_RW:
      return accessRwOp(ucmd);
    case IOMMU_TEST_OP_DESTROY_ACCESS_PAGES:
      return destroyAccessPages(ucmd);
    case IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
      return setTempMemoryLimit(ucmd);
    case IOMMU_TEST_OP_DIRTY:
      return dirty(ucmd);
    case IOMMU_TEST_OP_DEV_CHECK_CACHE:
      return devCheckCache(ucmd);
    case IOMMU_TEST_OP_PASID_ATTACH:
      return pasidAttach(ucmd);
    case IOMMU_TEST_OP_PASID_REPLACE:
      return pasidReplace(ucmd);
    case IOMMU_TEST_OP_PASID_DETACH:
      return pasidDetach(ucmd);
    case IOMMU_TEST_OP_PASID_CHECK_HWPT:
      return pasidCheckHwpt(ucmd);
    case IOMMU_TEST_OP_DMABUF_GET: {
      const phys = ucmd.ictx.subsystem.phys;
      return phys === undefined ? -Errno.ENOMEM : dmabufGetOp(ucmd, phys);
    }
    case IOMMU_TEST_OP_DMABUF_REVOKE:
      return dmabufRevokeOp(ucmd);
    default:
      return -Errno.EOPNOTSUPP;
  }
}
