/**
 * The iommufd and VFIO cdev calls the scenarios and the explorer make, as one-liners over
 * SimProcess.ioctlStruct(). Each returns the raw return value (>= 0 or -errno) and the struct
 * the kernel wrote back.
 */
import type { SimProcess } from '../host/sim-process.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as v from '../uapi/vfio.ts';

export const RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;
export const FIXED = RW | u.IOMMU_IOAS_MAP_FIXED_IOVA;

/** The calls on one process's iommufd fd. */
export class IommufdOps {
  readonly proc: SimProcess;
  readonly fd: number;

  constructor(proc: SimProcess, fd: number) {
    this.proc = proc;
    this.fd = fd;
  }

  ioasAlloc(): { ret: number; id: number } {
    const r = this.proc.ioctlStruct(this.fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    return { ret: r.ret, id: r.out.out_ioas_id };
  }

  destroy(id: number): number {
    return this.proc.ioctlStruct(this.fd, ioctl.IOMMU_DESTROY, u.iommuDestroy, { id }).ret;
  }

  /** IOVA_RANGES into a scratch buffer of `max` entries; returns the ranges the kernel wrote. */
  iovaRanges(
    ioasId: number,
    max: number,
  ): { ret: number; count: number; alignment: bigint; ranges: { start: bigint; last: bigint }[] } {
    const buf = this.proc.alloc(BigInt(Math.max(1, max) * u.iommuIovaRange.size));
    const r = this.proc.ioctlStruct(this.fd, ioctl.IOMMU_IOAS_IOVA_RANGES, u.iommuIoasIovaRanges, {
      ioas_id: ioasId,
      num_iovas: max,
      allowed_iovas: buf,
    });
    const ranges: { start: bigint; last: bigint }[] = [];
    const n = Math.min(max, r.out.num_iovas);
    const bytes = this.proc.memory.read(buf, n * u.iommuIovaRange.size) ?? new Uint8Array(0);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n && (i + 1) * 16 <= bytes.length; i++) {
      ranges.push({
        start: view.getBigUint64(i * 16, true),
        last: view.getBigUint64(i * 16 + 8, true),
      });
    }
    return { ret: r.ret, count: r.out.num_iovas, alignment: r.out.out_iova_alignment, ranges };
  }

  allowIovas(ioasId: number, ranges: readonly { start: bigint; last: bigint }[]): number {
    const buf = this.proc.alloc(BigInt(Math.max(1, ranges.length) * u.iommuIovaRange.size));
    const bytes = new Uint8Array(ranges.length * u.iommuIovaRange.size);
    const view = new DataView(bytes.buffer);
    ranges.forEach((r, i) => {
      view.setBigUint64(i * 16, r.start, true);
      view.setBigUint64(i * 16 + 8, r.last, true);
    });
    this.proc.memory.write(buf, bytes);
    return this.proc.ioctlStruct(this.fd, ioctl.IOMMU_IOAS_ALLOW_IOVAS, u.iommuIoasAllowIovas, {
      ioas_id: ioasId,
      num_iovas: ranges.length,
      allowed_iovas: buf,
    }).ret;
  }

  /** MAP: `iova` is used with FIXED_IOVA in `flags`; the IOVA the kernel chose comes back. */
  map(
    ioasId: number,
    va: bigint,
    length: bigint,
    flags: number,
    iova = 0n,
  ): { ret: number; iova: bigint } {
    const r = this.proc.ioctlStruct(this.fd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: ioasId,
      flags,
      user_va: va,
      length,
      iova,
    });
    return { ret: r.ret, iova: r.out.iova };
  }

  copy(
    srcIoas: number,
    srcIova: bigint,
    dstIoas: number,
    length: bigint,
    flags: number,
    dstIova = 0n,
  ): { ret: number; iova: bigint } {
    const r = this.proc.ioctlStruct(this.fd, ioctl.IOMMU_IOAS_COPY, u.iommuIoasCopy, {
      flags,
      dst_ioas_id: dstIoas,
      src_ioas_id: srcIoas,
      length,
      dst_iova: dstIova,
      src_iova: srcIova,
    });
    return { ret: r.ret, iova: r.out.dst_iova };
  }

  unmap(ioasId: number, iova: bigint, length: bigint): { ret: number; length: bigint } {
    const r = this.proc.ioctlStruct(this.fd, ioctl.IOMMU_IOAS_UNMAP, u.iommuIoasUnmap, {
      ioas_id: ioasId,
      iova,
      length,
    });
    return { ret: r.ret, length: r.out.length };
  }

  option(
    optionId: number,
    op: number,
    objectId: number,
    val64 = 0n,
  ): { ret: number; val64: bigint } {
    const r = this.proc.ioctlStruct(this.fd, ioctl.IOMMU_OPTION, u.iommuOption, {
      option_id: optionId,
      op,
      object_id: objectId,
      val64,
    });
    return { ret: r.ret, val64: r.out.val64 };
  }

  hwptAlloc(devId: number, ptId: number): { ret: number; id: number } {
    const r = this.proc.ioctlStruct(this.fd, ioctl.IOMMU_HWPT_ALLOC, u.iommuHwptAlloc, {
      dev_id: devId,
      pt_id: ptId,
    });
    return { ret: r.ret, id: r.out.out_hwpt_id };
  }

  hwInfo(devId: number): number {
    const buf = this.proc.alloc(64n);
    return this.proc.ioctlStruct(this.fd, ioctl.IOMMU_GET_HW_INFO, u.iommuHwInfo, {
      dev_id: devId,
      data_len: 64,
      data_uptr: buf,
    }).ret;
  }

  getPa(
    ioasId: number,
    iova: bigint,
    length: bigint,
  ): { ret: number; phys: bigint; length: bigint } {
    const r = this.proc.ioctlStruct(
      this.fd,
      ioctl.IOMMU_IOAS_NOIOMMU_GET_PA,
      u.iommuIoasNoiommuGetPa,
      { ioas_id: ioasId, iova, length },
    );
    return { ret: r.ret, phys: r.out.out_phys, length: r.out.length };
  }
}

/** The VFIO cdev calls on one device fd. */
export class VfioDeviceOps {
  readonly proc: SimProcess;
  readonly fd: number;

  constructor(proc: SimProcess, fd: number) {
    this.proc = proc;
    this.fd = fd;
  }

  bind(iommufd: number): { ret: number; devid: number } {
    const r = this.proc.ioctlStruct(
      this.fd,
      ioctl.VFIO_DEVICE_BIND_IOMMUFD,
      v.vfioDeviceBindIommufd,
      {
        iommufd,
      },
    );
    return { ret: r.ret, devid: r.out.out_devid };
  }

  attach(ptId: number): { ret: number; ptId: number } {
    const r = this.proc.ioctlStruct(
      this.fd,
      ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      v.vfioDeviceAttachIommufdPt,
      { pt_id: ptId },
    );
    return { ret: r.ret, ptId: r.out.pt_id };
  }

  detach(): number {
    return this.proc.ioctlStruct(
      this.fd,
      ioctl.VFIO_DEVICE_DETACH_IOMMUFD_PT,
      v.vfioDeviceDetachIommufdPt,
      {},
    ).ret;
  }
}
