/**
 * An area of an io_pagetable and how it gets into and out of domains: struct iopt_area and the
 * area half of drivers/iommu/iommufd/pages.c (iopt_area_fill_domains(), iopt_area_fill_domain(),
 * iopt_area_unfill_domains()). The io_pagetable (io-pagetable.ts) decides which areas go where;
 * this module pins an area's pages and writes them into a domain's page table.
 */
import { shouldFail } from '../fault/fault.ts';
import { mutant } from '../fault/mutant.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import type { Accounting } from './accounting.ts';
import type { AreaFill } from './area-fill.ts';
import type { AreaTree } from './area-tree.ts';
import {
  type AreaPagesRange,
  type IommuProt,
  type IoptDomain,
  type IoptPages,
  ioptDmabufRuns,
  ioptPagesPin,
  ioptPagesUnpin,
  ioptPagesUnpinStart,
  type PagePinner,
  type PinnedRun,
  type UnpinProgress,
} from './pages.ts';

/** One mapping: what a MAP (or one piece of a COPY) created; the unit UNMAP removes. */
export class IoptArea implements AreaPagesRange {
  readonly iova: bigint;
  readonly last: bigint;
  readonly prot: IommuProt;
  /** Byte offset of the area's first byte within its first page. */
  readonly pageOffset: bigint;
  /** The pages of `pages` this area maps (the kernel's pages_node). */
  readonly startIndex: bigint;
  readonly lastIndex: bigint;
  /** undefined while the area is being built or torn down (an unmap then sees EBUSY). */
  pages: IoptPages | undefined;
  /** The domain holding the pinned PFNs, the first one the area was mapped into. */
  storageDomain: IoptDomain | undefined;
  /** Pins in-kernel accesses hold on this area's pages (iommufd_access_pin_pages). */
  numAccesses = 0;
  /** Set by an unmap waiting for the accesses to let go: no new access may pin or read it. */
  preventAccess = false;
  /** Pins of internal accesses (a HW queue's), which make an unmap of the area EBUSY. */
  numLocks = 0;

  constructor(iova: bigint, length: bigint, prot: IommuProt, startByte: bigint) {
    this.iova = iova;
    this.last = iova + length - 1n;
    this.prot = prot;
    this.pageOffset = startByte % PAGE_SIZE;
    this.startIndex = startByte / PAGE_SIZE;
    this.lastIndex = (startByte + length - 1n) / PAGE_SIZE;
  }

  get length(): bigint {
    return this.last - this.iova + 1n;
  }

  /** Byte offset within the pages object of `iova` (iopt_area_start_byte). */
  startByte(iova: bigint): bigint {
    return this.startIndex * PAGE_SIZE + this.pageOffset + (iova - this.iova);
  }
}

/** A slice of a pages object to be mapped: one entry per resulting area (iopt_pages_list). */
export interface PagesSlice {
  readonly pages: IoptPages;
  readonly startByte: bigint;
  readonly length: bigint;
}

/** iopt_free_pages_list(). */
export function putSlices(slices: PagesSlice[]): void {
  for (const slice of slices) slice.pages.put();
  slices.length = 0;
}

/** What an io_pagetable needs from the machine: pinning and RLIMIT_MEMLOCK accounting. */
export interface IoptEnv {
  readonly pinner: PagePinner;
  readonly accounting: Accounting;
}

/** The io_pagetable an area belongs to, as the fill and unfill steps see it (area->iopt). */
export interface AreaIopt {
  /** Attached domains; domains[0] is where areas first store their PFNs. */
  readonly domains: readonly IoptDomain[];
  readonly areas: AreaTree<IoptArea>;
  /** Areas being filled, batch by batch (area-fill.ts). */
  readonly fills: Set<AreaFill>;
  /** Map calls between their first and last batch: each holds its IOAS (ioas.ts mapThen). */
  mapsInFlight: number;
  readonly iovaAlignment: bigint;
  readonly disableLargePages: boolean;
  readonly env: IoptEnv;
}

