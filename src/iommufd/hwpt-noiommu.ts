/**
 * The software domain of no-IOMMU mode (drivers/iommu/iommufd/hwpt_noiommu.c): iommu_ops with
 * only paging-domain allocation, which iommufd uses for a device that has no IOMMU (its igroup
 * has no iommu_group, see getIommuOps() in hw-pagetable.ts). The domain is an I/O page table
 * over the whole 64-bit IOVA space with 4 KiB minimum pages that no hardware walks: it only
 * records IOVA to PA for IOMMU_IOAS_NOIOMMU_GET_PA, while the device DMAs to physical addresses.
 */
import type { Device, IommuDomain, IommuOps, IommuUserData } from '../iommu/iommu.ts';
import { PtDomain } from '../iommu/pt-domain.ts';
import { allocNoiommuDomain } from '../platform/iommu.ts';
import { Errno } from '../uapi/errno.ts';

/**
 * noiommu_alloc_paging_flags(): no flags and no driver data are supported (EOPNOTSUPP). The
 * table comes from the device's page allocator; ENOMEM at the allocation sites.
 */
function noiommuAllocPaging(
  dev: Device,
  flags: number,
  userData: IommuUserData | undefined,
): IommuDomain | number {
  if (flags || userData !== undefined) return -Errno.EOPNOTSUPP;
  const table = allocNoiommuDomain(dev.pages.phys, dev.pages.domains);
  return typeof table === 'number' ? table : new PtDomain(iommufdNoiommuOps, table);
}

/**
 * iommufd_noiommu_ops: no capabilities and no attach_dev (nothing to program). Its identity is
 * what marks a domain as no-IOMMU: `domain.owner === iommufdNoiommuOps`.
 */
export const iommufdNoiommuOps: IommuOps = {
  name: 'iommufd-noiommu',
  domainAllocPaging: noiommuAllocPaging,
};

/** Whether `domain` is a no-IOMMU software domain (GET_PA trusts only these). */
export function isNoiommuDomain(domain: IommuDomain | undefined): boolean {
  return domain?.owner === iommufdNoiommuOps;
}
