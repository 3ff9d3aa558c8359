/**
 * Interval tree over inclusive u64 ranges [start, last], the emulator's counterpart of the kernel's
 * include/linux/interval_tree.h. It is a red-black tree ordered by `start`, and every node also
 * records the largest `last` found in its subtree, so a query can skip any subtree that ends below
 * the range it looks for. Nodes may overlap: the tree never merges or rejects ranges, callers that
 * need disjoint ranges (io_pagetable areas) check before they insert.
 *
 * The io_pagetable keeps three of these per IOAS: areas, reserved ranges and allowed ranges.
 * `spans()` is interval_tree_span_iter, generalised to any number of trees so that
 * `spans([reserved, areas], ...)` walks the same holes as iommufd's double_span.
 *
 * Everything is iterative: a tree of 10^6 nodes is about 40 levels deep at worst, but no code here
 * depends on that for its stack use.
 */

import type { AreaTree, IovaRange } from './area-tree.ts';

const U64_MAX = (1n << 64n) - 1n;

/** A range stored in an IntervalTree. Only the tree creates nodes; `value` is the caller's. */
export class IntervalNode<T> {
  readonly start: bigint;
  readonly last: bigint;
  value: T;

  protected constructor(start: bigint, last: bigint, value: T) {
    this.start = start;
    this.last = last;
    this.value = value;
  }
}

/**
 * The tree's own view of a node: links, colour and the augmented subtree maximum. Kept out of the
 * exported class so that callers see only start/last/value.
 */
class TreeNode<T> extends IntervalNode<T> {
  left: TreeNode<T> | null = null;
  right: TreeNode<T> | null = null;
  parent: TreeNode<T> | null = null;
  red = true;
  /** Largest `last` of this node and all its descendants. */
  subtreeLast: bigint;
  /** The tree holding this node, null once removed: catches a double or foreign remove. */
  tree: IntervalTree<T> | null;

  constructor(start: bigint, last: bigint, value: T, tree: IntervalTree<T>) {
    super(start, last, value);
    this.subtreeLast = last;
    this.tree = tree;
  }
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** Every range handed in must be a well-formed u64 range, or we would silently mis-sort it. */
function assertRange(what: string, start: bigint, last: bigint): void {
  if (start < 0n || last > U64_MAX || start > last) {
    throw new RangeError(`${what}: invalid range [${hex(start)}, ${hex(last)}]`);
  }
}

/** Recomputes n.subtreeLast from n and its children (which must already be correct). */
function subtreeLastOf<T>(n: TreeNode<T>): bigint {
  let max = n.last;
  if (n.left !== null && n.left.subtreeLast > max) max = n.left.subtreeLast;
  if (n.right !== null && n.right.subtreeLast > max) max = n.right.subtreeLast;
  return max;
}

/**
 * Recomputes subtreeLast on the path from `from` up to, not including, `stop`, after the subtrees
 * on that path each lost one node. Stops early once a node's value is unchanged: its ancestors
 * then see the same maximum as before.
 */
function propagate<T>(from: TreeNode<T> | null, stop: TreeNode<T> | null): void {
  for (let n = from; n !== stop && n !== null; n = n.parent) {
    const max = subtreeLastOf(n);
    if (max === n.subtreeLast) return;
    n.subtreeLast = max;
  }
}

function isBlack<T>(n: TreeNode<T> | null): boolean {
  return n === null || !n.red;
}

/** The in-order successor of n, or null. */
function nextInOrder<T>(n: TreeNode<T>): TreeNode<T> | null {
  if (n.right !== null) {
    let c = n.right;
    while (c.left !== null) c = c.left;
    return c;
  }
  let child = n;
  let up = n.parent;
  while (up !== null && up.right === child) {
    child = up;
    up = up.parent;
  }
  return up;
}

/**
 * The lowest-start node under `node` (inclusive) that intersects [start, last].
 * Caller guarantees node.subtreeLast >= start.
 */
function subtreeSearch<T>(node: TreeNode<T>, start: bigint, last: bigint): TreeNode<T> | undefined {
  let n = node;
  for (;;) {
    // If anything on the left reaches `start`, the lowest such node starts no later than n and
    // everything to its right, so the answer is on the left or nowhere.
    if (n.left !== null && n.left.subtreeLast >= start) {
      n = n.left;
      continue;
    }
    if (n.start > last) return undefined;
    if (n.last >= start) return n;
    if (n.right === null || n.right.subtreeLast < start) return undefined;
    n = n.right;
  }
}

/**
 * A set of possibly overlapping inclusive u64 ranges, each carrying a value. Nodes with equal
 * starts keep their insertion order (the kernel's tree breaks ties the same way).
 */
export class IntervalTree<T> {
  #root: TreeNode<T> | null = null;
  #size = 0;

