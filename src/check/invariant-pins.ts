/**
 * The invariant of mappings and pins: the page tables hold exactly the filled areas, at the
 * frames pinned for their user pages; the pins, RLIMIT_MEMLOCK charges and pinned_vm are exactly
 * those of the filled areas and access pins; the frames are the pins' and the live tables'.
 */

import { hwDomainOf } from '../iommu/pt-domain.ts';
import type { AreaFill } from '../iommufd/area-fill.ts';
import type { IommuDomain } from '../iommufd/hw-pagetable.ts';
import type { IoptArea } from '../iommufd/iopt-area.ts';
import type { AreaPagesRange, IoptPages, PagesDmaBuf } from '../iommufd/pages.ts';
import { testDmaBufOf } from '../iommufd/selftest-dmabuf.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import { areaPageCount, type Findings, hex, type World } from './invariant-world.ts';
import { domainId } from './snapshot.ts';

/**
 * The page tables hold exactly the filled areas, at the frames pinned for their user pages;
 * the pins and charges are exactly those of the filled areas.
 */
export function checkMappingsAndPins(w: World, f: Findings, betweenCalls: boolean): void {
  const pinned = w.kernel.machine.pinned;
  /** Expected pin count per "mm:va". */
  const pins = new Map<string, number>();
  const pinnedBy = new Map<IoptPages, Set<bigint>>();
  const areasOfPages = new Map<IoptPages, IoptArea[]>();
  /** Per pages object, the map calls and teardowns using it (each holds a reference), their pins. */
  const fillsOfPages = new Map<IoptPages, { calls: number; pinning: AreaPagesRange[] }>();
  for (const ioas of w.ioases) {
    const domains = ioas.iopt.domains as IommuDomain[];
    const mapped = new Map<IommuDomain, bigint>();
    const fillOf = new Map<IoptArea, AreaFill>();
    for (const fill of ioas.iopt.fills) fillOf.set(fill.area, fill);
    for (const area of ioas.iopt.areas.iter()) {
      const fill = fillOf.get(area);
      // A map call in progress: its filled areas are checked as any, a filling one's prefix.
      const pages = area.pages ?? (fill?.state === 'filled' ? fill.pages : undefined);
      if (fill !== undefined) {
        const of = fillsOfPages.get(fill.pages) ?? { calls: 0, pinning: [] };
        of.calls++;
        if (fill.progress !== undefined) of.pinning.push(fill.progress);
        fillsOfPages.set(fill.pages, of);
        if (!areasOfPages.has(fill.pages)) areasOfPages.set(fill.pages, []);
        if (fill.state === 'filling') {
          if (fill.progress !== undefined) {
            const what = `area ${hex(fill.area.iova)} being filled`;
            checkPinnedRange(f, what, fill.pages, fill.progress, pins, pinnedBy, pinned);
          }
          for (const d of domains)
            mapped.set(d, (mapped.get(d) ?? 0n) + fill.mappedPages * PAGE_SIZE);
          continue;
        }
      }
      if (pages === undefined) continue;
      const list = areasOfPages.get(pages) ?? [];
      list.push(area);
      areasOfPages.set(pages, list);
      if (area.storageDomain === undefined) continue;
      const at = `ioas ${ioas.id} area ${hex(area.iova)}-${hex(area.last)}`;
      const firstVa = pages.uptr + area.startIndex * PAGE_SIZE;
      const firstIova = area.iova - area.pageOffset;
      if (pages.dmabuf !== undefined) {
        checkDmabufArea(f, at, domains, area, pages.dmabuf);
        if (f.full) return;
        if (pages.dmabuf.revoked) continue;
        for (const d of domains)
          mapped.set(d, (mapped.get(d) ?? 0n) + areaPageCount(area) * PAGE_SIZE);
        continue;
      }
      for (let i = 0n; i < areaPageCount(area); i++) {
        const va = firstVa + i * PAGE_SIZE;
        const key = `${pages.memory.mm}:${va}`;
        // A pages object pins each page once, however many of its areas (COPY) map it.
        const counted = pinnedBy.get(pages) ?? new Set<bigint>();
        pinnedBy.set(pages, counted);
        if (!counted.has(va)) {
          counted.add(va);
          pins.set(key, (pins.get(key) ?? 0) + 1);
        }
        const pfn = pinned.lookup(pages.memory.mm, va);
        if (pfn === undefined) {
          f.add(`${at}: user page ${hex(va)} is filled but not pinned`);
          continue;
        }
        // A domain of pages smaller than the CPU's (the mock one) maps an area's first page
        // only from the area's start.
        const pageIova = firstIova + i * PAGE_SIZE;
        const probe = pageIova < area.iova ? area.iova : pageIova;
        const want = pfn * PAGE_SIZE + (probe - pageIova);
        for (const d of domains) {
          const pa = d.iovaToPhys(probe);
          if (pa !== want)
            f.add(
              `${at}: domain ${domainId(d)} maps ${hex(probe)} to ` +
                `${pa === undefined ? 'nothing' : hex(pa)}, the pinned frame is ${hex(want)}`,
            );
          if (f.full) return;
        }
      }
      for (const d of domains)
        mapped.set(d, (mapped.get(d) ?? 0n) + areaPageCount(area) * PAGE_SIZE);
    }
    for (const d of domains) {
      const hw = hwDomainOf(d);
      const want = mapped.get(d) ?? 0n;
      if (hw !== undefined && hw.mappedBytes !== want)
        f.add(
          `ioas ${ioas.id}: domain ${hw.id} maps ${hex(hw.mappedBytes)} bytes, its areas ${hex(want)}`,
        );
    }
  }

  // Domains being torn down (area-unfill.ts): each holds the pages of the areas it has not
  // done yet, and those it was the last domain of stay pinned until their batch comes.
  for (const t of w.teardowns) {
    for (let i = t.done; i < t.areas.length; i++) {
      const { area, pages, unpin } = t.areas[i]!;
      const of = fillsOfPages.get(pages) ?? { calls: 0, pinning: [] };
      of.calls++;
      fillsOfPages.set(pages, of);
      if (!areasOfPages.has(pages)) areasOfPages.set(pages, []);
      if (unpin === undefined || unpin.startIndex > unpin.lastIndex) continue;
      of.pinning.push(unpin);
      const what = `area ${hex(area.iova)} being torn down`;
      checkPinnedRange(f, what, pages, unpin, pins, pinnedBy, pinned);
    }
  }

  // Each pages object: referenced by its areas, pinned for exactly its filled ones.
  const charges = new Map<string, bigint>();
  /** mm->pinned_vm: every pinned page of a pages object, whatever its account mode. */
  const pinnedVm = new Map<string, bigint>();
  for (const [pages, areas] of areasOfPages) {
    const filled = areas.filter((a) => a.storageDomain !== undefined);
    const what = `pages of ${hex(pages.uptr)}+${pages.npages} pages`;
    const calls = fillsOfPages.get(pages);
    const holders = areas.filter((a) => a.pages !== undefined).length + (calls?.calls ?? 0);
    if (betweenCalls && pages.refs !== holders)
      f.add(`${what} has refs ${pages.refs} for ${holders} areas, map calls and teardowns`);
    const ranges = [...pages.filledRanges];
    // Access pins (the test interface's ACCESS_PAGES) are filled ranges of their own, and so
    // are the pins of areas being filled.
    const accesses = pages.accessRanges;
    const pinning = calls?.pinning ?? [];
    if (
      ranges.length !== filled.length + accesses.length + pinning.length ||
      filled.some((a) => !pages.filledRanges.has(a)) ||
      accesses.some((a) => !pages.filledRanges.has(a)) ||
      pinning.some((a) => !pages.filledRanges.has(a))
    )
      f.add(
        `${what} has ${ranges.length} filled ranges for ${filled.length} filled areas and ` +
          `${accesses.length} access pins`,
      );
    const union = new Set<bigint>();
    for (const a of [...filled, ...accesses, ...pinning])
      for (let i = a.startIndex; i <= a.lastIndex; i++) union.add(i);
    // Each page pinned by an access only is one pin of the process's page too.
    const counted = pinnedBy.get(pages) ?? new Set<bigint>();
    pinnedBy.set(pages, counted);
    for (const a of accesses)
      for (let i = a.startIndex; i <= a.lastIndex; i++) {
        const va = pages.uptr + i * PAGE_SIZE;
        if (counted.has(va)) continue;
        counted.add(va);
        const key = `${pages.memory.mm}:${va}`;
        pins.set(key, (pins.get(key) ?? 0) + 1);
      }
    // A dma-buf's memory is never pinned.
    if (pages.dmabuf !== undefined) union.clear();
    if (pages.npinned !== BigInt(union.size))
      f.add(`${what} counts ${pages.npinned} pinned pages, its filled areas cover ${union.size}`);
    pinnedVm.set(pages.owner.mm, (pinnedVm.get(pages.owner.mm) ?? 0n) + pages.npinned);
    if (pages.accountMode !== 'none') {
      const key = pages.accountMode === 'user' ? `user:${pages.owner.uid}` : `mm:${pages.owner.mm}`;
      charges.set(key, (charges.get(key) ?? 0n) + pages.npinned);
    }
  }

  // Plus one pin on each page pagemap keeps resident (host/pagemap.ts).
  for (const { mm, va } of w.kernel.pagemap?.residentPages() ?? []) {
    const key = `${mm}:${va}`;
    pins.set(key, (pins.get(key) ?? 0) + 1);
  }

  // The machine's pin store holds exactly those pins.
  const stats = pinned.stats();
  let total = 0n;
  for (const [key, count] of pins) {
    total += BigInt(count);
    const sep = key.lastIndexOf(':');
    const mm = key.slice(0, sep);
    const va = BigInt(key.slice(sep + 1));
    const pfn = pinned.lookup(mm, va);
    const have = pfn === undefined ? 0 : (pinned.frameOwner(pfn)?.pins ?? 0);
    if (have !== count) f.add(`page ${mm} ${hex(va)} has ${have} pins, its filled areas ${count}`);
    if (f.full) return;
  }
  if (stats.pinnedPages !== BigInt(pins.size) || stats.pins !== total)
    f.add(
      `${stats.pinnedPages} pages hold ${stats.pins} pins; filled areas account for ` +
        `${pins.size} pages and ${total} pins`,
    );

  // RLIMIT_MEMLOCK charges are the pinned pages of the charged pages objects.
  const accounting = w.kernel.iommufd.accounting;
  const have = new Map<string, bigint>();
  for (const [uid, n] of accounting.lockedVmByUser) have.set(`user:${uid}`, n);
  for (const [mm, n] of accounting.lockedVmByMm) have.set(`mm:${mm}`, n);
  for (const key of new Set([...have.keys(), ...charges.keys()])) {
    const h = have.get(key) ?? 0n;
    const c = charges.get(key) ?? 0n;
    if (h !== c) f.add(`locked_vm of ${key} is ${h} pages, pinned pages charged to it ${c}`);
  }

  for (const mm of new Set([...accounting.pinnedVmByMm.keys(), ...pinnedVm.keys()])) {
    const h = accounting.pinnedVmByMm.get(mm) ?? 0n;
    const c = pinnedVm.get(mm) ?? 0n;
    if (h !== c) f.add(`pinned_vm of ${mm} is ${h} pages, its pages objects pin ${c}`);
  }

  // Frames: user-page frames are the pins', page-table frames the live domains'.
  const frames = w.kernel.machine.phys.stats().byPurpose;
  if (frames['user-page'] !== stats.frames)
    f.add(`${frames['user-page']} user-page frames allocated, the pin store holds ${stats.frames}`);
  let tables = 0n;
  for (const d of w.kernel.machine.domains.live()) tables += d.tablePages();
  if (frames['page-table'] !== tables)
    f.add(`${frames['page-table']} page-table frames allocated, live domains hold ${tables}`);
  // dma-buf frames are the live dma-bufs' (an fd or an importer holds each).
  let dmabufFrames = 0n;
  for (const file of w.kernel.openFiles.ofKind('dmabuf'))
    dmabufFrames += testDmaBufOf(file)?.npages ?? 0n;
  if (frames['dma-buf'] !== dmabufFrames)
    f.add(`${frames['dma-buf']} dma-buf frames allocated, live dma-bufs hold ${dmabufFrames}`);
}

