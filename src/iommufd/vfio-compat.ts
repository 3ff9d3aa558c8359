/**
 * The VFIO container compatibility layer of iommufd (drivers/iommu/iommufd/vfio_compat.c):
 * IOMMU_VFIO_IOAS and the legacy type1 container ioctls (nr < 0x80) issued on an iommufd, or on
 * /dev/vfio/vfio when iommufd provides it. Every container ioctl but GET_API_VERSION and
 * CHECK_EXTENSION works on the compat IOAS (ENODEV without one). See docs/decisions.md #5.
 */
import { CAP_SYS_RAWIO, capable } from '../host/credentials.ts';
import type { MaybeBlocked } from '../host/file.ts';
import type { LongWalk } from '../host/resched.ts';
import type { Task } from '../host/task.ts';
import { copyFromUser, copyToUser } from '../host/uaccess.ts';
import { type IoctlCommand, VFIO_CONTAINER } from '../uapi/commands.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_VFIO_IOAS_CLEAR,
  IOMMU_VFIO_IOAS_GET,
  IOMMU_VFIO_IOAS_SET,
  type iommuVfioIoas,
  PAGE_SIZE,
  ULONG_MAX,
} from '../uapi/iommufd.ts';
import { decodeStruct, encodeStruct } from '../uapi/struct.ts';
import {
  VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  VFIO_NOIOMMU_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  vfioIommuType1DmaMap,
  vfioIommuType1DmaUnmap,
  vfioIommuType1Info,
  vfioIommuType1InfoCapIovaRange,
  vfioIommuType1InfoDmaAvail,
  vfioIovaRange,
} from '../uapi/vfio.ts';
import type { IommufdCtx } from './context.ts';
import { walkHolding } from './ctx-hold.ts';
import { spans } from './interval-tree.ts';
import type { Ref } from './io-pagetable.ts';
import { type Ioas, iommufdGetIoas, iommufdIoasAlloc, mapHoldingIoas } from './ioas.ts';
import type { Ucmd } from './ucmd.ts';

export const VFIO_API_VERSION = 0;

/** get_compat_ioas(): the compat IOAS with a reference, or -ENODEV when none is set. */
function getCompatIoas(ictx: IommufdCtx): Ioas | number {
  const ioas = ictx.vfioIoas;
  if (ioas === undefined || !ictx.lockObj(ioas)) return -Errno.ENODEV;
  return ioas;
}

/** iommufd_vfio_compat_ioas_get_id(): the compat IOAS's id, or -ENODEV when none is set. */
export function iommufdVfioCompatIoasGetId(ictx: IommufdCtx): number {
  const ioas = getCompatIoas(ictx);
  if (typeof ioas === 'number') return ioas;
  const id = ioas.id;
  ictx.putObject(ioas);
  return id;
}

/**
 * iommufd_vfio_compat_set_no_iommu(): a no-IOMMU group's SET_CONTAINER puts the context in
 * no-IOMMU mode, refused (EINVAL) once a compat IOAS exists: its user expected translation.
 */
export function iommufdVfioCompatSetNoIommu(ictx: IommufdCtx): SyscallResult {
  if (ictx.vfioIoas !== undefined) return -Errno.EINVAL;
  ictx.noIommuMode = true;
  return 0;
}

/**
 * iommufd_vfio_compat_ioas_create(): an IOMMU group's SET_CONTAINER gives the context a compat
 * IOAS, an ordinary user-visible IOAS (IOMMU_VFIO_IOAS GET finds it, release destroys it), unless
 * one is set already. The IOAS is allocated first, so its id is taken and given back when it is
 * not needed; a context in no-IOMMU mode refuses (EINVAL).
 */
export function iommufdVfioCompatIoasCreate(ictx: IommufdCtx): SyscallResult {
  const ioas = iommufdIoasAlloc(ictx);
  if (typeof ioas === 'number') return ioas;
  if (ictx.noIommuMode) {
    ictx.abortAndDestroy(ioas);
    return -Errno.EINVAL;
  }
  const existing = ictx.vfioIoas;
  if (existing !== undefined && ictx.lockObj(existing)) {
    ictx.putObject(existing);
    ictx.abortAndDestroy(ioas);
    return 0;
  }
  ictx.vfioIoas = ioas;
  ictx.finalize(ioas);
  return 0;
}

