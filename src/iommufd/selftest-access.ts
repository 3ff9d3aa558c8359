/**
 * The test interface's access objects, the access half of drivers/iommu/iommufd/selftest.c:
 * CREATE_ACCESS makes an in-kernel access (access.ts) on an IOAS and returns it as a new fd (an
 * anonymous "[iommufd_test_staccess]" file); the other ops name that fd in `id`. ACCESS_PAGES pins
 * a range and keeps it as an item until DESTROY_ACCESS_PAGES, an unmap of any of it (the driver's
 * unmap callback drops the item), or the fd's last close; ACCESS_RW copies through the IOAS
 * without pinning; ACCESS_REPLACE_IOAS moves the access to another IOAS.
 */
import { shouldFail } from '../fault/fault.ts';
import { File, type FileOperations } from '../host/file.ts';
import { copyFromUser, copyToUser } from '../host/uaccess.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE, ULONG_MAX } from '../uapi/iommufd.ts';
import {
  MOCK_ACCESS_RW_SLOW_PATH,
  MOCK_ACCESS_RW_WRITE,
  MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
  MOCK_FLAGS_ACCESS_SYZ,
  MOCK_FLAGS_ACCESS_WRITE,
  testAccessPages,
  testAccessReplaceIoas,
  testAccessRw,
  testCreateAccess,
  testDestroyAccessPages,
} from '../uapi/iommufd-test.ts';
import {
  accessAttach,
  accessCreate,
  accessDestroy,
  accessPinPages,
  accessReplace,
  accessRw,
  accessSyzIova,
  accessUnpinPages,
  type IommufdAccess,
} from './access.ts';
import { args, respond, type TestUcmd, userPage } from './selftest-cmd.ts';

/** One ACCESS_PAGES pin the access holds (struct selftest_access_item). */
interface AccessItem {
  readonly iova: bigint;
  readonly length: bigint;
  readonly id: number;
}

/** struct selftest_access: the file's private data. */
class SelftestAccess {
  /** Set once the fd is installed; the file's release destroys it. */
  access: IommufdAccess | undefined;
  readonly items: AccessItem[] = [];
  nextId = 0;

  /** iommufd_test_access_unmap(): drop every item that overlaps [iova, iova + length). */
  unmap(iova: bigint, length: bigint): void {
    const last = iova + length - 1n;
    for (const item of [...this.items]) {
      if (iova > item.iova + item.length - 1n || last < item.iova) continue;
      this.items.splice(this.items.indexOf(item), 1);
      accessUnpinPages(this.access!, item.iova, item.length);
    }
  }
}

/** iommfd_test_staccess_fops: only release. */
const staccessFops: FileOperations = {
  name: 'iommufd-test-access',
  release(file) {
    const staccess = file.privateData as SelftestAccess;
    if (staccess.access === undefined) return;
    staccess.unmap(0n, ULONG_MAX);
    accessDestroy(staccess.access);
    staccess.access = undefined;
  },
};

/** The largest range ACCESS_PAGES and ACCESS_RW take (their kvzalloc guard). */
const ACCESS_LENGTH_MAX = 16n << 20n;

/** iommufd_access_get(): the access behind an fd of the caller, or EBADFD. */
function accessOfFd(ucmd: TestUcmd, fd: number): SelftestAccess | number {
  const file = fd > 0x7fffffff ? undefined : ucmd.task.fds.fileOf(fd);
  if (file === undefined || file.fops !== staccessFops) return -Errno.EBADFD;
  return file.privateData as SelftestAccess;
}

/** iommufd_test_create_access(): cmd.id is the IOAS; the new fd is out_access_fd. */
export function createAccess(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testCreateAccess);
  if (cmd.flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) return -Errno.EOPNOTSUPP;
  // iommufd_test_alloc_access(): the private data, then anon_inode_getfile().
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const staccess = new SelftestAccess();
  const file = new File('iommufd-test-access', staccessFops, staccess, { major: 0, minor: 0 });
  const fd = ucmd.task.fds.getUnusedFd();
  if (fd < 0) {
    file.put();
    return -Errno.ENOMEM;
  }
  const access = accessCreate(ucmd.ictx, {
    needsPinPages: (cmd.flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) !== 0,
    unmap: (iova, length) => staccess.unmap(iova, length),
  });
  if (typeof access === 'number') {
    file.put();
    return access;
  }
  let rc = accessAttach(access, cmd.id);
  if (rc === 0) {
    cmd.out_access_fd = fd;
    rc = respond(ucmd, testCreateAccess, cmd);
  }
  if (rc) {
    accessDestroy(access);
    file.put();
    return rc;
  }
  staccess.access = access;
  ucmd.task.fds.fdInstall(fd, file, 'anon_inode:[iommufd_test_staccess]');
  return 0;
}

