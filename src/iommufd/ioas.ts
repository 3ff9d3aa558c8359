/**
 * The IOAS object and its ioctls: ALLOC, IOVA_RANGES, ALLOW_IOVAS, MAP, MAP_FILE, COPY, UNMAP,
 * CHANGE_PROCESS and the per-IOAS options. Mirrors drivers/iommu/iommufd/ioas.c; the mechanism is
 * in io-pagetable.ts.
 */
import { shouldFail } from '../fault/fault.ts';
import { CAP_SYS_RESOURCE, capable } from '../host/credentials.ts';
import { isBlocked, type MaybeBlocked } from '../host/file.ts';
import { afterWalk, type LongWalk, walkNow } from '../host/resched.ts';
import type { Task } from '../host/task.ts';
import { copyFromUser, copyToUser } from '../host/uaccess.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_IOAS_MAP_ALL_FLAGS,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  type iommuIoasAlloc,
  type iommuIoasAllowIovas,
  type iommuIoasChangeProcess,
  type iommuIoasCopy,
  type iommuIoasIovaRanges,
  type iommuIoasMap,
  type iommuIoasMapFile,
  type iommuIoasUnmap,
  iommuIovaRange,
  type iommuOption,
  ULONG_MAX,
} from '../uapi/iommufd.ts';
import { type Decoded, decodeStruct, encodeStruct, type FieldTable } from '../uapi/struct.ts';
import type { AccountOwner, PagesAccountMode } from './accounting.ts';
import type { IommufdCtx, ObjectRef } from './context.ts';
import { walkHolding } from './ctx-hold.ts';
import type { HwptPaging } from './hw-pagetable.ts';
import { spans } from './interval-tree.ts';
import { IoPagetable, type Ref } from './io-pagetable.ts';
import { type PagesSlice, putSlices } from './iopt-area.ts';
import { IommufdObject } from './object.ts';
import type { IommuProt, IoptPages } from './pages.ts';
import type { Ucmd } from './ucmd.ts';

export class Ioas extends IommufdObject {
  readonly type = 'ioas';
  readonly iopt: IoPagetable;
  /** The paging HWPTs built on this IOAS, in creation order (the auto-domain search order). */
  readonly hwptList: HwptPaging[] = [];

  constructor(ictx: IommufdCtx) {
    super(ictx);
    this.iopt = new IoPagetable(ictx.subsystem.ioptEnv);
  }

  /** iommufd_ioas_destroy(): unmap (unpin, unaccount) everything, then free the table. */
  destroy(): void {
    walkNow(this.iopt.unmapAllWalk({ value: 0n }));
    this.iopt.destroyTable();
  }
}

/** iommufd_ioas_alloc(). */
export function iommufdIoasAlloc(ictx: IommufdCtx): Ioas | number {
  return ictx.allocObject(new Ioas(ictx));
}

/** iommufd_get_ioas(): undefined means ENOENT. */
export function iommufdGetIoas(ictx: IommufdCtx, id: number): Ioas | undefined {
  return ictx.getObject(id, 'ioas') as Ioas | undefined;
}

/** iommufd_get_ioas() for `using`: the reference is put when the declaring block ends. */
export function iommufdGetIoasRef(ictx: IommufdCtx, id: number): ObjectRef<Ioas> | undefined {
  return ictx.getObjectRef(id, 'ioas') as ObjectRef<Ioas> | undefined;
}

export function iommufdIoasAllocIoctl(ucmd: Ucmd<typeof iommuIoasAlloc.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.flags) return -Errno.EOPNOTSUPP;
  const ioas = iommufdIoasAlloc(ucmd.ictx);
  if (typeof ioas === 'number') return ioas;
  cmd.out_ioas_id = ioas.id;
  const rc = ucmd.respond();
  if (rc) {
    ucmd.ictx.abortAndDestroy(ioas);
    return rc;
  }
  ucmd.ictx.finalize(ioas);
  return 0;
}

