/**
 * The test interface's mock IOMMU driver and its devices (the driver half of
 * drivers/iommu/iommufd/selftest.c, CONFIG_IOMMUFD_TEST): devices named iommufd_mockN on their
 * own bus, each in a group of its own, behind one mock IOMMU whose paging domains map 2 KiB pages
 * inside [MOCK_APERTURE_START, MOCK_APERTURE_LAST] and keep a dirty bit per page.
 *
 * A mock domain is a table of 2 KiB entries (the kernel's keeps them in an xarray, later in a
 * generic page table); no device DMAs through it, so it needs no page-table memory.
 */
import { shouldFail } from '../fault/fault.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import {
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_NONE,
} from '../uapi/iommufd.ts';
import {
  IOMMU_HW_INFO_SELFTEST_REGVAL,
  IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_HWPT_DATA_SELFTEST,
  IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
  IOMMU_TEST_DEV_CACHE_DEFAULT,
  IOMMU_TEST_INVALIDATE_FLAG_ALL,
  IOMMU_TEST_PASID_RESERVED,
  iommuHwptInvalidateSelftest,
  iommuHwptSelftest,
  iommuTestHwInfo,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_DEV_CACHE_NUM,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_FLAGS_DEVICE_PASID,
  MOCK_IOMMUPT_DEFAULT,
  MOCK_NESTED_DOMAIN_IOTLB_ID_MAX,
  MOCK_NESTED_DOMAIN_IOTLB_NUM,
  MOCK_PAGE_SIZE,
  MOCK_PASID_WIDTH,
} from '../uapi/iommufd-test.ts';
import { decodeStruct, writeFields } from '../uapi/struct.ts';
import {
  Device,
  type IommuAnyDomain,
  type IommuCap,
  type IommuDirtyOps,
  type IommuDomain,
  type IommuGroup,
  type IommuNestedDomain,
  type IommuOps,
  type IommuPages,
  type IommuProt,
  type IommuSubsystem,
  type IommuUserData,
  type IommuUserDataArray,
  iommuCopyStructFromUser,
  iommuCopyStructFromUserArray,
  isNestedDomain,
} from './iommu.ts';

/**
 * A leaf of 7.3's mock page table (AMDv1 with 2 KiB pages): a map stores each naturally aligned
 * run as one entry of the largest size that fits, as iommu_map() picks page sizes, and its dirty
 * bit covers the whole entry.
 */
interface MockLeaf {
  readonly iova: bigint;
  readonly size: bigint;
  dirty: boolean;
}

/** One 2 KiB IOPTE of a mock domain, in the leaf that holds it. */
interface MockPte {
  readonly pa: bigint;
  readonly prot: IommuProt;
  readonly leaf: MockLeaf;
}

/** iommu_pgsize(): the largest power of two from 2 KiB that aligns both addresses and fits. */
function leafSize(iova: bigint, pa: bigint, left: bigint): bigint {
  let size = MOCK_PAGE_SIZE;
  while ((iova | pa) % (size * 2n) === 0n && size * 2n <= left) size *= 2n;
  return size;
}

/** struct mock_iommu_domain. */
export class MockDomain implements IommuDomain {
  readonly owner: IommuOps = mockIommuOps;
  readonly pgsizeBitmap = MOCK_PAGE_SIZE;
  readonly aperture = { start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST };
  readonly dirtyOps: IommuDirtyOps | undefined;
  /** MOCK_DIRTY_TRACK: set by SET_DIRTY_TRACKING. */
  dirtyTracking = false;
  /** IOPTEs by IOVA / MOCK_PAGE_SIZE. */
  private readonly ptes = new Map<bigint, MockPte>();

  constructor(withDirtyOps: boolean) {
    this.dirtyOps = withDirtyOps ? mockDirtyOps(this) : undefined;
  }

  /** map_pages(): one entry per 2 KiB; the test interface's own injection point (ENOENT). */
  map(iova: bigint, pa: bigint, size: bigint, prot: IommuProt): SyscallResult {
    if (iova % MOCK_PAGE_SIZE || size % MOCK_PAGE_SIZE || pa % MOCK_PAGE_SIZE)
      throw new Error(`mock map of ${iova}+${size} is not 2 KiB aligned`);
    if (shouldFail('kmalloc')) return -Errno.ENOENT;
    let leaf: MockLeaf | undefined;
    for (let off = 0n; off < size; off += MOCK_PAGE_SIZE) {
      const index = (iova + off) / MOCK_PAGE_SIZE;
      if (this.ptes.has(index)) throw new Error(`mock map over a present IOPTE at ${iova + off}`);
      if (leaf === undefined || iova + off >= leaf.iova + leaf.size) {
        leaf = { iova: iova + off, size: leafSize(iova + off, pa + off, size - off), dirty: false };
      }
      this.ptes.set(index, { pa: pa + off, prot, leaf });
    }
    return 0;
  }

