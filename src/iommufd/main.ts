/**
 * The iommufd file: one IommufdCtx per open of /dev/iommu, its object table (ids from 1, lowest
 * free id reused, two-phase creation) and the ioctl dispatch with the kernel's framing rules.
 * Mirrors drivers/iommu/iommufd/main.c.
 */
import { shouldFail } from '../fault/fault.ts';
import type { CharDevNode } from '../host/devfs.ts';
import { File, type FileOperations, type MaybeBlocked, S_IFCHR } from '../host/file.ts';
import type { Task } from '../host/task.ts';
import { checkZeroedUserThen, copyFromUser, copyToUser, getUser } from '../host/uaccess.ts';
import type { MmId } from '../host/user-memory.ts';
import type { MockBus } from '../iommu/mock-driver.ts';
import type { PhysMemory } from '../platform/phys-memory.ts';
import type { EventBus } from '../trace/events.ts';
import { IOMMUFD, type IommufdCommand } from '../uapi/commands.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { IO, IOMMUFD_CMD_BASE, IOMMUFD_TYPE, IommufdCmd, iocNr } from '../uapi/ioctl.ts';
import * as uapi from '../uapi/iommufd.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import { IOMMUFD_TEST_MEMORY_LIMIT_DEFAULT } from '../uapi/iommufd-test.ts';
import {
  type Decoded,
  decodeStruct,
  type FieldTable,
  type StructSpec,
  writeFields,
} from '../uapi/struct.ts';
import type { Accounting } from './accounting.ts';
import { type IommufdDevice, type IommufdGroup, iommufdGetHwInfo } from './device.ts';
import { iommufdFaultAlloc } from './eventq.ts';
import { iommufdIoasNoiommuGetPa } from './get-pa.ts';
import {
  type HwptNested,
  type HwptPaging,
  iommufdHwptAlloc,
  iommufdHwptGetDirtyBitmap,
  iommufdHwptInvalidate,
  iommufdHwptSetDirtyTracking,
} from './hw-pagetable.ts';
import { iommufdHwQueueAlloc } from './hw-queue.ts';
import type { Ioas } from './ioas.ts';
import * as ioas from './ioas.ts';
import type { IoptEnv } from './iopt-area.ts';
import type { IommufdObject, IommufdObjType } from './object.ts';
import type { PagePinner } from './pages.ts';
import { iommufdTest } from './selftest.ts';
import { iommufdVeventqAlloc } from './veventq.ts';
import { iommufdVfioIoas, iommufdVfioIoctl } from './vfio-compat.ts';
import { iommufdVdeviceAlloc, iommufdViommuAlloc } from './viommu.ts';
import { xaAllocNodes, xaNodesToStore } from './xarray.ts';

/** How pinned pages are charged (IOMMU_OPTION_RLIMIT_MODE): 0 per user, 1 per process (mm). */
export type AccountMode = 'user' | 'mm';

/** The misc devices: iommu (10:123) and, when iommufd provides it, vfio (VFIO_MINOR 196). */
const IOMMU_RDEV: Rdev = { major: 10, minor: 123 };
const VFIO_RDEV: Rdev = { major: 10, minor: 196 };
interface Rdev {
  readonly major: number;
  readonly minor: number;
}

/** ids are 31-bit (xa_limit_31b) and never 0. */
const ID_MAX = 0x7fffffff;

/** Everything iommufd keeps per emulated kernel: the live contexts and the accounting. */
export class IommufdSubsystem {
  readonly contexts = new Set<IommufdCtx>();
  readonly events: EventBus;
  readonly accounting: Accounting;
  /** What every io_pagetable uses to pin and account pages. */
  readonly ioptEnv: IoptEnv;
  /** Objects a context could not free at release: refcount bugs, reported by leaks(). */
  readonly leaked: string[] = [];
  /**
   * The mappings of driver regions of every iommufd (the kernel's VMAs of the file), each holding
   * its region's owner (decision 231). One goes when the client's shim says it is unmapped, when
   * its address space goes, or when its context is released.
   */
  readonly mappings: MmapHold[] = [];
  /**
   * The allow_unsafe_interrupts module parameter: bind devices whose MSIs the platform cannot
   * isolate (with a warning) instead of refusing them with EPERM.
   */
  allowUnsafeInterrupts = false;
  /**
   * CONFIG_IOMMUFD_TEST: the mock bus IOMMU_TEST_CMD creates devices on. Undefined for a kernel
   * built without the test interface, where IOMMU_TEST_CMD is ENOTTY.
   */
  mockBus: MockBus | undefined;
  /** iommufd_test_memory_limit: the byte budget of the batches pages are read through. */
  testMemoryLimit = IOMMUFD_TEST_MEMORY_LIMIT_DEFAULT;