  /** Number of nodes. */
  get size(): number {
    return this.#size;
  }

  /** Adds [start, last] with `value` and returns its node, the handle for remove(). O(log n). */
  insert(start: bigint, last: bigint, value: T): IntervalNode<T> {
    assertRange('IntervalTree.insert', start, last);
    const node = new TreeNode(start, last, value, this);
    let parent: TreeNode<T> | null = null;
    let cur = this.#root;
    let goLeft = false;
    while (cur !== null) {
      parent = cur;
      // Ties go right, which keeps equal starts in insertion order.
      goLeft = start < cur.start;
      cur = goLeft ? cur.left : cur.right;
    }
    node.parent = parent;
    if (parent === null) this.#root = node;
    else if (goLeft) parent.left = node;
    else parent.right = node;
    // Every ancestor gained the node. Walking up lets us stop at the first one that already
    // reaches `last`: the ones above it reach it too.
    for (let a = parent; a !== null && a.subtreeLast < last; a = a.parent) a.subtreeLast = last;
    this.#size++;
    this.#insertFixup(node);
    return node;
  }

  /** Removes a node returned by this tree's insert(). Throws if it is not in this tree. O(log n). */
  remove(node: IntervalNode<T>): void {
    const z = this.#own(node, 'remove');
    let child: TreeNode<T> | null;
    let parent: TreeNode<T> | null;
    let removedRed: boolean;
    if (z.left !== null && z.right !== null) {
      // Two children: unlink the in-order successor y from its spot and put it where z was,
      // with z's colour. The colour that really leaves the tree is y's.
      let y = z.right;
      while (y.left !== null) y = y.left;
      child = y.right;
      removedRed = y.red;
      if (y.parent === z) {
        parent = y;
      } else {
        parent = y.parent!;
        parent.left = child;
        if (child !== null) child.parent = parent;
        y.right = z.right;
        z.right.parent = y;
      }
      y.left = z.left;
      z.left.parent = y;
      this.#replaceChild(z.parent, z, y);
      y.red = z.red;
      // Below y's new spot, subtrees lost y; fix them up to y. From y upwards they lost z, so
      // start y from z's old maximum and let the pass below decide whether it changed.
      propagate(parent, y);
      y.subtreeLast = z.subtreeLast;
      propagate(y, null);
    } else {
      child = z.left ?? z.right;
      parent = z.parent;
      removedRed = z.red;
      this.#replaceChild(parent, z, child);
      // The subtrees that lost z are those on the path from z's parent to the root.
      propagate(parent, null);
    }
    if (!removedRed) this.#removeFixup(child, parent);
    z.left = null;
    z.right = null;
    z.parent = null;
    z.tree = null;
    this.#size--;
  }

  /** The lowest-start node intersecting [start, last], or undefined. O(log n). */
  iterFirst(start: bigint, last: bigint): IntervalNode<T> | undefined {
    assertRange('IntervalTree.iterFirst', start, last);
    const root = this.#root;
    if (root === null || root.subtreeLast < start) return undefined;
    return subtreeSearch(root, start, last);
  }

  /**
   * The node after `node` in (start, insertion) order that intersects [start, last], or undefined.
   * `node` must still be in the tree. O(log n) worst case, amortised less over a full walk.
   */
  iterNext(node: IntervalNode<T>, start: bigint, last: bigint): IntervalNode<T> | undefined {
    assertRange('IntervalTree.iterNext', start, last);
    let cur = this.#own(node, 'iterNext');
    for (;;) {
      // Everything after cur comes first from its right subtree...
      const right = cur.right;
      if (right !== null && right.subtreeLast >= start) return subtreeSearch(right, start, last);
      // ...then from the first ancestor we reach from its left side.
      let child = cur;
      let up = cur.parent;
      while (up !== null && up.right === child) {
        child = up;
        up = up.parent;
      }
      if (up === null) return undefined;
      cur = up;
      // Starts only grow from here on, so once past `last` nothing further can intersect.
      if (cur.start > last) return undefined;
      if (cur.last >= start) return cur;
    }
  }

  /**
   * Yields every node intersecting [start, last] (default: all) in (start, insertion) order.
   * The successor is looked up before a node is yielded, so the caller may remove the node it
   * was just given; any other change to the tree during the walk is not supported.
   */
  *iter(start = 0n, last = U64_MAX): Generator<IntervalNode<T>> {
    let node = this.iterFirst(start, last);
    while (node !== undefined) {
      const next = this.iterNext(node, start, last);
      yield node;
      node = next;
    }
  }

