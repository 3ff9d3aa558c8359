/**
 * The iommu core as iommufd reaches it for a platform PCI device (drivers/iommu/iommu.c's part
 * here): domain allocation through the device's IOMMU, DMA ownership of its group, and
 * programming the group's devices with a domain. Also the no-IOMMU software domain.
 */
import type { BindableDevice, IommuGroupHw, IommuOps } from '../iommufd/device.ts';
import type { IommuDomain } from '../iommufd/hw-pagetable.ts';
import type { IommuProt } from '../iommufd/pages.ts';
import { Prot } from '../platform/io-pgtable.ts';
import { allocDomain, type IommuDomain as HwDomain, type IommuGroup } from '../platform/iommu.ts';
import type { PciDevice } from '../platform/pci.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
} from '../uapi/iommufd.ts';

/** The platform domain behind an iommufd domain, for DMA and the inspector. */
const hwDomains = new WeakMap<IommuDomain, HwDomain>();

export function hwDomainOf(domain: IommuDomain): HwDomain | undefined {
  return hwDomains.get(domain);
}

/** Wraps a platform domain in the interface iommufd's io_pagetable uses. */
function wrapDomain(hw: HwDomain): IommuDomain {
  const domain: IommuDomain = {
    owner: hw.kind === 'noiommu' ? 'noiommu' : 'iommu',
    pgsizeBitmap: hw.pgsizeBitmap,
    aperture: hw.aperture,
    map(iova: bigint, pa: bigint, size: bigint, prot: IommuProt): SyscallResult {
      const bits = Prot.CACHE | (prot.read ? Prot.READ : 0) | (prot.write ? Prot.WRITE : 0);
      return hw.map(iova, pa, size, bits);
    },
    unmap: (iova, size) => hw.unmap(iova, size),
    iovaToPhys: (iova) => hw.iovaToPhys(iova),
    free: () => hw.free(),
  };
  hwDomains.set(domain, hw);
  return domain;
}

/** The software no-IOMMU domain allocator (hwpt_noiommu.c), over the machine's allocator. */
export function noiommuDomainAllocator(alloc: () => HwDomain | number): () => IommuDomain | number {
  return () => {
    const hw = alloc();
    return typeof hw === 'number' ? hw : wrapDomain(hw);
  };
}

/** DMA ownership of a group: one owner (an iommufd context) at a time, counted per device. */
interface Ownership {
  owner: object | undefined;
  count: number;
}
const ownership = new WeakMap<IommuGroup, Ownership>();

/** iommu_group_dma_owner_claimed(). */
export function groupDmaOwnerClaimed(group: IommuGroup): boolean {
  return (ownership.get(group)?.count ?? 0) > 0;
}

function groupHw(group: IommuGroup): IommuGroupHw {
  let own = ownership.get(group);
  if (own === undefined) {
    own = { owner: undefined, count: 0 };
    ownership.set(group, own);
  }
  const state = own;
  return {
    id: group.id,
    msiIsolated: true,
    claimDmaOwner(owner) {
      if (state.count > 0 && state.owner !== owner) return -Errno.EPERM;
      state.owner = owner;
      state.count++;
      return 0;
    },
    releaseDmaOwner(owner) {
      if (state.owner !== owner || state.count === 0)
        throw new Error('DMA owner release by a non-owner');
      state.count--;
      if (state.count === 0) state.owner = undefined;
    },
    setDomain(domain) {
      const hw = domain === undefined ? undefined : hwDomains.get(domain);
      for (const dev of group.devices) {
        const rc = dev.setDomain(hw);
        if (rc) return rc;
      }
      return 0;
    },
  };
}

/** The iommu_ops of the device's IOMMU unit. No nesting and no PASID on these units. */
function unitOps(dev: PciDevice): IommuOps {
  const unit = dev.iommu!;
  return {
    domainAllocPaging(flags, hasUserData) {
      if (hasUserData || flags & (IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID))
        return -Errno.EOPNOTSUPP;
      if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !unit.caps.dirtyTracking)
        return -Errno.EOPNOTSUPP;
      const hw = allocDomain(unit);
      return typeof hw === 'number' ? hw : wrapDomain(hw);
    },
    capable(cap) {
      switch (cap) {
        case 'cache-coherency':
          return unit.caps.cacheCoherent;
        case 'enforce-cache-coherency':
          return unit.caps.cacheCoherent;
        case 'dirty-tracking':
          return unit.caps.dirtyTracking;
      }
    },
  };
}

/** struct device for iommufd: the PCI device, its IOMMU (if any) and reserved regions. */
export function bindableDevice(dev: PciDevice): BindableDevice {
  const group = dev.group;
  const iommu =
    dev.iommu !== undefined && group !== undefined
      ? { ops: unitOps(dev), group: groupHw(group) }
      : undefined;
  return {
    name: dev.bdf,
    iommu,
    reservedRegions: () => (dev.iommu === undefined ? [] : dev.iommu.reservedRegions(dev.bdf)),
  };
}
