/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The classic VFIO driver, as DPDK, SPDK, rust-vmm and QEMU's legacy backend drive it: a group
 * node /dev/vfio/<G> found through sysfs, /dev/vfio/vfio as its container (served by iommufd's
 * compat layer), VFIO_SET_IOMMU (the wrong type tried first, as real programs do on purpose),
 * VFIO_IOMMU_GET_INFO with its capability chain, MAP_DMA/UNMAP_DMA (type1 and type1v2, unmap-all,
 * the vaddr and dirty flags iommufd does not offer), GET_DEVICE_FD, and the edu's DMA through
 * the mappings, checked byte for byte. Several groups share one container.
 */
#include "harness.h"
#include "edu_helpers.h"
#include "group_helpers.h"

#define NPAGES 16
static unsigned char *g_mem;
#define PG(i) (g_mem + (size_t)(i) * PAGE_SZ)
#define IOVA(i) (0x100000ULL + (__u64)(i) * PAGE_SZ)

/* One group in its own container, the container's IOMMU type set. */
struct legacy {
	int container;
	int group;
};

static void legacy_close(struct legacy *l)
{
	if (l->group >= 0)
		close(l->group);
	if (l->container >= 0)
		close(l->container);
	l->group = l->container = -1;
}

/* Opens EDU0's group into a fresh container and selects `type` (0: none yet). 0 or -1. */
static int legacy_open(struct legacy *l, const char *bdf, unsigned long type)
{
	l->container = container_open();
	l->group = group_open(bdf, 0);
	if (l->container < 0 || l->group < 0)
		return -1;
	if (group_set_container(l->group, l->container))
		return -1;
	return type ? ioctl(l->container, VFIO_SET_IOMMU, type) : 0;
}

/* A device fd from the group with bus mastering on; -1 on failure. */
static int device_open(int group, const char *bdf)
{
	int dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);

	if (dev >= 0 && edu_set_bus_master(dev, 1)) {
		close(dev);
		return -1;
	}
	return dev;
}

/* edu copies page `from` to page `to` (both mapped at IOVA(i)) through its buffer. */
static int edu_copy(int dev, int from, int to)
{
	if (edu_dma_in(dev, IOVA(from), 0, EDU_BUF_SIZE))
		return -1;
	return edu_dma_out(dev, 0, IOVA(to), EDU_BUF_SIZE);
}

static __u64 huge_pages(int container)
{
	__u64 v = 99;
	__u32 id = 0;

	if (vfio_ioas(container, IOMMU_VFIO_IOAS_GET, &id) ||
	    option_get(container, IOMMU_OPTION_HUGE_PAGES, id, &v))
		return 99;
	return v;
}