export function iommufdVfioIoas(ucmd: Ucmd<typeof iommuVfioIoas.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  const ictx = ucmd.ictx;
  if (cmd.__reserved) return -Errno.EOPNOTSUPP;
  switch (cmd.op) {
    case IOMMU_VFIO_IOAS_GET: {
      const ioas = getCompatIoas(ictx);
      if (typeof ioas === 'number') return ioas;
      cmd.ioas_id = ioas.id;
      ictx.putObject(ioas);
      return ucmd.respond();
    }
    case IOMMU_VFIO_IOAS_SET: {
      const ioas = iommufdGetIoas(ictx, cmd.ioas_id);
      if (ioas === undefined) return -Errno.ENOENT;
      ictx.vfioIoas = ioas;
      ictx.putObject(ioas);
      return 0;
    }
    case IOMMU_VFIO_IOAS_CLEAR:
      ictx.vfioIoas = undefined;
      return 0;
    default:
      return -Errno.EOPNOTSUPP;
  }
}

/**
 * iommufd_vfio_check_extension() with the no-IOMMU fix ("vfio compatibility extension check for
 * noiommu mode"): the type1 types are offered only outside no-IOMMU mode. The emulated kernel is
 * built with VFIO no-IOMMU support.
 */
function checkExtension(ictx: IommufdCtx, type: bigint): SyscallResult {
  switch (type) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return ictx.noIommuMode ? 0 : 1;
    case VFIO_NOIOMMU_IOMMU:
      return 1;
    case VFIO_DMA_CC_IOMMU: {
      // iommufd_vfio_cc_iommu(): every paging HWPT of the compat IOAS enforces coherency (a
      // no-IOMMU device's software domain and a mock device's domain do not).
      const ioas = getCompatIoas(ictx);
      if (typeof ioas === 'number') return ioas;
      const all = ioas.hwptList.every((hwpt) => hwpt.enforceCacheCoherency);
      ictx.putObject(ioas);
      return all ? 1 : 0;
    }
    default:
      return 0;
  }
}

/**
 * iommufd_vfio_set_iommu(): NOIOMMU is accepted (with CAP_SYS_RAWIO) only in no-IOMMU mode;
 * otherwise only the type1 types, outside that mode, and only with a compat IOAS. Type1 v1 turns
 * off huge pages on it so that UNMAP_DMA can punch holes.
 */
function setIommu(ictx: IommufdCtx, task: Task, type: bigint): SyscallResult {
  const noIommuMode = ictx.noIommuMode;
  if (type === VFIO_NOIOMMU_IOMMU && noIommuMode)
    return capable(task.creds, CAP_SYS_RAWIO) ? 0 : -Errno.EPERM;
  if ((type !== VFIO_TYPE1_IOMMU && type !== VFIO_TYPE1v2_IOMMU) || noIommuMode)
    return -Errno.EINVAL;
  const ioas = getCompatIoas(ictx);
  if (typeof ioas === 'number') return ioas;
  try {
    return type === VFIO_TYPE1_IOMMU ? ioas.iopt.disableLarge() : 0;
  } finally {
    ictx.putObject(ioas);
  }
}

/**
 * iommufd_get_pagesizes(): the page sizes every domain of the IOAS supports, sub-page sizes
 * folded into PAGE_SIZE (as vfio_update_pgsize_bitmap() does), and never below the alignment.
 */
function pageSizes(ioas: Ioas): bigint {
  let bitmap = ULONG_MAX;
  for (const domain of ioas.iopt.domains) bitmap &= domain.pgsizeBitmap;
  const pageMask = ULONG_MAX & ~(PAGE_SIZE - 1n);
  if (bitmap & ~pageMask) bitmap = (bitmap & pageMask) | PAGE_SIZE;
  return bitmap > ioas.iopt.iovaAlignment ? bitmap : ioas.iopt.iovaAlignment;
}

/**
 * One capability filler: writes its capability at `at` if `avail` bytes leave room for it (the
 * `next` field as 0) and returns its unpadded size, or a negative errno. `at` is undefined when
 * the user buffer has no room left at all.
 */
type FillCap = (task: Task, ioas: Ioas, at: bigint | undefined, avail: number) => number;

/** iommufd_fill_cap_dma_avail(): iommufd has no mapping-count limit, so U32_MAX. */
const fillCapDmaAvail: FillCap = (task, _ioas, at, avail) => {
  const size = vfioIommuType1InfoDmaAvail.size;
  if (at !== undefined && avail >= size) {
    const cap = encodeStruct(vfioIommuType1InfoDmaAvail, {
      id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
      version: 1,
      avail: 0xffffffff,
    });
    if (!copyToUser(task, at, cap)) return -Errno.EFAULT;
  }
  return size;
};

/**
 * iommufd_fill_cap_iova(): one range per hole of the reserved set. Each range is written while
 * it fits, and the header only if every range did.
 */
