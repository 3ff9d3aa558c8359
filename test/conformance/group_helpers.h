/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The legacy VFIO group and container path for the conformance programs: a device's group number
 * read from sysfs as a real driver finds it (the number differs between the emulator's default
 * platform and a real machine), and the group node and container opened as QEMU's legacy backend
 * and DPDK open them. Include after harness.h and edu_helpers.h.
 */
#ifndef IOMMUFD_EMU_CONFORMANCE_GROUP_HELPERS_H
#define IOMMUFD_EMU_CONFORMANCE_GROUP_HELPERS_H

#include <libgen.h>

/* The iommu_group number of PCI device `bdf`, from /sys/bus/pci/devices/<bdf>/iommu_group;
 * -1 with errno when it has none. */
static inline int group_number(const char *bdf)
{
	char link[256], target[256];

	snprintf(link, sizeof(link), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	if (read_link(link, target, sizeof(target)) < 0)
		return -1;
	return atoi(basename(target));
}

/* The group node of `bdf`: /dev/vfio/<G>, or /dev/vfio/noiommu-<G> when `noiommu`. 0 or -1. */
static inline int group_path(const char *bdf, int noiommu, char *path, size_t len)
{
	int g = group_number(bdf);

	if (g < 0)
		return -1;
	snprintf(path, len, noiommu ? "/dev/vfio/noiommu-%d" : "/dev/vfio/%d", g);
	return 0;
}

/* Opens the group node of `bdf`: an fd or -1 with errno. */
static inline int group_open(const char *bdf, int noiommu)
{
	char path[64];

	if (group_path(bdf, noiommu, path, sizeof(path)))
		return -1;
	return open(path, O_RDWR | O_CLOEXEC);
}

static inline int container_open(void)
{
	return open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
}

static inline int group_set_container(int group, int container)
{
	return ioctl(group, VFIO_GROUP_SET_CONTAINER, &container);
}

/* VFIO_GROUP_GET_STATUS: the flags, or -1 with errno. */
static inline int group_status(int group)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };

	if (ioctl(group, VFIO_GROUP_GET_STATUS, &st))
		return -1;
	return (int)st.flags;
}

static inline int dma_map(int container, __u32 flags, const void *va, __u64 iova, __u64 size)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = flags,
		.vaddr = (uintptr_t)va,
		.iova = iova,
		.size = size,
	};

	return ioctl(container, VFIO_IOMMU_MAP_DMA, &map);
}

/* *unmapped (optional): the size the kernel wrote back. */
static inline int dma_unmap(int container, __u32 flags, __u64 iova, __u64 size, __u64 *unmapped)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.flags = flags,
		.iova = iova,
		.size = size,
	};
	int rc = ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap);

	if (unmapped)
		*unmapped = unmap.size;
	return rc;
}

#define DMA_RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

#endif
