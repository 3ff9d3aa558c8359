/**
 * The caller's credentials, taken from the real calling task at the time of each call (the shim
 * sends them with every request), as capable() and rlimit() read them in the kernel.
 */
export const CAP_DAC_OVERRIDE = 1;
export const CAP_IPC_LOCK = 14;
export const CAP_SYS_RAWIO = 17;
export const CAP_SYS_ADMIN = 21;
export const CAP_SYS_RESOURCE = 24;

export interface Credentials {
  readonly pid: number;
  readonly tid: number;
  readonly uid: number;
  /** Effective capability set, bit N = capability N. */
  readonly capEff: bigint;
  /** RLIMIT_MEMLOCK soft limit in bytes; ULONG_MAX for RLIM_INFINITY. */
  readonly memlockLimit: bigint;
}

export function capable(creds: Credentials, cap: number): boolean {
  return ((creds.capEff >> BigInt(cap)) & 1n) === 1n;
}

/** All capabilities of a root process (CAP_LAST_CAP = 40). */
export const CAP_FULL_SET = (1n << 41n) - 1n;