const fillCapIova: FillCap = (task, ioas, at, avail) => {
  const head = vfioIommuType1InfoCapIovaRange.size;
  const elm = vfioIovaRange.size;
  let nr = 0;
  for (const span of spans([ioas.iopt.reserved], 0n, ULONG_MAX)) {
    if (!span.isHole) continue;
    if (at !== undefined && avail >= head + elm * (nr + 1)) {
      const range = encodeStruct(vfioIovaRange, { start: span.start, end: span.last });
      if (!copyToUser(task, at + BigInt(head + elm * nr), range)) return -Errno.EFAULT;
    }
    nr++;
  }
  if (at !== undefined && avail >= head + elm * nr) {
    const cap = encodeStruct(vfioIommuType1InfoCapIovaRange, {
      id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
      version: 1,
      nr_iovas: nr,
    });
    if (!copyToUser(task, at, cap)) return -Errno.EFAULT;
  }
  return head + elm * nr;
};

/** The capability chain, in the kernel's order. */
const FILL_CAPS: readonly FillCap[] = [fillCapDmaAvail, fillCapIova];

/**
 * iommufd_vfio_iommu_get_info(): the info struct, then the capabilities from offset 24, each
 * padded to 8 bytes. A capability is written only where the user's argsz has room for it, and a
 * `next` link only when argsz reaches the capability it points to; argsz always comes back as
 * the size of the whole chain and cap_offset is set only if all of it fitted. Only
 * min(argsz, 24) bytes of the struct are copied back.
 */
function iommuGetInfo(ictx: IommufdCtx, task: Task, arg: bigint): SyscallResult {
  const spec = vfioIommuType1Info;
  const bytes = new Uint8Array(spec.size);
  const head = copyFromUser(task, arg, spec.minSize);
  if (head === undefined) return -Errno.EFAULT;
  bytes.set(head);
  const info = decodeStruct(spec, bytes);
  if (info.argsz < spec.minSize) return -Errno.EINVAL;
  const outSize = Math.min(info.argsz, spec.size);

  const ioas = getCompatIoas(ictx);
  if (typeof ioas === 'number') return ioas;
  try {
    info.flags = VFIO_IOMMU_INFO_PGSIZES;
    info.iova_pgsizes = pageSizes(ioas);
    info.cap_offset = 0;

    let total = spec.size;
    let lastCap: bigint | undefined;
    for (const fill of FILL_CAPS) {
      const size =
        info.argsz > total
          ? fill(task, ioas, arg + BigInt(total), info.argsz - total)
          : fill(task, ioas, undefined, 0);
      if (size < 0) return size;
      if (lastCap !== undefined && info.argsz >= total) {
        const next = new Uint8Array(4);
        new DataView(next.buffer).setUint32(0, total, true);
        if (!copyToUser(task, lastCap + 4n, next)) return -Errno.EFAULT;
      }
      lastCap = arg + BigInt(total);
      total += (size + 7) & ~7;
    }

    if (info.argsz >= total) info.cap_offset = spec.size;
    info.argsz = total;
    info.flags |= VFIO_IOMMU_INFO_CAPS;
    const out = encodeStruct(spec, info).subarray(0, outSize);
    return copyToUser(task, arg, out) ? 0 : -Errno.EFAULT;
  } finally {
    ictx.putObject(ioas);
  }
}

/**
 * iommufd_vfio_map_dma(): always a fixed-IOVA map of the caller's memory into the compat IOAS,
 * charged the context's way (per mm when it was opened as /dev/vfio/vfio). Unlike IOAS_MAP, no
 * READ/WRITE at all is accepted here. Nothing is written back.
 */
function mapDma(ictx: IommufdCtx, task: Task, arg: bigint): MaybeBlocked {
  const spec = vfioIommuType1DmaMap;
  const bytes = copyFromUser(task, arg, spec.minSize);
  if (bytes === undefined) return -Errno.EFAULT;
  const map = decodeStruct(spec, bytes);
  const supported = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  if (map.argsz < spec.minSize || (map.flags & ~supported) !== 0) return -Errno.EINVAL;
  const prot = {
    read: (map.flags & VFIO_DMA_MAP_FLAG_READ) !== 0,
    write: (map.flags & VFIO_DMA_MAP_FLAG_WRITE) !== 0,
  };
  const ioas = getCompatIoas(ictx);
  if (typeof ioas === 'number') return ioas;
  const iova: Ref<bigint> = { value: map.iova };
  const walk = ioas.iopt.mapUserPagesWalk(
    task,
    ictx.accountMode,
    iova,
    map.vaddr,
    map.size,
    prot,
    false,
  );
  return mapHoldingIoas(
    task,
    () => ictx.putObject(ioas),
    walk,
    (rc) => rc,
  );
}