export function iommufdIoasIovaRanges(
  ucmd: Ucmd<typeof iommuIoasIovaRanges.fields>,
): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) return -Errno.EOPNOTSUPP;
  using ioasRef = iommufdGetIoasRef(ucmd.ictx, cmd.ioas_id);
  if (ioasRef === undefined) return -Errno.ENOENT;
  const ioas = ioasRef.obj;
  const maxIovas = cmd.num_iovas;
  cmd.num_iovas = 0;
  cmd.out_iova_alignment = ioas.iopt.iovaAlignment;
  // The usable space is the holes between reserved ranges; allowed ranges do not show here.
  for (const span of spans([ioas.iopt.reserved], 0n, ULONG_MAX)) {
    if (!span.isHole) continue;
    if (cmd.num_iovas < maxIovas) {
      const elm = encodeStruct(iommuIovaRange, { start: span.start, last: span.last });
      const at = cmd.allowed_iovas + BigInt(cmd.num_iovas) * BigInt(iommuIovaRange.size);
      if (!copyToUser(ucmd.task, at, elm)) return -Errno.EFAULT;
    }
    cmd.num_iovas++;
  }
  const rc = ucmd.respond();
  if (rc) return rc;
  return cmd.num_iovas > maxIovas ? -Errno.EMSGSIZE : 0;
}

/** iommufd_ioas_load_iovas(): read and check the user's list; ranges must not overlap. */
function loadIovas(
  ucmd: Ucmd<typeof iommuIoasAllowIovas.fields>,
  out: { start: bigint; last: bigint }[],
): SyscallResult {
  const { allowed_iovas, num_iovas } = ucmd.cmd;
  for (let i = 0; i < num_iovas; i++) {
    const bytes = copyFromUser(
      ucmd.task,
      allowed_iovas + BigInt(i * iommuIovaRange.size),
      iommuIovaRange.size,
    );
    if (bytes === undefined) return -Errno.EFAULT;
    const range: Decoded<typeof iommuIovaRange.fields> = decodeStruct(iommuIovaRange, bytes);
    if (range.start >= range.last) return -Errno.EINVAL;
    if (out.some((r) => r.start <= range.last && range.start <= r.last)) return -Errno.EINVAL;
    // kzalloc() of the range's interval tree node.
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    out.push(range);
  }
  return 0;
}

export function iommufdIoasAllowIovas(
  ucmd: Ucmd<typeof iommuIoasAllowIovas.fields>,
): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) return -Errno.EOPNOTSUPP;
  using ioasRef = iommufdGetIoasRef(ucmd.ictx, cmd.ioas_id);
  if (ioasRef === undefined) return -Errno.ENOENT;
  const ioas = ioasRef.obj;
  const ranges: { start: bigint; last: bigint }[] = [];
  const rc = loadIovas(ucmd, ranges);
  if (rc) return rc;
  return ioas.iopt.setAllowIova(ranges);
}

