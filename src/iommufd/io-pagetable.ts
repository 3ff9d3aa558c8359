/**
 * The io_pagetable of an IOAS: mapped areas, reserved ranges (owned by a domain or a device),
 * allowed ranges, the attached domains and the IOVA alignment they impose. Mirrors
 * drivers/iommu/iommufd/io_pagetable.c: IOVA allocation, map/unmap of whole areas, and the filling
 * of domains when they are added.
 */
import { shouldFail } from '../fault/fault.ts';
import { mutant } from '../fault/mutant.ts';
import type { LongWalk } from '../host/resched.ts';
import type { Task } from '../host/task.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE, ULONG_MAX } from '../uapi/iommufd.ts';
import {
  type AreaFill,
  areaFillDomainWalk,
  fillAreasWalk,
  fillsAddDomain,
  fillsRemoveDomain,
} from './area-fill.ts';
import { AreaTree } from './area-tree.ts';
import { areaUnfillDomainsWalk } from './area-unfill.ts';
import { IntervalTree, spans } from './interval-tree.ts';
import {
  type AreaTeardown,
  alignUp,
  areaFillDomain,
  areaRemoveDomain,
  areaSplit,
  areaUnfillDomain,
  IoptArea,
  type IoptEnv,
  minPageSize,
  type PagesSlice,
  putSlices,
} from './iopt-area.ts';
import {
  type IommuProt,
  type IoptDomain,
  type IoptPages,
  ioptAllocDmabufPages,
  ioptAllocFilePages,
  ioptAllocPages,
} from './pages.ts';
import { dmaBufAttach, testDmaBufOf } from './selftest-dmabuf.ts';

/** An out-parameter, like the kernel's `unsigned long *iova`. */
export interface Ref<T> {
  value: T;
}

interface Reserved {
  readonly owner: unknown;
}

/** The automatic IOVA alignment cap: HPAGE_PMD_SIZE, the emulated kernel has THP. */
const MAX_IOVA_ALIGNMENT = 2n << 20n;

function roundupPowOfTwo(value: bigint): bigint {
  let p = 1n;
  while (p < value) p <<= 1n;
  return p;
}

function lowestSetBit(value: bigint): bigint {
  return value & -value;
}

/**
 * An in-kernel access attached to the IOAS (struct iommufd_access, as the iopt sees it): the IOVA
 * alignment it needs, and its driver's unmap callback, which must drop every pin it holds in the
 * range before returning.
 */
export interface IoptAccess {
  readonly iovaAlignment: bigint;
  /** iommufd_access_notify_unmap() for this access; false if it is being destroyed (skipped). */
  notifyUnmap(iova: bigint, length: bigint): void;
}

/** Accesses one IOAS may have attached (xa_limit_16b). */
const ACCESS_LIST_MAX = 0xffff;

/** Unmap rounds that find an area still pinned before giving up (a driver ignoring unmap). */
const UNMAP_NOTIFY_TRIES = 100;

export class IoPagetable {
  readonly areas = new AreaTree<IoptArea>();
  /** The areas of map calls in progress, until each call ends (area-fill.ts). */
  readonly fills = new Set<AreaFill>();
  /** Map calls between their first and last batch: each holds its IOAS (ioas.ts mapThen). */
  mapsInFlight = 0;
  /** Map calls that gave their areas pages (ended), counted for an attach in progress. */
  private mapsPublished = 0;
  readonly reserved = new IntervalTree<Reserved>();
  readonly allowed = new IntervalTree<null>();
  /** Attached domains; domains[0] is where areas first store their PFNs. */
  readonly domains: IoptDomain[] = [];
  /** Attached in-kernel accesses (the kernel's access_list). */
  readonly accesses: IoptAccess[] = [];
  /** Alignment required of IOVA, length and in-page offset: 1 until a domain needs more. */
  iovaAlignment = 1n;
  disableLargePages = false;
  readonly env: IoptEnv;

  constructor(env: IoptEnv) {
    this.env = env;
  }