  /** The node with the lowest start (the earliest inserted among equals), or undefined. */
  first(): IntervalNode<T> | undefined {
    let n = this.#root;
    if (n === null) return undefined;
    while (n.left !== null) n = n.left;
    return n;
  }

  /**
   * Walks the whole tree and throws if any red-black, ordering, augmentation or link invariant
   * is broken. O(n log n); for tests and debug checks only.
   */
  checkInvariants(): void {
    const root = this.#root;
    if (root === null) {
      if (this.#size !== 0) throw new Error(`empty tree with size ${this.#size}`);
      return;
    }
    if (root.parent !== null) throw new Error('root has a parent');
    if (root.red) throw new Error('root is red');
    let count = 0;
    let blackHeight = -1;
    let prev: TreeNode<T> | null = null;
    let n: TreeNode<T> | null = root;
    while (n.left !== null) n = n.left;
    for (; n !== null; n = nextInOrder(n)) {
      count++;
      const at = `node [${hex(n.start)}, ${hex(n.last)}]`;
      if (n.tree !== this) throw new Error(`${at} belongs to another tree`);
      if (n.left !== null && n.left.parent !== n) throw new Error(`${at}: bad left parent link`);
      if (n.right !== null && n.right.parent !== n) throw new Error(`${at}: bad right parent link`);
      if (n.red && (!isBlack(n.left) || !isBlack(n.right))) throw new Error(`${at}: red-red`);
      if (n.subtreeLast !== subtreeLastOf(n)) throw new Error(`${at}: stale subtreeLast`);
      if (prev !== null && prev.start > n.start) throw new Error(`${at}: out of order`);
      // Every path from the root down to a missing child must cross the same number of blacks.
      if (n.left === null || n.right === null) {
        let blacks = 0;
        for (let a: TreeNode<T> | null = n; a !== null; a = a.parent) if (!a.red) blacks++;
        if (blackHeight === -1) blackHeight = blacks;
        else if (blacks !== blackHeight) throw new Error(`${at}: black height ${blacks}`);
      }
      prev = n;
    }
    if (count !== this.#size) throw new Error(`walked ${count} nodes, size says ${this.#size}`);
  }

  /** Narrows a caller's node to ours, refusing nodes removed or owned by another tree. */
  #own(node: IntervalNode<T>, what: string): TreeNode<T> {
    if (!(node instanceof TreeNode) || node.tree !== this) {
      throw new Error(`IntervalTree.${what}: node is not in this tree`);
    }
    return node;
  }

  /** Makes `to` take `from`'s place under `parent` (or as root). */
  #replaceChild(parent: TreeNode<T> | null, from: TreeNode<T>, to: TreeNode<T> | null): void {
    if (parent === null) this.#root = to;
    else if (parent.left === from) parent.left = to;
    else parent.right = to;
    if (to !== null) to.parent = parent;
  }

  /** x's right child y moves up into x's place. Rotation keeps the in-order sequence. */
  #rotateLeft(x: TreeNode<T>): void {
    const y = x.right!;
    x.right = y.left;
    if (y.left !== null) y.left.parent = x;
    this.#replaceChild(x.parent, x, y);
    y.left = x;
    x.parent = y;
    // x now has fewer descendants; y has exactly the set x had. Fix x first: y depends on it.
    x.subtreeLast = subtreeLastOf(x);
    y.subtreeLast = subtreeLastOf(y);
  }

