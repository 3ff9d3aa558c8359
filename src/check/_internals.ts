/**
 * The few private fields of the kernel model the checker must read and nothing else needs: the
 * full object table of a context (published and reserved ids) and its id allocator. Read with
 * element access, which the type checker still checks against the real private members, so a
 * rename breaks the build here rather than the checker silently.
 */
import type { IommufdCtx } from '../iommufd/context.ts';
import type { IommufdObject } from '../iommufd/object.ts';

/** Every object with an id in the context, published or only reserved. */
export function ctxObjects(ictx: IommufdCtx): ReadonlyMap<number, IommufdObject> {
  // biome-ignore lint/complexity/useLiteralKeys: a private member, read only by the checker
  return ictx['objects'];
}

/** The id allocator: the high-water mark and the free ids below it. */
export function ctxIdState(ictx: IommufdCtx): { nextId: number; freeIds: readonly number[] } {
  // biome-ignore lint/complexity/useLiteralKeys: a private member, read only by the checker
  const nextId: number = ictx['nextId'];
  // biome-ignore lint/complexity/useLiteralKeys: a private member, read only by the checker
  const freeIds: readonly number[] = ictx['freeIds'];
  return { nextId, freeIds: [...freeIds] };
}