  /** iopt_alloc_iova(): first fit inside the allowed ranges (or everywhere), never page 0 or the top page. */
  private allocIova(out: Ref<bigint>, uptr: bigint, length: bigint): SyscallResult {
    const pageOffset = uptr % PAGE_SIZE;
    if (length === 0n || length >= ULONG_MAX / 2n) return -Errno.EOVERFLOW;
    // Keep the alignment the user address has, so huge pages stay possible.
    let alignment = roundupPowOfTwo(length);
    if (uptr !== 0n && lowestSetBit(uptr) < alignment) alignment = lowestSetBit(uptr);
    if (alignment < this.iovaAlignment) return -Errno.EINVAL;
    // No point aligning beyond the largest page the CPU side can have (a THP on x86-64).
    if (alignment > MAX_IOVA_ALIGNMENT) alignment = MAX_IOVA_ALIGNMENT;

    const first = PAGE_SIZE;
    const last = ULONG_MAX - PAGE_SIZE;
    const allowedSpans: { start: bigint; last: bigint }[] = [];
    if (this.allowed.size === 0) {
      allowedSpans.push({ start: first, last });
    } else {
      for (const span of spans([this.allowed], first, last)) {
        if (!span.isHole) allowedSpans.push(span);
      }
    }
    for (const allowed of allowedSpans) {
      if (!fits(allowed.start, allowed.last, length, alignment, pageOffset)) continue;
      for (const span of spans([this.reserved, this.areas], allowed.start, allowed.last)) {
        if (!span.isHole) continue;
        const start = fits(span.start, span.last, length, alignment, pageOffset);
        if (start === undefined) continue;
        out.value = start;
        return 0;
      }
    }
    return -Errno.ENOSPC;
  }

  /** iopt_check_iova(): placement rules for a fixed IOVA. */
  private checkIova(iova: bigint, length: bigint): SyscallResult {
    if (iova % this.iovaAlignment !== 0n) return -Errno.EINVAL;
    const last = iova + length - 1n;
    if (last > ULONG_MAX) return -Errno.EOVERFLOW;
    if (this.reserved.iterFirst(iova, last) !== undefined) return -Errno.EINVAL;
    if (this.areas.iterFirst(iova, last) !== undefined) return -Errno.EEXIST;
    return 0;
  }

  /**
   * iopt_map_pages(): place one area per slice at `iova` (or an allocated IOVA), then fill every
   * domain, a batch at a time (a step of the walk each). On failure nothing is left behind; on
   * success the slices' pages references move into the areas. Until it ends the areas are in
   * the tree without pages: an unmap of them is EBUSY, a COPY from them ENOENT.
   */
  *mapPagesWalk(
    slices: PagesSlice[],
    length: bigint,
    iova: Ref<bigint>,
    prot: IommuProt,
    allocate: boolean,
  ): LongWalk<SyscallResult> {
    for (let i = 0; i < slices.length; i++) if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    if (length % this.iovaAlignment !== 0n || length === 0n) return -Errno.EINVAL;
    const firstSlice = slices[0]!;
    if (allocate) {
      // The user VA, or the file offset, of the first byte guides the IOVA alignment.
      const rc = this.allocIova(iova, firstSlice.pages.uptr + firstSlice.startByte, length);
      if (rc) return rc;
    } else {
      const rc = this.checkIova(iova.value, length);
      if (rc) return rc;
    }

    // Insert the areas with no pages first: the IOVA range is then claimed.
    const areas: IoptArea[] = [];
    let rc = 0;
    let at = iova.value;
    for (const slice of slices) {
      if (prot.write && !slice.pages.writable) {
        rc = -Errno.EPERM;
        break;
      }
      const area = new IoptArea(at, slice.length, prot, slice.startByte);
      if (area.pageOffset % this.iovaAlignment !== 0n) {
        rc = -Errno.EINVAL;
        break;
      }
      this.areas.insert(area);
      areas.push(area);
      at += slice.length;
    }
    if (rc === 0) {
      rc = yield* fillAreasWalk(this, areas, slices);
    }
    if (rc) {
      if (mutant('map-leaves-area')) return rc; // mutant: map-leaves-area
      for (const area of areas) this.areas.remove(area);
      return rc;
    }
    for (let i = 0; i < areas.length; i++) {
      const pages = slices[i]!.pages;
      pages.get();
      areas[i]!.pages = pages;
    }
    this.mapsPublished++;
    return 0;
  }

