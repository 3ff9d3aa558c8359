/**
 * Event queues (drivers/iommu/iommufd/eventq.c): objects published with an anonymous fd that
 * userspace reads records from and polls. The FAULT object (IOMMU_FAULT_QUEUE_ALLOC) queues the
 * I/O page faults of the HWPTs allocated with its id, as groups of `struct iommu_hwpt_pgfault`
 * records that userspace answers by writing `struct iommu_hwpt_page_response`s; the vEVENTQ
 * (IOMMU_VEVENTQ_ALLOC, veventq.ts) queues a vIOMMU's events.
 *
 * The fd holds a reference on its object (IOMMU_DESTROY is EBUSY while it is open) and on the
 * iommufd file (closing the iommufd does not release the context while a queue fd is open).
 * Reads never block: an empty queue reads 0 bytes; poll() says when records are there.
 */
import { shouldFail } from '../fault/fault.ts';
import { File, type FileOperations } from '../host/file.ts';
import type { Task } from '../host/task.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_PGFAULT_FLAGS_PASID_VALID,
  IOMMUFD_PAGE_RESP_INVALID,
  IOMMUFD_PAGE_RESP_SUCCESS,
  type iommuFaultAlloc,
  iommuHwptPageResponse,
  iommuHwptPgfault,
} from '../uapi/iommufd.ts';
import { decodeStruct, writeFields } from '../uapi/struct.ts';
import type { IommufdDevice } from './device.ts';
import type { AttachHandle } from './hw-pagetable.ts';
import { IommufdObject } from './object.ts';
import type { Ucmd } from './ucmd.ts';
import { xaAllocNodes, xaNodesToStore } from './xarray.ts';

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLRDNORM = 0x40;

/**
 * struct iommufd_eventq: what both queues share, the anonymous file and its references. The
 * file's private data is the queue.
 */
export abstract class IommufdEventq extends IommufdObject {
  /** eventq->filep: made by eventqInit(), put by abort (an unpublished queue) or by the fd. */
  file: File | undefined;

  /** Whether records are waiting (POLLIN). */
  abstract get hasRecords(): boolean;

  /** iommufd_eventq_fops_poll(). */
  poll(): number {
    return this.hasRecords ? POLLIN | POLLRDNORM : 0;
  }

  /**
   * iommufd_object_abort_and_destroy() of a queue never published: its file goes first (its
   * release drops the references eventqInit() took), then the queue.
   */
  abort(): void {
    eventqPutFile(this);
    this.destroy();
  }
}

/** iommufd_eventq_fops_release(): the fd's references on the object and the context go. */
function eventqRelease(file: File): void {
  const eventq = file.privateData as IommufdEventq;
  const ctxFile = eventq.ictx.file!;
  eventq.users.dec();
  ctxFile.put();
}

/**
 * iommufd_eventq_init(): the anonymous file (ENOMEM when it cannot be made) with a reference on
 * the object and on the iommufd file, then an unused fd of the caller (get_unused_fd_flags:
 * EMFILE). On failure the caller aborts the object, which puts the file.
 */
export function eventqInit(eventq: IommufdEventq, task: Task, fops: FileOperations): number {
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  eventq.file = new File('iommufd-eventq', fops, eventq, { major: 0, minor: 0 });
  eventq.ictx.file!.get();
  eventq.users.inc();
  return task.fds.getUnusedFd();
}

/**
 * __fput_sync() of a queue's file in iommufd_object_abort_and_destroy(): the file of an object
 * that never got published goes with it.
 */
export function eventqPutFile(eventq: IommufdEventq): void {
  const file = eventq.file;
  eventq.file = undefined;
  file?.put();
}

/** One page request of a fault group (struct iommu_fault's prm). */
export interface PageRequest {
  readonly flags: number;
  readonly pasid: number;
  readonly grpid: number;
  readonly perm: number;
  readonly addr: bigint;
}

