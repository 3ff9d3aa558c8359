/**
 * struct iommufd_ctx: one open of /dev/iommu (or of iommufd's /dev/vfio/vfio) and its object
 * table, with ids from 1 (the lowest free one reused), two-phase creation, lookups that take
 * short-term references, removal only when idle, tombstones and the leaf-first release; also the
 * regions a driver lets userspace mmap() through the file. Mirrors the object half of
 * drivers/iommu/iommufd/main.c (and driver.c's mmap region allocator).
 */
import { shouldFail } from '../fault/fault.ts';
import type { File } from '../host/file.ts';
import type { MmId } from '../host/user-memory.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import type { DomainTeardown } from './area-unfill.ts';
import { ContextHold, teardownAfterRelease } from './ctx-hold.ts';
import type { IommufdDevice, IommufdGroup } from './device.ts';
import type { HwptNested, HwptPaging } from './hw-pagetable.ts';
import type { Ioas } from './ioas.ts';
import type { IommufdSubsystem } from './main.ts';
import type { IommufdObject, IommufdObjType } from './object.ts';
import { xaAllocNodes, xaNodesToStore } from './xarray.ts';

/** How pinned pages are charged (IOMMU_OPTION_RLIMIT_MODE): 0 per user, 1 per process (mm). */
export type AccountMode = 'user' | 'mm';

/** ids are 31-bit (xa_limit_31b) and never 0. */
const ID_MAX = 0x7fffffff;

/** One open of iommufd: its objects by id, its igroups, the regions it lets userspace map. */
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
  /** Held by a call that changes an IOAS of this context over several turns (ctx-hold.ts). */
  readonly hold: ContextHold;
  /** Domains that left their IOAS, torn down before the call returns (ctx-hold.ts). */
  readonly teardowns: DomainTeardown[] = [];

  constructor(subsystem: IommufdSubsystem, accountMode: AccountMode) {
    this.subsystem = subsystem;
    this.accountMode = accountMode;
    this.hold = new ContextHold((err) => subsystem.reportBug('a call waiting on a context', err));
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
  release(): Promise<void> | undefined {
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
    // What the HWPTs' domains still map, torn down after the release (kernel work).
    const teardown = teardownAfterRelease(this);
    this.freeIds.length = 0;
    this.tombstones.clear();
    this.nextId = 1;
    if (this.groups.size !== 0) {
      const line = `iommufd context released with ${this.groups.size} igroups still referenced`;
      this.subsystem.leaked.push(line);
      this.subsystem.events.log('bug', line);
    }
    this.subsystem.contexts.delete(this);
    return teardown;
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