/** conv_iommu_prot(): iommufd always maps cache coherent; READ/WRITE come from the flags. */
function convIommuProt(flags: number): IommuProt {
  return {
    read: (flags & IOMMU_IOAS_MAP_READABLE) !== 0,
    write: (flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0,
  };
}

/**
 * Runs a map walk for the calling task (pinning a batch per step: other clients run between
 * batches of a served client's), holding the IOAS until it ends, as the kernel's ioctl holds
 * it from the lookup to the reply (a DESTROY meanwhile is EBUSY). `put` lets it go.
 */
export function mapHoldingIoas(
  task: Task,
  put: () => void,
  walk: LongWalk<SyscallResult>,
  then: (rc: SyscallResult) => MaybeBlocked,
): MaybeBlocked {
  let held = true;
  const putOnce = (): void => {
    if (held) put();
    held = false;
  };
  let result: MaybeBlocked | undefined;
  try {
    result = afterWalk(task, walk, (rc) => {
      putOnce();
      return then(rc);
    });
    return result;
  } finally {
    // Unless the walk goes on later, it ended (or threw) here: the IOAS is let go.
    if (result === undefined || !isBlocked(result)) putOnce();
  }
}

/** mapHoldingIoas() for an ioctl holding `ioasRef`. */
function mapThen(
  ucmd: Ucmd<FieldTable>,
  ioasRef: ObjectRef<Ioas>,
  walk: LongWalk<SyscallResult>,
  then: (rc: SyscallResult) => MaybeBlocked,
): MaybeBlocked {
  return mapHoldingIoas(ucmd.task, () => ioasRef[Symbol.dispose](), walk, then);
}

export function iommufdIoasMap(ucmd: Ucmd<typeof iommuIoasMap.fields>): MaybeBlocked {
  const cmd = ucmd.cmd;
  if (cmd.flags & ~IOMMU_IOAS_MAP_ALL_FLAGS || cmd.__reserved) return -Errno.EOPNOTSUPP;
  if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) return -Errno.EOVERFLOW;
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) return -Errno.EINVAL;
  const ioasRef = iommufdGetIoasRef(ucmd.ictx, cmd.ioas_id);
  if (ioasRef === undefined) return -Errno.ENOENT;
  const ioas = ioasRef.obj;
  const iova: Ref<bigint> = { value: cmd.iova };
  const allocate = (cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA) === 0;
  const walk = ioas.iopt.mapUserPagesWalk(
    ucmd.task,
    ucmd.ictx.accountMode,
    iova,
    cmd.user_va,
    cmd.length,
    convIommuProt(cmd.flags),
    allocate,
  );
  return mapThen(ucmd, ioasRef, walk, (rc) => {
    if (rc) return rc;
    cmd.iova = iova.value;
    // Like the kernel, a failed copy-out leaves the mapping in place and returns EFAULT.
    return ucmd.respond();
  });
}

/**
 * IOMMU_IOAS_MAP_FILE (iommufd_ioas_map_file): like MAP, with a range of a file as the backing.
 * The fd is resolved only after the IOAS, the length and the range end are checked.
 */
export function iommufdIoasMapFile(ucmd: Ucmd<typeof iommuIoasMapFile.fields>): MaybeBlocked {
  const cmd = ucmd.cmd;
  if (cmd.flags & ~IOMMU_IOAS_MAP_ALL_FLAGS) return -Errno.EOPNOTSUPP;
  if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) return -Errno.EOVERFLOW;
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) return -Errno.EINVAL;
  const ioasRef = iommufdGetIoasRef(ucmd.ictx, cmd.ioas_id);
  if (ioasRef === undefined) return -Errno.ENOENT;
  const ioas = ioasRef.obj;
  const iova: Ref<bigint> = { value: cmd.iova };
  const allocate = (cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA) === 0;
  const walk = ioas.iopt.mapFilePagesWalk(
    ucmd.task,
    ucmd.ictx.accountMode,
    iova,
    cmd.fd,
    cmd.start,
    cmd.length,
    convIommuProt(cmd.flags),
    allocate,
  );
  return mapThen(ucmd, ioasRef, walk, (rc) => {
    if (rc) return rc;
    cmd.iova = iova.value;
    return ucmd.respond();
  });
}

