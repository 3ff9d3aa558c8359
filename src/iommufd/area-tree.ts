/**
 * The areas of an io_pagetable (the kernel's iopt->area_itree): disjoint inclusive IOVA ranges,
 * ascending. The kernel uses an interval tree because its tree is generic; the areas of one IOAS
 * never overlap (iopt_check_iova and the IOVA allocator see to it), so the range holding an IOVA
 * is its predecessor by start, and a sorted array answers every query the interval tree did.
 *
 * Layout, for a million areas (docs/performance.md, decisions 185 and 275): a B+tree of two
 * levels, all of it in typed arrays. Entries sit sorted in leaves of up to LEAF; the leaves are
 * listed in order, each with its first key. A lookup is a binary search of the first keys and a
 * scan of one leaf; an insert or remove moves at most one leaf's entries. A leaf is not an
 * object but a slot: a fixed run of LEAF places in one array shared by all leaves, so reaching its
 * keys loads no leaf or typed-array object first (each a cache miss among a million areas), and
 * a place holds a small id, not the entry, so moving entries moves numbers. A pointer tree of
 * 10^6 nodes would be ~40 levels of cache misses on bigint keys.
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

/** Entries per leaf: 24 cache lines of records, of which a lookup or a move reads about half. */
const LEAF = 64;
/** A leaf smaller than this after a remove is merged with a neighbour that has room. */
const LEAF_MIN = LEAF / 4;

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

function grownFloat64(old: Float64Array, length: number): Float64Array<ArrayBuffer> {
  const grown = new Float64Array(length);
  grown.set(old);
  return grown;
}

function grownInt32(old: Int32Array, length: number): Int32Array<ArrayBuffer> {
  const grown = new Int32Array(length);
  grown.set(old);
  return grown;
}

// The numbers of a place's record (#places).
const KEY = 0;
const LAST = 1;
const ID = 2;
const PLACE = 3;

/** A disjoint set of IOVA ranges in ascending order. */
export class AreaTree<T extends IovaRange> {
  // The entries. Place i of slot s (a leaf's storage) is i + s * LEAF; a leaf of n entries uses
  // the first n places of its slot.
  /**
   * Place i is the record of PLACE numbers from PLACE * i: the key of the entry there
   * (iovaKey(iova)), the key of its last byte, and its id (its index in #entries). Whether a range
   * meets its neighbours is read from the last keys, not from the entries and their bigints; the
   * id beside them comes in the same cache line when entries move.
   */
  #places = new Float64Array(0);
  /**
   * The entries by id. A new entry (a young object) goes into the slot of this array that a
   * removed entry freed last, not into a random place of a large old array, which the next
   * scavenge would have to visit (docs/performance.md).
   */
  #entries: (T | undefined)[] = [];
  /** Ids no entry has: a stack, so that the id freed last is taken first. */
  #freeIds: number[] = [];
  /** Slots no leaf uses. */
  #freeSlots: number[] = [];

  // The leaves in ascending order, leaf c at index c.
  /**
   * The key of leaf c's first entry: what a lookup searches first. Alone in its array, 8 bytes a
   * leaf, so that the search reads as few cache lines as it can.
   */
  #leafFirst = new Float64Array(0);
  /** Leaf c's slot at 2c and its count of entries (1 to LEAF) at 2c + 1. */
  #leafSlotCount = new Int32Array(0);
  #leaves = 0;
  #size = 0;

  // The position the last #seek() found: leaf and index in it of the last entry starting at or
  // before the IOVA looked for; #c is -1 when every entry starts after it.
  #c = -1;
  #p = -1;

  get size(): number {
    return this.#size;
  }

