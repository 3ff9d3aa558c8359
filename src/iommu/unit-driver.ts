/**
 * The IOMMU driver of the machine's IOMMU units, the part drivers/iommu/intel/iommu.c plays for
 * DMAR units: paging domains from the unit in front of a device, its capabilities, and pointing
 * a device's context entry at a domain. No nesting and no PASID on these units.
 */
import { shouldFail } from '../fault/fault.ts';
import { allocDomain } from '../platform/iommu.ts';
import { Errno } from '../uapi/errno.ts';
import {
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HW_INFO_TYPE_INTEL_VTD,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
} from '../uapi/iommufd.ts';
import {
  type Device,
  type IommuAnyDomain,
  type IommuCap,
  type IommuDomain,
  type IommuHwInfo,
  type IommuOps,
  type IommuUserData,
  isNestedDomain,
} from './iommu.ts';
import { hwDomainOf, PtDomain } from './pt-domain.ts';

/**
 * The capability registers QEMU 10.0's intel-iommu reports with its defaults (aw-bits 48,
 * dma-drain on, no caching mode) and intremap=on under TCG (so no EIM), as Linux reads them:
 * CAP = ESRTPS | DRAIN | MAMV 18 | PSI | SSLPS (2M, 1G) | FRO 0x22 | MGAW 47 | SAGAW 39+48 | ND 6,
 * ECAP = MHMV | IRO 0xf0 | PT | IR | DT | QI.
 */
export const QEMU_VTD_CAP_REG = 0x80d2008c222f0606n;
export const QEMU_VTD_ECAP_REG = 0xf00f4en;

/**
 * intel_iommu_hw_info(): struct iommu_hw_info_vtd (24 bytes: flags, __reserved, cap_reg,
 * ecap_reg). No SPR17 erratum flag: the emulated unit is not a Sapphire Rapids part. Any type
 * other than the default and INTEL_VTD is EOPNOTSUPP.
 */
function vtdHwInfo(type: number): IommuHwInfo | number {
  if (type !== IOMMU_HW_INFO_TYPE_DEFAULT && type !== IOMMU_HW_INFO_TYPE_INTEL_VTD)
    return -Errno.EOPNOTSUPP;
  // The blob is kzalloc'ed.
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  const data = new Uint8Array(24);
  const view = new DataView(data.buffer);
  view.setBigUint64(8, QEMU_VTD_CAP_REG, true);
  view.setBigUint64(16, QEMU_VTD_ECAP_REG, true);
  return { type: IOMMU_HW_INFO_TYPE_INTEL_VTD, data };
}

function unitOf(dev: Device) {
  const unit = dev.iommu?.unit;
  if (unit === undefined) throw new Error(`${dev.name} is not behind an IOMMU unit`);
  return unit;
}

export const unitIommuOps: IommuOps = {
  name: 'emu-iommu',

  domainAllocPaging(
    dev: Device,
    flags: number,
    userData: IommuUserData | undefined,
  ): IommuDomain | number {
    if (userData !== undefined || flags & (IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID))
      return -Errno.EOPNOTSUPP;
    const unit = unitOf(dev);
    if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !unit.caps.dirtyTracking)
      return -Errno.EOPNOTSUPP;
    const table = allocDomain(unit);
    if (typeof table === 'number') return table;
    return new PtDomain(unitIommuOps, table, (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0);
  },

  capable(dev: Device, cap: IommuCap): boolean {
    const caps = unitOf(dev).caps;
    switch (cap) {
      case 'cache-coherency':
      case 'enforce-cache-coherency':
        return caps.cacheCoherent;
      case 'dirty-tracking':
        return caps.dirtyTracking;
      case 'pci-ats-supported':
        // No emulated device has an ATS capability.
        return false;
    }
  },

  hwInfo(dev: Device, type: number): IommuHwInfo | number | undefined {
    return unitOf(dev).hwInfo === 'intel-vtd' ? vtdHwInfo(type) : undefined;
  },

  /** The unit refuses a domain of another unit (EINVAL, as the platform's port says). */
  attachDev(dev: Device, domain: IommuAnyDomain | undefined): number {
    if (domain === undefined) return dev.pci.setDomain(undefined);
    if (isNestedDomain(domain)) return -Errno.EINVAL;
    const table = hwDomainOf(domain);
    if (table === undefined) return -Errno.EINVAL;
    return dev.pci.setDomain(table);
  },
};