export function iommufdIoasCopy(ucmd: Ucmd<typeof iommuIoasCopy.fields>): MaybeBlocked {
  const cmd = ucmd.cmd;
  if (cmd.flags & ~IOMMU_IOAS_MAP_ALL_FLAGS) return -Errno.EOPNOTSUPP;
  if (cmd.length >= ULONG_MAX || cmd.src_iova >= ULONG_MAX || cmd.dst_iova >= ULONG_MAX)
    return -Errno.EOVERFLOW;
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) return -Errno.EINVAL;

  const slices: PagesSlice[] = [];
  const src = iommufdGetIoas(ucmd.ictx, cmd.src_ioas_id);
  if (src === undefined) return -Errno.ENOENT;
  const rc = src.iopt.getPages(cmd.src_iova, cmd.length, slices);
  ucmd.ictx.putObject(src);
  if (rc) return rc;
  const dstRef = iommufdGetIoasRef(ucmd.ictx, cmd.dst_ioas_id);
  if (dstRef === undefined) {
    putSlices(slices);
    return -Errno.ENOENT;
  }
  const iova: Ref<bigint> = { value: cmd.dst_iova };
  const allocate = (cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA) === 0;
  const prot = convIommuProt(cmd.flags);
  const walk = dstRef.obj.iopt.mapPagesWalk(slices, cmd.length, iova, prot, allocate);
  return mapThen(ucmd, dstRef, walk, (done) => {
    putSlices(slices);
    if (done) return done;
    cmd.dst_iova = iova.value;
    return ucmd.respond();
  });
}

/**
 * IOMMU_IOAS_UNMAP. The areas leave their domains and are unpinned a batch per step; a served
 * call that takes more than a slice holds the context meanwhile (ctx-hold.ts).
 */
export function iommufdIoasUnmap(ucmd: Ucmd<typeof iommuIoasUnmap.fields>): MaybeBlocked {
  return walkHolding(ucmd.ictx, ucmd.task, ioasUnmapWalk(ucmd));
}

function* ioasUnmapWalk(ucmd: Ucmd<typeof iommuIoasUnmap.fields>): LongWalk<SyscallResult> {
  const cmd = ucmd.cmd;
  using ioasRef = iommufdGetIoasRef(ucmd.ictx, cmd.ioas_id);
  if (ioasRef === undefined) return -Errno.ENOENT;
  const ioas = ioasRef.obj;
  const unmapped: Ref<bigint> = { value: 0n };
  let rc: SyscallResult;
  if (cmd.iova === 0n && cmd.length === ULONG_MAX) {
    rc = yield* ioas.iopt.unmapAllWalk(unmapped);
  } else if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) {
    rc = -Errno.EOVERFLOW;
  } else {
    rc = yield* ioas.iopt.unmapIovaWalk(cmd.iova, cmd.length, unmapped);
  }
  if (rc) return rc;
  cmd.length = unmapped.value;
  return ucmd.respond();
}

/** need_charge_update(): whether a pages object is charged to someone other than `now`. */
function needChargeUpdate(pages: IoptPages, now: AccountOwner): boolean {
  switch (pages.accountMode) {
    case 'none':
      return false;
    case 'mm':
      return pages.owner.mm !== now.mm;
    case 'user':
      // User accounting also counts in the mm's pinned_vm, so a new mm needs an update too.
      return pages.owner.uid !== now.uid || pages.owner.mm !== now.mm;
  }
}

/**
 * IOMMU_IOAS_CHANGE_PROCESS (iommufd_ioas_change_process): every mapping of every IOAS of the
 * context is charged to the caller from now on. Only MAP_FILE mappings can move (a user VA means
 * nothing in another process): any other area is EINVAL, and all or nothing moves. A context
 * with no mapping at all succeeds with nothing to do.
 */