/**
 * struct iopf_group: the faults of one page request group, reported through one attach handle;
 * its cookie is set when userspace reads it and names it in the response.
 */
export interface IopfGroup {
  readonly faults: readonly PageRequest[];
  readonly handle: AttachHandle;
  cookie: number;
}

/** struct iommufd_fault. */
export class IommufdFault extends IommufdEventq {
  readonly type = 'fault';
  /** common.deliver: groups not read yet, oldest first. */
  readonly deliver: IopfGroup[] = [];
  /** fault->response: groups read and not answered yet, by cookie (from 1). */
  readonly response = new Map<number, IopfGroup>();

  get hasRecords(): boolean {
    return this.deliver.length > 0;
  }

  /** Fault queues are always writable. */
  poll(): number {
    return POLLOUT | super.poll();
  }

  /**
   * iommufd_fault_iopf_handler(): a group reported through a handle of a HWPT of this queue
   * joins the delivery list; pollers see it on their next look.
   */
  report(group: IopfGroup): void {
    this.deliver.push(group);
  }

  /**
   * iommufd_auto_response_faults(): a handle going away (detach, replace) answers its groups
   * itself (IOMMU_PAGE_RESP_INVALID to the mock driver, which ignores it): read or not, they
   * are gone.
   */
  autoResponse(handle: AttachHandle): void {
    for (let i = this.deliver.length - 1; i >= 0; i--)
      if (this.deliver[i]!.handle === handle) this.deliver.splice(i, 1);
    for (const [cookie, group] of [...this.response])
      if (group.handle === handle) this.response.delete(cookie);
  }

  /** iommufd_fault_destroy(): every pending group is answered INVALID. */
  destroy(): void {
    this.deliver.length = 0;
    this.response.clear();
  }

  /** xa_alloc() of a cookie for `group` (XA_FLAGS_ALLOC1, 32 bits): the lowest free from 1. */
  allocCookie(group: IopfGroup): number {
    const used = [...this.response.keys()];
    let cookie = 1;
    while (this.response.has(cookie)) cookie++;
    if (!xaAllocNodes(xaNodesToStore(used, cookie))) return -Errno.ENOMEM;
    group.cookie = cookie;
    this.response.set(cookie, group);
    return cookie;
  }
}

const PGFAULT_SIZE = iommuHwptPgfault.size;
const RESPONSE_SIZE = iommuHwptPageResponse.size;

/** iommufd_compose_fault_message(). */
function faultMessage(fault: PageRequest, idev: IommufdDevice, cookie: number): Uint8Array {
  const bytes = new Uint8Array(PGFAULT_SIZE);
  writeFields(iommuHwptPgfault, bytes, {
    flags: fault.flags,
    dev_id: idev.id,
    pasid: fault.pasid,
    grpid: fault.grpid,
    perm: fault.perm,
    __reserved: 0,
    addr: fault.addr,
    length: 0,
    cookie,
  });
  return bytes;
}

/**
 * iommufd_fault_fops_read(): whole groups of 40-byte records, oldest first, as many as fit
 * (ESPIPE for a length that is not a multiple of 40). A group that does not fit stays queued:
 * EINVAL if nothing was read before it. Each group read gets a cookie for its response.
 */
function faultRead(file: File, _task: Task, length: number, pos: bigint): Uint8Array | number {
  const fault = file.privateData as IommufdFault;
  if (pos !== 0n || length % PGFAULT_SIZE) return -Errno.ESPIPE;
  const out: Uint8Array[] = [];
  let done = 0;
  let rc: SyscallResult = 0;
  while (fault.deliver.length > 0) {
    const group = fault.deliver[0]!;
    if (done >= length || group.faults.length * PGFAULT_SIZE > length - done) {
      if (done === 0) rc = -Errno.EINVAL;
      break;
    }
    const cookie = fault.allocCookie(group);
    if (cookie < 0) {
      rc = cookie;
      break;
    }
    fault.deliver.shift();
    for (const one of group.faults) out.push(faultMessage(one, group.handle.idev, cookie));
    done += group.faults.length * PGFAULT_SIZE;
  }
  if (done === 0 && rc) return rc;
  const bytes = new Uint8Array(done);
  for (const [i, msg] of out.entries()) bytes.set(msg, i * PGFAULT_SIZE);
  return bytes;
}