/** 1 << __ffs(bitmap): the smallest page size a domain supports. */
export function minPageSize(pgsizeBitmap: bigint): bigint {
  return pgsizeBitmap & -pgsizeBitmap;
}

export function alignUp(value: bigint, alignment: bigint): bigint {
  return ((value + alignment - 1n) / alignment) * alignment;
}

/**
 * iopt_area_split(): replace `area` by [start, iova] and [iova+1, last] over the same pages
 * object. Nothing is remapped or repinned: the pieces keep the storage domain, and the pinned
 * page ranges are handed over to them.
 */
export function areaSplit(iopt: AreaIopt, area: IoptArea, iova: bigint): SyscallResult {
  if (iova === area.iova || iova === area.last) return 0;
  const pages = area.pages;
  if (pages === undefined) return -Errno.EBUSY;
  if (pages.type === 'dmabuf') return -Errno.EOPNOTSUPP;
  const newStart = iova + 1n;
  const alignment = iopt.iovaAlignment;
  if (newStart % alignment !== 0n || area.startByte(newStart) % alignment !== 0n)
    return -Errno.EINVAL;
  // The two iopt_area_alloc()s.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  // Access pins are recorded per area range and could not follow the pieces.
  if (area.numAccesses > 0) return -Errno.EINVAL;
  // A domain may hold huge IOPTEs for it: those cannot be split.
  if (area.storageDomain !== undefined && !iopt.disableLargePages) return -Errno.EINVAL;

  const lhs = new IoptArea(area.iova, newStart - area.iova, area.prot, area.startByte(area.iova));
  const rhs = new IoptArea(
    newStart,
    area.last - newStart + 1n,
    area.prot,
    area.startByte(newStart),
  );
  iopt.areas.remove(area);
  iopt.areas.insert(lhs);
  iopt.areas.insert(rhs);
  if (area.storageDomain !== undefined) {
    pages.deleteFilledRange(area);
    pages.addFilledRange(lhs);
    pages.addFilledRange(rhs);
  }
  lhs.storageDomain = area.storageDomain;
  rhs.storageDomain = area.storageDomain;
  area.storageDomain = undefined;
  // The old area's reference moves to lhs; rhs takes a new one.
  lhs.pages = pages;
  rhs.pages = pages;
  area.pages = undefined;
  pages.get();
  return 0;
}

/**
 * Pins an area's pages and maps them into every domain (iopt_area_fill_domains) at once: a
 * dma-buf's here; other pages through areaFillDomainsWalk() (area-fill.ts), batch by batch.
 */
export function areaFillDomains(iopt: AreaIopt, area: IoptArea, pages: IoptPages): SyscallResult {
  const domains = iopt.domains;
  if (domains.length === 0) return 0;
  // pfn_reader_first(): the batch iopt_area_fill_domains() reads the PFNs through.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const runs = pinArea(iopt, pages, area);
  if (typeof runs === 'number') return runs;
  for (let i = 0; i < domains.length; i++) {
    const rc = mapRuns(iopt, domains[i]!, area, pages, runs);
    if (rc) {
      for (let j = 0; j < i; j++) domains[j]!.unmap(area.iova, area.length);
      if (mutant('fill-keeps-pins')) return rc; // mutant: fill-keeps-pins
      unpinArea(iopt, pages, area);
      return rc;
    }
  }
  area.storageDomain = domains[0];
  return 0;
}

/**
 * iopt_area_fill_domain(): maps an area into one more domain, reading its PFNs back from its
 * storage domain, or pinning them first when no domain held them yet (the new domain then
 * stores them). On failure the domain holds nothing of the area and nothing stays pinned.
 */
export function areaFillDomain(
  iopt: AreaIopt,
  area: IoptArea,
  pages: IoptPages,
  domain: IoptDomain,
): SyscallResult {
  // pfn_reader_first(): the batch iopt_area_fill_domain() reads the PFNs through.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  if (area.storageDomain !== undefined) {
    // A dma-buf is always read from its physical range (nothing, once revoked).
    const runs =
      pages.type === 'dmabuf' ? ioptDmabufRuns(pages, area) : runsFromStorage(area, pages);
    return mapRuns(iopt, domain, area, pages, runs);
  }
  const runs = pinArea(iopt, pages, area);
  if (typeof runs === 'number') return runs;
  const rc = mapRuns(iopt, domain, area, pages, runs);
  if (rc) unpinArea(iopt, pages, area);
  else area.storageDomain = domain;
  return rc;
}