  unmap(iova: bigint, size: bigint): bigint {
    for (let off = 0n; off < size; off += MOCK_PAGE_SIZE)
      this.ptes.delete((iova + off) / MOCK_PAGE_SIZE);
    return size;
  }

  iovaToPhys(iova: bigint): bigint | undefined {
    const pte = this.ptes.get(iova / MOCK_PAGE_SIZE);
    return pte === undefined ? undefined : pte.pa + (iova % MOCK_PAGE_SIZE);
  }

  /** The IOPTE of the 2 KiB page at `iova`, for the test ops. */
  pte(iova: bigint): MockPte | undefined {
    return this.ptes.get(iova / MOCK_PAGE_SIZE);
  }

  get mappedPages(): number {
    return this.ptes.size;
  }

  free(): void {
    if (this.ptes.size !== 0) throw new Error(`mock domain freed with ${this.ptes.size} IOPTEs`);
  }
}

/**
 * The vIOMMU a nested mock domain was allocated through, as the mock driver sees it (the iommufd
 * VIOMMU object implements it): the virtual id of a device's vDEVICE, if it has one there.
 */
export interface MockViommuLink {
  vdevIdOf(dev: Device): bigint | undefined;
}

/**
 * struct mock_iommu_domain_nested: a stage-1 domain whose only state is a 4-entry IOTLB that
 * IOMMU_HWPT_INVALIDATE clears and MD_CHECK_IOTLB reads.
 */
export class MockNestedDomain implements IommuNestedDomain {
  readonly kind = 'nested';
  readonly owner: IommuOps = mockIommuOps;
  readonly iotlb: number[];
  /** Set for a domain allocated through a vIOMMU: attaching needs a vDEVICE there. */
  readonly viommu: MockViommuLink | undefined;

  constructor(iotlb: number, viommu: MockViommuLink | undefined) {
    this.iotlb = new Array(MOCK_NESTED_DOMAIN_IOTLB_NUM).fill(iotlb);
    this.viommu = viommu;
  }

  /**
   * mock_domain_cache_invalidate_user(): EINVAL for another data type; each record clears one
   * IOTLB entry or all of them (EOPNOTSUPP for an unknown flag, EINVAL for an id past 3); stops
   * at the first bad record, with entryNum the records handled before it.
   */
  cacheInvalidateUser(array: IommuUserDataArray): SyscallResult {
    let processed = 0;
    let rc: SyscallResult = 0;
    if (array.type !== IOMMU_HWPT_INVALIDATE_DATA_SELFTEST) {
      rc = -Errno.EINVAL;
    } else {
      const spec = iommuHwptInvalidateSelftest;
      for (let i = 0; i < array.entryNum; i++) {
        const bytes = iommuCopyStructFromUserArray(
          array,
          IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
          i,
          spec.size,
          spec.minSize,
        );
        if (typeof bytes === 'number') {
          rc = bytes;
          break;
        }
        const inv = decodeStruct(spec, bytes);
        if (inv.flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL) {
          rc = -Errno.EOPNOTSUPP;
          break;
        }
        if (inv.iotlb_id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX) {
          rc = -Errno.EINVAL;
          break;
        }
        if (inv.flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) this.iotlb.fill(0);
        else this.iotlb[inv.iotlb_id] = 0;
        processed++;
      }
    }
    array.entryNum = processed;
    return rc;
  }

  free(): void {}
}

/**
 * __mock_domain_alloc_nested(): EOPNOTSUPP for data that is not IOMMU_HWPT_DATA_SELFTEST, the
 * copy's EINVAL / EFAULT, then every IOTLB entry set to the data's `iotlb`.
 */
export function mockAllocNested(
  userData: IommuUserData,
  viommu: MockViommuLink | undefined,
): MockNestedDomain | number {
  if (userData.type !== IOMMU_HWPT_DATA_SELFTEST) return -Errno.EOPNOTSUPP;
  const spec = iommuHwptSelftest;
  const bytes = iommuCopyStructFromUser(
    userData,
    IOMMU_HWPT_DATA_SELFTEST,
    spec.size,
    spec.minSize,
  );
  if (typeof bytes === 'number') return bytes;
  if (shouldFail('kmalloc')) return -Errno.ENOMEM;
  return new MockNestedDomain(decodeStruct(spec, bytes).iotlb, viommu);
}