  /** The machine's RAM, where the test interface's dma-bufs are allocated. */
  readonly phys: PhysMemory | undefined;

  constructor(events: EventBus, accounting: Accounting, pinner: PagePinner, phys?: PhysMemory) {
    this.events = events;
    this.phys = phys;
    this.accounting = accounting;
    this.ioptEnv = { pinner, accounting };
  }
  /** iommufd_fops_vma_close() of mappings that match: each lets go of its region's owner. */
  dropMappings(which: (m: MmapHold) => boolean): void {
    for (let i = this.mappings.length - 1; i >= 0; i--) {
      const m = this.mappings[i]!;
      if (!which(m)) continue;
      this.mappings.splice(i, 1);
      m.region.owner.users.dec();
    }
  }

  /**
   * A client unmapped (all of) one mapping of `offset` of the iommufd `ictx`; false if there
   * is none of that address space (a mapping inherited across fork holds nothing: decision 231).
   */
  unmapped(ictx: IommufdCtx, mm: MmId, offset: bigint): boolean {
    const m = this.mappings.findIndex(
      (h) => h.ictx === ictx && h.mm === mm && h.region.offset === offset,
    );
    if (m < 0) return false;
    const [hold] = this.mappings.splice(m, 1);
    hold!.region.owner.users.dec();
    return true;
  }

  /** Problems that outlived their owner: objects a release could not free, pinned pages, charges. */
  leaks(): string[] {
    const out = [...this.leaked];
    for (const ictx of this.contexts)
      out.push(`iommufd context still open with ${ictx.objectCount} objects`);
    const charged = this.accounting.total();
    if (charged !== 0n && this.contexts.size === 0)
      out.push(`${charged} pages still charged to RLIMIT_MEMLOCK`);
    let pinnedVm = 0n;
    for (const pages of this.accounting.pinnedVmByMm.values()) pinnedVm += pages;
    if (pinnedVm !== 0n && this.contexts.size === 0)
      out.push(`${pinnedVm} pages still counted in pinned_vm`);
    return out;
  }

  /** The /dev/iommu misc device (10:123, 0660 like the kernel's iommu_misc_dev). */
  devNode(): CharDevNode {
    return {
      path: '/dev/iommu',
      rdev: IOMMU_RDEV,
      mode: S_IFCHR | 0o660,
      open: (_task, _flags) => this.open('user'),
    };
  }

  /**
   * /dev/vfio/vfio provided by iommufd (CONFIG_IOMMUFD_VFIO_CONTAINER; 10:196, 0666 like the
   * kernel's vfio_misc_dev): an iommufd context that charges pinned pages per mm, as VFIO's type1
   * does, and answers the container ioctls through vfio-compat.ts.
   */
  vfioDevNode(): CharDevNode {
    return {
      path: '/dev/vfio/vfio',
      rdev: VFIO_RDEV,
      mode: S_IFCHR | 0o666,
      open: (_task, _flags) => {
        if (!this.announcedVfio) {
          this.announcedVfio = true;
          this.events.log('info', 'IOMMUFD is providing /dev/vfio/vfio, not VFIO.');
        }
        return this.open('mm', 'vfio-container');
      },
    };
  }

  private announcedVfio = false;

  open(accountMode: AccountMode, kind: 'iommufd' | 'vfio-container' = 'iommufd'): File | number {
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    const ictx = new IommufdCtx(this, accountMode);
    const rdev = kind === 'iommufd' ? IOMMU_RDEV : VFIO_RDEV;
    const file = new File(kind, iommufdFops, ictx, rdev);
    ictx.file = file;
    this.contexts.add(ictx);
    return file;
  }
}