/**
 * iopt_area_unfill_domain(): undoes areaFillDomain() for a domain not yet in iopt.domains: its
 * IOPTEs go, and the pins too when it was the area's storage domain.
 */
export function areaUnfillDomain(
  iopt: AreaIopt,
  area: IoptArea,
  pages: IoptPages,
  domain: IoptDomain,
): void {
  if (pages.mapsIoptes) domain.unmap(area.iova, area.length);
  if (area.storageDomain === domain) {
    unpinArea(iopt, pages, area);
    area.storageDomain = undefined;
  }
}

/**
 * One area's part of iopt_table_remove_domain(), once `domain` has left iopt.domains: its pins
 * move to the next storage domain, or are to go with the last domain. What the domain maps of
 * the area goes on `out`, to be taken out of it (and unpinned, with the last domain) a batch per
 * step (area-unfill.ts).
 */
export function areaRemoveDomain(
  iopt: AreaIopt,
  area: IoptArea,
  pages: IoptPages,
  domain: IoptDomain,
  out: AreaTeardown[],
): void {
  if (area.storageDomain === undefined) return;
  const storage = iopt.domains[0];
  const last = storage === undefined;
  if (!last && area.storageDomain === domain) area.storageDomain = storage;
  if (last) area.storageDomain = undefined;
  // A dma-buf's area, one run never pinned, goes at once.
  if (pages.type === 'dmabuf') {
    if (pages.mapsIoptes) domain.unmap(area.iova, area.length);
    if (last) unpinArea(iopt, pages, area);
    return;
  }
  pages.get();
  out.push({ area, pages, unpin: last ? ioptPagesUnpinStart(pages, area) : undefined });
}

/**
 * An area a removed domain still maps: its IOPTEs are to go, and, when that domain was its
 * last, its pages to be unpinned (`unpin`, still a filled range of the pages object, so that
 * every other user of it counts them pinned until they are not). Holds a reference on the pages.
 */
export interface AreaTeardown {
  readonly area: IoptArea;
  readonly pages: IoptPages;
  readonly unpin: UnpinProgress | undefined;
}

/** Unmaps an area from every domain and unpins its pages (iopt_area_unfill_domains). */
export function areaUnfillDomains(iopt: AreaIopt, area: IoptArea, pages: IoptPages): void {
  if (area.storageDomain === undefined) return;
  if (pages.mapsIoptes) for (const domain of iopt.domains) domain.unmap(area.iova, area.length);
  unpinArea(iopt, pages, area);
  area.storageDomain = undefined;
}

/**
 * ioptPagesPin() for an area; a dma-buf's area is also tracked, so that a revoke can unmap it
 * from every domain (iopt_dmabuf_track_domain).
 */
function pinArea(iopt: AreaIopt, pages: IoptPages, area: IoptArea): PinnedRun[] | number {
  const runs = ioptPagesPin(pages, area, iopt.env.pinner, iopt.env.accounting);
  if (typeof runs !== 'number' && pages.dmabuf !== undefined) {
    pages.dmabuf.trackers.set(area, () => {
      for (const domain of iopt.domains) domain.unmap(area.iova, area.length);
    });
  }
  return runs;
}

/** Drops an area's pins and charge (the last domain holding it went). */
export function unpinArea(iopt: AreaIopt, pages: IoptPages, area: IoptArea): void {
  pages.dmabuf?.trackers.delete(area);
  ioptPagesUnpin(pages, area, iopt.env.pinner, iopt.env.accounting);
}

/**
 * The IOVA span an area occupies in a domain: the area rounded out to the domain's smallest page
 * (whole CPU pages for a domain of 4 KiB pages, as before; 2 KiB halves for the mock one).
 */
