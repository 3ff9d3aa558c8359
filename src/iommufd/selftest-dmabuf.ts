/**
 * The test interface's dma-buf exporter, the dma-buf half of 7.3's drivers/iommu/iommufd/selftest.c:
 * DMABUF_GET exports zeroed kernel memory (physically contiguous frames of the simulated
 * machine's RAM) as a dma-buf fd, and DMABUF_REVOKE sets or clears its revoked state and tells
 * every importer to drop its mappings (dma_buf_invalidate_mappings). The importer is iommufd's
 * MAP_FILE (pages.ts, io-pagetable.ts), which maps the memory itself, never pinning user pages.
 */
import { shouldFail } from '../fault/fault.ts';
import { File, type FileOperations } from '../host/file.ts';
import type { PhysMemory } from '../platform/phys-memory.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import { testDmabufGet, testDmabufRevoke } from '../uapi/iommufd-test.ts';
import type { AreaPagesRange, PagesDmaBuf } from './pages.ts';
import { args, type TestUcmd } from './selftest-cmd.ts';

/** The largest dma-buf DMABUF_GET makes: 512 pages. */
const DMABUF_MAX_PAGES = 512n;

/** An importer's move_notify (dma_buf_attach_ops.invalidate_mappings). */
export interface DmaBufImporter {
  invalidate(): void;
}

/** struct iommufd_test_dma_buf: the exported memory and whether it is revoked. */
export class TestDmaBuf {
  /** First frame of the buffer; its `npages` frames are contiguous (kzalloc). */
  readonly pfn: bigint;
  readonly npages: bigint;
  revoked = false;
  /** Dynamic attachments (dma_buf_dynamic_attach), told of every revoke. */
  readonly importers = new Set<DmaBufImporter>();
  private readonly phys: PhysMemory;

  constructor(phys: PhysMemory, pfn: bigint, npages: bigint) {
    this.phys = phys;
    this.pfn = pfn;
    this.npages = npages;
  }

  /** dmabuf->size */
  get size(): bigint {
    return this.npages * PAGE_SIZE;
  }

  /** iommufd_test_dma_buf_iommufd_map(): the physical range, or ENODEV once revoked. */
  physRange(): { readonly pa: bigint; readonly length: bigint } | number {
    if (this.revoked) return -Errno.ENODEV;
    return { pa: this.pfn * PAGE_SIZE, length: this.size };
  }

  /** The dma-buf's release: kfree() of the memory. */
  release(): void {
    if (this.importers.size !== 0) throw new Error('dma-buf released while still attached');
    this.phys.free(this.pfn, this.npages);
  }
}

const dmabufFops: FileOperations = {
  name: 'dmabuf',
  // The test exporter has no mmap (dma_buf_mmap_internal() is EINVAL without one).
  mmap: () => -Errno.EINVAL,
  release(file: File): void {
    (file.privateData as TestDmaBuf).release();
  },
};

/** The test exporter's dma-buf behind a File, or undefined for any other file. */
export function testDmaBufOf(file: File | undefined): TestDmaBuf | undefined {
  return file?.fops === dmabufFops ? (file.privateData as TestDmaBuf) : undefined;
}

/**
 * dma_buf_get(): the dma-buf behind the caller's `fd` with a file reference the caller must put,
 * EBADF for no open fd, EINVAL for a file that is not a dma-buf.
 */
export function dmaBufGet(ucmd: Pick<TestUcmd, 'task'>, fd: number): File | number {
  if (fd < 0 || !ucmd.task.fds.isOpen(fd)) return -Errno.EBADF;
  const file = ucmd.task.fds.fileOf(fd);
  if (testDmaBufOf(file) === undefined) return -Errno.EINVAL;
  return file!.get();
}

/**
 * iommufd_test_dmabuf_get(): the new fd is installed but, as in 7.3, the ioctl returns 0, not
 * its number (docs/decisions.md 250).
 */
export function dmabufGetOp(ucmd: TestUcmd, phys: PhysMemory): SyscallResult {
  const cmd = args(ucmd, testDmabufGet);
  const npages = (BigInt(cmd.length) + PAGE_SIZE - 1n) / PAGE_SIZE;
  if (npages === 0n || npages > DMABUF_MAX_PAGES) return -Errno.EINVAL;
  // kzalloc() of the private data, then of the memory.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const pfn = phys.allocContiguous(npages, 1n, 'dma-buf');
  if (typeof pfn === 'number') return pfn;
  const buf = new TestDmaBuf(phys, pfn, npages);
  // dma_buf_export(): the anonymous file and the struct dma_buf.
  if (shouldFail('kmalloc')) {
    buf.release();
    return -Errno.ENOMEM;
  }
  const file = new File('dmabuf', dmabufFops, buf, { major: 0, minor: 0 });
  // dma_buf_fd(): a failure here puts the dma-buf, whose release frees the memory.
  const fd = ucmd.task.fds.getUnusedFd();
  if (fd < 0) {
    file.put();
    return fd;
  }
  ucmd.task.fds.fdInstall(fd, file, '/dmabuf:');
  return 0;
}

/**
 * iommufd's import of a dma-buf (iopt_map_dmabuf): a dynamic attachment holding the dma-buf's
 * file, and the revoked state of the pages object, which only ever goes one way.
 */
class DmaBufImport implements DmaBufImporter, PagesDmaBuf {
  readonly pfn: bigint;
  revoked = false;
  readonly trackers = new Map<AreaPagesRange, () => void>();
  private readonly file: File;
  private readonly buf: TestDmaBuf;

  constructor(file: File, buf: TestDmaBuf) {
    this.file = file.get();
    this.buf = buf;
    this.pfn = buf.pfn;
    buf.importers.add(this);
  }

  /**
   * iopt_revoke_notify(): on any invalidate, a revoke or a restore, unmap every tracked area from
   * its domains and stay revoked; only a new MAP_FILE maps the dma-buf again.
   */
  invalidate(): void {
    if (this.revoked) return;
    for (const unmap of this.trackers.values()) unmap();
    this.revoked = true;
  }

  detach(): void {
    if (this.trackers.size !== 0) throw new Error('dma-buf detached with areas still tracked');
    this.buf.importers.delete(this);
    this.file.put();
  }
}

/**
 * dma_buf_dynamic_attach() and the exporter's physical range (ENODEV once revoked), for
 * MAP_FILE of a dma-buf `file`.
 */
export function dmaBufAttach(file: File, buf: TestDmaBuf): PagesDmaBuf | number {
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const range = buf.physRange();
  if (typeof range === 'number') return range;
  return new DmaBufImport(file, buf);
}

/** iommufd_test_dmabuf_revoke(): EBADF, EINVAL for a file that is no dma-buf. */
export function dmabufRevokeOp(ucmd: TestUcmd): SyscallResult {
  const cmd = args(ucmd, testDmabufRevoke);
  const file = dmaBufGet(ucmd, cmd.dmabuf_fd);
  if (typeof file === 'number') return file;
  // Every dma-buf here is the test exporter's; another exporter's would be EOPNOTSUPP.
  const buf = testDmaBufOf(file)!;
  buf.revoked = cmd.revoked !== 0;
  for (const importer of [...buf.importers]) importer.invalidate();
  file.put();
  return 0;
}
