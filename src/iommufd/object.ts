/**
 * The iommufd object base: every object kind extends IommufdObject, like every kernel object
 * embeds `struct iommufd_object` first. Per-kind destroy/abort are the subclasses' methods (the
 * kernel's iommufd_object_ops table).
 */
import { Refcount } from '../lib/refcount.ts';
import type { IommufdCtx } from './context.ts';

/** The object kinds, in the kernel's enum order. */
export type IommufdObjType =
  | 'device'
  | 'hwpt-paging'
  | 'hwpt-nested'
  | 'ioas'
  | 'access'
  | 'fault'
  | 'viommu'
  | 'vdevice'
  | 'veventq'
  | 'hw-queue'
  /** IOMMUFD_OBJ_SELFTEST: a mock device made by the test interface (CONFIG_IOMMUFD_TEST). */
  | 'selftest';

export abstract class IommufdObject {
  abstract readonly type: IommufdObjType;
  readonly ictx: IommufdCtx;
  /** 0 until an id is reserved; ids start at 1. */
  id = 0;
  /**
   * Long-term references: one for the object table while the object is published, one for every
   * edge of the object graph that points here, one per driver that holds the object.
   */
  readonly users = new Refcount(1, () => `${this.type} ${this.id} users`);
  /**
   * References held only for the duration of one call (iommufd_get_object .. put), plus one the
   * object table holds until the object is removed (the kernel's bias): 1 between calls.
   */
  readonly shorttermUsers = new Refcount(1, () => `${this.type} ${this.id} short-term users`);
  /** Set by finalize(): until then lookups do not see the object. */
  published = false;

  constructor(ictx: IommufdCtx) {
    this.ictx = ictx;
  }

  /** Releases everything the object holds. Runs once, when the object leaves the table. */
  abstract destroy(): void;

  /** Unwinds an object whose creation failed part way; most kinds just destroy. */
  abort(): void {
    this.destroy();
  }

  /** One line for traces, leak reports and the inspector. */
  describe(): string {
    return `${this.type} ${this.id} (users ${this.users.read()})`;
  }
}