TEST(classic_driver_from_api_version_to_dma)
{
	struct vfio_device_info dinfo = { .argsz = sizeof(dinfo) };
	struct legacy l = { -1, -1 };
	int dev;

	l.container = container_open();
	REQUIRE(l.container >= 0);
	CHECK_RET(VFIO_API_VERSION, ioctl(l.container, VFIO_GET_API_VERSION));
	CHECK_RET(1, ioctl(l.container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU));
	CHECK_RET(1, ioctl(l.container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
	l.group = group_open(EDU0_BDF, 0);
	REQUIRE(l.group >= 0);
	/* viable (no other owner), no container yet */
	CHECK_EQ(group_status(l.group), VFIO_GROUP_FLAGS_VIABLE);
	REQUIRE_OK(group_set_container(l.group, l.container));
	CHECK_EQ(group_status(l.group), VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
	/* a program probing for no-IOMMU first: refused, then the right type */
	CHECK_ERRNO(EINVAL, ioctl(l.container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU));
	REQUIRE_OK(ioctl(l.container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	REQUIRE_OK(dma_map(l.container, DMA_RW, g_mem, IOVA(0), NPAGES * PAGE_SZ));
	dev = device_open(l.group, EDU0_BDF);
	REQUIRE(dev >= 0);
	REQUIRE_OK(ioctl(dev, VFIO_DEVICE_GET_INFO, &dinfo));
	CHECK(dinfo.flags & VFIO_DEVICE_FLAGS_PCI);
	CHECK_EQ(dinfo.num_regions, VFIO_PCI_NUM_REGIONS);
	CHECK_EQ(dinfo.num_irqs, VFIO_PCI_NUM_IRQS);
	CHECK_EQ(edu_reg(dev, EDU_ID), EDU_ID_VALUE);
	fill_pattern(PG(0), PAGE_SZ, 11);
	memset(PG(1), 0, PAGE_SZ);
	CHECK_OK(edu_copy(dev, 0, 1));
	CHECK(memcmp(PG(0), PG(1), PAGE_SZ) == 0);
	close(dev);
	{
		__u64 unmapped = 0;

		CHECK_OK(dma_unmap(l.container, 0, IOVA(0), NPAGES * PAGE_SZ, &unmapped));
		CHECK_EQ(unmapped, NPAGES * PAGE_SZ);
	}
	CHECK_OK(ioctl(l.group, VFIO_GROUP_UNSET_CONTAINER));
	CHECK_EQ(group_status(l.group), VFIO_GROUP_FLAGS_VIABLE);
	legacy_close(&l);
}

/* A refused VFIO_SET_IOMMU leaves the container exactly as it was. */
TEST(wrong_iommu_type_changes_nothing)
{
	struct legacy l = { -1, -1 };
	__u32 before = 0, after = 0;

	/* no group yet: there is no IOMMU to set */
	l.container = container_open();
	REQUIRE(l.container >= 0);
	CHECK_ERRNO(ENODEV, ioctl(l.container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	legacy_close(&l);

	REQUIRE_OK(legacy_open(&l, EDU0_BDF, 0));
	REQUIRE_OK(vfio_ioas(l.container, IOMMU_VFIO_IOAS_GET, &before));
	CHECK_EQ(huge_pages(l.container), 1);
	CHECK_ERRNO(EINVAL, ioctl(l.container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU));
	CHECK_ERRNO(EINVAL, ioctl(l.container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU));
	CHECK_ERRNO(EINVAL, ioctl(l.container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU));
	CHECK_ERRNO(EINVAL, ioctl(l.container, VFIO_SET_IOMMU, 0));
	CHECK_OK(vfio_ioas(l.container, IOMMU_VFIO_IOAS_GET, &after));
	CHECK_EQ(after, before);
	CHECK_EQ(huge_pages(l.container), 1);
	CHECK_EQ(group_status(l.group), VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
	CHECK_RET(1, ioctl(l.container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
	/* the right one still works afterwards */
	CHECK_OK(ioctl(l.container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	CHECK_EQ(huge_pages(l.container), 1);
	legacy_close(&l);
}

/*
 * Type1 (v1) turns huge pages off so that UNMAP_DMA may punch a hole in a mapping; type1v2 only
 * unmaps whole mappings (a range that cuts one is ENOENT). Type1 is refused once a domain holds
 * mappings.
 */
TEST(type1_punches_holes_type1v2_does_not)
{
	struct legacy l = { -1, -1 };
	__u64 unmapped = 0;
	int dev;

	REQUIRE_OK(legacy_open(&l, EDU0_BDF, VFIO_TYPE1v2_IOMMU));
	REQUIRE_OK(dma_map(l.container, DMA_RW, g_mem, IOVA(0), 4 * PAGE_SZ));
	dev = device_open(l.group, EDU0_BDF);
	REQUIRE(dev >= 0);
	CHECK_ERRNO(ENOENT, dma_unmap(l.container, 0, IOVA(1), PAGE_SZ, &unmapped));
	/* a domain with mappings: large pages can no longer be turned off */
	CHECK_ERRNO(EINVAL, ioctl(l.container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU));
	CHECK_EQ(huge_pages(l.container), 1);
	close(dev);
	legacy_close(&l);

	REQUIRE_OK(legacy_open(&l, EDU0_BDF, VFIO_TYPE1_IOMMU));
	CHECK_EQ(huge_pages(l.container), 0);
	REQUIRE_OK(dma_map(l.container, DMA_RW, g_mem, IOVA(0), 4 * PAGE_SZ));
	dev = device_open(l.group, EDU0_BDF);
	REQUIRE(dev >= 0);
	CHECK_OK(dma_unmap(l.container, 0, IOVA(1), PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, PAGE_SZ);
	/* the hole is empty now: success, nothing unmapped */
	CHECK_OK(dma_unmap(l.container, 0, IOVA(1), PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, 0);
	/* both sides of the hole still reach their pages */
	fill_pattern(PG(0), PAGE_SZ, 12);
	memset(PG(3), 0, PAGE_SZ);
	CHECK_OK(edu_copy(dev, 0, 3));
	CHECK(memcmp(PG(0), PG(3), PAGE_SZ) == 0);
	CHECK_OK(dma_unmap(l.container, 0, IOVA(0), 4 * PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, 3 * PAGE_SZ);
	close(dev);
	legacy_close(&l);
}

/*
 * GET_INFO once a device's domain is in the container: page sizes of the IOMMU (never below a
 * page), and the usable IOVA ranges around the MSI window and up to the aperture's end. A buffer
 * with room for the first capability only gets it (its next link already set), argsz the whole
 * size, and cap_offset 0.
 */
TEST(get_info_with_a_device)
{
	unsigned char buf[512] __attribute__((aligned(8)));
	struct vfio_iommu_type1_info *info = (void *)buf;
	struct vfio_iommu_type1_info_dma_avail *avail = (void *)(buf + 24);
	struct vfio_iommu_type1_info_cap_iova_range *range = (void *)(buf + 40);
	struct legacy l = { -1, -1 };
	int dev;

	REQUIRE_OK(legacy_open(&l, EDU0_BDF, VFIO_TYPE1v2_IOMMU));
	/* no domain yet: all of the IOVA space */
	memset(buf, 0, sizeof(buf));
	info->argsz = sizeof(buf);
	REQUIRE_OK(ioctl(l.container, VFIO_IOMMU_GET_INFO, info));
	CHECK_EQ(range->nr_iovas, 1);
	CHECK_EQ(range->iova_ranges[0].end, U64_MAX_);

	dev = device_open(l.group, EDU0_BDF);
	REQUIRE(dev >= 0);
	memset(buf, 0, sizeof(buf));
	info->argsz = sizeof(buf);
	REQUIRE_OK(ioctl(l.container, VFIO_IOMMU_GET_INFO, info));
	CHECK_EQ(info->flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
	CHECK(info->iova_pgsizes & PAGE_SZ);
	CHECK_EQ(info->iova_pgsizes & (PAGE_SZ - 1), 0);
	CHECK_EQ(info->cap_offset, 24);
	CHECK_EQ(info->argsz, 40 + 16 + 2 * 16);
	CHECK_EQ(avail->header.id, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
	CHECK_EQ(avail->header.next, 40);
	CHECK_EQ(avail->avail, 0xffffffff);
	CHECK_EQ(range->header.id, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
	CHECK_EQ(range->header.version, 1);
	CHECK_EQ(range->header.next, 0);
	REQUIRE(range->nr_iovas == 2);
	CHECK_EQ(range->iova_ranges[0].start, 0);
	CHECK_EQ(range->iova_ranges[0].end, MSI_START - 1);
	CHECK_EQ(range->iova_ranges[1].start, MSI_LAST + 1);
	CHECK_EQ(range->iova_ranges[1].end, DMAR0_APERTURE_LAST);

	/* room for DMA_AVAIL only */
	memset(buf, 0, sizeof(buf));
	info->argsz = 40;
	REQUIRE_OK(ioctl(l.container, VFIO_IOMMU_GET_INFO, info));
	CHECK_EQ(info->argsz, 40 + 16 + 2 * 16);
	CHECK_EQ(info->cap_offset, 0);
	CHECK_EQ(avail->header.id, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
	CHECK_EQ(avail->header.next, 40);
	CHECK_EQ(range->header.id, 0);
	/* room for the IOVA_RANGE header and one range of two: the range, not the header */
	memset(buf, 0, sizeof(buf));
	info->argsz = 40 + 16 + 16;
	REQUIRE_OK(ioctl(l.container, VFIO_IOMMU_GET_INFO, info));
	CHECK_EQ(info->cap_offset, 0);
	CHECK_EQ(range->header.id, 0);
	CHECK_EQ(range->nr_iovas, 0);
	CHECK_EQ(range->iova_ranges[0].end, MSI_START - 1);
	close(dev);
	legacy_close(&l);
}

/* UNMAP_ALL empties the container; the vaddr and dirty-tracking interfaces are not offered. */
TEST(unmap_all_and_flags_iommufd_does_not_offer)
{
	struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap) };
	struct legacy l = { -1, -1 };
	__u64 unmapped = 0;
	int dev;

	REQUIRE_OK(legacy_open(&l, EDU0_BDF, VFIO_TYPE1v2_IOMMU));
	CHECK_RET(1, ioctl(l.container, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL));
	CHECK_RET(0, ioctl(l.container, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR));
	REQUIRE_OK(dma_map(l.container, DMA_RW, PG(0), IOVA(0), PAGE_SZ));
	REQUIRE_OK(dma_map(l.container, VFIO_DMA_MAP_FLAG_READ, PG(2), IOVA(2), 2 * PAGE_SZ));
	REQUIRE_OK(dma_map(l.container, DMA_RW, PG(8), IOVA(8), 4 * PAGE_SZ));
	dev = device_open(l.group, EDU0_BDF);
	REQUIRE(dev >= 0);
	/* vaddr updates (live update of the process's memory) */
	CHECK_ERRNO(EINVAL, dma_map(l.container, DMA_RW | VFIO_DMA_MAP_FLAG_VADDR, PG(4),
				    IOVA(4), PAGE_SZ));
	CHECK_ERRNO(EINVAL, dma_unmap(l.container, VFIO_DMA_UNMAP_FLAG_VADDR, IOVA(0), PAGE_SZ,
				      NULL));
	CHECK_ERRNO(EINVAL, dma_unmap(l.container,
				      VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL, 0, 0,
				      NULL));
	/* type1's dirty tracking: iommufd's own replaces it */
	CHECK_ERRNO(EINVAL, dma_unmap(l.container, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, IOVA(0),
				      PAGE_SZ, NULL));
	{
		struct vfio_iommu_type1_dirty_bitmap db = {
			.argsz = sizeof(db),
			.flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
		};

		CHECK_ERRNO(ENOTTY, ioctl(l.container, VFIO_IOMMU_DIRTY_PAGES, &db));
	}
	/* the refused calls changed nothing: the device still copies through the mappings */
	fill_pattern(PG(2), PAGE_SZ, 13);
	memset(PG(0), 0, PAGE_SZ);
	CHECK_OK(edu_copy(dev, 2, 0));
	CHECK(memcmp(PG(2), PG(0), PAGE_SZ) == 0);

	/* UNMAP_ALL with an IOVA or a size is refused, and unmaps nothing */
	unmap.flags = VFIO_DMA_UNMAP_FLAG_ALL;
	unmap.size = PAGE_SZ;
	CHECK_ERRNO(EINVAL, ioctl(l.container, VFIO_IOMMU_UNMAP_DMA, &unmap));
	CHECK_OK(dma_unmap(l.container, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0, &unmapped));
	CHECK_EQ(unmapped, 7 * PAGE_SZ);
	CHECK_OK(dma_unmap(l.container, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0, &unmapped));
	CHECK_EQ(unmapped, 0);
	/* nothing is mapped: a transfer to RAM lands nowhere */
	memset(PG(8), 0x5a, PAGE_SZ);
	CHECK_OK(edu_dma_out(dev, 0, IOVA(8), EDU_BUF_SIZE));
	CHECK(all_bytes(PG(8), PAGE_SZ, 0x5a));
	close(dev);
	legacy_close(&l);
}

/* Two groups in one container: one compat IOAS, one set of mappings both devices use. */
TEST(several_groups_in_one_container)
{
	struct legacy l = { -1, -1 };
	__u32 ioas0 = 0, ioas1 = 0;
	int group1, dev0, dev1;

	REQUIRE_OK(legacy_open(&l, EDU0_BDF, 0));
	REQUIRE_OK(vfio_ioas(l.container, IOMMU_VFIO_IOAS_GET, &ioas0));
	group1 = group_open(EDU1_BDF, 0);
	REQUIRE(group1 >= 0);
	REQUIRE_OK(group_set_container(group1, l.container));
	CHECK_OK(vfio_ioas(l.container, IOMMU_VFIO_IOAS_GET, &ioas1));
	CHECK_EQ(ioas1, ioas0);
	CHECK_EQ(group_status(group1), VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
	/* a group's container is set once */
	CHECK_ERRNO(EINVAL, group_set_container(group1, l.container));
	REQUIRE_OK(ioctl(l.container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	REQUIRE_OK(dma_map(l.container, DMA_RW, g_mem, IOVA(0), NPAGES * PAGE_SZ));
	dev0 = device_open(l.group, EDU0_BDF);
	dev1 = device_open(group1, EDU1_BDF);
	REQUIRE(dev0 >= 0 && dev1 >= 0);
	fill_pattern(PG(0), PAGE_SZ, 14);
	memset(PG(1), 0, 2 * PAGE_SZ);
	CHECK_OK(edu_copy(dev0, 0, 1));
	CHECK_OK(edu_copy(dev1, 1, 2));
	CHECK(memcmp(PG(0), PG(2), PAGE_SZ) == 0);

	/* group 1 leaves while its device is open: the device keeps its attachment */
	CHECK_OK(ioctl(group1, VFIO_GROUP_UNSET_CONTAINER));
	CHECK_EQ(group_status(group1), 0);
	CHECK_ERRNO(EINVAL, ioctl(group1, VFIO_GROUP_UNSET_CONTAINER));
	/* ... and, with no container, the group opens no device */
	CHECK_ERRNO(EINVAL, ioctl(group1, VFIO_GROUP_GET_DEVICE_FD, EDU1_BDF));
	memset(PG(3), 0, PAGE_SZ);
	CHECK_OK(edu_copy(dev1, 0, 3));
	CHECK(memcmp(PG(0), PG(3), PAGE_SZ) == 0);
	close(dev1);
	/* its last device closed, the group is viable again and may rejoin */
	CHECK_EQ(group_status(group1), VFIO_GROUP_FLAGS_VIABLE);
	CHECK_OK(group_set_container(group1, l.container));
	dev1 = device_open(group1, EDU1_BDF);
	CHECK(dev1 >= 0);
	if (dev1 >= 0) {
		memset(PG(4), 0, PAGE_SZ);
		CHECK_OK(edu_copy(dev1, 0, 4));
		CHECK(memcmp(PG(0), PG(4), PAGE_SZ) == 0);
		close(dev1);
	}
	close(dev0);
	close(group1);
	legacy_close(&l);
}

/* What a group's device fd is: close-on-exec, opened again by a second GET_DEVICE_FD, bound
 * already (no BIND, no ATTACH of its own: those are the cdev's). */
TEST(device_fd_from_a_group)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct legacy l = { -1, -1 };
	int dev, again;

	REQUIRE_OK(legacy_open(&l, EDU0_BDF, VFIO_TYPE1v2_IOMMU));
	REQUIRE_OK(dma_map(l.container, DMA_RW, g_mem, IOVA(0), 2 * PAGE_SZ));
	dev = device_open(l.group, EDU0_BDF);
	REQUIRE(dev >= 0);
	CHECK(fcntl(dev, F_GETFD) & FD_CLOEXEC);
	bind.iommufd = l.container;
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind));
	CHECK_ERRNO(ENOTTY, ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach));
	again = ioctl(l.group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF);
	CHECK(again >= 0 && again != dev);
	/* both are the same open device: bus mastering set through one shows through the other */
	if (again >= 0) {
		CHECK_EQ(edu_bus_master(again), 1);
		close(again);
	}
	/* the group closed under an open device fd: the fd keeps working */
	close(l.group);
	l.group = -1;
	fill_pattern(PG(0), PAGE_SZ, 15);
	memset(PG(1), 0, PAGE_SZ);
	CHECK_OK(edu_copy(dev, 0, 1));
	CHECK(memcmp(PG(0), PG(1), PAGE_SZ) == 0);
	close(dev);
	legacy_close(&l);
}

int main(void)
{
	h_init();
	g_mem = h_mmap(NPAGES * PAGE_SZ);
	madvise(g_mem, NPAGES * PAGE_SZ, MADV_NOHUGEPAGE);
	RUN(classic_driver_from_api_version_to_dma);
	RUN(wrong_iommu_type_changes_nothing);
	RUN(type1_punches_holes_type1v2_does_not);
	RUN(get_info_with_a_device);
	RUN(unmap_all_and_flags_iommufd_does_not_offer);
	RUN(several_groups_in_one_container);
	RUN(device_fd_from_a_group);
	return h_done();
}
