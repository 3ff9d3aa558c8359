/**
 * The areas of an io_pagetable (the kernel's iopt->area_itree): disjoint inclusive IOVA ranges,
 * ascending. The kernel uses an interval tree because its tree is generic; the areas of one IOAS
 * never overlap (iopt_check_iova and the IOVA allocator see to it), so the range holding an IOVA
 * is its predecessor by start, and a sorted array answers every query the interval tree did.
 *
 * Layout, for a million areas (docs/performance.md): a sorted list of chunks, each a sorted run
 * of up to CHUNK areas with their start keys in a Float64Array, and one Float64Array of each
 * chunk's first key on top. A lookup is a binary search of the top array (a few KiB, stays in
 * cache) and one of a chunk's keys (4 KiB); an insert or remove moves at most one chunk's
 * entries. A pointer tree of 10^6 nodes is ~40 levels of cache misses on bigint keys.
 *
 * Keys are doubles made from the u64 start without allocating (iovaKey): exact below 2^53, and
 * never out of order above it, where distinct starts may share a key; equal keys are then
 * compared on the bigint start itself, so the order is exactly the u64 order.
 */

const U64_MAX = (1n << 64n) - 1n;

/** What the tree stores: an inclusive u64 range [iova, last] (IoptArea). */
export interface IovaRange {
  readonly iova: bigint;
  readonly last: bigint;
}

/** Entries per chunk: a chunk's keys are 4 KiB, a memmove of them ~100 ns. */
const CHUNK = 512;
/** A chunk smaller than this after a remove is merged with a neighbour that has room. */
const CHUNK_MIN = CHUNK / 4;

// A u64 is split through a typed array: no bigint shifts, nothing allocated. Little-endian (the
// emulator is x86-64 only), so word 0 is the low half.
const scratch64 = new BigUint64Array(1);
const scratch32 = new Uint32Array(scratch64.buffer);

/**
 * The u64 as the nearest double: exact below 2^53, and monotone (a < b gives key(a) <= key(b)),
 * since hi * 2^32 is exact and the one addition rounds once.
 */