export class IommufdCtx {
  readonly subsystem: IommufdSubsystem;
  file: File | undefined;
  accountMode: AccountMode;
  /** The IOAS the VFIO compatibility ioctls work on; not a reference (IOMMU_VFIO_IOAS). */
  vfioIoas: Ioas | undefined;
  /**
   * Set by a no-IOMMU group's SET_CONTAINER (iommufdVfioCompatSetNoIommu) and never cleared: the
   * container then offers only VFIO_NOIOMMU_IOMMU and gets no compat IOAS.
   */
  noIommuMode = false;
  /**
   * mt_mmap: regions a driver lets userspace mmap() through this file, by offset (from one page
   * up, lowest free range first), each with the object that owns it.
   */
  readonly mmaps = new Map<bigint, MmapRegion>();
  /** igroups by iommu_group id (no-IOMMU placeholders are never here). */
  readonly groups = new Map<number, IommufdGroup>();
  /** Published and reserved objects by id. */
  private readonly objects = new Map<number, IommufdObject>();
  /** Ids below `nextId` that are free again, ascending: the lowest is handed out first. */
  private readonly freeIds: number[] = [];
  /**
   * Ids of objects the kernel destroyed behind userspace's back (a vDEVICE whose device went):
   * never handed out again, IOMMU_DESTROY finds nothing there, until the context is released.
   */
  private readonly tombstones = new Set<number>();
  private nextId = 1;

  constructor(subsystem: IommufdSubsystem, accountMode: AccountMode) {
    this.subsystem = subsystem;
    this.accountMode = accountMode;
  }

  /** Number of ids in use (published or reserved). */
  get objectCount(): number {
    return this.objects.size;
  }

  /** All published objects, by ascending id. */
  publishedObjects(): IommufdObject[] {
    return [...this.objects.entries()]
      .filter(([, o]) => o.published)
      .sort(([a], [b]) => a - b)
      .map(([, o]) => o);
  }

  /**
   * _iommufd_object_alloc(): reserves the lowest free id for a new object (users = 1, the table's
   * reference, plus the creator's short-term one). The object stays invisible until finalize().
   */
  allocObject<T extends IommufdObject>(obj: T): T | number {
    if (shouldFail('object-alloc')) return -Errno.ENOMEM;
    const id = this.freeIds[0] ?? this.nextId;
    if (id > ID_MAX) return -Errno.EBUSY;
    // xa_alloc(): the nodes storing the id may need allocating (docs/fault-injection.md).
    const used = [...this.objects.keys(), ...this.tombstones];
    if (!xaAllocNodes(xaNodesToStore(used, id))) return -Errno.ENOMEM;
    if (id === this.nextId) this.nextId++;
    else this.freeIds.shift();
    obj.id = id;
    this.objects.set(id, obj);
    return obj;
  }

  /** iommufd_object_finalize(): publish once creation cannot fail. */
  finalize(obj: IommufdObject): void {
    if (this.objects.get(obj.id) !== obj || obj.published)
      throw new Error('finalize of a stray object');
    obj.published = true;
  }

  /** iommufd_object_abort(): undo allocObject() for an object that holds nothing yet. */
  abort(obj: IommufdObject): void {
    if (this.objects.get(obj.id) !== obj || obj.published)
      throw new Error('abort of a stray object');
    this.releaseId(obj.id);
  }

  /** iommufd_object_abort_and_destroy(): undo a fully built but unpublished object. */
  abortAndDestroy(obj: IommufdObject): void {
    obj.abort();
    this.abort(obj);
  }

  /**
   * iommufd_get_object(): a published object of that type (or any type), with a users and a
   * short-term reference the caller must drop with putObject(). undefined means ENOENT.
   */
  getObject<K extends IommufdObjType>(id: number, type: K | 'any'): IommufdObjectOf<K> | undefined {
    if (shouldFail('object-lookup')) return undefined;
    const obj = this.objects.get(id);
    if (obj === undefined || !obj.published) return undefined;
    if (type !== 'any' && obj.type !== type) return undefined;
    if (!this.lockObj(obj)) return undefined;
    return obj as IommufdObjectOf<K>;
  }

  /**
   * getObject() for a `using` declaration: the short-term reference is dropped when the block
   * that declared it ends, on every return path.
   */
  getObjectRef<K extends IommufdObjType>(
    id: number,
    type: K | 'any',
  ): ObjectRef<IommufdObjectOf<K>> | undefined {
    const obj = this.getObject(id, type);
    return obj === undefined ? undefined : new ObjectRef(obj);
  }

