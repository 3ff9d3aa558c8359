// exec-args: --platform examples/platforms/dirty-tracking.json
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Dirty tracking on an IOMMU unit that has it (issue 15): on this platform dmar0 reports
 * IOMMU_HW_CAP_DIRTY_TRACKING, a HWPT allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING tracks, and
 * an edu device's DMA writes through it set the dirty bits HWPT_GET_DIRTY_BITMAP reports, at
 * page granules, cleared on read unless NO_CLEAR. DMA reads set nothing, nor do writes while
 * tracking is off. An auto domain has no tracking.
 */
#include "harness.h"
#include "edu_helpers.h"

#define NPAGES 16
#define IOVA 0x100000ULL
#define PG(i) (g_mem + (size_t)(i) * PAGE_SZ)

static unsigned char *g_mem;

static int set_dirty(int fd, __u32 hwpt, __u32 flags)
{
	struct iommu_hwpt_set_dirty_tracking cmd = {
		.size = sizeof(cmd), .flags = flags, .hwpt_id = hwpt,
	};

	return ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &cmd);
}

static int get_bitmap(int fd, __u32 hwpt, __u32 flags, __u64 *bitmap)
{
	struct iommu_hwpt_get_dirty_bitmap cmd = {
		.size = sizeof(cmd), .hwpt_id = hwpt, .flags = flags, .iova = IOVA,
		.length = NPAGES * PAGE_SZ, .page_size = PAGE_SZ, .data = (uintptr_t)bitmap,
	};

	*bitmap = 0;
	return ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &cmd);
}

struct setup {
	int fd;
	__u32 ioas, hwpt;
	struct edu_dev d;
};

/* edu 0 bound, attached to a dirty-tracking HWPT over an IOAS with g_mem mapped at IOVA. */
static int setup(struct setup *s, __u32 alloc_flags)
{
	s->d.fd = -1;
	s->fd = iommufd_open();
	if (s->fd < 0 || ioas_alloc(s->fd, &s->ioas))
		return -1;
	if (edu_open("/dev/vfio/devices/vfio0", s->fd, 0, &s->d))
		return -1;
	if (hwpt_alloc(s->fd, s->d.devid, s->ioas, alloc_flags, &s->hwpt))
		return -1;
	s->d.hwpt = s->hwpt;
	if (vfio_attach(s->d.fd, &s->d.hwpt))
		return -1;
	if (ioas_map_fixed(s->fd, s->ioas, g_mem, NPAGES * PAGE_SZ, IOVA))
		return -1;
	return edu_set_bus_master(s->d.fd, 1);
}

static void teardown(struct setup *s)
{
	edu_close(&s->d);
	close(s->fd);
}

TEST(capability_is_reported)
{
	struct iommu_hw_info info = { .size = sizeof(info) };
	struct setup s;

	REQUIRE_OK(setup(&s, IOMMU_HWPT_ALLOC_DIRTY_TRACKING));
	info.dev_id = s.d.devid;
	REQUIRE_OK(ioctl(s.fd, IOMMU_GET_HW_INFO, &info));
	CHECK_EQ(info.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING, IOMMU_HW_CAP_DIRTY_TRACKING);
	teardown(&s);
}

TEST(dma_writes_show_in_the_bitmap)
{
	struct setup s;
	__u64 bitmap;

	REQUIRE_OK(setup(&s, IOMMU_HWPT_ALLOC_DIRTY_TRACKING));
	fill_pattern(PG(0), PAGE_SZ, 7);
	memset(PG(1), 0, (NPAGES - 1) * PAGE_SZ);
	/* Tracking off: reading the bitmap is EINVAL. */
	CHECK_ERRNO(EINVAL, get_bitmap(s.fd, s.hwpt, 0, &bitmap));
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, &bitmap));
	CHECK_EQ(bitmap, 0);

	/* A read of page 0 into the device marks nothing. */
	REQUIRE_OK(edu_dma_in(s.d.fd, IOVA, 0, PAGE_SZ));
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, &bitmap));
	CHECK_EQ(bitmap, 0);

	/* Writes to page 3, and to pages 10-11 (one transfer across the boundary). */
	REQUIRE_OK(edu_dma_out(s.d.fd, 0, IOVA + 3 * PAGE_SZ, PAGE_SZ));
	REQUIRE_OK(edu_dma_out(s.d.fd, 0, IOVA + 10 * PAGE_SZ + 0x800, PAGE_SZ));
	CHECK(memcmp(PG(3), PG(0), PAGE_SZ) == 0);
	CHECK(memcmp(PG(10) + 0x800, PG(0), PAGE_SZ) == 0);
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, &bitmap));
	CHECK_EQ(bitmap, (1ULL << 3) | (1ULL << 10) | (1ULL << 11));
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, &bitmap));
	CHECK_EQ(bitmap, (1ULL << 3) | (1ULL << 10) | (1ULL << 11));
	/* Cleared by that read. */
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, &bitmap));
	CHECK_EQ(bitmap, 0);

	/* With tracking off a write leaves no mark, and enabling starts clean. */
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, 0));
	REQUIRE_OK(edu_dma_out(s.d.fd, 0, IOVA + 5 * PAGE_SZ, PAGE_SZ));
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, &bitmap));
	CHECK_EQ(bitmap, 0);
	/* A write marked before tracking is turned off and on again is forgotten. */
	REQUIRE_OK(edu_dma_out(s.d.fd, 0, IOVA + 6 * PAGE_SZ, PAGE_SZ));
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, 0));
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, &bitmap));
	CHECK_EQ(bitmap, 0);
	teardown(&s);
}

TEST(a_domain_without_tracking)
{
	struct setup s;
	__u64 bitmap;

	/* Allocated without the flag: no dirty ops. */
	REQUIRE_OK(setup(&s, 0));
	CHECK_ERRNO(EOPNOTSUPP, set_dirty(s.fd, s.hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	CHECK_ERRNO(EOPNOTSUPP, get_bitmap(s.fd, s.hwpt, 0, &bitmap));
	teardown(&s);
}

int main(void)
{
	h_init();
	g_mem = h_mmap(NPAGES * PAGE_SZ);
	RUN(capability_is_reported);
	RUN(dma_writes_show_in_the_bitmap);
	RUN(a_domain_without_tracking);
	return h_done();
}