function areaDomainSpan(domain: IoptDomain, area: IoptArea): [bigint, bigint] {
  const page = minPageSize(domain.pgsizeBitmap);
  if (page >= PAGE_SIZE) {
    const first = area.iova - area.pageOffset;
    return [first, first + (area.lastIndex - area.startIndex + 1n) * PAGE_SIZE];
  }
  return [area.iova - (area.iova % page), alignUp(area.last + 1n, page)];
}

/**
 * Maps pinned runs of an area (consecutive pages of it) into one domain; on failure the domain
 * is left as it was before the call.
 */
export function mapRuns(
  iopt: AreaIopt,
  domain: IoptDomain,
  area: IoptArea,
  pages: IoptPages,
  runs: readonly PinnedRun[],
): SyscallResult {
  const firstVa = pages.uptr + area.startIndex * PAGE_SIZE;
  // batch_iommu_map_small(): with large pages disabled every IOPTE is one page, so that an
  // area can later be split (VFIO type1 v1) and each piece unmapped on its own.
  const step = iopt.disableLargePages ? PAGE_SIZE : undefined;
  // A domain with pages smaller than the CPU's (the mock one) maps only the area's own part of
  // its first and last page: the other part may belong to a neighbouring area.
  const [first, end] = areaDomainSpan(domain, area);
  let callFirst: bigint | undefined;
  for (const run of runs) {
    const runIova = area.iova - area.pageOffset + (run.va - firstVa);
    const iova = runIova > first ? runIova : first;
    const runEnd = runIova + run.npages * PAGE_SIZE;
    const size = (runEnd < end ? runEnd : end) - iova;
    const pa = run.pfn * PAGE_SIZE + (iova - runIova);
    const chunk = step ?? size;
    callFirst ??= iova < area.iova ? area.iova : iova;
    for (let done = 0n; done < size; done += chunk) {
      const rc = domain.map(iova + done, pa + done, chunk, area.prot);
      if (rc) {
        const mappedEnd = iova + done;
        if (mappedEnd > callFirst) domain.unmap(callFirst, mappedEnd - callFirst);
        return rc;
      }
    }
  }
  return 0;
}

/**
 * Reads back the runs of an area's pages [first, last] (all of them by default) from its storage
 * domain, to map them into another domain.
 */
export function runsFromStorage(
  area: IoptArea,
  pages: IoptPages,
  first = area.startIndex,
  last = area.lastIndex,
): PinnedRun[] {
  const runs: { va: bigint; pfn: bigint; npages: bigint }[] = [];
  for (let index = first; index <= last; index++) {
    const pfn = domainPfn(area.storageDomain!, area, index);
    const prev = runs[runs.length - 1];
    if (prev !== undefined && prev.pfn + prev.npages === pfn) prev.npages++;
    else runs.push({ va: pages.uptr + index * PAGE_SIZE, pfn, npages: 1n });
  }
  return runs;
}

/** The frame `domain` maps page `index` of an area's pages to. */
export function domainPfn(domain: IoptDomain, area: IoptArea, index: bigint): bigint {
  const pageIova = area.iova - area.pageOffset + (index - area.startIndex) * PAGE_SIZE;
  // The first page may be mapped only from the area's start (a domain of small pages).
  const probe = pageIova < area.iova ? area.iova : pageIova;
  const pa = domain.iovaToPhys(probe);
  if (pa === undefined) throw new Error(`area ${area.iova.toString(16)} lost a page in domain`);
  return (pa - (probe - pageIova)) / PAGE_SIZE;
}

/**
 * Page `last` of an area, moved on to the last page of the run of contiguous frames `domain`
 * maps it in: an IOPTE never crosses the end of such a run, so a range of the area that ends
 * there can be unmapped without cutting one (the kernel's unfill "carry").
 */
export function contiguousEnd(domain: IoptDomain, area: IoptArea, last: bigint): bigint {
  if (last === area.lastIndex) return last;
  let end = last;
  for (let pfn = domainPfn(domain, area, last) + 1n; end < area.lastIndex; pfn++) {
    if (domainPfn(domain, area, end + 1n) !== pfn) break;
    end++;
  }
  return end;
}