  /** iopt_map_common(): map one new pages object as one area; the creator's reference is dropped. */
  private *mapCommon(
    pages: IoptPages,
    ctxAccountMode: 'user' | 'mm',
    iova: Ref<bigint>,
    length: bigint,
    startByte: bigint,
    prot: IommuProt,
    allocate: boolean,
  ): LongWalk<SyscallResult> {
    if (ctxAccountMode === 'mm' && pages.accountMode === 'user') pages.accountMode = 'mm';
    const slices = [{ pages, startByte, length }];
    const rc = yield* this.mapPagesWalk(slices, length, iova, prot, allocate);
    pages.put();
    return rc;
  }

  /** iopt_map_user_pages(): MAP of the caller's [uptr, uptr+length). */
  *mapUserPagesWalk(
    task: Task,
    ctxAccountMode: 'user' | 'mm',
    iova: Ref<bigint>,
    uptr: bigint,
    length: bigint,
    prot: IommuProt,
    allocate: boolean,
  ): LongWalk<SyscallResult> {
    const pages = ioptAllocPages(task, uptr, length, prot.write);
    if (typeof pages === 'number') return pages;
    return yield* this.mapCommon(
      pages,
      ctxAccountMode,
      iova,
      length,
      uptr - pages.uptr,
      prot,
      allocate,
    );
  }

  /**
   * iopt_map_file_pages(): MAP_FILE of [start, start+length) of the file behind the caller's
   * `fd`. Nothing is pinned until a domain needs the pages; only a shmem or hugetlbfs file's can be.
   */
  *mapFilePagesWalk(
    task: Task,
    ctxAccountMode: 'user' | 'mm',
    iova: Ref<bigint>,
    fd: number,
    start: bigint,
    length: bigint,
    prot: IommuProt,
    allocate: boolean,
  ): LongWalk<SyscallResult> {
    if (length === 0n) return -Errno.EINVAL;
    if (start + length - 1n > ULONG_MAX) return -Errno.EOVERFLOW;
    const startByte = start % PAGE_SIZE;
    if (fd < 0 || !task.fds.isOpen(fd)) return -Errno.EBADF;
    const file = task.fds.fileOf(fd);
    // dma_buf_get() first: a dma-buf is imported, any other file is pinned by offset.
    const buf = testDmaBufOf(file);
    if (buf !== undefined) {
      const attach = () => dmaBufAttach(file!, buf);
      const pages = ioptAllocDmabufPages(
        task,
        buf.size,
        attach,
        startByte,
        start,
        length,
        prot.write,
      );
      if (typeof pages === 'number') return pages;
      return yield* this.mapCommon(pages, ctxAccountMode, iova, length, startByte, prot, allocate);
    }
    // A client's memfd can be pinned; any other file only fails once its pages are needed.
    const host = file === undefined ? task.fds.hostFile?.(fd) : undefined;
    const hostFile = typeof host === 'object' ? host : undefined;
    const pages = ioptAllocFilePages(task, file, hostFile, startByte, start, length, prot.write);
    if (typeof pages === 'number') {
      hostFile?.release();
      return pages;
    }
    return yield* this.mapCommon(pages, ctxAccountMode, iova, length, startByte, prot, allocate);
  }

  /**
   * iopt_get_pages(): the slices behind [iova, iova+length), which must be covered by areas
   * with no gap. Each slice holds a reference on its pages (drop with putSlices()).
   */
  getPages(iova: bigint, length: bigint, out: PagesSlice[]): SyscallResult {
    if (length === 0n) return -Errno.EINVAL;
    const lastIova = iova + length - 1n;
    if (lastIova > ULONG_MAX) return -Errno.EOVERFLOW;
    let cur = iova;
    let area = this.areas.iterFirst(iova, iova);
    let done = false;
    while (area !== undefined && area.pages !== undefined) {
      if (shouldFail('kmalloc')) {
        putSlices(out);
        return -Errno.ENOMEM;
      }
      const last = lastIova < area.last ? lastIova : area.last;
      area.pages.get();
      out.push({ pages: area.pages, startByte: area.startByte(cur), length: last - cur + 1n });
      if (lastIova <= area.last) {
        done = true;
        break;
      }
      cur = area.last + 1n;
      const next = this.areas.iterNext(area, cur, lastIova);
      area = next !== undefined && next.iova === cur ? next : undefined;
    }
    if (!done) {
      putSlices(out);
      return -Errno.ENOENT;
    }
    return 0;
  }