function mockDirtyOps(domain: MockDomain): IommuDirtyOps {
  return {
    setDirtyTracking(enable: boolean): SyscallResult {
      domain.dirtyTracking = enable;
      return 0;
    },
    readAndClearDirty(iova, size, noClear, record): SyscallResult {
      // 7.3's generic page-table dirty ops read the IOPTEs whether tracking is on or not.
      const end = iova + size;
      for (let cur = iova; cur < end; cur += MOCK_PAGE_SIZE) {
        const leaf = domain.pte(cur)?.leaf;
        if (leaf === undefined || !leaf.dirty) continue;
        if (!noClear) leaf.dirty = false;
        // The whole entry is dirty, as far as the range asked reaches.
        const last = leaf.iova + leaf.size < end ? leaf.iova + leaf.size : end;
        record?.(cur, last - cur);
        cur = last - MOCK_PAGE_SIZE;
      }
      return 0;
    },
  };
}

/** struct mock_dev: a device on the mock bus with its flags and a cache userspace can check. */
export class MockDevice extends Device {
  readonly flags: number;

  constructor(name: string, flags: number, group: IommuGroup, pages: IommuPages) {
    super(name, undefined, { ops: mockIommuOps, unit: undefined }, group, pages);
    this.flags = flags;
  }
  /** mdev->cache[]: what DEV_CHECK_CACHE reads; vIOMMU invalidations would clear entries. */
  readonly cache: number[] = new Array(MOCK_DEV_CACHE_NUM).fill(IOMMU_TEST_DEV_CACHE_DEFAULT);

  /**
   * Armed by a set_dev_pasid of IOMMU_TEST_PASID_RESERVED, so that the next one fails: how the
   * self-tests make a replace fail part way. Blocking that PASID disarms it.
   */
  pasidReservedFakeError = false;

  /** mdev->viommu and vdev_id: the vIOMMU of the nested domain attached, and the device's id there. */
  viommu: MockViommuLink | undefined;
  vdevId = 0n;

  /** The pasid-num-bits property: 20 for a PASID-capable device. */
  get pasidNumBits(): number {
    return this.flags & MOCK_FLAGS_DEVICE_PASID ? MOCK_PASID_WIDTH : 0;
  }
}

function mockDevOf(dev: Device): MockDevice {
  if (!(dev instanceof MockDevice)) throw new Error(`${dev.name} is not a mock device`);
  return dev;
}

