/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The calls with which the reliability runs' C clients (pin_kill.c, ../soak/churn.c) set up what
 * they pin: an IOAS, a device cdev bound to the iommufd and attached to it, a buffer mapped at a
 * fixed IOVA. Each is one ioctl and returns its result with errno intact, so that a client counts
 * and checks each call as it likes.
 */
#ifndef IOMMUFD_EMU_RELIABILITY_CLIENT_CALLS_H
#define IOMMUFD_EMU_RELIABILITY_CLIENT_CALLS_H

#include <stdint.h>
#include <sys/ioctl.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>

/* IOMMU_IOAS_ALLOC; *ioas the new IOAS, or 0 when the call failed. */
static inline int ioas_alloc(int fd, __u32 *ioas)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	int r = ioctl(fd, IOMMU_IOAS_ALLOC, &a);

	*ioas = r ? 0 : a.out_ioas_id;
	return r;
}

static inline int device_bind(int dev, int iommufd)
{
	struct vfio_device_bind_iommufd b = { .argsz = sizeof(b), .iommufd = iommufd };

	return ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b);
}

static inline int device_attach(int dev, __u32 pt_id)
{
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = pt_id };

	return ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
}

/* IOMMU_IOAS_MAP of [va, va + len) at exactly `iova`, readable and writeable. */
static inline int ioas_map_fixed(int fd, __u32 ioas, void *va, __u64 len, __u64 iova)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)va,
		.length = len,
		.iova = iova,
	};

	return ioctl(fd, IOMMU_IOAS_MAP, &m);
}

#endif /* IOMMUFD_EMU_RELIABILITY_CLIENT_CALLS_H */
