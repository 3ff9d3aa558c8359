/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The VFIO type1 container ioctls answered by an iommufd (uapi.md §6.6):
 * VFIO_SET_IOMMU, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA/UNMAP_DMA and
 * CHECK_EXTENSION(DMA_CC_IOMMU) act on the compat IOAS and are ENODEV
 * without one. No group or device is needed: the compat IOAS is set by hand
 * with IOMMU_VFIO_IOAS_SET.
 */
#include "harness.h"

static int fd = -1;

static int open_fresh(void)
{
	if (fd >= 0)
		close(fd);
	fd = iommufd_open();
	return fd;
}

TEST(container_ioctls_need_a_compat_ioas)
{
	struct vfio_iommu_type1_info info = { .argsz = sizeof(info) };
	struct vfio_iommu_type1_dma_map map = { .argsz = sizeof(map) };
	struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap) };
	void *mem = h_mmap(PAGE_SZ);

	REQUIRE(open_fresh() >= 0);
	map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
	map.vaddr = (uintptr_t)mem;
	map.iova = 0x100000;
	map.size = PAGE_SZ;
	CHECK_ERRNO(ENODEV, ioctl(fd, VFIO_IOMMU_MAP_DMA, &map));
	unmap.iova = 0x100000;
	unmap.size = PAGE_SZ;
	CHECK_ERRNO(ENODEV, ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap));
	CHECK_ERRNO(ENODEV, ioctl(fd, VFIO_IOMMU_GET_INFO, &info));
	CHECK_ERRNO(ENODEV, ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	CHECK_ERRNO(ENODEV, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU));
	/* these do not need one */
	CHECK_RET(0, ioctl(fd, VFIO_GET_API_VERSION));
	CHECK_RET(1, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
	munmap(mem, PAGE_SZ);
}

TEST(set_iommu)
{
	__u64 hp = 7;
	__u32 id;

	REQUIRE(open_fresh() >= 0);
	/* the type is checked before the compat IOAS */
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU));
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_SET_IOMMU, 0));
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_SET_IOMMU, VFIO_UNMAP_ALL));
	REQUIRE_OK(ioas_alloc(fd, &id));
	REQUIRE_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &id));
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU));
	CHECK_OK(ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	CHECK_OK(option_get(fd, IOMMU_OPTION_HUGE_PAGES, id, &hp));
	CHECK_EQ(hp, 1);
	/* v1 type1 turns huge pages off on the compat IOAS */
	CHECK_OK(ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU));
	CHECK_OK(option_get(fd, IOMMU_OPTION_HUGE_PAGES, id, &hp));
	CHECK_EQ(hp, 0);
	/* with a compat IOAS and no HWPT, DMA_CC_IOMMU holds */
	CHECK_RET(1, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU));
}

TEST(map_unmap_dma)
{
	struct vfio_iommu_type1_dma_map map = { .argsz = sizeof(map) };
	struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap) };
	unsigned char *mem = h_mmap_exact_align(8 * PAGE_SZ, PAGE_SZ);
	__u64 unmapped;
	__u32 id;

	REQUIRE(open_fresh() >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	REQUIRE_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &id));

	map.vaddr = (uintptr_t)mem;
	map.iova = 0x100000;
	map.size = 4 * PAGE_SZ;
	map.flags = VFIO_DMA_MAP_FLAG_VADDR | VFIO_DMA_MAP_FLAG_READ;
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_IOMMU_MAP_DMA, &map));
	map.flags = 1 << 3;
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_IOMMU_MAP_DMA, &map));
	map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
	map.argsz = 31;
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_IOMMU_MAP_DMA, &map));
	map.argsz = sizeof(map);
	CHECK_OK(ioctl(fd, VFIO_IOMMU_MAP_DMA, &map));
	/* fixed IOVA: overlap is EEXIST */
	CHECK_ERRNO(EEXIST, ioctl(fd, VFIO_IOMMU_MAP_DMA, &map));
	/* unlike IOAS_MAP, flags 0 is accepted */
	map.flags = 0;
	map.iova = 0x200000;
	CHECK_OK(ioctl(fd, VFIO_IOMMU_MAP_DMA, &map));
	/* they are ordinary areas of the compat IOAS */
	CHECK_OK(ioas_unmap(fd, id, 0x200000, 4 * PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, 4 * PAGE_SZ);

	unmap.argsz = 23;
	unmap.iova = 0x100000;
	unmap.size = 4 * PAGE_SZ;
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap));
	unmap.argsz = sizeof(unmap);
	unmap.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap));
	unmap.flags = VFIO_DMA_UNMAP_FLAG_VADDR;
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap));
	/* UNMAP_ALL needs iova 0 and size 0 */
	unmap.flags = VFIO_DMA_UNMAP_FLAG_ALL;
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap));
	unmap.flags = 0;
	CHECK_OK(ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap));
	CHECK_EQ(unmap.size, 4 * PAGE_SZ);
	/* an empty range is success with size 0 (unlike IOAS_UNMAP) */
	unmap.size = 4 * PAGE_SZ;
	CHECK_OK(ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap));
	CHECK_EQ(unmap.size, 0);

	map.flags = VFIO_DMA_MAP_FLAG_READ;
	map.iova = 0x300000;
	CHECK_OK(ioctl(fd, VFIO_IOMMU_MAP_DMA, &map));
	map.iova = 0x400000;
	CHECK_OK(ioctl(fd, VFIO_IOMMU_MAP_DMA, &map));
	unmap.flags = VFIO_DMA_UNMAP_FLAG_ALL;
	unmap.iova = 0;
	unmap.size = 0;
	CHECK_OK(ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &unmap));
	CHECK_EQ(unmap.size, 8 * PAGE_SZ);
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, id, 0, U64_MAX_ - 1, NULL));
}

