/**
 * vEVENTQs (the vEVENTQ half of drivers/iommu/iommufd/eventq.c, and iommufd_viommu_report_event
 * of driver.c): a vIOMMU's event queue of one type, read through its fd as records of an 8-byte
 * `struct iommufd_vevent_header` {flags, sequence} and the event's data. Every event reported
 * gets the next sequence number (wrapping from INT_MAX to 0); at most `depth` events wait, and
 * one reported past that is lost: a header alone with IOMMU_VEVENTQ_FLAG_LOST_EVENTS and its own
 * sequence number stands at the end of the queue for the lost ones.
 */
import { shouldFail } from '../fault/fault.ts';
import type { File, FileOperations } from '../host/file.ts';
import type { Task } from '../host/task.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
  IOMMU_VEVENTQ_TYPE_DEFAULT,
  iommufdVeventHeader,
  type iommuVeventqAlloc,
} from '../uapi/iommufd.ts';
import { writeFields } from '../uapi/struct.ts';
import type { IommufdCtx } from './context.ts';
import { eventqInit, IommufdEventq } from './eventq.ts';
import type { Ucmd } from './ucmd.ts';
import type { IommufdViommu } from './viommu.ts';

/** struct iommufd_vevent: a record waiting to be read. */
interface Vevent {
  sequence: number;
  /** The event's data; none for the lost-events header. */
  readonly data: Uint8Array;
  readonly lost: boolean;
}

const INT_MAX = 0x7fffffff;
const HEADER_SIZE = iommufdVeventHeader.size;
/** An arbitrary bound on veventq_depth that fits every real IOMMU (the kernel's). */
const VEVENTQ_MAX_DEPTH = 1 << 19;

/** struct iommufd_veventq. */
export class IommufdVeventq extends IommufdEventq {
  readonly type = 'veventq';
  readonly viommu: IommufdViommu;
  /** The IOMMU_VEVENTQ_TYPE_* of the events it takes. */
  readonly veventqType: number;
  readonly depth: number;
  /** common.deliver, oldest first; the lost-events header, when there, is last. */
  readonly deliver: Vevent[] = [];
  /** Events (not the header) waiting. */
  numEvents = 0;
  /** The sequence number the next record gets. */
  sequence = 0;
  /** lost_events_header: one object, in the queue at most once. */
  readonly lostHeader: Vevent = { sequence: 0, data: new Uint8Array(0), lost: true };

  constructor(ictx: IommufdCtx, viommu: IommufdViommu, veventqType: number, depth: number) {
    super(ictx);
    this.viommu = viommu;
    this.veventqType = veventqType;
    this.depth = depth;
  }

  get hasRecords(): boolean {
    return this.deliver.length > 0;
  }

  /**
   * iommufd_vevent_handler(): `vevent` (an event, or the lost-events header) joins the queue with
   * the next sequence number; a lost-events header at the end makes room for it first.
   */
  private deliverOne(vevent: Vevent): void {
    if (this.deliver[this.deliver.length - 1] === this.lostHeader) this.deliver.pop();
    this.deliver.push(vevent);
    vevent.sequence = this.sequence;
    this.sequence = (this.sequence + 1) & INT_MAX;
  }

  /**
   * The queue's half of iommufd_viommu_report_event(): a full queue (or an event that cannot be
   * allocated: ENOMEM) loses the event.
   */
  report(data: Uint8Array): SyscallResult {
    if (shouldFail('kmalloc')) {
      this.deliverOne(this.lostHeader);
      return -Errno.ENOMEM;
    }
    if (this.numEvents === this.depth) {
      this.deliverOne(this.lostHeader);
      return 0;
    }
    this.numEvents++;
    this.deliverOne({ sequence: 0, data, lost: false });
    return 0;
  }

  /** iommufd_veventq_abort() and _destroy(): out of its vIOMMU, which it no longer holds. */
  destroy(): void {
    this.deliver.length = 0;
    this.numEvents = 0;
    const list = this.viommu.veventqs;
    const at = list.indexOf(this);
    if (at >= 0) list.splice(at, 1);
    this.viommu.users.dec();
  }
}

/**
 * iommufd_veventq_fops_read(): whole records, oldest first, as many as fit in `length` (at least
 * a header: EINVAL). A record that does not fit stays queued: EINVAL when it is the first (a
 * header alone always fits). The file position must be 0 (it always is: ESPIPE otherwise).
 */