export function iovaKey(value: bigint): number {
  scratch64[0] = value;
  return scratch32[1]! * 4294967296 + scratch32[0]!;
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

function assertRange(what: string, start: bigint, last: bigint): void {
  if (start < 0n || last > U64_MAX || start > last) {
    throw new RangeError(`${what}: invalid range [${hex(start)}, ${hex(last)}]`);
  }
}

/**
 * A sorted run of entries: keys[i] is iovaKey(items[i].iova) and lasts[i] iovaKey(items[i].last),
 * for i < items.length. With the last keys beside the start keys, deciding whether a range meets
 * its neighbours reads two arrays already in cache instead of two entries and their bigints (four
 * cache misses per lookup in a tree of a million).
 */
class Chunk<T extends IovaRange> {
  readonly keys = new Float64Array(CHUNK);
  readonly lasts = new Float64Array(CHUNK);
  items: T[] = [];
}

/** A disjoint set of IOVA ranges in ascending order. */
export class AreaTree<T extends IovaRange> {
  #chunks: Chunk<T>[] = [];
  /** firsts[c] is chunks[c].keys[0]: the top level a lookup searches first. */
  #firsts = new Float64Array(16);
  #size = 0;
  // The position the last #seek() found: chunk and index of the last entry starting at or
  // before the IOVA looked for; #c is -1 when every entry starts after it.
  #c = -1;
  #p = -1;

  get size(): number {
    return this.#size;
  }

  /** Positions #c/#p on the last entry with iova <= `iova`. */
  #seek(iova: bigint): void {
    const key = iovaKey(iova);
    const chunks = this.#chunks;
    const firsts = this.#firsts;
    // The last chunk whose first entry is <= iova.
    let lo = 0;
    let hi = chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const k = firsts[mid]!;
      if (k < key || (k === key && chunks[mid]!.items[0]!.iova <= iova)) lo = mid + 1;
      else hi = mid;
    }
    const c = lo - 1;
    this.#c = c;
    if (c < 0) {
      this.#p = -1;
      return;
    }
    const chunk = chunks[c]!;
    const keys = chunk.keys;
    // The first entry of the chunk > iova; the one before it is <= iova (entry 0 is).
    lo = 1;
    hi = chunk.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const k = keys[mid]!;
      if (k < key || (k === key && chunk.items[mid]!.iova <= iova)) lo = mid + 1;
      else hi = mid;
    }
    this.#p = lo - 1;
  }

  /** The entry after position (c, p) (c = -1: the first entry), or undefined; moves #c/#p to it. */
  #advance(c: number, p: number): T | undefined {
    if (c < 0) {
      c = 0;
      p = -1;
    }
    const chunks = this.#chunks;
    if (c >= chunks.length) return undefined;
    if (p + 1 < chunks[c]!.items.length) {
      p++;
    } else {
      c++;
      p = 0;
      if (c >= chunks.length) return undefined;
    }
    this.#c = c;
    this.#p = p;
    return chunks[c]!.items[p];
  }

  /** Whether entry (c, p) ends at or after `value` (keys decide; the bigints at a tie). */
  #endsFrom(c: number, p: number, value: bigint, key: number): boolean {
    const chunk = this.#chunks[c]!;
    const k = chunk.lasts[p]!;
    return k > key || (k === key && chunk.items[p]!.last >= value);
  }

  /** Whether entry (c, p) starts at or before `value` (keys decide; the bigints at a tie). */
  #startsBy(c: number, p: number, value: bigint, key: number): boolean {
    const chunk = this.#chunks[c]!;
    const k = chunk.keys[p]!;
    return k < key || (k === key && chunk.items[p]!.iova <= value);
  }

  /** The lowest entry intersecting [start, last], or undefined (interval_tree_iter_first). */
  iterFirst(start: bigint, last: bigint): T | undefined {
    assertRange('AreaTree.iterFirst', start, last);
    if (this.#size === 0) return undefined;
    this.#seek(start);
    // Entries are disjoint: only the one starting at or before `start` can contain it.
    const c = this.#c;
    const p = this.#p;
    if (c >= 0 && this.#endsFrom(c, p, start, iovaKey(start))) return this.#chunks[c]!.items[p];
    const next = this.#advance(c, p);
    return next !== undefined && this.#startsBy(this.#c, this.#p, last, iovaKey(last))
      ? next
      : undefined;
  }

  /** The entry after `item` intersecting [start, last], or undefined (interval_tree_iter_next). */
  iterNext(item: T, start: bigint, last: bigint): T | undefined {
    assertRange('AreaTree.iterNext', start, last);
    this.#find(item, 'iterNext');
    for (let next = this.#advance(this.#c, this.#p); next !== undefined; ) {
      if (next.iova > last) return undefined;
      if (next.last >= start) return next;
      next = this.#advance(this.#c, this.#p);
    }
    return undefined;
  }

  /**
   * Every entry intersecting [start, last] (default: all), ascending. The caller may remove the
   * entry it was just given; other changes during the walk are not supported.
   */
  *iter(start = 0n, last = U64_MAX): Generator<T> {
    let item = this.iterFirst(start, last);
    while (item !== undefined) {
      const c = this.#c;
      const p = this.#p;
      yield item;
      // Fast path: the entry is still where it was, step from there.
      if (this.#chunks[c]?.items[p] === item) {
        item = this.#advance(c, p);
        if (item !== undefined && (item.iova > last || item.last < start)) item = undefined;
      } else {
        item = this.#size === 0 ? undefined : this.#after(item.iova, start, last);
      }
    }
  }

  /** The first entry starting after `iova` that intersects [start, last]. */
  #after(iova: bigint, start: bigint, last: bigint): T | undefined {
    this.#seek(iova);
    const next = this.#advance(this.#c, this.#p);
    return next !== undefined && next.iova <= last && next.last >= start ? next : undefined;
  }

  /** The lowest entry, or undefined. */
  first(): T | undefined {
    return this.#chunks[0]?.items[0];
  }

  /** Adds `item`; throws if it overlaps an entry (callers check placement first). */
  insert(item: T): void {
    assertRange('AreaTree.insert', item.iova, item.last);
    const key = iovaKey(item.iova);
    const lastKey = iovaKey(item.last);
    if (this.#chunks.length === 0) {
      const chunk = new Chunk<T>();
      chunk.keys[0] = key;
      chunk.lasts[0] = lastKey;
      chunk.items.push(item);
      this.#insertChunk(0, chunk);
      this.#size = 1;
      return;
    }
    this.#seek(item.iova);
    let c = this.#c;
    let p = this.#p;
    if (c >= 0 && this.#endsFrom(c, p, item.iova, key)) this.#overlap(item);
    const next = this.#advance(c, p);
    if (next !== undefined && this.#startsBy(this.#c, this.#p, item.last, lastKey)) {
      this.#overlap(item);
    }
    // Insert after (c, p); before everything when c is -1.
    if (c < 0) {
      c = 0;
      p = -1;
    }
    let chunk = this.#chunks[c]!;
    let at = p + 1;
    if (chunk.items.length === CHUNK) {
      if (c === this.#chunks.length - 1 && at === CHUNK) {
        // Appending past the last chunk (ascending fills): start a new one, leave this one full.
        chunk = new Chunk<T>();
        c++;
        chunk.keys[0] = key;
        chunk.lasts[0] = lastKey;
        this.#insertChunk(c, chunk);
        at = 0;
      } else {
        const right = this.#split(c);
        if (at > CHUNK / 2) {
          chunk = right;
          at -= CHUNK / 2;
          c++;
        }
      }
    }
    const n = chunk.items.length;
    chunk.keys.copyWithin(at + 1, at, n);
    chunk.keys[at] = key;
    chunk.lasts.copyWithin(at + 1, at, n);
    chunk.lasts[at] = lastKey;
    if (at === n) chunk.items.push(item);
    else chunk.items.splice(at, 0, item);
    if (at === 0) this.#firsts[c] = key;
    this.#size++;
  }

  /** Removes `item`; throws if this tree does not hold it. */
  remove(item: T): void {
    this.#find(item, 'remove');
    const c = this.#c;
    const p = this.#p;
    const chunk = this.#chunks[c]!;
    const n = chunk.items.length;
    chunk.keys.copyWithin(p, p + 1, n);
    chunk.lasts.copyWithin(p, p + 1, n);
    if (p === n - 1) chunk.items.pop();
    else chunk.items.splice(p, 1);
    this.#size--;
    if (n === 1) {
      this.#removeChunk(c);
      return;
    }
    if (p === 0) this.#firsts[c] = chunk.keys[0]!;
    if (n - 1 < CHUNK_MIN) {
      // Keep chunks from thinning out: join a neighbour that has room for this one.
      const prev = this.#chunks[c - 1];
      if (prev !== undefined && prev.items.length + n - 1 <= CHUNK) this.#merge(c - 1);
      else {
        const next = this.#chunks[c + 1];
        if (next !== undefined && next.items.length + n - 1 <= CHUNK) this.#merge(c);
      }
    }
  }

  /** Positions #c/#p on `item`, or throws. */
  #find(item: T, what: string): void {
    if (this.#size > 0) {
      this.#seek(item.iova);
      if (this.#c >= 0 && this.#chunks[this.#c]!.items[this.#p] === item) return;
    }
    throw new Error(`AreaTree.${what}: the range is not in this tree`);
  }

  #overlap(item: T): never {
    throw new Error(`AreaTree.insert: [${hex(item.iova)}, ${hex(item.last)}] overlaps an entry`);
  }

  /** Splits full chunk c in halves; returns the new right half (now chunk c + 1). */
  #split(c: number): Chunk<T> {
    const left = this.#chunks[c]!;
    const right = new Chunk<T>();
    const half = CHUNK / 2;
    right.keys.set(left.keys.subarray(half, CHUNK));
    right.lasts.set(left.lasts.subarray(half, CHUNK));
    right.items = left.items.slice(half);
    left.items.length = half;
    this.#insertChunk(c + 1, right);
    return right;
  }

  /** Moves chunk c + 1's entries to the end of chunk c and drops c + 1. */
  #merge(c: number): void {
    const left = this.#chunks[c]!;
    const right = this.#chunks[c + 1]!;
    left.keys.set(right.keys.subarray(0, right.items.length), left.items.length);
    left.lasts.set(right.lasts.subarray(0, right.items.length), left.items.length);
    for (const item of right.items) left.items.push(item);
    this.#removeChunk(c + 1);
  }

  #insertChunk(c: number, chunk: Chunk<T>): void {
    const n = this.#chunks.length;
    if (n === this.#firsts.length) {
      const grown = new Float64Array(n * 2);
      grown.set(this.#firsts);
      this.#firsts = grown;
    }
    this.#firsts.copyWithin(c + 1, c, n);
    this.#firsts[c] = chunk.keys[0]!;
    this.#chunks.splice(c, 0, chunk);
  }

  #removeChunk(c: number): void {
    this.#firsts.copyWithin(c, c + 1, this.#chunks.length);
    this.#chunks.splice(c, 1);
  }

  /** Throws if the order, disjointness, keys or chunk bookkeeping is broken. For tests. */
  checkInvariants(): void {
    let count = 0;
    let prev: T | undefined;
    this.#chunks.forEach((chunk, c) => {
      const n = chunk.items.length;
      if (n === 0 || n > CHUNK) throw new Error(`chunk ${c} holds ${n} entries`);
      if (this.#firsts[c] !== chunk.keys[0]) throw new Error(`chunk ${c}: stale first key`);
      chunk.items.forEach((item, i) => {
        const at = `entry [${hex(item.iova)}, ${hex(item.last)}]`;
        if (chunk.keys[i] !== iovaKey(item.iova)) throw new Error(`${at}: stale key`);
        if (chunk.lasts[i] !== iovaKey(item.last)) throw new Error(`${at}: stale last key`);
        if (item.iova > item.last) throw new Error(`${at}: empty range`);
        if (prev !== undefined && prev.last >= item.iova) throw new Error(`${at}: out of order`);
        prev = item;
        count++;
      });
    });
    if (count !== this.#size) throw new Error(`walked ${count} entries, size says ${this.#size}`);
  }
}
