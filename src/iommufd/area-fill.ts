/**
 * The filling of a new area into its io_pagetable's domains, a batch at a time: the kernel's
 * iopt_area_fill_domains() reading the area through a pfn_reader, which pins a batch, maps it
 * into every domain and goes on with the next, rescheduling in between. Here each batch is a
 * step of a long walk (host/resched.ts), so a served client's map of gigabytes lets the other
 * clients run between batches; the library API runs it to its end at once. Same result, errno
 * and state either way (docs/decisions.md 280-284).
 *
 * While it runs the area is in the tree without pages (an unmap of it is EBUSY, a COPY from it
 * ENOENT, as the kernel's area->pages is NULL until the fill ends), and its pinned part is a
 * filled range of its pages object. A domain attached or detached between two batches is what
 * the kernel would have done after the fill (its attach waits on domains_rwsem): the prefix
 * mapped so far goes into a new domain, and out of a leaving one.
 *
 * An attach fills each existing area into its new domain the same way (iopt_area_fill_domain(),
 * decision 290), with that domain as the only one.
 */
import { shouldFail } from '../fault/fault.ts';
import { mutant } from '../fault/mutant.ts';
import type { LongWalk } from '../host/resched.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import {
  type AreaIopt,
  type AreaTeardown,
  areaFillDomain,
  areaFillDomains,
  areaRemoveDomain,
  areaUnfillDomain,
  areaUnfillDomains,
  type IoptArea,
  mapRuns,
  type PagesSlice,
  runsFromStorage,
  unpinArea,
} from './iopt-area.ts';
import {
  type IoptDomain,
  type IoptPages,
  ioptPagesBatchLast,
  ioptPagesPinBatch,
  ioptPagesPinDone,
  ioptPagesPinStart,
  ioptPagesUnpin,
  type PinnedRun,
  type PinProgress,
} from './pages.ts';

/** Pages pinned and mapped per step: 1 MiB, the step of the walks over user memory. */
export const FILL_BATCH_PAGES = 256n;

/**
 * One area of a map call in progress, from the call's start to its end: waiting for its turn,
 * being filled (its pinned part is the progress range, its mapped prefix is in every domain),
 * or filled (in every domain, its pages pinned as any area's, but not yet visible).
 */
export class AreaFill {
  readonly area: IoptArea;
  readonly pages: IoptPages;
  state: 'waiting' | 'filling' | 'filled' = 'waiting';
  /** The pinned part while filling. */
  progress: PinProgress | undefined;
  /** Runs mapped into every domain of the io_pagetable while filling, in IOVA order. */
  readonly mapped: PinnedRun[] = [];
  /**
   * Pinned runs not mapped yet: the end of the last batch where its run may go on into the next
   * one, so that no IOPTE the domain would have made for the whole run is cut at a batch edge.
   */
  private pending: PinnedRun[] = [];

  constructor(area: IoptArea, pages: IoptPages) {
    this.area = area;
    this.pages = pages;
  }

  /** The IOVA of a run's first page (which may start before the area, in its first page). */
  runIova(run: PinnedRun): bigint {
    const firstVa = this.pages.uptr + this.area.startIndex * PAGE_SIZE;
    return this.area.iova - this.area.pageOffset + (run.va - firstVa);
  }

  /** Pages mapped into every domain so far. */
  get mappedPages(): bigint {
    let n = 0n;
    for (const run of this.mapped) n += run.npages;
    return n;
  }

  /**
   * Adds a pinned batch and maps what can be mapped of it into every domain (all of it when
   * `final`). On failure no domain holds anything of this call; the earlier prefix stays.
   */
  commit(iopt: AreaIopt, runs: readonly PinnedRun[], final: boolean): SyscallResult {
    for (const run of runs) appendRun(this.pending, run);
    const ready = final ? this.takeAll() : this.takeReady(iopt);
    if (ready.length === 0) return 0;
    const domains = iopt.domains;
    for (let i = 0; i < domains.length; i++) {
      const rc = mapRuns(iopt, domains[i]!, this.area, this.pages, ready);
      if (rc) {
        for (let j = 0; j < i; j++) this.unmapRuns(domains[j]!, ready);
        return rc;
      }
    }
    for (const run of ready) appendRun(this.mapped, run);
    return 0;
  }

  /**
   * A domain joins the io_pagetable while the call runs: what the area has so far goes into it
   * (a filling area's mapped prefix; a filled area all of it, as an attach fills any area).
   */
  addDomain(iopt: AreaIopt, domain: IoptDomain): SyscallResult {
    if (this.state === 'filled') return areaFillDomain(iopt, this.area, this.pages, domain);
    if (this.state === 'filling' && this.mapped.length !== 0)
      return mapRuns(iopt, domain, this.area, this.pages, this.mapped);
    return 0;
  }

