/**
 * The caller's credentials as capable() and rlimit() read them in the kernel, taken from the real
 * calling task at the time of each call (the shim sends them with every request; the server checks
 * the task's user namespace itself).
 *
 * capable() is ns_capable(&init_user_ns, cap): only capabilities held in the initial user
 * namespace count. A task that made a user namespace of its own (`unshare -r`) is "root" with a
 * full effective set there, and holds nothing here. The emulated kernel's initial user namespace
 * is the one the emulator runs in.
 */
export const CAP_DAC_OVERRIDE = 1;
export const CAP_DAC_READ_SEARCH = 2;
export const CAP_IPC_LOCK = 14;
export const CAP_SYS_RAWIO = 17;
export const CAP_SYS_ADMIN = 21;
export const CAP_SYS_RESOURCE = 24;

/** CAP_LAST_CAP of the baseline kernel (CAP_CHECKPOINT_RESTORE). */
export const CAP_LAST_CAP = 40;

/** All capabilities of a root process. */
export const CAP_FULL_SET = (1n << BigInt(CAP_LAST_CAP + 1)) - 1n;

/** The capability names of include/uapi/linux/capability.h, by number. */
const CAP_NAMES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/**
 * Where the task's own capability sets count, and so what capable() can see of them: a task in
 * the initial user namespace brings its effective set; a task in any other user namespace has no
 * capability in the initial one, so its set is empty here by construction.
 */
export type NamespacedCaps =
  | {
      readonly userNs: 'initial';
      /** The effective set (bit N = capability N). */
      readonly capEff: bigint;
    }
  | {
      /** A user namespace other than the emulator's (made by unshare, clone or setns). */
      readonly userNs: 'other';
      /** Nothing: capabilities held in another user namespace do not count for capable(). */
      readonly capEff: 0n;
    };

export type Credentials = NamespacedCaps & {
  readonly pid: number;
  readonly tid: number;
  /** The real uid as the initial user namespace sees it (cred->uid, what owns pinned pages). */
  readonly uid: number;
  /**
   * Capabilities the emulator grants the task by option (`exec --cap`), whatever its own sets and
   * namespace: not a kernel notion, so kept apart from capEff and named in the trace.
   */
  readonly grantedCaps: bigint;
  /** RLIMIT_MEMLOCK soft limit in bytes; ULONG_MAX for RLIM_INFINITY. */
  readonly memlockLimit: bigint;
  /**
   * The ids file access is checked with (cred->fsuid, fsgid and the supplementary groups), as
   * the initial user namespace sees them. A function: only an open's permission check reads them,
   * and a real client's come from its /proc status file.
   */
  readonly fsIds: () => FsIds;
};

/** What inode permission checks compare with a file's owner and group. */
export interface FsIds {
  readonly fsuid: number;
  readonly fsgid: number;
  /** Supplementary groups (getgroups()). */
  readonly groups: readonly number[];
}

/**
 * A plain copy of credentials as they are now, for a caller that keeps them beyond the call (an
 * open file's f_cred): a served call's credentials read some fields only when asked.
 */
export function copyCredentials(c: Credentials): Credentials {
  const rest = {
    pid: c.pid,
    tid: c.tid,
    uid: c.uid,
    grantedCaps: c.grantedCaps,
    memlockLimit: c.memlockLimit,
    // Still read when a permission check first asks, as the original does.
    fsIds: () => c.fsIds(),
  };
  return c.userNs === 'initial'
    ? { userNs: 'initial', capEff: c.capEff, ...rest }
    : { userNs: 'other', capEff: 0n, ...rest };
}

function hasBit(set: bigint, cap: number): boolean {
  return ((set >> BigInt(cap)) & 1n) === 1n;
}

/** capable(cap): the task holds cap in the initial user namespace, or the emulator grants it. */
export function capable(creds: Credentials, cap: number): boolean {
  return hasBit(creds.capEff, cap) || hasBit(creds.grantedCaps, cap);
}

/** The capabilities the emulator's grant adds to what the task holds itself. */
export function capsAddedByGrant(creds: Credentials): bigint {
  return creds.grantedCaps & ~creds.capEff;
}

/** "CAP_SYS_RAWIO" for 17; "cap_41" for a number the table does not name. */
export function capName(cap: number): string {
  return CAP_NAMES[cap] ?? `cap_${cap}`;
}

/** The names of a capability set, lowest first, comma separated; "none" when empty. */
export function capSetNames(set: bigint): string {
  const names: string[] = [];
  for (let cap = 0; set >> BigInt(cap) !== 0n; cap++) {
    if (hasBit(set, cap)) names.push(capName(cap));
  }
  return names.length === 0 ? 'none' : names.join(',');
}

/**
 * A capability set from names as capsh and setpriv accept them: comma separated, with or without
 * the CAP_ prefix, any case, or "all". The set, or the first name that is not a capability.
 */
export function parseCapSet(text: string): bigint | { readonly unknown: string } {
  let set = 0n;
  for (const word of text.split(',')) {
    const name = word.trim().toUpperCase();
    if (name === '') continue;
    if (name === 'ALL') {
      set |= CAP_FULL_SET;
      continue;
    }
    const cap = CAP_NAMES.indexOf(name.startsWith('CAP_') ? name : `CAP_${name}`);
    if (cap < 0) return { unknown: word.trim() };
    set |= 1n << BigInt(cap);
  }
  return set;
}