export function iommufdIoasChangeProcess(
  ucmd: Ucmd<typeof iommuIoasChangeProcess.fields>,
): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.__reserved) return -Errno.EOPNOTSUPP;

  // iommufd_take_all_iova_rwsem(): a users reference on every live IOAS, in id order; the list
  // they are kept in is allocated as it grows.
  const held: Ioas[] = [];
  try {
    for (const obj of ictx.publishedObjects()) {
      if (obj.type !== 'ioas' || !obj.users.incNotZero()) continue;
      held.push(obj as Ioas);
      if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    }

    const areas = held.flatMap((ioas) => [...ioas.iopt.areas.iter()]);
    for (const area of areas) if (area.pages?.type !== 'file') return -Errno.EINVAL;

    const task = ucmd.task;
    const now: AccountOwner = {
      uid: task.creds.uid,
      mm: task.memory.mm,
      memlockLimit: task.creds.memlockLimit,
    };
    // Each pages object once, however many areas (COPYs) share it.
    const pagesList = [...new Set(areas.map((area) => area.pages!))];
    const moving = pagesList.filter((pages) => needChargeUpdate(pages, now));

    // charge_current(): the new owner first, per accounting mode; undone if one is over its limit.
    const accounting = ictx.subsystem.accounting;
    const totals = new Map<PagesAccountMode, bigint>();
    for (const pages of moving)
      totals.set(pages.accountMode, (totals.get(pages.accountMode) ?? 0n) + pages.npinned);
    const charged: [PagesAccountMode, bigint][] = [];
    for (const mode of ['none', 'user', 'mm'] as const) {
      const npinned = totals.get(mode) ?? 0n;
      if (npinned === 0n) continue;
      const rc = accounting.charge(mode, now, npinned);
      if (rc) {
        for (const [done, n] of charged) accounting.uncharge(done, now, n);
        return rc;
      }
      charged.push([mode, npinned]);
    }

    // Uncharge the old owners and move every pages object to the caller (change_mm()).
    for (const pages of pagesList) {
      if (moving.includes(pages)) {
        accounting.uncharge(pages.accountMode, pages.owner, pages.npinned);
      } else if (pages.accountMode === 'none' && pages.owner.mm !== now.mm) {
        // Uncharged pages still count in pinned_vm: it moves with them (decision 133).
        accounting.uncharge('none', pages.owner, pages.npinned);
        accounting.charge('none', now, pages.npinned);
      }
      pages.owner = now;
      // A memfd's pages stay the file's; only the accounting moves.
      if (pages.filePages === undefined) pages.memory = task.memory;
    }
    return 0;
  } finally {
    // iommufd_release_all_iova_rwsem().
    for (const ioas of held) ioas.users.dec();
  }
}

/** iommufd_option_rlimit_mode(): global to the context; only while it holds no object. */
export function optionRlimitMode(ucmd: Ucmd<typeof iommuOption.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.object_id) return -Errno.EOPNOTSUPP;
  if (cmd.op === IOMMU_OPTION_OP_GET) {
    cmd.val64 = ictx.accountMode === 'mm' ? 1n : 0n;
    return 0;
  }
  if (cmd.op === IOMMU_OPTION_OP_SET) {
    if (!capable(ucmd.task.creds, CAP_SYS_RESOURCE)) return -Errno.EPERM;
    if (ictx.objectCount !== 0) return -Errno.EBUSY;
    if (cmd.val64 === 0n) ictx.accountMode = 'user';
    else if (cmd.val64 === 1n) ictx.accountMode = 'mm';
    else return -Errno.EINVAL;
    return 0;
  }
  return -Errno.EOPNOTSUPP;
}

/** iommufd_ioas_option(): IOMMU_OPTION_HUGE_PAGES on one IOAS. */
export function ioasOptionHugePages(ucmd: Ucmd<typeof iommuOption.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  using ioasRef = iommufdGetIoasRef(ucmd.ictx, cmd.object_id);
  if (ioasRef === undefined) return -Errno.ENOENT;
  const ioas = ioasRef.obj;
  if (cmd.op === IOMMU_OPTION_OP_GET) {
    cmd.val64 = ioas.iopt.disableLargePages ? 0n : 1n;
    return 0;
  }
  if (cmd.op === IOMMU_OPTION_OP_SET) {
    if (cmd.val64 === 0n) return ioas.iopt.disableLarge();
    if (cmd.val64 === 1n) {
      ioas.iopt.enableLarge();
      return 0;
    }
    return -Errno.EINVAL;
  }
  return -Errno.EOPNOTSUPP;
}