  /** Mirror of #rotateLeft. */
  #rotateRight(x: TreeNode<T>): void {
    const y = x.left!;
    x.left = y.right;
    if (y.right !== null) y.right.parent = x;
    this.#replaceChild(x.parent, x, y);
    y.right = x;
    x.parent = y;
    x.subtreeLast = subtreeLastOf(x);
    y.subtreeLast = subtreeLastOf(y);
  }

  /** Restores the red-black rules after inserting the red leaf `node`. */
  #insertFixup(node: TreeNode<T>): void {
    let n = node;
    for (;;) {
      const parent = n.parent;
      if (parent === null) {
        n.red = false;
        return;
      }
      if (!parent.red) return;
      // A red parent is never the root, so the grandparent exists.
      const grand = parent.parent!;
      const uncle = parent === grand.left ? grand.right : grand.left;
      if (uncle?.red === true) {
        // Push the redness up two levels and retry there.
        parent.red = false;
        uncle.red = false;
        grand.red = true;
        n = grand;
        continue;
      }
      // Black uncle: at most two rotations end it.
      if (parent === grand.left) {
        let top = parent;
        if (n === parent.right) {
          this.#rotateLeft(parent);
          top = n;
        }
        top.red = false;
        grand.red = true;
        this.#rotateRight(grand);
      } else {
        let top = parent;
        if (n === parent.left) {
          this.#rotateRight(parent);
          top = n;
        }
        top.red = false;
        grand.red = true;
        this.#rotateLeft(grand);
      }
      return;
    }
  }

  /**
   * Restores the red-black rules after a black node left the tree. `x` (possibly null) took its
   * place under `parent` and is one black short.
   */
  #removeFixup(x: TreeNode<T> | null, parent: TreeNode<T> | null): void {
    while (x !== this.#root && isBlack(x)) {
      // x is not the root, so it has a parent; x's side lacks a black, so its sibling exists.
      const p = parent!;
      if (x === p.left) {
        let w = p.right!;
        if (w.red) {
          w.red = false;
          p.red = true;
          this.#rotateLeft(p);
          w = p.right!;
        }
        if (isBlack(w.left) && isBlack(w.right)) {
          // Take a black off both sides and move the shortage up.
          w.red = true;
          x = p;
          parent = p.parent;
          continue;
        }
        if (isBlack(w.right)) {
          w.left!.red = false;
          w.red = true;
          this.#rotateRight(w);
          w = p.right!;
        }
        w.red = p.red;
        p.red = false;
        w.right!.red = false;
        this.#rotateLeft(p);
      } else {
        let w = p.left!;
        if (w.red) {
          w.red = false;
          p.red = true;
          this.#rotateRight(p);
          w = p.left!;
        }
        if (isBlack(w.left) && isBlack(w.right)) {
          w.red = true;
          x = p;
          parent = p.parent;
          continue;
        }
        if (isBlack(w.left)) {
          w.right!.red = false;
          w.red = true;
          this.#rotateLeft(w);
          w = p.left!;
        }
        w.red = p.red;
        p.red = false;
        w.left!.red = false;
        this.#rotateRight(p);
      }
      // The rotation absorbed the missing black: done.
      x = this.#root;
      break;
    }
    if (x !== null) x.red = false;
  }
}

/** One step of spans(): either a hole or a used span, inclusive on both ends. */
export interface Span {
  readonly isHole: boolean;
  readonly start: bigint;
  readonly last: bigint;
}

/** What spans() walks: interval trees, and the io_pagetable's tree of disjoint areas. */
export type SpanSource = IntervalTree<unknown> | AreaTree<IovaRange>;

/** The start of a node or area. */
function startOf(n: IntervalNode<unknown> | IovaRange): bigint {
  return 'iova' in n ? n.iova : n.start;
}

/**
 * The largest `last` among the nodes, one per tree, that iterFirst finds covering `index`, or
 * undefined if no tree covers it.
 */
function coverLast(trees: readonly SpanSource[], index: bigint): bigint | undefined {
  let best: bigint | undefined;
  for (const tree of trees) {
    const n = tree.iterFirst(index, index);
    if (n !== undefined && (best === undefined || n.last > best)) best = n.last;
  }
  return best;
}

/**
 * Walks [first, last] as alternating used spans and holes of the union of the given trees,
 * ascending. A used span is a maximal run of indexes covered by nodes; nodes that overlap or touch
 * join into one span ([0,4] and [5,9] make one used span [0,9]), as in the kernel's
 * interval_tree_span_iter. Holes are the gaps. Spans are clipped to [first, last].
 *
 * Unlike iommufd's double_span, used spans from different trees are merged rather than reported
 * per tree; the holes are the same. Each span costs O(k log n) per node it absorbs, for k trees.
 * Only the position is kept between steps, so the trees may change while the walk is suspended:
 * later spans show the trees as they are then.
 */
export function* spans(trees: readonly SpanSource[], first: bigint, last: bigint): Generator<Span> {
  assertRange('spans', first, last);
  let pos = first;
  for (;;) {
    // The next used span begins at the lowest start of anything touching [pos, last].
    let usedStart: bigint | undefined;
    for (const tree of trees) {
      const n = tree.iterFirst(pos, last);
      if (n === undefined) continue;
      const start = startOf(n);
      if (usedStart === undefined || start < usedStart) usedStart = start;
    }
    if (usedStart === undefined) {
      yield { isHole: true, start: pos, last };
      return;
    }
    if (usedStart > pos) {
      yield { isHole: true, start: pos, last: usedStart - 1n };
      pos = usedStart;
    }
    // pos is covered; grow the span while the index just past its end is covered too. Each step
    // moves `end` forward, and end + 1 is only formed when end < last <= U64_MAX.
    let end = coverLast(trees, pos)!;
    while (end < last) {
      const more = coverLast(trees, end + 1n);
      if (more === undefined) break;
      end = more;
    }
    if (end >= last) {
      yield { isHole: false, start: pos, last };
      return;
    }
    yield { isHole: false, start: pos, last: end };
    pos = end + 1n;
  }
}