  /** iommufd_put_object(): users first, then the short-term reference. */
  putObject(obj: IommufdObject): void {
    obj.users.dec();
    // Never the last: the object table holds one until removeObject() (the kernel's bias).
    obj.shorttermUsers.dec();
  }

  /**
   * iommufd_lock_obj(): take a users + short-term reference on an object the caller can see;
   * false when it is already being destroyed.
   */
  lockObj(obj: IommufdObject): boolean {
    if (!obj.users.incNotZero()) return false;
    if (!obj.shorttermUsers.incNotZero()) {
      obj.users.dec();
      return false;
    }
    return true;
  }

  /**
   * iommufd_object_remove(): destroy the object `id` if the table holds the only reference.
   * With `toDestroy`, the caller's own users reference is dropped first (kernel-internal removal,
   * e.g. an auto domain). Returns 0, -ENOENT or -EBUSY.
   */
  removeObject(id: number, toDestroy?: IommufdObject): SyscallResult {
    const obj = this.objects.get(id);
    if (toDestroy !== undefined) {
      if (obj !== toDestroy)
        throw new Error(`remove of ${toDestroy.describe()} found another object`);
      obj.users.dec();
    } else if (obj === undefined || !obj.published) {
      return -Errno.ENOENT;
    }
    if (!obj.users.decIfOne()) return -Errno.EBUSY;
    this.objects.delete(id);
    this.releaseId(id);
    if (this.vfioIoas === obj) this.vfioIoas = undefined;
    // The table's short-term reference: anyone else's would be a call still using the object.
    if (!obj.shorttermUsers.decAndTest())
      throw new Error(`destroy with short-term users: ${obj.describe()}`);
    obj.destroy();
    return 0;
  }

  /**
   * _iommufd_alloc_mmap(): a region of `bytes` (a whole number of pages) mmap() reaches at the
   * offset returned: the lowest free range from one page up.
   */
  allocMmap(owner: IommufdObject, bytes: Uint8Array): bigint | number {
    const length = BigInt(bytes.length);
    if (length === 0n || length % PAGE_SIZE) return -Errno.EINVAL;
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    let start = PAGE_SIZE;
    for (const region of [...this.mmaps.values()].sort((a, b) => (a.offset < b.offset ? -1 : 1))) {
      if (start + length <= region.offset) break;
      if (region.offset + region.length > start) start = region.offset + region.length;
    }
    this.mmaps.set(start, { owner, offset: start, length, bytes });
    return start;
  }

  /** _iommufd_destroy_mmap(). */
  destroyMmap(owner: IommufdObject, offset: bigint): void {
    const region = this.mmaps.get(offset);
    if (region?.owner !== owner)
      throw new Error(`mmap region ${offset} is not ${owner.describe()}'s`);
    this.mmaps.delete(offset);
  }

  /**
   * iommufd_object_tombstone_user(): destroy `obj`, on which the caller holds a users reference,
   * and keep its id taken. EBUSY (and the object stays, for the release to free) if someone
   * else still holds it.
   */
  tombstone(obj: IommufdObject): SyscallResult {
    if (this.objects.get(obj.id) !== obj) throw new Error(`tombstone of a stray ${obj.describe()}`);
    obj.users.dec();
    if (!obj.users.decIfOne()) return -Errno.EBUSY;
    this.objects.delete(obj.id);
    this.tombstones.add(obj.id);
    if (!obj.shorttermUsers.decAndTest())
      throw new Error(`destroy with short-term users: ${obj.describe()}`);
    obj.destroy();
    return 0;
  }