  #firstKey(c: number): number {
    return this.#leafFirst[c]!;
  }

  /** How many entries leaf c holds: 1 to LEAF. */
  #count(c: number): number {
    return this.#leafSlotCount[2 * c + 1]!;
  }

  /** The place of entry p of leaf c. */
  #place(c: number, p: number): number {
    return this.#leafSlotCount[2 * c]! * LEAF + p;
  }

  /** The entry at a place some leaf uses. */
  #entryAt(place: number): T {
    return this.#entries[this.#places[PLACE * place + ID]!]!;
  }

  /** Positions #c/#p on the last entry with iova <= `iova`. */
  #seek(iova: bigint): void {
    const key = iovaKey(iova);
    const leaves = this.#leaves;
    let c = this.#c;
    // An operation looks one place up several times (check, insert; find, remove): when the
    // IOVA is strictly inside the leaf found last, that leaf is the answer again.
    if (
      c < 0 ||
      c >= leaves ||
      !(this.#firstKey(c) < key) ||
      (c + 1 < leaves && !(key < this.#firstKey(c + 1)))
    ) {
      // The last leaf whose first entry is <= iova.
      let lo = 0;
      let hi = leaves;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const k = this.#firstKey(mid);
        if (k < key || (k === key && this.#entryAt(this.#place(mid, 0)).iova <= iova)) lo = mid + 1;
        else hi = mid;
      }
      c = lo - 1;
    }
    this.#c = c;
    if (c < 0) {
      this.#p = -1;
      return;
    }
    const places = this.#places;
    const base = this.#place(c, 0);
    // The first entry of the leaf > iova; the one before it is <= iova (entry 0 is). A scan, not
    // a binary search: its loads do not wait on each other, so the leaf's cache lines arrive
    // together instead of one miss after another.
    const n = this.#count(c);
    let p = 1;
    while (p < n) {
      const k = places[PLACE * (base + p) + KEY]!;
      if (k > key || (k === key && this.#entryAt(base + p).iova > iova)) break;
      p++;
    }
    this.#p = p - 1;
  }

  /**
   * Moves #c/#p to the entry after position (c, p) (c = -1: to the first entry); false, leaving
   * them, if there is none.
   */
  #advance(c: number, p: number): boolean {
    if (c < 0) {
      c = 0;
      p = -1;
    }
    if (c >= this.#leaves) return false;
    if (p + 1 < this.#count(c)) {
      p++;
    } else {
      c++;
      p = 0;
      if (c >= this.#leaves) return false;
    }
    this.#c = c;
    this.#p = p;
    return true;
  }

  /** The entry at #c/#p. */
  #current(): T {
    return this.#entryAt(this.#place(this.#c, this.#p));
  }

  /** Whether the entry at `place` ends at or after `value` (keys decide; bigints at a tie). */
  #endsFrom(place: number, value: bigint, key: number): boolean {
    const k = this.#places[PLACE * place + LAST]!;
    return k > key || (k === key && this.#entryAt(place).last >= value);
  }

  /** Whether the entry at `place` starts at or before `value` (keys decide; bigints at a tie). */
  #startsBy(place: number, value: bigint, key: number): boolean {
    const k = this.#places[PLACE * place + KEY]!;
    return k < key || (k === key && this.#entryAt(place).iova <= value);
  }

  /** The lowest entry intersecting [start, last], or undefined (interval_tree_iter_first). */
  iterFirst(start: bigint, last: bigint): T | undefined {
    assertRange('AreaTree.iterFirst', start, last);
    if (this.#size === 0) return undefined;
    this.#seek(start);
    // Entries are disjoint: only the one starting at or before `start` can contain it.
    const c = this.#c;
    if (c >= 0 && this.#endsFrom(this.#place(c, this.#p), start, iovaKey(start))) {
      return this.#current();
    }
    if (!this.#advance(c, this.#p)) return undefined;
    const next = this.#place(this.#c, this.#p);
    return this.#startsBy(next, last, iovaKey(last)) ? this.#entryAt(next) : undefined;
  }

  /** The entry after `item` intersecting [start, last], or undefined (interval_tree_iter_next). */
  iterNext(item: T, start: bigint, last: bigint): T | undefined {
    assertRange('AreaTree.iterNext', start, last);
    this.#find(item, 'iterNext');
    while (this.#advance(this.#c, this.#p)) {
      const next = this.#current();
      if (next.iova > last) return undefined;
      if (next.last >= start) return next;
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
      if (c < this.#leaves && p < this.#count(c) && this.#entryAt(this.#place(c, p)) === item) {
        item = this.#advance(c, p) ? this.#current() : undefined;
        if (item !== undefined && (item.iova > last || item.last < start)) item = undefined;
      } else {
        item = this.#size === 0 ? undefined : this.#after(item.iova, start, last);
      }
    }
  }

  /** The first entry starting after `iova` that intersects [start, last]. */
  #after(iova: bigint, start: bigint, last: bigint): T | undefined {
    this.#seek(iova);
    if (!this.#advance(this.#c, this.#p)) return undefined;
    const next = this.#current();
    return next.iova <= last && next.last >= start ? next : undefined;
  }

  /** The lowest entry, or undefined. */
  first(): T | undefined {
    return this.#leaves === 0 ? undefined : this.#entryAt(this.#place(0, 0));
  }

  /** Adds `item`; throws if it overlaps an entry (callers check placement first). */
  insert(item: T): void {
    assertRange('AreaTree.insert', item.iova, item.last);
    const key = iovaKey(item.iova);
    const lastKey = iovaKey(item.last);
    if (this.#leaves === 0) {
      this.#insertLeaf(0, this.#takeSlot());
      this.#put(0, 0, item, key, lastKey);
      return;
    }
    this.#seek(item.iova);
    let c = this.#c;
    let p = this.#p;
    if (c >= 0 && this.#endsFrom(this.#place(c, p), item.iova, key)) this.#overlap(item);
    if (this.#advance(c, p) && this.#startsBy(this.#place(this.#c, this.#p), item.last, lastKey)) {
      this.#overlap(item);
    }
    // Insert after (c, p); before everything when c is -1.
    if (c < 0) {
      c = 0;
      p = -1;
    }
    let at = p + 1;
    if (this.#count(c) === LEAF) {
      if (c === this.#leaves - 1 && at === LEAF) {
        // Appending past the last leaf (ascending fills): start a new one, leave this one full.
        c++;
        this.#insertLeaf(c, this.#takeSlot());
        at = 0;
      } else {
        this.#split(c);
        if (at > LEAF / 2) {
          c++;
          at -= LEAF / 2;
        }
      }
    }
    this.#put(c, at, item, key, lastKey);
  }

  /** Puts `item` at index `at` of leaf c, which has room, moving the entries after it up. */
  #put(c: number, at: number, item: T, key: number, lastKey: number): void {
    const places = this.#places;
    const base = this.#place(c, 0);
    const n = this.#count(c);
    places.copyWithin(PLACE * (base + at + 1), PLACE * (base + at), PLACE * (base + n));
    places[PLACE * (base + at) + KEY] = key;
    places[PLACE * (base + at) + LAST] = lastKey;
    places[PLACE * (base + at) + ID] = this.#newId(item);
    this.#setCount(c, n + 1);
    if (at === 0) this.#leafFirst[c] = key;
    this.#size++;
  }

  /** Removes `item`; throws if this tree does not hold it. */
  remove(item: T): void {
    this.#find(item, 'remove');
    const c = this.#c;
    const p = this.#p;
    const places = this.#places;
    const base = this.#place(c, 0);
    const n = this.#count(c);
    this.#freeId(places[PLACE * (base + p) + ID]!);
    places.copyWithin(PLACE * (base + p), PLACE * (base + p + 1), PLACE * (base + n));
    this.#setCount(c, n - 1);
    this.#size--;
    if (n === 1) {
      this.#removeLeaf(c);
      return;
    }
    if (p === 0) this.#leafFirst[c] = places[PLACE * base + KEY]!;
    if (n - 1 < LEAF_MIN) {
      // Keep leaves from thinning out: join a neighbour that has room for this one.
      if (c > 0 && this.#count(c - 1) + n - 1 <= LEAF) this.#merge(c - 1);
      else if (c + 1 < this.#leaves && this.#count(c + 1) + n - 1 <= LEAF) this.#merge(c);
    }
  }

  /** Positions #c/#p on `item`, or throws. */
  #find(item: T, what: string): void {
    if (this.#size > 0) {
      this.#seek(item.iova);
      if (this.#c >= 0 && this.#current() === item) return;
    }
    throw new Error(`AreaTree.${what}: the range is not in this tree`);
  }

  #overlap(item: T): never {
    throw new Error(`AreaTree.insert: [${hex(item.iova)}, ${hex(item.last)}] overlaps an entry`);
  }

  /** An id for a new entry: the one freed last, or a new one. */
  #newId(item: T): number {
    const id = this.#freeIds.pop() ?? this.#entries.length;
    this.#entries[id] = item;
    return id;
  }

  #freeId(id: number): void {
    this.#entries[id] = undefined;
    this.#freeIds.push(id);
  }

  #setCount(c: number, n: number): void {
    this.#leafSlotCount[2 * c + 1] = n;
  }

  /** Moves the last n entries of leaf `src` to the end of leaf `dst`. */
  #moveEntries(src: number, dst: number, n: number): void {
    const from = this.#place(src, this.#count(src) - n);
    const to = this.#place(dst, this.#count(dst));
    this.#places.copyWithin(PLACE * to, PLACE * from, PLACE * (from + n));
    this.#setCount(src, this.#count(src) - n);
    this.#setCount(dst, this.#count(dst) + n);
  }

  /** Splits full leaf c in halves; the upper half becomes leaf c + 1. */
  #split(c: number): void {
    this.#insertLeaf(c + 1, this.#takeSlot());
    this.#moveEntries(c, c + 1, LEAF / 2);
    this.#leafFirst[c + 1] = this.#places[PLACE * this.#place(c + 1, 0) + KEY]!;
  }

  /** Moves leaf c + 1's entries to the end of leaf c and drops c + 1. */
  #merge(c: number): void {
    this.#moveEntries(c + 1, c, this.#count(c + 1));
    this.#removeLeaf(c + 1);
  }

  /** A free slot, growing the arrays (doubling) when there is none. */
  #takeSlot(): number {
    const free = this.#freeSlots.pop();
    if (free !== undefined) return free;
    const slots = this.#places.length / (PLACE * LEAF);
    const grown = slots === 0 ? 1 : slots * 2;
    this.#places = grownFloat64(this.#places, PLACE * grown * LEAF);
    // A leaf per slot at most.
    this.#leafFirst = grownFloat64(this.#leafFirst, grown);
    this.#leafSlotCount = grownInt32(this.#leafSlotCount, 2 * grown);
    for (let s = grown - 1; s > slots; s--) this.#freeSlots.push(s);
    return slots;
  }

  /** Makes `slot` leaf c, empty; the leaves from c on move up by one. */
  #insertLeaf(c: number, slot: number): void {
    const n = this.#leaves;
    this.#leafFirst.copyWithin(c + 1, c, n);
    this.#leafSlotCount.copyWithin(2 * (c + 1), 2 * c, 2 * n);
    this.#leafSlotCount[2 * c] = slot;
    this.#leafSlotCount[2 * c + 1] = 0;
    this.#leaves = n + 1;
  }

  /** Drops leaf c, which holds no entries, and frees its slot. */
  #removeLeaf(c: number): void {
    const n = this.#leaves;
    this.#freeSlots.push(this.#leafSlotCount[2 * c]!);
    this.#leafFirst.copyWithin(c, c + 1, n);
    this.#leafSlotCount.copyWithin(2 * c, 2 * (c + 1), 2 * n);
    this.#leaves = n - 1;
  }

  /** Throws if the order, disjointness, keys, ids or leaf bookkeeping is broken. For tests. */
  checkInvariants(): void {
    const slots = this.#places.length / (PLACE * LEAF);
    const usedSlots = new Set<number>();
    const usedIds = new Set<number>();
    let prev: T | undefined;
    for (let c = 0; c < this.#leaves; c++) {
      const slot = this.#leafSlotCount[2 * c]!;
      const n = this.#count(c);
      if (!Number.isInteger(slot) || slot < 0 || slot >= slots || usedSlots.has(slot)) {
        throw new Error(`leaf ${c}: bad slot ${slot}`);
      }
      usedSlots.add(slot);
      if (!Number.isInteger(n) || n < 1 || n > LEAF) throw new Error(`leaf ${c} holds ${n}`);
      if (this.#firstKey(c) !== this.#places[PLACE * slot * LEAF + KEY]) {
        throw new Error(`leaf ${c}: stale first key`);
      }
      for (let place = slot * LEAF; place < slot * LEAF + n; place++) {
        const id = this.#places[PLACE * place + ID]!;
        const item = this.#entries[id];
        if (item === undefined || usedIds.has(id)) throw new Error(`leaf ${c}: bad id ${id}`);
        usedIds.add(id);
        const what = `entry [${hex(item.iova)}, ${hex(item.last)}]`;
        if (this.#places[PLACE * place + KEY] !== iovaKey(item.iova))
          throw new Error(`${what}: stale key`);
        if (this.#places[PLACE * place + LAST] !== iovaKey(item.last)) {
          throw new Error(`${what}: stale last key`);
        }
        if (item.iova > item.last) throw new Error(`${what}: empty range`);
        if (prev !== undefined && prev.last >= item.iova) throw new Error(`${what}: out of order`);
        prev = item;
      }
    }
    for (const slot of this.#freeSlots) {
      if (slot < 0 || slot >= slots || usedSlots.has(slot)) {
        throw new Error(`free slot ${slot} in use`);
      }
      usedSlots.add(slot);
    }
    if (usedSlots.size !== slots) throw new Error(`${slots - usedSlots.size} slots lost`);
    // Every id is an entry's or free, and a free id keeps nothing alive.
    for (const id of this.#freeIds) {
      if (this.#entries[id] !== undefined || usedIds.has(id))
        throw new Error(`free id ${id} in use`);
      usedIds.add(id);
    }
    if (usedIds.size !== this.#entries.length) throw new Error('ids lost');
    if (usedIds.size - this.#freeIds.length !== this.#size) {
      throw new Error(`${this.#size} entries, ${usedIds.size - this.#freeIds.length} ids in use`);
    }
  }
}
