/**
 * File permission checks as fs/namei.c makes them at open: generic_permission() compares the
 * caller's fsuid, fsgid and supplementary groups with the inode's owner, group and mode, then
 * lets CAP_DAC_OVERRIDE (and, for reading, CAP_DAC_READ_SEARCH) override a refusal.
 */
import { Errno } from '../uapi/errno.ts';
import { CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, type Credentials, capable } from './credentials.ts';

/** The MAY_* bits of include/linux/fs.h. */
export const MAY_EXEC = 0o1;
export const MAY_WRITE = 0o2;
export const MAY_READ = 0o4;

/** Who owns an inode and what its permission bits are. */
export interface InodeOwner {
  readonly uid: number;
  readonly gid: number;
}

/** root:root, the owner of every sysfs file and of a device node no udev rule changed. */
export const ROOT_OWNER: InodeOwner = { uid: 0, gid: 0 };

const O_ACCMODE = 0o3;
const O_TRUNC = 0o1000;

/** What open(2) flags ask of the inode (build_open_flags' acc_mode, without MAY_OPEN). */
export function accessModeOfOpen(flags: number): number {
  const acc = [MAY_READ, MAY_WRITE, MAY_READ | MAY_WRITE, MAY_READ | MAY_WRITE][flags & O_ACCMODE]!;
  return (flags & O_TRUNC) !== 0 ? acc | MAY_WRITE : acc;
}

/**
 * acl_permission_check(): the owner's bits if the caller's fsuid owns the inode, else the group's
 * if the inode's group is the caller's fsgid or one of its groups, else the others'.
 */
function modeGrants(creds: Credentials, owner: InodeOwner, perm: number, mask: number): boolean {
  const ids = creds.fsIds();
  let bits: number;
  if (ids.fsuid === owner.uid) bits = perm >> 6;
  else if (ids.fsgid === owner.gid || ids.groups.includes(owner.gid)) bits = perm >> 3;
  else bits = perm;
  return (mask & ~bits & 0o7) === 0;
}

/**
 * generic_permission() for a non-directory: 0, or -EACCES. `perm` is the mode's permission bits.
 * CAP_DAC_OVERRIDE grants reading and writing (executing only a file with some x bit);
 * CAP_DAC_READ_SEARCH grants reading.
 */
export function inodePermission(
  creds: Credentials,
  owner: InodeOwner,
  perm: number,
  mask: number,
): number {
  if (modeGrants(creds, owner, perm & 0o777, mask)) return 0;
  if (capable(creds, CAP_DAC_OVERRIDE) && ((mask & MAY_EXEC) === 0 || (perm & 0o111) !== 0)) {
    return 0;
  }
  if (mask === MAY_READ && capable(creds, CAP_DAC_READ_SEARCH)) return 0;
  return -Errno.EACCES;
}