  private releaseId(id: number): void {
    this.objects.delete(id);
    // Keep freeIds sorted so the lowest free id is reused first, like xa_alloc.
    let lo = 0;
    let hi = this.freeIds.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.freeIds[mid]! < id) lo = mid + 1;
      else hi = mid;
    }
    this.freeIds.splice(lo, 0, id);
    // Trim the tail so nextId stays the high-water mark of live ids.
    while (this.freeIds.length > 0 && this.freeIds[this.freeIds.length - 1] === this.nextId - 1) {
      this.freeIds.pop();
      this.nextId--;
    }
  }

  /**
   * iommufd_fops_release(): destroy every object, leaves first, in passes over ascending ids
   * until the table is empty. A pass that frees nothing is a refcount bug: reported as a leak.
   */
  release(): void {
    // No mapping outlives its file: what is left are the holds of address spaces not yet retired.
    this.subsystem.dropMappings((m) => m.ictx === this);
    while (this.objects.size > 0) {
      let destroyed = 0;
      for (const id of [...this.objects.keys()].sort((a, b) => a - b)) {
        const obj = this.objects.get(id);
        if (obj === undefined || !obj.users.decIfOne()) continue;
        this.objects.delete(id);
        if (this.vfioIoas === obj) this.vfioIoas = undefined;
        obj.destroy();
        destroyed++;
      }
      if (destroyed === 0) {
        for (const obj of this.objects.values()) {
          const line = `iommufd context released with ${obj.describe()} still referenced`;
          this.subsystem.leaked.push(line);
          this.subsystem.events.log('bug', line);
        }
        this.objects.clear();
        break;
      }
    }
    this.freeIds.length = 0;
    this.tombstones.clear();
    this.nextId = 1;
    if (this.groups.size !== 0) {
      const line = `iommufd context released with ${this.groups.size} igroups still referenced`;
      this.subsystem.leaked.push(line);
      this.subsystem.events.log('bug', line);
    }
    this.subsystem.contexts.delete(this);
  }
}

/** One mapping of a region (iommufd_fops_vma_open's hold), in the address space `mm`. */
export interface MmapHold {
  readonly mm: MmId;
  readonly ictx: IommufdCtx;
  readonly region: MmapRegion;
}

/** struct iommufd_mmap: a region of a driver's memory userspace maps through the iommufd. */
export interface MmapRegion {
  readonly owner: IommufdObject;
  readonly offset: bigint;
  readonly length: bigint;
  readonly bytes: Uint8Array;
}

/**
 * A short-term reference taken by getObjectRef(): `using ref = ictx.getObjectRef(id, type)`
 * drops it (iommufd_put_object) when the declaring block ends.
 */
export class ObjectRef<T extends IommufdObject> implements Disposable {
  readonly obj: T;

  constructor(obj: T) {
    this.obj = obj;
  }

  [Symbol.dispose](): void {
    this.obj.ictx.putObject(this.obj);
  }
}

/** Maps an object kind to its class, for typed lookups. */
export interface IommufdObjectTypes {
  ioas: Ioas;
  device: IommufdDevice;
  'hwpt-paging': HwptPaging;
  'hwpt-nested': HwptNested;
}
export type IommufdObjectOf<K extends IommufdObjType> = K extends keyof IommufdObjectTypes
  ? IommufdObjectTypes[K]
  : IommufdObject;

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

interface IoctlOp {
  readonly command: IommufdCommand;
  readonly spec: StructSpec<FieldTable>;
  readonly execute: (ucmd: Ucmd<FieldTable>) => MaybeBlocked;
}

function ioctlOp<F extends FieldTable>(
  command: IommufdCommand<F>,
  execute: (ucmd: Ucmd<F>) => MaybeBlocked,
): IoctlOp {
  return { command, spec: command.spec, execute } as unknown as IoctlOp;
}

function iommufdDestroy(ucmd: Ucmd<typeof uapi.iommuDestroy.fields>): SyscallResult {
  return ucmd.ictx.removeObject(ucmd.cmd.id);
}

/** iommufd_option(): on success only val64 is copied back. */
function iommufdOption(ucmd: Ucmd<typeof uapi.iommuOption.fields>): SyscallResult {
  const cmd = ucmd.cmd;
  if (cmd.__reserved) return -Errno.EOPNOTSUPP;
  let rc: SyscallResult;
  switch (cmd.option_id) {
    case uapi.IOMMU_OPTION_RLIMIT_MODE:
      rc = ioas.optionRlimitMode(ucmd);
      break;
    case uapi.IOMMU_OPTION_HUGE_PAGES:
      rc = ioas.ioasOptionHugePages(ucmd);
      break;
    default:
      return -Errno.EOPNOTSUPP;
  }
  if (rc) return rc;
  const val = new Uint8Array(8);
  new DataView(val.buffer).setBigUint64(0, cmd.val64, true);
  const at = ucmd.ubuffer + BigInt(uapi.iommuOption.fields.val64.offset);
  return copyToUser(ucmd.task, at, val) ? 0 : -Errno.EFAULT;
}

