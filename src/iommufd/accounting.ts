/**
 * RLIMIT_MEMLOCK accounting of pinned pages, per user (the default for /dev/iommu) or per
 * process mm (IOMMU_OPTION_RLIMIT_MODE = 1, and VFIO's type1 behaviour). Counted in pages.
 */

import { shouldFail } from '../fault/fault.ts';
import type { MmId } from '../host/user-memory.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SHIFT } from '../uapi/iommufd.ts';

/** IOPT_PAGES_ACCOUNT_*: none when the creator had CAP_IPC_LOCK. */
export type PagesAccountMode = 'none' | 'user' | 'mm';

/** Who a pages object charges, fixed when it is created (source user, mm and task's limit). */
export interface AccountOwner {
  readonly uid: number;
  readonly mm: MmId;
  /** RLIMIT_MEMLOCK of the creating task, in bytes. */
  readonly memlockLimit: bigint;
}

export class Accounting {
  /** user->locked_vm, in pages. */
  readonly lockedVmByUser = new Map<number, bigint>();
  /** mm->locked_vm, in pages (VmLck of /proc/<pid>/status). */
  readonly lockedVmByMm = new Map<MmId, bigint>();
  /**
   * mm->pinned_vm, in pages (VmPin): every page iommufd pins counts against its source mm,
   * whatever the account mode, CAP_IPC_LOCK's 'none' included.
   */
  readonly pinnedVmByMm = new Map<MmId, bigint>();

  /** Whether charging npages would exceed the owner's RLIMIT_MEMLOCK (no injection point). */
  exceeds(mode: PagesAccountMode, owner: AccountOwner, npages: bigint): boolean {
    if (mode === 'none' || npages === 0n) return false;
    const table: Map<number | MmId, bigint> =
      mode === 'user' ? this.lockedVmByUser : this.lockedVmByMm;
    const cur = table.get(mode === 'user' ? owner.uid : owner.mm) ?? 0n;
    return cur + npages > owner.memlockLimit >> PAGE_SHIFT;
  }

  /**
   * Charge npages; -ENOMEM when the owner's RLIMIT_MEMLOCK would be exceeded. `injected` false
   * skips the injection point: a fill charged batch by batch is one charge to fail-nth, as the
   * kernel's one pfn_reader_update_pinned() is.
   */
  charge(
    mode: PagesAccountMode,
    owner: AccountOwner,
    npages: bigint,
    injected = true,
  ): SyscallResult {
    if (npages === 0n) return 0;
    if (mode === 'none') {
      addTo(this.pinnedVmByMm, owner.mm, npages);
      return 0;
    }
    if (injected && shouldFail('account-pages')) return -Errno.ENOMEM;
    const limit = owner.memlockLimit >> PAGE_SHIFT;
    const table: Map<number | MmId, bigint> =
      mode === 'user' ? this.lockedVmByUser : this.lockedVmByMm;
    const key = mode === 'user' ? owner.uid : owner.mm;
    const cur = table.get(key) ?? 0n;
    if (cur + npages > limit) return -Errno.ENOMEM;
    table.set(key, cur + npages);
    addTo(this.pinnedVmByMm, owner.mm, npages);
    return 0;
  }

  uncharge(mode: PagesAccountMode, owner: AccountOwner, npages: bigint): void {
    if (npages === 0n) return;
    addTo(this.pinnedVmByMm, owner.mm, -npages);
    if (mode === 'none') return;
    const table: Map<number | MmId, bigint> =
      mode === 'user' ? this.lockedVmByUser : this.lockedVmByMm;
    const key = mode === 'user' ? owner.uid : owner.mm;
    const left = (table.get(key) ?? 0n) - npages;
    if (left < 0n) throw new Error(`locked_vm underflow for ${mode} ${String(key)}`);
    if (left === 0n) table.delete(key);
    else table.set(key, left);
  }

  /** Total charged pages, for leak checks. */
  total(): bigint {
    let sum = 0n;
    for (const v of this.lockedVmByUser.values()) sum += v;
    for (const v of this.lockedVmByMm.values()) sum += v;
    return sum;
  }
}

/** Adds delta to table[key], dropping the key at 0; a count below 0 is an accounting bug. */
function addTo(table: Map<MmId, bigint>, key: MmId, delta: bigint): void {
  const left = (table.get(key) ?? 0n) + delta;
  if (left < 0n) throw new Error(`pinned_vm underflow for ${key}`);
  if (left === 0n) table.delete(key);
  else table.set(key, left);
}