  /**
   * iopt_unmap_iova_range(): remove every area inside [start, last], lowest first. An area that
   * sticks out stops the walk with ENOENT, leaving earlier areas unmapped (not atomic). A walk:
   * an area leaves its domains and is unpinned a batch per step (area-unfill.ts).
   */
  private *unmapRangeWalk(
    start: bigint,
    last: bigint,
    unmapped: Ref<bigint>,
  ): LongWalk<SyscallResult> {
    let bytes = 0n;
    let rc: SyscallResult = 0;
    let tries = 0;
    let lastTried: IoptArea | undefined;
    for (;;) {
      const area = this.areas.iterFirst(start, last);
      if (area === undefined) break;
      if (area.pages === undefined) {
        rc = -Errno.EBUSY;
        break;
      }
      // Locked by a HW queue that still uses the memory physically.
      if (area.numLocks > 0) {
        rc = -Errno.EBUSY;
        break;
      }
      if (area.iova < start || area.last > last) {
        rc = -Errno.ENOENT;
        break;
      }
      if (area !== lastTried) tries = 0;
      // Accesses pin this area: ask them all to let go of it, then look again.
      if (area.numAccesses > 0) {
        area.preventAccess = true;
        lastTried = area;
        this.notifyAccessesOfUnmap(area.iova, area.length);
        if (++tries > UNMAP_NOTIFY_TRIES) {
          rc = -Errno.EDEADLK;
          break;
        }
        continue;
      }
      const pages = area.pages;
      area.pages = undefined;
      yield* areaUnfillDomainsWalk(this, area, pages);
      this.areas.remove(area);
      pages.put();
      bytes += area.length;
      // A step per area too: a million small ones take many slices.
      yield Number(PAGE_SIZE);
    }
    // A range with nothing in it is success here; IOAS_UNMAP makes that ENOENT (unmapIova()).
    unmapped.value = bytes;
    return rc;
  }

  /**
   * iopt_unmap_iova() followed by iommufd_ioas_unmap()'s rule: a range holding no area at all is
   * ENOENT (decision 1).
   */
  *unmapIovaWalk(iova: bigint, length: bigint, unmapped: Ref<bigint>): LongWalk<SyscallResult> {
    const rc = yield* this.unmapIovaAllowEmptyWalk(iova, length, unmapped);
    return rc === 0 && unmapped.value === 0n ? -Errno.ENOENT : rc;
  }

  /** iopt_unmap_iova() itself: an empty range is success with 0 bytes (VFIO_IOMMU_UNMAP_DMA). */
  *unmapIovaAllowEmptyWalk(
    iova: bigint,
    length: bigint,
    unmapped: Ref<bigint>,
  ): LongWalk<SyscallResult> {
    if (length === 0n) return -Errno.EINVAL;
    const last = iova + length - 1n;
    if (last > ULONG_MAX) return -Errno.EOVERFLOW;
    return yield* this.unmapRangeWalk(iova, last, unmapped);
  }

  /** iopt_unmap_all(): succeeds on an empty table too. */
  *unmapAllWalk(unmapped: Ref<bigint>): LongWalk<SyscallResult> {
    return yield* this.unmapRangeWalk(0n, ULONG_MAX, unmapped);
  }

  /**
   * iopt_cut_iova(): for each IOVA in turn, split the area holding it so that the IOVA becomes
   * the last byte of an area. Stops at the first failure (earlier cuts stay). VFIO type1 v1
   * hole punching.
   */
  cutIova(iovas: readonly bigint[]): SyscallResult {
    for (const iova of iovas) {
      const area = this.areas.iterFirst(iova, iova);
      if (area === undefined) continue;
      const rc = areaSplit(this, area, iova);
      if (rc) return rc;
    }
    return 0;
  }

  /** iopt_set_allow_iova(): replace the allowed list, unless it collides with a reserved range. */
  setAllowIova(ranges: readonly { start: bigint; last: bigint }[]): SyscallResult {
    for (const r of ranges) {
      if (this.reserved.iterFirst(r.start, r.last) !== undefined) return -Errno.EADDRINUSE;
    }
    for (const node of [...this.allowed.iter()]) this.allowed.remove(node);
    for (const r of ranges) this.allowed.insert(r.start, r.last, null);
    return 0;
  }