/** The op table, by _IOC_NR (iommufd_ioctl_ops[]): each op names its uAPI command. */
const ioctlOps = new Map<number, IoctlOp>(
  [
    ioctlOp(IOMMUFD.DESTROY, iommufdDestroy),
    ioctlOp(IOMMUFD.IOAS_ALLOC, ioas.iommufdIoasAllocIoctl),
    ioctlOp(IOMMUFD.IOAS_ALLOW_IOVAS, ioas.iommufdIoasAllowIovas),
    ioctlOp(IOMMUFD.IOAS_COPY, ioas.iommufdIoasCopy),
    ioctlOp(IOMMUFD.IOAS_IOVA_RANGES, ioas.iommufdIoasIovaRanges),
    ioctlOp(IOMMUFD.IOAS_MAP, ioas.iommufdIoasMap),
    ioctlOp(IOMMUFD.IOAS_UNMAP, ioas.iommufdIoasUnmap),
    ioctlOp(IOMMUFD.OPTION, iommufdOption),
    ioctlOp(IOMMUFD.VFIO_IOAS, iommufdVfioIoas),
    ioctlOp(IOMMUFD.HWPT_ALLOC, iommufdHwptAlloc),
    ioctlOp(IOMMUFD.GET_HW_INFO, iommufdGetHwInfo),
    ioctlOp(IOMMUFD.HWPT_SET_DIRTY_TRACKING, iommufdHwptSetDirtyTracking),
    ioctlOp(IOMMUFD.HWPT_GET_DIRTY_BITMAP, iommufdHwptGetDirtyBitmap),
    ioctlOp(IOMMUFD.HWPT_INVALIDATE, iommufdHwptInvalidate),
    ioctlOp(IOMMUFD.FAULT_QUEUE_ALLOC, iommufdFaultAlloc),
    ioctlOp(IOMMUFD.IOAS_MAP_FILE, ioas.iommufdIoasMapFile),
    ioctlOp(IOMMUFD.VIOMMU_ALLOC, iommufdViommuAlloc),
    ioctlOp(IOMMUFD.VDEVICE_ALLOC, iommufdVdeviceAlloc),
    ioctlOp(IOMMUFD.IOAS_CHANGE_PROCESS, ioas.iommufdIoasChangeProcess),
    ioctlOp(IOMMUFD.VEVENTQ_ALLOC, iommufdVeventqAlloc),
    ioctlOp(IOMMUFD.HW_QUEUE_ALLOC, iommufdHwQueueAlloc),
    ioctlOp(IOMMUFD.IOAS_NOIOMMU_GET_PA, iommufdIoasNoiommuGetPa),
  ].map((op) => [iocNr(op.command.cmd), op]),
);

/** With CONFIG_IOMMUFD_TEST the table reaches IOMMU_TEST_CMD; the numbers between are holes. */
const testOp = ioctlOp(IOMMUFD.TEST_CMD, iommufdTest);

/** The commands this file answers itself (the container ones: vfio-compat.ts). */
export const iommufdIoctlCommands: readonly IommufdCommand[] = [
  ...[...ioctlOps.values()].map((op) => op.command),
  testOp.command,
];

/** The highest command number the kernel's table has (IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA). */
const LAST_CMD = IommufdCmd.IOAS_NOIOMMU_GET_PA;

