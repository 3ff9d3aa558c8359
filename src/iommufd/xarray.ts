/**
 * The allocations xa_alloc() makes (lib/xarray.c) when iommufd reserves an object id, so that
 * fail-nth reaches the same points as the kernel. An xarray is a radix tree of 64-slot nodes;
 * storing an index allocates the nodes missing on its path. Each is first tried under the lock
 * without sleeping (GFP_NOWAIT); when that fails, __xas_nomem() allocates one node with the
 * caller's blocking flags outside the lock and the store is retried. Only a failure of that
 * blocking allocation fails the call: a failed GFP_NOWAIT attempt is survived.
 */
import { shouldFail } from '../fault/fault.ts';

const XA_CHUNK_SHIFT = 6;

/** Tree height needed to hold index `id` (ids start at 1: XA_FLAGS_ALLOC1). */
function heightFor(id: number): number {
  let height = 1;
  while (id >= 2 ** (XA_CHUNK_SHIFT * height)) height++;
  return height;
}

/** Whether an index in `used` shares the level-`level` node that covers `id`. */
function nodeInUse(used: Iterable<number>, id: number, level: number): boolean {
  const span = 2 ** (XA_CHUNK_SHIFT * (level + 1));
  const first = Math.floor(id / span) * span;
  for (const other of used) if (other >= first && other < first + span) return true;
  return false;
}

/**
 * How many nodes storing `id` allocates in an xarray holding the indices `used`: the new top
 * levels when the tree must grow, and every node on the path below that no index uses yet.
 */
export function xaNodesToStore(used: readonly number[], id: number): number {
  const current = used.length === 0 ? 0 : heightFor(Math.max(...used));
  const height = Math.max(current, heightFor(id));
  let nodes = 0;
  for (let level = 0; level < height; level++) {
    // Levels above the current root are new; below it, a node exists while an index uses it.
    if (level >= current || !nodeInUse(used, id, level)) nodes++;
  }
  return nodes;
}

/** Allocates `nodes` xarray nodes as __xa_alloc() does; false for ENOMEM. */
export function xaAllocNodes(nodes: number): boolean {
  for (let i = 0; i < nodes; i++) {
    // xas_alloc() under the lock with GFP_NOWAIT; a failure falls back to __xas_nomem().
    if (shouldFail('id-reserve') && shouldFail('kmalloc')) return false;
  }
  return true;
}