/**
 * iommufd_fault_fops_write(): 8-byte responses (ESPIPE for another length), each naming a group
 * read and not yet answered by its cookie, with code SUCCESS or INVALID. The first bad one
 * (EINVAL) stops the write: the ones before it count.
 */
function faultWrite(file: File, _task: Task, data: Uint8Array, pos: bigint): SyscallResult {
  const fault = file.privateData as IommufdFault;
  if (pos !== 0n || data.length % RESPONSE_SIZE) return -Errno.ESPIPE;
  let done = 0;
  let rc: SyscallResult = 0;
  while (data.length > done) {
    const response = decodeStruct(iommuHwptPageResponse, data.subarray(done, done + RESPONSE_SIZE));
    if (
      response.code !== IOMMUFD_PAGE_RESP_SUCCESS &&
      response.code !== IOMMUFD_PAGE_RESP_INVALID
    ) {
      rc = -Errno.EINVAL;
      break;
    }
    if (!fault.response.delete(response.cookie)) {
      rc = -Errno.EINVAL;
      break;
    }
    // iopf_group_response(): the mock driver's page_response does nothing.
    done += RESPONSE_SIZE;
  }
  return done === 0 ? rc : done;
}

/** The fault queue's file: "[iommufd-pgfault]". */
const faultFops: FileOperations = {
  name: 'iommufd-pgfault',
  nonseekable: true,
  read: faultRead,
  write: faultWrite,
  poll: (file) => (file.privateData as IommufdFault).poll(),
  release: eventqRelease,
};

/**
 * IOMMU_FAULT_QUEUE_ALLOC (iommufd_fault_alloc): a FAULT object and its fd (O_CLOEXEC). The
 * object is published only once the fd is installed; any failure before puts the file and
 * releases the id.
 */
export function iommufdFaultAlloc(ucmd: Ucmd<typeof iommuFaultAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.flags) return -Errno.EOPNOTSUPP;
  const fault = ictx.allocObject(new IommufdFault(ictx));
  if (typeof fault === 'number') return fault;
  const fd = eventqInit(fault, ucmd.task, faultFops);
  if (fd < 0) {
    ictx.abortAndDestroy(fault);
    return fd;
  }
  cmd.out_fault_id = fault.id;
  cmd.out_fault_fd = fd;
  const rc = ucmd.respond();
  if (rc) {
    ictx.abortAndDestroy(fault);
    return rc;
  }
  ucmd.task.fds.fdInstall(fd, fault.file!, 'anon_inode:[iommufd-pgfault]');
  ictx.finalize(fault);
  return 0;
}

/**
 * iommu_report_device_fault() for a mock device's page request, as TRIGGER_IOPF makes one: the
 * attach handle at its PASID (or, for a PASID with none, the RID's when that is a nested domain:
 * the mock IOMMU lets the guest own the PASID table) must be of a HWPT with a fault queue, else
 * the request is answered INVALID by the core and nothing is queued. A group that cannot be
 * allocated is answered FAILURE.
 */
export function reportDeviceFault(idev: IommufdDevice, request: PageRequest): void {
  const igroup = idev.igroup!;
  let handle: AttachHandle | undefined;
  if (request.flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) {
    handle = igroup.pasidAttach.get(request.pasid)?.handle;
    if (handle === undefined && igroup.hwpt?.type === 'hwpt-nested') handle = igroup.handle;
  } else {
    handle = igroup.handle;
  }
  const fault = handle?.hwpt.fault;
  if (handle === undefined || fault === undefined) return;
  if (shouldFail('kmalloc')) return;
  fault.report({ faults: [request], handle, cookie: 0 });
}
