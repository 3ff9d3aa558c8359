/**
 * IOMMU_IOAS_NOIOMMU_GET_PA: the physical address and physically contiguous length behind an
 * IOVA of an IOAS that holds a no-IOMMU domain, for drivers of devices with no IOMMU that DMA
 * to physical addresses. The check order and the page-by-page scan follow the kernel exactly
 * (iommufd_ioas_noiommu_get_pa / iopt_get_phys).
 */
import { CAP_SYS_RAWIO, capable } from '../host/credentials.ts';
import { Errno, type SyscallResult } from '../uapi/errno.ts';
import { type iommuIoasNoiommuGetPa, PAGE_SIZE, ULONG_MAX } from '../uapi/iommufd.ts';
import type { IommuDomain } from './hw-pagetable.ts';
import { isNoiommuDomain } from './hwpt-noiommu.ts';
import { iommufdGetIoas } from './ioas.ts';
import type { IoptArea } from './iopt-area.ts';
import type { Ucmd } from './main.ts';

/** iopt_get_phys(): sub-page offset kept, contiguity checked page by page, never across an area. */
export function areaGetPhys(
  area: IoptArea,
  iova: bigint,
  max: bigint,
): { phys: bigint; length: bigint } | number {
  // A revoked dma-buf has no physical range left.
  if (area.pages?.mapsIoptes === false) return -Errno.EINVAL;
  const domain = area.storageDomain as IommuDomain | undefined;
  if (domain === undefined || !isNoiommuDomain(domain)) return -Errno.EOPNOTSUPP;
  const phys = domain.iovaToPhys(iova);
  // Mapped by the area but not in the table: only an unsafe DMA over the table can do that (it
  // was reported as corruption then). The table is what the kernel would read: nothing there.
  if (phys === undefined) return -Errno.ENOENT;
  const firstChunk = PAGE_SIZE - (iova % PAGE_SIZE);
  const toAreaEnd = area.last - iova + 1n;
  let length = firstChunk < toAreaEnd ? firstChunk : toAreaEnd;
  let cur = iova;
  let curPa = phys;
  while (cur < area.last) {
    if (length >= max) break;
    const next = cur + PAGE_SIZE;
    if (next > ULONG_MAX || next > area.last) break;
    const nextPa = domain.iovaToPhys(next);
    if (nextPa === undefined || nextPa === 0n || nextPa !== curPa + PAGE_SIZE) break;
    cur = next;
    curPa += PAGE_SIZE;
    length += PAGE_SIZE;
  }
  return { phys, length: length < max ? length : max };
}

export function iommufdIoasNoiommuGetPa(
  ucmd: Ucmd<typeof iommuIoasNoiommuGetPa.fields>,
): SyscallResult {
  const cmd = ucmd.cmd;
  // The privilege of the caller of the ioctl, not of whoever opened the fd.
  if (!capable(ucmd.task.creds, CAP_SYS_RAWIO)) return -Errno.EPERM;
  if (cmd.flags || cmd.__reserved) return -Errno.EOPNOTSUPP;
  if (cmd.length === 0n) return -Errno.EINVAL;
  if (cmd.iova >= ULONG_MAX) return -Errno.EOVERFLOW;
  const ioas = iommufdGetIoas(ucmd.ictx, cmd.ioas_id);
  if (ioas === undefined) return -Errno.ENOENT;
  try {
    // Only the first IOVA must be mapped; an area still being built counts as unmapped.
    const area = ioas.iopt.areas.iterFirst(cmd.iova, cmd.iova);
    if (area === undefined || area.pages === undefined) return -Errno.ENOENT;
    const result = areaGetPhys(area, cmd.iova, cmd.length);
    if (typeof result === 'number') return result;
    cmd.out_phys = result.phys;
    cmd.length = result.length;
    return ucmd.respond();
  } finally {
    ucmd.ictx.putObject(ioas);
  }
}