function veventqRead(file: File, _task: Task, length: number, pos: bigint): Uint8Array | number {
  const q = file.privateData as IommufdVeventq;
  if (pos !== 0n) return -Errno.ESPIPE;
  if (length < HEADER_SIZE) return -Errno.EINVAL;
  const out: Uint8Array[] = [];
  let done = 0;
  let rc: SyscallResult = 0;
  while (q.deliver.length > 0) {
    const cur = q.deliver[0]!;
    // The header is copied out of the queue (GFP_ATOMIC): it may fail.
    if (cur.lost && shouldFail('kmalloc')) {
      if (done === 0) rc = -Errno.ENOMEM;
      break;
    }
    if (done >= length || HEADER_SIZE > length - done) break;
    if (!cur.lost && HEADER_SIZE + cur.data.length > length - done) {
      if (done === 0) rc = -Errno.EINVAL;
      break;
    }
    q.deliver.shift();
    const record = new Uint8Array(HEADER_SIZE + cur.data.length);
    writeFields(iommufdVeventHeader, record, {
      flags: cur.lost ? IOMMU_VEVENTQ_FLAG_LOST_EVENTS : 0,
      sequence: cur.sequence,
    });
    record.set(cur.data, HEADER_SIZE);
    out.push(record);
    if (!cur.lost) q.numEvents--;
    done += record.length;
  }
  if (done === 0 && rc) return rc;
  const bytes = new Uint8Array(done);
  let at = 0;
  for (const record of out) {
    bytes.set(record, at);
    at += record.length;
  }
  return bytes;
}

/** The vEVENTQ's file: "[iommufd-viommu-event]", read-only in effect (no write). */
const veventqFops: FileOperations = {
  name: 'iommufd-viommu-event',
  nonseekable: true,
  read: veventqRead,
  poll: (file) => (file.privateData as IommufdVeventq).poll(),
  release: (file) => {
    const q = file.privateData as IommufdVeventq;
    const ctxFile = q.ictx.file!;
    q.users.dec();
    ctxFile.put();
  },
};

/**
 * IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc): flags, __reserved (checked even though it lies
 * past min_size) and the DEFAULT type first (EOPNOTSUPP), a depth of 0 or above 2^19 (EINVAL),
 * the vIOMMU (ENOENT), then one queue per type (EEXIST). The type is not the driver's to check:
 * a queue of a type the vIOMMU never reports just stays empty.
 */
export function iommufdVeventqAlloc(ucmd: Ucmd<typeof iommuVeventqAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.flags || cmd.__reserved || cmd.type === IOMMU_VEVENTQ_TYPE_DEFAULT)
    return -Errno.EOPNOTSUPP;
  if (!cmd.veventq_depth || cmd.veventq_depth > VEVENTQ_MAX_DEPTH) return -Errno.EINVAL;
  using held = ictx.getObjectRef(cmd.viommu_id, 'viommu');
  if (held === undefined) return -Errno.ENOENT;
  const viommu = held.obj as IommufdViommu;
  if (viommu.findVeventq(cmd.type) !== undefined) return -Errno.EEXIST;
  const q = ictx.allocObject(new IommufdVeventq(ictx, viommu, cmd.type, cmd.veventq_depth));
  if (typeof q === 'number') return q;
  viommu.users.inc();
  viommu.veventqs.push(q);
  const fd = eventqInit(q, ucmd.task, veventqFops);
  let rc: SyscallResult = fd < 0 ? fd : 0;
  if (rc === 0) {
    cmd.out_veventq_id = q.id;
    cmd.out_veventq_fd = fd;
    rc = ucmd.respond();
  }
  if (rc) {
    ictx.abortAndDestroy(q);
    return rc;
  }
  ictx.finalize(q);
  ucmd.task.fds.fdInstall(fd, q.file!, 'anon_inode:[iommufd-viommu-event]');
  return 0;
}

/**
 * iommufd_viommu_report_event(): an event of `type` with `data` for the vIOMMU's queue of that
 * type (EOPNOTSUPP when it has none).
 */
export function viommuReportEvent(
  viommu: IommufdViommu,
  type: number,
  data: Uint8Array,
): SyscallResult {
  const q = viommu.findVeventq(type);
  if (q === undefined) return -Errno.EOPNOTSUPP;
  return q.report(data);
}
