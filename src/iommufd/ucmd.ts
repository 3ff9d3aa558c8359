/**
 * struct iommufd_ucmd: one iommufd ioctl as its handler sees it, and iommufd_ucmd_respond().
 * The kernel keeps both in iommufd_private.h; main.ts's dispatch builds one per call.
 */
import type { Task } from '../host/task.ts';
import { copyToUser } from '../host/uaccess.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  type Decoded,
  decodeStruct,
  type FieldTable,
  type StructSpec,
  writeFields,
} from '../uapi/struct.ts';
import type { IommufdCtx } from './context.ts';

/**
 * One ioctl call: the user buffer, the size userspace declared, and the command struct copied
 * in with copy_struct_from_user semantics (zero-extended to the kernel's size).
 */
export class Ucmd<F extends FieldTable> {
  readonly ictx: IommufdCtx;
  readonly task: Task;
  readonly ubuffer: bigint;
  readonly userSize: number;
  readonly spec: StructSpec<F>;
  readonly cmd: Decoded<F>;
  /** The struct as copied in, zero-extended: what a union's other members are decoded from. */
  readonly raw: Uint8Array;

  constructor(
    ictx: IommufdCtx,
    task: Task,
    ubuffer: bigint,
    userSize: number,
    spec: StructSpec<F>,
    raw: Uint8Array,
  ) {
    this.ictx = ictx;
    this.task = task;
    this.ubuffer = ubuffer;
    this.userSize = userSize;
    this.spec = spec;
    this.raw = raw;
    this.cmd = decodeStruct(spec, raw);
  }

  /** iommufd_ucmd_respond(): copy the struct back, min(user size, kernel size) bytes. */
  respond(): SyscallResult {
    const bytes = new Uint8Array(this.spec.size);
    writeFields(this.spec, bytes, this.cmd);
    const n = Math.min(this.userSize, this.spec.size);
    return copyToUser(this.task, this.ubuffer, bytes.subarray(0, n)) ? 0 : -Errno.EFAULT;
  }
}