  /** Undoes addDomain() (the attach failed later). */
  undoAddDomain(iopt: AreaIopt, domain: IoptDomain): void {
    if (this.state === 'filled') areaUnfillDomain(iopt, this.area, this.pages, domain);
    else if (this.state === 'filling') this.unmapFrom(domain);
  }

  /** A domain left the io_pagetable while the call runs (it is no longer in iopt.domains). */
  removeDomain(iopt: AreaIopt, domain: IoptDomain, out: AreaTeardown[]): void {
    if (this.state === 'filled') areaRemoveDomain(iopt, this.area, this.pages, domain, out);
    else if (this.state === 'filling') this.unmapFrom(domain);
  }

  /** The mapped prefix leaves a domain. */
  unmapFrom(domain: IoptDomain): void {
    this.unmapRuns(domain, this.mapped);
  }

  private unmapRuns(domain: IoptDomain, runs: readonly PinnedRun[]): void {
    if (runs.length === 0) return;
    const first = runs[0]!;
    const last = runs[runs.length - 1]!;
    let from = this.runIova(first);
    let end = this.runIova(last) + last.npages * PAGE_SIZE;
    if (from < this.area.iova) from = this.area.iova;
    if (end > this.area.last + 1n) end = this.area.last + 1n;
    if (end > from) domain.unmap(from, end - from);
  }

  private takeAll(): PinnedRun[] {
    const all = this.pending;
    this.pending = [];
    return all;
  }

  /**
   * Every pending run but the last, and of the last the part before the last IOVA boundary that
   * an IOPTE for the run could cross: the largest page of any domain to which the run's IOVA
   * and physical address are equally aligned. The rest waits for the next batch.
   */
  private takeReady(iopt: AreaIopt): PinnedRun[] {
    if (iopt.disableLargePages) return this.takeAll();
    const tail = this.pending.pop();
    const ready = this.pending;
    this.pending = [];
    if (tail === undefined) return ready;
    const iova = this.runIova(tail);
    const pa = tail.pfn * PAGE_SIZE;
    let largest = PAGE_SIZE;
    for (const domain of iopt.domains) {
      for (let bits = domain.pgsizeBitmap; bits !== 0n; bits &= bits - 1n) {
        const size = bits & -bits;
        if (size > largest && (iova - pa) % size === 0n) largest = size;
      }
    }
    const end = iova + tail.npages * PAGE_SIZE;
    const cut = end - (end % largest);
    const now = cut > iova ? (cut - iova) / PAGE_SIZE : 0n;
    if (now > 0n) ready.push({ va: tail.va, pfn: tail.pfn, npages: now });
    if (now < tail.npages)
      this.pending.push({
        va: tail.va + now * PAGE_SIZE,
        pfn: tail.pfn + now,
        npages: tail.npages - now,
      });
    return ready;
  }
}

/** Appends a run, merging it into the last one when virtually and physically contiguous. */
function appendRun(runs: PinnedRun[], run: PinnedRun): void {
  const prev = runs[runs.length - 1];
  if (
    prev !== undefined &&
    prev.va + prev.npages * PAGE_SIZE === run.va &&
    prev.pfn + prev.npages === run.pfn
  ) {
    runs[runs.length - 1] = { va: prev.va, pfn: prev.pfn, npages: prev.npages + run.npages };
  } else {
    runs.push(run);
  }
}

/**
 * iopt_area_fill_domains() as a walk: pins the area's pages a batch at a time (charged before
 * pinned), maps each batch into every domain, yields the bytes of each batch. On failure every
 * domain is left as it was and nothing of the area stays pinned or charged; on success the
 * fill is 'filled' (the caller publishes the area's pages, or unfills it if the call fails).
 */