/**
 * A dma-buf's filled area: every domain maps it at the dma-buf's own frames, and maps nothing
 * of it once revoked; it is tracked for the revoke exactly while filled.
 */
function checkDmabufArea(
  f: Findings,
  at: string,
  domains: readonly IommuDomain[],
  area: IoptArea,
  dmabuf: PagesDmaBuf,
): void {
  if (!dmabuf.trackers.has(area)) f.add(`${at}: a filled dma-buf area is not tracked`);
  const pages = area.pages!;
  const firstIova = area.iova - area.pageOffset;
  for (let i = 0n; i < areaPageCount(area); i++) {
    const pageIova = firstIova + i * PAGE_SIZE;
    const probe = pageIova < area.iova ? area.iova : pageIova;
    const pfn = dmabuf.pfn + pages.uptr / PAGE_SIZE + area.startIndex + i;
    const want = dmabuf.revoked ? undefined : pfn * PAGE_SIZE + (probe - pageIova);
    for (const d of domains) {
      const pa = d.iovaToPhys(probe);
      if (pa !== want)
        f.add(
          `${at}: domain ${domainId(d)} maps ${hex(probe)} to ` +
            `${pa === undefined ? 'nothing' : hex(pa)}, the dma-buf's frame is ` +
            `${want === undefined ? 'revoked' : hex(want)}`,
        );
      if (f.full) return;
    }
  }
}

/** The pages of `range` are pinned, each counted once per pages object. */
function checkPinnedRange(
  f: Findings,
  what: string,
  pages: IoptPages,
  range: AreaPagesRange,
  pins: Map<string, number>,
  pinnedBy: Map<IoptPages, Set<bigint>>,
  pinned: { lookup(mm: string, va: bigint): bigint | undefined },
): void {
  const counted = pinnedBy.get(pages) ?? new Set<bigint>();
  pinnedBy.set(pages, counted);
  for (let i = range.startIndex; i <= range.lastIndex; i++) {
    const va = pages.uptr + i * PAGE_SIZE;
    if (pinned.lookup(pages.memory.mm, va) === undefined)
      f.add(`${what}: page ${hex(va)} is not pinned`);
    if (counted.has(va)) continue;
    counted.add(va);
    const key = `${pages.memory.mm}:${va}`;
    pins.set(key, (pins.get(key) ?? 0) + 1);
  }
}
