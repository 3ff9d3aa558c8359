/**
 * The IOMMU driver of the machine's IOMMU units, the part drivers/iommu/intel/iommu.c plays for
 * DMAR units: paging domains from the unit in front of a device, its capabilities, and pointing
 * a device's context entry at a domain. No nesting and no PASID on these units.
 */
import { allocDomain } from '../platform/iommu.ts';
import { Errno } from '../uapi/errno.ts';
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
} from '../uapi/iommufd.ts';
import type { Device, IommuCap, IommuDomain, IommuOps } from './iommu.ts';
import { hwDomainOf, PtDomain } from './pt-domain.ts';

function unitOf(dev: Device) {
  if (dev.iommu === undefined) throw new Error(`${dev.name} is not behind an IOMMU unit`);
  return dev.iommu.unit;
}

export const unitIommuOps: IommuOps = {
  name: 'emu-iommu',

  domainAllocPaging(dev: Device, flags: number, hasUserData: boolean): IommuDomain | number {
    if (hasUserData || flags & (IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID))
      return -Errno.EOPNOTSUPP;
    const unit = unitOf(dev);
    if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !unit.caps.dirtyTracking)
      return -Errno.EOPNOTSUPP;
    const table = allocDomain(unit);
    return typeof table === 'number' ? table : new PtDomain(unitIommuOps, table);
  },

  capable(dev: Device, cap: IommuCap): boolean {
    const caps = unitOf(dev).caps;
    switch (cap) {
      case 'cache-coherency':
      case 'enforce-cache-coherency':
        return caps.cacheCoherent;
      case 'dirty-tracking':
        return caps.dirtyTracking;
    }
  },

  /** The unit refuses a domain of another unit (EINVAL, as the platform's port says). */
  attachDev(dev: Device, domain: IommuDomain | undefined): number {
    if (domain === undefined) return dev.pci.setDomain(undefined);
    const table = hwDomainOf(domain);
    if (table === undefined) return -Errno.EINVAL;
    return dev.pci.setDomain(table);
  },
};
