/**
 * The unfilling of areas from domains a batch at a time: the kernel's iopt_area_unfill_domains()
 * (an unmap) and iopt_table_remove_domain() (a domain leaving its IOAS: a detach, a DESTROY or a
 * replace of its HWPT, the release of a device or a context). Each batch's IOPTEs leave the
 * domains, then its pages are unpinned and uncharged; a batch runs on to the end of the run of
 * contiguous frames it ends in, so that no IOPTE is cut (the kernel's "carry") and IOVA still
 * mapped is never unpinned. A served call goes on a slice per turn holding its context
 * (ctx-hold.ts); a release's teardown is kernel work after it (decisions 290-293).
 */
import type { LongWalk } from '../host/resched.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import { FILL_BATCH_PAGES } from './area-fill.ts';
import {
  type AreaIopt,
  type AreaTeardown,
  areaUnfillDomains,
  contiguousEnd,
  type IoptArea,
  type IoptEnv,
} from './iopt-area.ts';
import {
  type IoptDomain,
  type IoptPages,
  ioptPagesUnpinBatch,
  ioptPagesUnpinStart,
  type UnpinProgress,
} from './pages.ts';

/**
 * An area's IOPTEs leave `domains` a batch at a time, the batches cut where `read` (a domain
 * that maps the area) shows the frames stop being contiguous; with `unpin`, each batch's pages
 * are unpinned after.
 */
function* areaUnmapWalk(
  env: IoptEnv,
  domains: readonly IoptDomain[],
  read: IoptDomain,
  area: IoptArea,
  pages: IoptPages,
  unpin: UnpinProgress | undefined,
): LongWalk<void> {
  const pageIova = area.iova - area.pageOffset;
  for (let first = area.startIndex; first <= area.lastIndex; ) {
    const batchLast = first + FILL_BATCH_PAGES - 1n;
    const last = contiguousEnd(read, area, batchLast < area.lastIndex ? batchLast : area.lastIndex);
    let from = pageIova + (first - area.startIndex) * PAGE_SIZE;
    let end = pageIova + (last - area.startIndex + 1n) * PAGE_SIZE;
    if (from < area.iova) from = area.iova;
    if (end > area.last + 1n) end = area.last + 1n;
    for (const domain of domains) domain.unmap(from, end - from);
    if (unpin !== undefined) ioptPagesUnpinBatch(pages, unpin, last, env.pinner, env.accounting);
    yield Number((last - first + 1n) * PAGE_SIZE);
    first = last + 1n;
  }
}

/**
 * iopt_area_unfill_domains() as a walk, for an unmap: the area leaves every domain and its pages
 * are unpinned, a batch per step. A dma-buf's area (one run, never pinned) goes at once.
 */
export function* areaUnfillDomainsWalk(
  iopt: AreaIopt,
  area: IoptArea,
  pages: IoptPages,
): LongWalk<void> {
  const storage = area.storageDomain;
  if (storage === undefined) return;
  // One batch or less (every area of ordinary size), or a dma-buf's: at once.
  if (pages.type === 'dmabuf' || area.lastIndex - area.startIndex < FILL_BATCH_PAGES) {
    areaUnfillDomains(iopt, area, pages);
    yield Number(area.length);
    return;
  }
  const unpin = ioptPagesUnpinStart(pages, area);
  yield* areaUnmapWalk(iopt.env, iopt.domains, storage, area, pages, unpin);
  area.storageDomain = undefined;
}

/** A domain that left its IOAS, and what it still maps (io-pagetable.ts removeDomain()). */
export interface DomainTeardown {
  readonly domain: IoptDomain & { free(): void };
  readonly areas: readonly AreaTeardown[];
  /** Areas done so far. */
  done: number;
}

/**
 * Tears down what `teardowns` hold, a batch per step, each domain freed once it maps nothing;
 * the list empties.
 */
export function* teardownWalk(env: IoptEnv, teardowns: DomainTeardown[]): LongWalk<void> {
  for (let t = teardowns[0]; t !== undefined; t = teardowns[0]) {
    for (; t.done < t.areas.length; t.done++) {
      const { area, pages, unpin } = t.areas[t.done]!;
      yield* areaUnmapWalk(env, [t.domain], t.domain, area, pages, unpin);
      pages.put();
    }
    t.domain.free();
    teardowns.shift();
  }
}