/**
 * iommufd_vfio_unmap_dma(): UNMAP_ALL (iova and size 0) or an iommufd unmap of [iova, iova+size).
 * With large pages off (type1 v1) the areas are first cut at both ends, so a hole can be
 * punched. `size` is written back with the bytes unmapped, even when the unmap failed part way;
 * a range with nothing mapped is success with size 0.
 */
function unmapDma(ictx: IommufdCtx, task: Task, arg: bigint): MaybeBlocked {
  return walkHolding(ictx, task, unmapDmaWalk(ictx, task, arg));
}

/** unmapDma() itself: the areas are unpinned a batch per step (io-pagetable.ts). */
function* unmapDmaWalk(ictx: IommufdCtx, task: Task, arg: bigint): LongWalk<SyscallResult> {
  const spec = vfioIommuType1DmaUnmap;
  const bytes = copyFromUser(task, arg, spec.minSize);
  if (bytes === undefined) return -Errno.EFAULT;
  const unmap = decodeStruct(spec, bytes);
  if (unmap.argsz < spec.minSize || (unmap.flags & ~VFIO_DMA_UNMAP_FLAG_ALL) !== 0)
    return -Errno.EINVAL;
  const ioas = getCompatIoas(ictx);
  if (typeof ioas === 'number') return ioas;
  try {
    const unmapped: Ref<bigint> = { value: 0n };
    let rc: SyscallResult;
    if (unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL) {
      if (unmap.iova !== 0n || unmap.size !== 0n) return -Errno.EINVAL;
      rc = yield* ioas.iopt.unmapAllWalk(unmapped);
    } else {
      if (ioas.iopt.disableLargePages) {
        // Cut after the last byte and before the first (no cut needed below IOVA 0); the
        // arithmetic is unsigned long's.
        const last = (unmap.iova + unmap.size - 1n) & ULONG_MAX;
        const beforeFirst = (unmap.iova - 1n) & ULONG_MAX;
        const cut = ioas.iopt.cutIova(unmap.iova !== 0n ? [last, beforeFirst] : [last]);
        if (cut) return cut;
      }
      rc = yield* ioas.iopt.unmapIovaAllowEmptyWalk(unmap.iova, unmap.size, unmapped);
    }
    unmap.size = unmapped.value;
    if (!copyToUser(task, arg, encodeStruct(spec, unmap))) rc = -Errno.EFAULT;
    return rc;
  } finally {
    ictx.putObject(ioas);
  }
}

interface VfioCompatOp {
  readonly command: IoctlCommand;
  readonly handler: (ictx: IommufdCtx, task: Task, arg: bigint) => MaybeBlocked;
}

/** The container ioctls iommufd answers, each by its uAPI command; the rest are ENOTTY. */
const vfioCompatOps: readonly VfioCompatOp[] = [
  { command: VFIO_CONTAINER.GET_API_VERSION, handler: () => VFIO_API_VERSION },
  { command: VFIO_CONTAINER.SET_IOMMU, handler: setIommu },
  {
    command: VFIO_CONTAINER.CHECK_EXTENSION,
    handler: (ictx, _task, arg) => checkExtension(ictx, arg),
  },
  { command: VFIO_CONTAINER.IOMMU_GET_INFO, handler: iommuGetInfo },
  { command: VFIO_CONTAINER.IOMMU_MAP_DMA, handler: mapDma },
  { command: VFIO_CONTAINER.IOMMU_UNMAP_DMA, handler: unmapDma },
];
const vfioCompatOpsByCmd = new Map(vfioCompatOps.map((op) => [op.command.cmd, op]));

/** The container commands registered here, for the trace's tests. */
export const vfioCompatIoctlCommands: readonly IoctlCommand[] = vfioCompatOps.map(
  (op) => op.command,
);

/**
 * iommufd_vfio_ioctl(): the container ioctls on an iommufd; VFIO_IOMMU_DIRTY_PAGES and every
 * unknown one are -ENOIOCTLCMD.
 */
export function iommufdVfioIoctl(
  ictx: IommufdCtx,
  task: Task,
  cmd: number,
  arg: bigint,
): MaybeBlocked {
  const op = vfioCompatOpsByCmd.get(cmd);
  if (op === undefined) return -Errno.ENOTTY;
  return op.handler(ictx, task, arg);
}