export function* areaFillDomainsWalk(iopt: AreaIopt, fill: AreaFill): LongWalk<SyscallResult> {
  const { area, pages } = fill;
  if (iopt.domains.length === 0 || pages.type === 'dmabuf') {
    // Nothing to fill; or a dma-buf's frames, mapped and never pinned: one run, at once.
    const rc = areaFillDomains(iopt, area, pages);
    if (rc === 0) fill.state = 'filled';
    return rc;
  }
  // pfn_reader_first(): the batch iopt_area_fill_domains() reads the PFNs through.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const { pinner, accounting } = iopt.env;
  const progress = ioptPagesPinStart(pages, area);
  if (typeof progress === 'number') return progress;
  fill.progress = progress;
  fill.state = 'filling';
  let rc: SyscallResult = 0;
  let mapFailed = false;
  while (progress.lastIndex < area.lastIndex) {
    const first = progress.lastIndex + 1n;
    const last = ioptPagesBatchLast(pages, area, first, FILL_BATCH_PAGES);
    const runs = ioptPagesPinBatch(pages, area, progress, last, pinner, accounting);
    if (typeof runs === 'number') {
      rc = runs;
      break;
    }
    rc = fill.commit(iopt, runs, last === area.lastIndex);
    if (rc) {
      mapFailed = true;
      break;
    }
    yield Number((last - first + 1n) * PAGE_SIZE);
  }
  if (rc) {
    for (const domain of iopt.domains) fill.unmapFrom(domain);
    fill.state = 'waiting';
    fill.progress = undefined;
    if (mapFailed && mutant('fill-keeps-pins')) return rc; // mutant: fill-keeps-pins
    ioptPagesUnpin(pages, progress, pinner, accounting);
    return rc;
  }
  ioptPagesPinDone(pages, area, progress);
  fill.progress = undefined;
  fill.state = 'filled';
  // Every domain was detached while the area was filled: it ends unpinned, as after a detach.
  if (iopt.domains.length === 0) {
    unpinArea(iopt, pages, area);
    return 0;
  }
  area.storageDomain = iopt.domains[0];
  return 0;
}

/**
 * iopt_area_fill_domain() as a walk, for an attach: maps an area into the new domain a batch at
 * a time, reading its PFNs back from its storage domain, or pinning them first (each batch
 * charged before it is pinned) when no domain held the area yet, which makes the new domain its
 * storage. On failure the domain holds nothing of the area and nothing of it stays pinned.
 */
export function* areaFillDomainWalk(
  iopt: AreaIopt,
  area: IoptArea,
  pages: IoptPages,
  domain: IoptDomain,
): LongWalk<SyscallResult> {
  // A dma-buf's frames (one run, never pinned), or an area of one batch or less: at once.
  if (pages.type === 'dmabuf' || area.lastIndex - area.startIndex < FILL_BATCH_PAGES) {
    const rc = areaFillDomain(iopt, area, pages, domain);
    if (rc === 0) yield Number(area.length);
    return rc;
  }
  // The area is filled as if the new domain were the io_pagetable's only one.
  const alone: AreaIopt = { ...iopt, domains: [domain] };
  const fill = new AreaFill(area, pages);
  if (area.storageDomain === undefined) return yield* areaFillDomainsWalk(alone, fill);
  // pfn_reader_first(): the batch iopt_area_fill_domain() reads the PFNs through.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  for (let first = area.startIndex; first <= area.lastIndex; ) {
    const batchLast = first + FILL_BATCH_PAGES - 1n;
    const last = batchLast < area.lastIndex ? batchLast : area.lastIndex;
    const runs = runsFromStorage(area, pages, first, last);
    const rc = fill.commit(alone, runs, last === area.lastIndex);
    if (rc) {
      fill.unmapFrom(domain);
      return rc;
    }
    yield Number((last - first + 1n) * PAGE_SIZE);
    first = last + 1n;
  }
  return 0;
}

/**
 * iopt_fill_domains_pages(): fills a map call's new areas (one per slice) in turn. On failure
 * the areas filled before are unfilled: no domain holds anything of the call.
 */
export function* fillAreasWalk(
  iopt: AreaIopt,
  areas: readonly IoptArea[],
  slices: readonly PagesSlice[],
): LongWalk<SyscallResult> {
  const fills = areas.map((area, i) => new AreaFill(area, slices[i]!.pages));
  for (const fill of fills) iopt.fills.add(fill);
  iopt.mapsInFlight++;
  let rc: SyscallResult = 0;
  try {
    for (const fill of fills) {
      rc = yield* areaFillDomainsWalk(iopt, fill);
      if (rc) break;
    }
  } finally {
    iopt.mapsInFlight--;
  }
  for (const fill of fills) {
    if (rc && fill.state === 'filled') areaUnfillDomains(iopt, fill.area, fill.pages);
    iopt.fills.delete(fill);
  }
  return rc;
}

/**
 * A domain joins the io_pagetable: the areas of map calls in progress take it too (filling ones
 * map their prefix, and their later batches go into it with the others). On failure it holds
 * nothing of them.
 */
export function fillsAddDomain(iopt: AreaIopt, domain: IoptDomain): SyscallResult {
  const done: AreaFill[] = [];
  for (const fill of iopt.fills) {
    const rc = fill.addDomain(iopt, domain);
    if (rc) {
      for (const other of done) other.undoAddDomain(iopt, domain);
      return rc;
    }
    done.push(fill);
  }
  return 0;
}

/** A domain left the io_pagetable: the areas of map calls in progress let go of it. */
export function fillsRemoveDomain(iopt: AreaIopt, domain: IoptDomain, out: AreaTeardown[]): void {
  for (const fill of iopt.fills) fill.removeDomain(iopt, domain, out);
}