  /** iopt_reserve_iova(): fails if a mapping or an allowed range is there. */
  reserveIova(start: bigint, last: bigint, owner: unknown): SyscallResult {
    if (
      this.areas.iterFirst(start, last) !== undefined ||
      this.allowed.iterFirst(start, last) !== undefined
    ) {
      return -Errno.EADDRINUSE;
    }
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    this.reserved.insert(start, last, { owner });
    return 0;
  }

  /** iopt_remove_reserved_iova(): drop every range `owner` reserved. */
  removeReservedIova(owner: unknown): void {
    for (const node of [...this.reserved.iter()]) {
      if (node.value.owner === owner) this.reserved.remove(node);
    }
  }

  /** iopt_check_iova_alignment(): every area conforms to a larger alignment. */
  private checkIovaAlignment(alignment: bigint): SyscallResult {
    for (const area of this.areas.iter()) {
      if (area.iova % alignment || area.length % alignment || area.pageOffset % alignment)
        return -Errno.EADDRINUSE;
    }
    return 0;
  }

  /**
   * iopt_table_add_domain(): raise the alignment, reserve what lies outside the aperture, and map
   * every area into the new domain (pinning areas that no domain held yet). All or nothing. A
   * walk, a batch of an area per step: a served call that goes on for more than a slice holds
   * its context meanwhile (ctx-hold.ts), so nothing but the batches of map calls already running
   * (decision 282) changes the areas under it.
   */
  *addDomainWalk(domain: IoptDomain): LongWalk<SyscallResult> {
    if (this.domains.includes(domain)) return -Errno.EEXIST;
    const minPage = minPageSize(domain.pgsizeBitmap);
    const alignment = minPage > this.iovaAlignment ? minPage : this.iovaAlignment;
    if (alignment > PAGE_SIZE) return -Errno.EINVAL;
    if (alignment !== this.iovaAlignment) {
      const rc = this.checkIovaAlignment(alignment);
      if (rc) return rc;
    }
    let rc: SyscallResult = 0;
    if (domain.aperture.start !== 0n) rc = this.reserveIova(0n, domain.aperture.start - 1n, domain);
    if (rc === 0 && domain.aperture.last !== ULONG_MAX) {
      rc = this.reserveIova(domain.aperture.last + 1n, ULONG_MAX, domain);
    }
    // xa_reserve() of the domain's slot in iopt->domains.
    if (rc === 0 && shouldFail('kmalloc')) rc = -Errno.ENOMEM;
    if (rc) {
      this.removeReservedIova(domain);
      return rc;
    }

    // iopt_fill_domain(), and iopt_unfill_domain() of what it filled when an area fails. The
    // next area is looked up after each one, as a map call that fails between two steps
    // removes its own areas (which have no pages yet, and are skipped).
    const filled = new Set<IoptArea>();
    const published = this.mapsPublished;
    for (let area = this.areas.iterFirst(0n, ULONG_MAX); area !== undefined; ) {
      if (area.pages !== undefined) {
        rc = yield* areaFillDomainWalk(this, area, area.pages, domain);
        if (rc) break;
        filled.add(area);
        // A step per area too: a million small ones take many slices.
        yield Number(PAGE_SIZE);
      }
      area = area.last === ULONG_MAX ? undefined : this.areas.iterFirst(area.last + 1n, ULONG_MAX);
    }
    // Map calls that ended meanwhile: their areas, wherever they lie, are filled now.
    if (rc === 0 && this.mapsPublished !== published) {
      for (const area of this.areas.iter()) {
        if (area.pages === undefined || filled.has(area)) continue;
        rc = areaFillDomain(this, area, area.pages, domain);
        if (rc) break;
        filled.add(area);
      }
    }
    // Areas of map calls still running take the domain too (their attach would have waited).
    if (rc === 0) rc = fillsAddDomain(this, domain);
    if (rc) {
      for (const area of filled) areaUnfillDomain(this, area, area.pages!, domain);
      this.removeReservedIova(domain);
      return rc;
    }
    // A dma-buf revoked meanwhile (by its exporter, in another context) unmapped its areas from
    // the table's domains, which this one was not yet among (the kernel tracks each domain an
    // area is filled into).
    for (const area of filled) {
      if (area.pages?.mapsIoptes === false) domain.unmap(area.iova, area.length);
    }
    this.domains.push(domain);
    // Recomputed: an access may have gone meanwhile (its release is not a call that waits).
    this.calculateIovaAlignment();
    return 0;
  }