/** iommufd_fops_ioctl(). */
export function iommufdIoctl(ictx: IommufdCtx, task: Task, cmd: number, arg: bigint): MaybeBlocked {
  const nr = iocNr(cmd);
  const testInterface = ictx.subsystem.mockBus !== undefined;
  const last = testInterface ? IommufdCmd.TEST : LAST_CMD;
  if (nr < IOMMUFD_CMD_BASE || nr > last) return iommufdVfioIoctl(ictx, task, cmd, arg);

  // get_user(): not an injection point.
  const sizeBytes = getUser(task, arg, 4);
  if (sizeBytes === undefined) return -Errno.EFAULT;
  // Little-endian u32, read without a DataView (which would move the fresh array off-heap).
  const userSize =
    (sizeBytes[0]! | (sizeBytes[1]! << 8) | (sizeBytes[2]! << 16) | (sizeBytes[3]! << 24)) >>> 0;

  const op = testInterface && nr === IommufdCmd.TEST ? testOp : ioctlOps.get(nr);
  // A hole in the table, or a number with direction/size bits or another type: -ENOIOCTLCMD.
  if (op === undefined || IO(IOMMUFD_TYPE, nr) !== cmd) return -Errno.ENOTTY;
  if (userSize < op.spec.minSize) return -Errno.EINVAL;

  // copy_struct_from_user(): reject a non-zero tail beyond what we know, zero-extend a short one.
  // The tail may be gigabytes (size is a u32): other clients run while it is checked.
  const ksize = op.spec.size;
  const copyStruct = (): MaybeBlocked => {
    const copied = copyFromUser(task, arg, Math.min(userSize, ksize));
    if (copied === undefined) return -Errno.EFAULT;
    const buf = new Uint8Array(ksize);
    buf.set(copied);
    const ucmd = new Ucmd(ictx, task, arg, userSize, op.spec, buf);
    return op.execute(ucmd);
  };
  if (userSize <= ksize) return copyStruct();
  return checkZeroedUserThen(task, arg + BigInt(ksize), userSize - ksize, (zeroed) => {
    if (zeroed === undefined) return -Errno.EFAULT;
    if (zeroed === 0) return -Errno.E2BIG;
    return copyStruct();
  });
}

const PROT_EXEC = 0x4;
const MAP_SHARED = 0x1;
const MAP_SHARED_VALIDATE = 0x3;

/** The region holding [pos, pos + length) of the file's mmap offsets, if one does. */
function mmapRegionAt(ictx: IommufdCtx, pos: bigint, length: number): MmapRegion | undefined {
  for (const region of ictx.mmaps.values()) {
    if (pos >= region.offset && pos + BigInt(length) <= region.offset + region.length)
      return region;
  }
  return undefined;
}

export const iommufdFops: FileOperations = {
  name: 'iommufd',
  ioctl(file, task, cmd, arg) {
    return iommufdIoctl(file.privateData as IommufdCtx, task, cmd, arg);
  },
  /**
   * iommufd_fops_mmap(): exactly a region a driver allocated (a vIOMMU's page), by its offset
   * and length (ENXIO otherwise), shared (EINVAL) and not executable (EPERM). Its accesses are
   * trapped and served from the region (decision 166).
   */
  mmap(file, task, length, pgoff, how) {
    const ictx = file.privateData as IommufdCtx;
    // The VMA is whole pages.
    const vmaLength = ((length + PAGE_SIZE - 1n) / PAGE_SIZE) * PAGE_SIZE;
    const type = (how?.flags ?? MAP_SHARED) & 0xf;
    if (type !== MAP_SHARED && type !== MAP_SHARED_VALIDATE) return -Errno.EINVAL;
    if ((how?.prot ?? 0) & PROT_EXEC) return -Errno.EPERM;
    const offset = pgoff * PAGE_SIZE;
    const region = mmapRegionAt(ictx, offset, 1);
    if (region === undefined || region.offset !== offset || region.length !== vmaLength)
      return -Errno.ENXIO;
    // iommufd_fops_vma_open(): the mapping holds the region's owner (IOMMU_DESTROY is EBUSY).
    region.owner.users.inc();
    ictx.subsystem.mappings.push({ mm: task.memory.mm, ictx, region });
    return { kind: 'trapped', regionOffset: offset };
  },
  mmioRead(file, _task, length, pos) {
    const region = mmapRegionAt(file.privateData as IommufdCtx, pos, length);
    if (region === undefined) return -Errno.EIO;
    const at = Number(pos - region.offset);
    return region.bytes.slice(at, at + length);
  },
  mmioWrite(file, _task, data, pos) {
    const region = mmapRegionAt(file.privateData as IommufdCtx, pos, data.length);
    if (region === undefined) return -Errno.EIO;
    region.bytes.set(data, Number(pos - region.offset));
    return data.length;
  },
  release(file) {
    (file.privateData as IommufdCtx).release();
  },
};

/** iommufd_ctx_from_fd(): the context behind an fd of the caller, or -EBADF / -EBADFD. */
export function iommufdCtxFromFd(task: Task, fd: number): IommufdCtx | number {
  if (fd < 0 || !task.fds.isOpen(fd)) return -Errno.EBADF;
  const file = task.fds.fileOf(fd);
  if (file === undefined || file.fops !== iommufdFops) return -Errno.EBADFD;
  return file.privateData as IommufdCtx;
}
