/**
 * What every IOMMU_TEST_CMD op uses: its union member decoded from the command, the response,
 * and the caller's page at a VA as get_user_pages() would find it.
 */
import { fileMm } from '../host/file-memory.ts';
import { copyToUser } from '../host/uaccess.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import type { iommuTestCmd } from '../uapi/iommufd-test.ts';
import {
  type Decoded,
  decodeStruct,
  type FieldTable,
  type StructSpec,
  writeFields,
} from '../uapi/struct.ts';
import type { Ucmd } from './ucmd.ts';

export type TestUcmd = Ucmd<typeof iommuTestCmd.fields>;

/** The op's union member, decoded from the bytes copied in. */
export function args<F extends FieldTable>(ucmd: TestUcmd, spec: StructSpec<F>): Decoded<F> {
  return decodeStruct(spec, ucmd.raw);
}

/** iommufd_ucmd_respond() of the whole struct, with the op's outputs written in. */
export function respond<F extends FieldTable>(
  ucmd: TestUcmd,
  spec: StructSpec<F>,
  out: Decoded<F>,
): SyscallResult {
  const bytes = new Uint8Array(ucmd.raw);
  writeFields(spec, bytes, out);
  const n = Math.min(ucmd.userSize, spec.size);
  return copyToUser(ucmd.task, ucmd.ubuffer, bytes.subarray(0, n)) ? 0 : -Errno.EFAULT;
}

/**
 * The page at `va` of the caller as get_user_pages() sees it: EFAULT for a hole; else its frame
 * if pinned (undefined if not: no domain can hold it), and whether it is part of a huge page.
 */
export function userPage(
  ucmd: TestUcmd,
  va: bigint,
): { pfn: bigint | undefined; pins: number; compound: boolean } | number {
  const mem = ucmd.task.memory;
  const vma = mem.vma(va);
  if (vma === undefined) return -Errno.EFAULT;
  // A shared mapping of a file reaches the file's pages, which MAP_FILE pins by offset.
  const pinned =
    vma.file === undefined
      ? ucmd.ictx.subsystem.ioptEnv.pinner.lookup(mem.mm, va)
      : ucmd.ictx.subsystem.ioptEnv.pinner.lookup(
          fileMm(vma.file.id),
          vma.file.offset + (va - vma.start),
        );
  return { pfn: pinned?.pfn, pins: pinned?.pins ?? 0, compound: vma.pageSize > PAGE_SIZE };
}