  /**
   * iopt_table_remove_domain(): the domain leaves the table at once; what it maps of each area is
   * returned, to be taken out of it and, where it was an area's last domain, unpinned, a batch
   * per step (area-unfill.ts).
   */
  removeDomain(domain: IoptDomain): AreaTeardown[] {
    const index = this.domains.indexOf(domain);
    if (index < 0) throw new Error('removeDomain of a domain that is not attached');
    // Like the kernel's xarray compaction: the last domain moves into the freed slot, so the
    // storage domain after removing domains[0] is the most recently added one.
    const last = this.domains.pop()!;
    if (index < this.domains.length) this.domains[index] = last;
    const out: AreaTeardown[] = [];
    for (const area of this.areas.iter()) {
      if (area.pages !== undefined) areaRemoveDomain(this, area, area.pages, domain, out);
    }
    fillsRemoveDomain(this, domain, out);
    this.removeReservedIova(domain);
    this.calculateIovaAlignment();
    return out;
  }

  /** iopt_calculate_iova_alignment(): recompute after a domain or access comes or leaves. */
  private calculateIovaAlignment(): SyscallResult {
    let alignment = this.disableLargePages ? PAGE_SIZE : 1n;
    for (const domain of this.domains) {
      const minPage = minPageSize(domain.pgsizeBitmap);
      if (minPage > alignment) alignment = minPage;
    }
    for (const access of this.accesses)
      if (access.iovaAlignment > alignment) alignment = access.iovaAlignment;
    if (alignment > this.iovaAlignment) {
      const rc = this.checkIovaAlignment(alignment);
      if (rc) return rc;
    }
    this.iovaAlignment = alignment;
    return 0;
  }

  /**
   * iopt_add_access(): the access's alignment joins the table's; an area that does not meet it
   * makes the attach fail with EADDRINUSE.
   */
  addAccess(access: IoptAccess): SyscallResult {
    // xa_alloc() into the access list.
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    if (this.accesses.length >= ACCESS_LIST_MAX) return -Errno.EBUSY;
    this.accesses.push(access);
    const rc = this.calculateIovaAlignment();
    if (rc) this.accesses.pop();
    return rc;
  }

  /** iopt_remove_access(). */
  removeAccess(access: IoptAccess): void {
    const index = this.accesses.indexOf(access);
    if (index < 0) throw new Error('removeAccess of an access that is not attached');
    this.accesses.splice(index, 1);
    this.calculateIovaAlignment();
  }

  /** iommufd_access_notify_unmap(): every access drops its pins inside the range. */
  private notifyAccessesOfUnmap(iova: bigint, length: bigint): void {
    for (const access of [...this.accesses]) access.notifyUnmap(iova, length);
  }

  /** iopt_disable_large_pages(): refused once domains hold mappings. */
  disableLarge(): SyscallResult {
    if (this.disableLargePages) return 0;
    if (this.domains.length > 0 && this.areas.size > 0) return -Errno.EINVAL;
    this.disableLargePages = true;
    const rc = this.calculateIovaAlignment();
    if (rc) this.disableLargePages = false;
    return rc;
  }

  enableLarge(): void {
    this.disableLargePages = false;
    this.calculateIovaAlignment();
  }

  /** iopt_destroy_table(): the IOAS is going away; everything must already be unmapped and detached. */
  destroyTable(): void {
    for (const node of [...this.allowed.iter()]) this.allowed.remove(node);
    // Ranges reserved with no owner (the test interface's ADD_RESERVED) go with the table.
    this.removeReservedIova(null);
    if (this.areas.size || this.domains.length || this.reserved.size || this.accesses.length) {
      throw new Error('io_pagetable destroyed while still in use');
    }
  }
}

/** __alloc_iova_check_*: the lowest start in [start, last] that fits, keeping the in-page offset. */
function fits(
  start: bigint,
  last: bigint,
  length: bigint,
  alignment: bigint,
  pageOffset: bigint,
): bigint | undefined {
  if (last - start < length - 1n) return undefined;
  const candidate = alignUp(start, alignment) | pageOffset;
  if (candidate >= last || last - candidate < length - 1n) return undefined;
  return candidate;
}
