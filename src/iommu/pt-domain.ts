/**
 * An iommu_domain over one of the platform's radix page tables, the part drivers share through
 * drivers/iommu/generic_pt (IOMMU_PT_DOMAIN_OPS: map, unmap, iova_to_phys). Both the driver of
 * the IOMMU units and iommufd's no-IOMMU domain build their domains this way.
 */
import { Prot } from '../platform/io-pgtable.ts';
import type { IommuDomain as PlatformDomain } from '../platform/iommu.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import type { IommuDirtyOps, IommuDomain, IommuOps, IommuProt } from './iommu.ts';

export class PtDomain implements IommuDomain {
  readonly owner: IommuOps;
  /** The page table in simulated memory, for DMA, the checker and the inspector. */
  readonly table: PlatformDomain;
  /** Present when allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING: the table's DIRTY bits. */
  readonly dirtyOps: IommuDirtyOps | undefined;

  constructor(owner: IommuOps, table: PlatformDomain, withDirtyOps = false) {
    this.owner = owner;
    this.table = table;
    this.dirtyOps = withDirtyOps ? ptDirtyOps(table) : undefined;
  }

  get pgsizeBitmap(): bigint {
    return this.table.pgsizeBitmap;
  }

  get aperture(): { readonly start: bigint; readonly last: bigint } {
    return this.table.aperture;
  }

  /** iommufd always maps cache coherent (IOMMU_CACHE). */
  map(iova: bigint, pa: bigint, size: bigint, prot: IommuProt): SyscallResult {
    const bits = Prot.CACHE | (prot.read ? Prot.READ : 0) | (prot.write ? Prot.WRITE : 0);
    return this.table.map(iova, pa, size, bits);
  }

  unmap(iova: bigint, size: bigint): bigint {
    return this.table.unmap(iova, size);
  }

  iovaToPhys(iova: bigint): bigint | undefined {
    return this.table.iovaToPhys(iova);
  }

  free(): void {
    this.table.free();
  }
}

/** The platform page table behind a domain (undefined for a domain not built on one). */
export function hwDomainOf(domain: IommuDomain): PlatformDomain | undefined {
  return domain instanceof PtDomain ? domain.table : undefined;
}

/** The dirty ops of a domain whose unit sets DIRTY bits in its leaves (Intel SLADE, AMD HAD). */
function ptDirtyOps(table: PlatformDomain): IommuDirtyOps {
  return {
    setDirtyTracking(enable: boolean): SyscallResult {
      table.setDirtyTracking(enable);
      return 0;
    },
    readAndClearDirty(iova, size, noClear, record): SyscallResult {
      if (!table.dirtyTracking && record !== undefined) return -Errno.EINVAL;
      table.readAndClearDirty(iova, size, noClear, record);
      return 0;
    },
  };
}
