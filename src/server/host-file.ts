/**
 * A client's shmem or hugetlbfs file (a memfd) for IOMMU_IOAS_MAP_FILE: the server reopens it
 * through the client's /proc fd link (as memfds allow) and reads and writes its pages by offset,
 * so pinned file pages and the device DMA to them reach the file itself.
 */
import * as fs from 'node:fs';
import type { HostFile } from '../host/task.ts';
import { Errno } from '../uapi/errno.ts';

const TMPFS_MAGIC = 0x01021994;
const HUGETLBFS_MAGIC = 0x958458f6;

/** Linux's dev_t encoding (new_encode_dev): the "major:minor" /proc/<pid>/maps prints. */
function devName(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** The file behind `link` (/proc/<pid>/task/<tid>/fd/<n>): -EBADF closed, -EINVAL not shmem. */
export function openHostFile(link: string): HostFile | number {
  let type: number;
  try {
    type = fs.statfsSync(link).type;
  } catch {
    return -Errno.EBADF;
  }
  const kind = type === TMPFS_MAGIC ? 'shmem' : type === HUGETLBFS_MAGIC ? 'hugetlbfs' : undefined;
  if (kind === undefined) return -Errno.EINVAL;
  let fd: number;
  try {
    fd = fs.openSync(link, 'r+');
  } catch {
    try {
      fd = fs.openSync(link, 'r');
    } catch {
      return -Errno.EINVAL;
    }
  }
  const st = fs.fstatSync(fd, { bigint: true });
  if (!st.isFile()) {
    fs.closeSync(fd);
    return -Errno.EINVAL;
  }
  let open = true;
  return {
    id: `${devName(st.dev)}:${st.ino}`,
    kind,
    size: () => (open ? fs.fstatSync(fd, { bigint: true }).size : 0n),
    read: (offset, length) => {
      if (!open) return undefined;
      const out = new Uint8Array(length);
      try {
        const n = fs.readSync(fd, out, 0, length, offset);
        return n === length ? out : undefined;
      } catch {
        return undefined;
      }
    },
    write: (offset, data) => {
      if (!open) return false;
      try {
        return fs.writeSync(fd, data, 0, data.length, Number(offset)) === data.length;
      } catch {
        return false;
      }
    },
    release: () => {
      if (!open) return;
      open = false;
      fs.closeSync(fd);
    },
  };
}