/** struct iommu_ops mock_ops. */
export const mockIommuOps: IommuOps = {
  name: 'mock-iommu',

  /**
   * mock_domain_alloc_paging_flags(): driver data, if any, is struct iommu_hwpt_selftest, whose
   * pagetable_type picks the page table; only MOCK_IOMMUPT_DEFAULT is emulated (decision 161).
   */
  domainAllocPaging(
    dev: Device,
    flags: number,
    userData: IommuUserData | undefined,
  ): IommuDomain | number {
    const mdev = mockDevOf(dev);
    const dirty = (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
    const valid =
      IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID;
    if (flags & ~valid || (dirty && mdev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY))
      return -Errno.EOPNOTSUPP;
    let pagetableType = MOCK_IOMMUPT_DEFAULT;
    if (userData !== undefined) {
      if (userData.type !== IOMMU_HWPT_DATA_SELFTEST && userData.type !== IOMMU_HWPT_DATA_NONE)
        return -Errno.EOPNOTSUPP;
      const spec = iommuHwptSelftest;
      const bytes = iommuCopyStructFromUser(
        userData,
        IOMMU_HWPT_DATA_SELFTEST,
        spec.size,
        spec.minSize,
      );
      if (typeof bytes === 'number') return bytes;
      pagetableType = decodeStruct(spec, bytes).pagetable_type;
    }
    if (shouldFail('domain-alloc')) return -Errno.ENOMEM;
    if (pagetableType !== MOCK_IOMMUPT_DEFAULT) return -Errno.EOPNOTSUPP;
    return new MockDomain(dirty);
  },

  /** mock_domain_alloc_nested(): flags other than PASID are EOPNOTSUPP. */
  domainAllocNested(
    _dev: Device,
    parent: IommuDomain,
    flags: number,
    userData: IommuUserData,
  ): IommuNestedDomain | number {
    if (flags & ~IOMMU_HWPT_ALLOC_PASID) return -Errno.EOPNOTSUPP;
    if (!(parent instanceof MockDomain)) return -Errno.EINVAL;
    return mockAllocNested(userData, undefined);
  },

  capable(dev: Device, cap: IommuCap): boolean {
    switch (cap) {
      case 'cache-coherency':
        return true;
      case 'enforce-cache-coherency':
        return false;
      case 'dirty-tracking':
        return (mockDevOf(dev).flags & MOCK_FLAGS_DEVICE_NO_DIRTY) === 0;
      case 'pci-ats-supported':
        // A mock device is no PCI device: no ATS.
        return false;
    }
  },

  /** mock_domain_hw_info(): struct iommu_test_hw_info with the magic register value. */
  hwInfo(
    _dev: Device,
    type: number,
  ): { readonly type: number; readonly data: Uint8Array } | number {
    if (type !== IOMMU_HW_INFO_TYPE_DEFAULT && type !== IOMMU_HW_INFO_TYPE_SELFTEST)
      return -Errno.EOPNOTSUPP;
    const data = new Uint8Array(iommuTestHwInfo.size);
    writeFields(iommuTestHwInfo, data, { flags: 0, test_reg: IOMMU_HW_INFO_SELFTEST_REGVAL });
    return { type: IOMMU_HW_INFO_TYPE_SELFTEST, data };
  },

  pasidBits(dev: Device): number {
    return mockDevOf(dev).pasidNumBits;
  },

  /**
   * mock_domain_set_dev_pasid_nop(): always succeeds, except that IOMMU_TEST_PASID_RESERVED fails
   * (ENOMEM) every second time it moves to a domain, and its blocking disarms that.
   */
  setDevPasid(dev: Device, domain: IommuAnyDomain | undefined, pasid: number): SyscallResult {
    const mdev = mockDevOf(dev);
    if (pasid !== IOMMU_TEST_PASID_RESERVED) return 0;
    if (domain === undefined) {
      mdev.pasidReservedFakeError = false;
    } else if (mdev.pasidReservedFakeError) {
      mdev.pasidReservedFakeError = false;
      return -Errno.ENOMEM;
    } else {
      mdev.pasidReservedFakeError = true;
    }
    return 0;
  },

  /**
   * mock_domain_nop_attach(): a NO_DIRTY device refuses a domain with dirty ops; a nested domain
   * of a vIOMMU needs the device's vDEVICE there (ENOENT), whose virtual id the device then
   * reports its events with.
   */
  attachDev(dev: Device, domain: IommuAnyDomain | undefined): SyscallResult {
    const mdev = mockDevOf(dev);
    if (isNestedDomain(domain)) {
      const viommu = domain instanceof MockNestedDomain ? domain.viommu : undefined;
      let vdevId = 0n;
      if (viommu !== undefined) {
        const id = viommu.vdevIdOf(dev);
        if (id === undefined) return -Errno.ENOENT;
        vdevId = id;
      }
      mdev.viommu = viommu;
      mdev.vdevId = vdevId;
      return 0;
    }
    if (domain?.dirtyOps !== undefined && mdev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY)
      return -Errno.EINVAL;
    mdev.viommu = undefined;
    mdev.vdevId = 0n;
    return 0;
  },
};

/** The bus notifier: sysfs follows the devices (the composition root wires it). */
export interface MockBusNotifier {
  /** Group ids used by groups the iommu core does not keep (VFIO's no-IOMMU ones). */
  groupIdTaken(id: number): boolean;
  added(dev: MockDevice, groupId: number): void;
  removed(dev: MockDevice, groupId: number): void;
}

/** dev_flags MOCK_DOMAIN_FLAGS accepts. */
const MOCK_DEV_VALID_FLAGS = MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_PASID;

/**
 * The iommufd_mock bus: mock devices come and go with the test ops. Every device gets a group of
 * its own (generic_device_group) and the one mock IOMMU.
 */
export class MockBus {
  readonly name = 'iommufd_mock';
  /** Live mock devices, by name (the bus's device list, for sysfs). */
  readonly devices = new Map<string, MockDevice>();
  private readonly iommu: IommuSubsystem;
  private readonly pages: IommuPages;
  private readonly notify: MockBusNotifier | undefined;
  /** mock_dev_num: names count up and are never reused while the kernel runs. */
  private created = 0;

  constructor(iommu: IommuSubsystem, pages: IommuPages, notify?: MockBusNotifier) {
    this.iommu = iommu;
    this.pages = pages;
    this.notify = notify;
  }

  /** mock_dev_create(): EINVAL for a flag the driver does not know. */
  create(flags: number): MockDevice | number {
    if (flags & ~MOCK_DEV_VALID_FLAGS) return -Errno.EINVAL;
    if (shouldFail('kmalloc')) return -Errno.ENOMEM;
    const name = `iommufd_mock${++this.created}`;
    const group = this.iommu.allocGroup((id) => this.notify?.groupIdTaken(id) ?? false);
    const dev = new MockDevice(name, flags, group, this.pages);
    this.devices.set(name, dev);
    this.notify?.added(dev, group.id);
    return dev;
  }

  /** mock_dev_destroy(). */
  destroy(dev: MockDevice): void {
    this.devices.delete(dev.name);
    this.notify?.removed(dev, dev.group!.id);
    this.iommu.removeDevice(dev);
  }
}

/** iommufd_selftest_is_mock_dev(). */
export function isMockDevice(dev: Device): dev is MockDevice {
  return dev instanceof MockDevice;
}