/*
 * VFIO_IOMMU_GET_INFO with no domain: iova_pgsizes = all bits with the
 * sub-page ones folded into PAGE_SIZE; caps at offset 24: DMA_AVAIL (16
 * bytes padded, avail 0xffffffff) then IOVA_RANGE (one range {0, 2^64-1}).
 * A short argsz still succeeds and reports the size needed.
 */
TEST(iommu_get_info)
{
	unsigned char buf[256] __attribute__((aligned(8)));
	struct vfio_iommu_type1_info *info = (void *)buf;
	struct vfio_iommu_type1_info_dma_avail *avail;
	struct vfio_iommu_type1_info_cap_iova_range *range;
	__u32 id;

	REQUIRE(open_fresh() >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	REQUIRE_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &id));

	memset(buf, 0, sizeof(buf));
	info->argsz = 15;
	CHECK_ERRNO(EINVAL, ioctl(fd, VFIO_IOMMU_GET_INFO, info));

	/* argsz 16: only 16 bytes come back, argsz says what is needed */
	memset(buf, 0xee, sizeof(buf));
	info->argsz = 16;
	info->flags = 0;
	REQUIRE_OK(ioctl(fd, VFIO_IOMMU_GET_INFO, info));
	CHECK_EQ(info->argsz, 72);
	CHECK_EQ(info->flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
	CHECK_EQ(info->iova_pgsizes, 0xfffffffffffff000ULL);
	CHECK_EQ(info->cap_offset, 0xeeeeeeee);

	/* argsz 24: no room for caps, cap_offset 0 */
	memset(buf, 0, sizeof(buf));
	info->argsz = 24;
	REQUIRE_OK(ioctl(fd, VFIO_IOMMU_GET_INFO, info));
	CHECK_EQ(info->argsz, 72);
	CHECK_EQ(info->cap_offset, 0);

	memset(buf, 0, sizeof(buf));
	info->argsz = sizeof(buf);
	REQUIRE_OK(ioctl(fd, VFIO_IOMMU_GET_INFO, info));
	CHECK_EQ(info->argsz, 72);
	CHECK_EQ(info->cap_offset, 24);
	avail = (void *)(buf + 24);
	CHECK_EQ(avail->header.id, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
	CHECK_EQ(avail->header.version, 1);
	CHECK_EQ(avail->header.next, 40);
	CHECK_EQ(avail->avail, 0xffffffff);
	range = (void *)(buf + 40);
	CHECK_EQ(range->header.id, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
	CHECK_EQ(range->header.version, 1);
	CHECK_EQ(range->header.next, 0);
	CHECK_EQ(range->nr_iovas, 1);
	CHECK_EQ(range->iova_ranges[0].start, 0);
	CHECK_EQ(range->iova_ranges[0].end, U64_MAX_);
}

int main(void)
{
	h_init();
	RUN(container_ioctls_need_a_compat_ioas);
	RUN(set_iommu);
	RUN(map_unmap_dma);
	RUN(iommu_get_info);
	return h_done();
}