/** iommufd_test_access_replace_ioas(): cmd.id is the access fd. */
export function accessReplaceIoas(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testAccessReplaceIoas);
  const staccess = accessOfFd(ucmd, cmd.id);
  if (typeof staccess === 'number') return staccess;
  return accessReplace(staccess.access!, cmd.ioas_id);
}

/**
 * iommufd_test_check_pages(): each pinned frame is the caller's page at uptr (EBADE if not,
 * EFAULT for a hole there).
 */
function checkPages(ucmd: TestUcmd, uptr: bigint, pfns: readonly bigint[]): SyscallResult {
  for (let i = 0; i < pfns.length; i++) {
    const page = userPage(ucmd, uptr + BigInt(i) * PAGE_SIZE);
    if (typeof page === 'number') return page;
    if (page.pfn !== pfns[i]) return -Errno.EBADE;
  }
  return 0;
}

/** iommufd_test_access_pages(): pin a range for the access; the item's id comes back. */
export function accessPages(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testAccessPages);
  if (cmd.length > ACCESS_LENGTH_MAX) return -Errno.ENOMEM;
  if (cmd.flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ)) return -Errno.EOPNOTSUPP;
  const staccess = accessOfFd(ucmd, cmd.id);
  if (typeof staccess === 'number') return staccess;
  const access = staccess.access!;
  if (!access.ops.needsPinPages) return -Errno.EOPNOTSUPP;
  const iova = cmd.flags & MOCK_FLAGS_ACCESS_SYZ ? accessSyzIova(access, cmd.iova) : cmd.iova;
  // kvzalloc() of the page array.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const pfns = accessPinPages(
    access,
    iova,
    cmd.length,
    (cmd.flags & MOCK_FLAGS_ACCESS_WRITE) !== 0,
  );
  if (typeof pfns === 'number') return pfns;
  // A zero uptr skips the comparison (for syzkaller).
  let rc = cmd.uptr === 0n ? 0 : checkPages(ucmd, cmd.uptr - (iova % PAGE_SIZE), pfns);
  // kzalloc() of the item.
  if (rc === 0 && shouldFail('kmalloc')) rc = -Errno.ENOMEM;
  if (rc) {
    accessUnpinPages(access, iova, cmd.length);
    return rc;
  }
  const item: AccessItem = { iova, length: cmd.length, id: staccess.nextId++ };
  staccess.items.push(item);
  cmd.out_access_pages_id = item.id;
  rc = respond(ucmd, testAccessPages, cmd);
  if (rc) {
    staccess.items.pop();
    accessUnpinPages(access, iova, cmd.length);
  }
  return rc;
}

/** iommufd_test_access_item_destroy(): unpin one item; ENOENT if it is gone (or never was). */
export function destroyAccessPages(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testDestroyAccessPages);
  const staccess = accessOfFd(ucmd, cmd.id);
  if (typeof staccess === 'number') return staccess;
  const index = staccess.items.findIndex((item) => item.id === cmd.access_pages_id);
  if (index < 0) return -Errno.ENOENT;
  const [item] = staccess.items.splice(index, 1);
  accessUnpinPages(staccess.access!, item!.iova, item!.length);
  return 0;
}

/** iommufd_test_access_rw(): copy between uptr and the IOAS through the access. */
export function accessRwOp(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testAccessRw);
  if (cmd.length > ACCESS_LENGTH_MAX) return -Errno.ENOMEM;
  if (cmd.flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ))
    return -Errno.EOPNOTSUPP;
  const staccess = accessOfFd(ucmd, cmd.id);
  if (typeof staccess === 'number') return staccess;
  const access = staccess.access!;
  // kvzalloc() of the bounce buffer.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const write = (cmd.flags & MOCK_ACCESS_RW_WRITE) !== 0;
  let data = new Uint8Array(Number(cmd.length));
  if (write) {
    const got = copyFromUser(ucmd.task, cmd.uptr, data.length);
    if (got === undefined) return -Errno.EFAULT;
    data = new Uint8Array(got);
  }
  const iova = cmd.flags & MOCK_FLAGS_ACCESS_SYZ ? accessSyzIova(access, cmd.iova) : cmd.iova;
  const rc = accessRw(ucmd.task, access, iova, data, {
    write,
    slowPath: (cmd.flags & MOCK_ACCESS_RW_SLOW_PATH) !== 0,
  });
  if (rc) return rc;
  if (!write && !copyToUser(ucmd.task, cmd.uptr, data)) return -Errno.EFAULT;
  return 0;
}
