/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Dirty tracking on mock domains (issue 15): HWPT_ALLOC with IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
 * HWPT_SET_DIRTY_TRACKING, the test interface's DIRTY op marking IOPTEs dirty, and
 * HWPT_GET_DIRTY_BITMAP reading them back into this program's memory at the granule it asks for,
 * clearing them unless IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, with every errno case. Pins are
 * checked with MD_CHECK_REFS along the way.
 */
#include "harness.h"
#include "selftest_helpers.h"

#define NPAGES 16
#define BUF_SIZE (NPAGES * PAGE_SZ)
#define IOVA MOCK_APERTURE_START

static unsigned char *g_buf;

static int check_refs(int fd, __u32 refs)
{
	return check_refs_of(fd, g_buf, BUF_SIZE, refs);
}

static int set_dirty(int fd, __u32 hwpt, __u32 flags)
{
	struct iommu_hwpt_set_dirty_tracking cmd = {
		.size = sizeof(cmd), .flags = flags, .hwpt_id = hwpt,
	};

	return ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &cmd);
}

static int get_bitmap(int fd, __u32 hwpt, __u32 flags, __u64 iova, __u64 length,
		      __u64 page_size, void *data)
{
	struct iommu_hwpt_get_dirty_bitmap cmd = {
		.size = sizeof(cmd), .hwpt_id = hwpt, .flags = flags, .iova = iova,
		.length = length, .page_size = page_size, .data = (uintptr_t)data,
	};

	return ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &cmd);
}

/* Marks dirty the 2 KiB IOPTEs of the bits set in `bits` (one bit per 2 KiB from IOVA). */
static int mock_dirty(int fd, __u32 hwpt, const __u64 *bits, __u64 nbits, __u64 *nr)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_DIRTY,
		.id = hwpt,
		.dirty = { .iova = IOVA, .length = nbits * MOCK_PAGE_SIZE,
			   .page_size = MOCK_PAGE_SIZE, .uptr = (uintptr_t)bits },
	};
	int rc = test_cmd(fd, &cmd);

	if (nr)
		*nr = rc ? 0 : cmd.dirty.out_nr_dirty;
	return rc;
}

struct setup {
	int fd;
	__u32 ioas, stdev, idev, hwpt;
};

/* A mock device on a dirty-tracking HWPT over an IOAS with g_buf mapped at IOVA. */
static int setup(struct setup *s)
{
	struct iommu_test_cmd probe = { .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
					.memory_limit = { .limit = 65536 } };
	__u32 pt;

	s->fd = iommufd_open();
	if (s->fd < 0 || ioas_alloc(s->fd, &s->ioas))
		return -1;
	if (test_cmd(s->fd, &probe) && errno == ENOTTY)
		return 1;
	if (mock_domain_flags(s->fd, s->ioas, 0, &s->stdev, NULL, &s->idev))
		return -1;
	if (hwpt_alloc(s->fd, s->idev, s->ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &s->hwpt))
		return -1;
	pt = s->hwpt;
	{
		struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = s->stdev,
					      .mock_domain_replace = { .pt_id = pt } };

		if (test_cmd(s->fd, &cmd))
			return -1;
	}
	return ioas_map_fixed(s->fd, s->ioas, g_buf, BUF_SIZE, IOVA);
}

#define SETUP(s)                                                           \
	do {                                                               \
		int _rc = setup(&(s));                                     \
		REQUIRE(_rc >= 0);                                         \
		if (_rc > 0)                                               \
			SKIP("no IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST)");   \
	} while (0)

TEST(dirty_bits_round_trip)
{
	struct setup s;
	__u64 seed[1] = { 0 }, bitmap[1], nr, dirty;

	SETUP(s);
	CHECK_OK(check_refs(s.fd, 1));
	/* DIRTY needs tracking on. */
	seed[0] = 1;
	CHECK_ERRNO(EINVAL, mock_dirty(s.fd, s.hwpt, seed, 64, &nr));
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));

	/* Half pages 0, 3 and 31 (the last) of the 32 mapped; 40 is past the mapping, and
	 * out_nr_dirty counts it too: every bit set in the seed is one set_dirty call. */
	seed[0] = (1ULL << 0) | (1ULL << 3) | (1ULL << 31) | (1ULL << 40);
	REQUIRE_OK(mock_dirty(s.fd, s.hwpt, seed, 64, &nr));
	CHECK_EQ(nr, 4);

	/* Read at 4 KiB granules: pages 0, 1 and 15, and whatever else shares their page-table
	 * entries (physically contiguous pages share one: within their aligned 16 KiB blocks
	 * here, pages 0-3 and 12-15). NO_CLEAR leaves them set. */
	bitmap[0] = 0;
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, IOVA, BUF_SIZE,
			      PAGE_SZ, bitmap));
	CHECK_EQ(bitmap[0] & 0x8003, 0x8003);
	CHECK_EQ(bitmap[0] & ~0xf00fULL, 0);
	dirty = bitmap[0];
	/* Bits are only set: what userspace had stays. */
	bitmap[0] = 1ULL << 7;
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, IOVA, BUF_SIZE, PAGE_SZ, bitmap));
	CHECK_EQ(bitmap[0], dirty | (1ULL << 7));
	/* That read cleared them. */
	bitmap[0] = 0;
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, IOVA, BUF_SIZE, PAGE_SZ, bitmap));
	CHECK_EQ(bitmap[0], 0);

	/* At 2 KiB granules, and over a sub-range starting at page 2. The mock's page table
	 * holds a 4 KiB page as one entry (two 2 KiB IOPTEs) at least, whose dirty bit covers
	 * all of it: dirtying half 9 shows halves 8 and 9. Pages that happen to be physically
	 * contiguous share a larger entry (8 or 16 KiB here), so more halves of their aligned
	 * 16 KiB block may show too, never any other. */
	seed[0] = (1ULL << 4) | (1ULL << 5) | (1ULL << 9);
	REQUIRE_OK(mock_dirty(s.fd, s.hwpt, seed, 64, &nr));
	CHECK_EQ(nr, 3);
	bitmap[0] = 0;
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, IOVA, BUF_SIZE,
			      MOCK_PAGE_SIZE, bitmap));
	CHECK_EQ(bitmap[0] & 0x330, 0x330);
	CHECK_EQ(bitmap[0] & ~0xffffULL, 0);
	bitmap[0] = 0;
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, IOVA + 2 * PAGE_SZ, 4 * PAGE_SZ, PAGE_SZ, bitmap));
	CHECK_EQ(bitmap[0] & 0x5, 0x5);
	CHECK_EQ(bitmap[0] & ~0xfULL, 0);

	/* With tracking off the IOPTEs are read all the same (7.3's page-table dirty ops do not
	 * ask): the bits set before stay until read. Enabling again starts from clean IOPTEs. */
	REQUIRE_OK(mock_dirty(s.fd, s.hwpt, seed, 64, &nr));
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, 0));
	CHECK_ERRNO(EINVAL, mock_dirty(s.fd, s.hwpt, seed, 64, &nr));
	bitmap[0] = 0;
	CHECK_OK(get_bitmap(s.fd, s.hwpt, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, IOVA, BUF_SIZE,
			    PAGE_SZ, bitmap));
	CHECK_EQ(bitmap[0] & 0x14, 0x14);
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	bitmap[0] = 0;
	REQUIRE_OK(get_bitmap(s.fd, s.hwpt, 0, IOVA, BUF_SIZE, PAGE_SZ, bitmap));
	CHECK_EQ(bitmap[0], 0);
	CHECK_OK(check_refs(s.fd, 1));
	close(s.fd);
}

TEST(dirty_errors)
{
	struct setup s;
	__u32 auto_hwpt, idev_nodirty;
	__u64 seed[1] = { 1 }, bitmap[1] = { 0 };

	SETUP(s);
	CHECK_ERRNO(EOPNOTSUPP, set_dirty(s.fd, s.hwpt, 2));
	CHECK_ERRNO(ENOENT, set_dirty(s.fd, s.ioas, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	/* Repeating either state is fine. */
	CHECK_OK(set_dirty(s.fd, s.hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));

	CHECK_ERRNO(EOPNOTSUPP, get_bitmap(s.fd, s.hwpt, 2, IOVA, BUF_SIZE, PAGE_SZ, bitmap));
	CHECK_ERRNO(ENOENT, get_bitmap(s.fd, s.ioas, 0, IOVA, BUF_SIZE, PAGE_SZ, bitmap));
	/* The range against the IOAS alignment (2 KiB), then against the page size. */
	CHECK_ERRNO(EINVAL, get_bitmap(s.fd, s.hwpt, 0, IOVA + 1024, PAGE_SZ, PAGE_SZ, bitmap));
	CHECK_ERRNO(EINVAL, get_bitmap(s.fd, s.hwpt, 0, IOVA + MOCK_PAGE_SIZE, PAGE_SZ, PAGE_SZ,
				       bitmap));
	CHECK_ERRNO(EINVAL, get_bitmap(s.fd, s.hwpt, 0, IOVA, BUF_SIZE, 0, bitmap));
	/* The bitmap's pages are pinned only to set a bit: with nothing dirty, memory that is not
	 * there or read-only is never touched, and the call succeeds. */
	CHECK_OK(get_bitmap(s.fd, s.hwpt, 0, IOVA, BUF_SIZE, PAGE_SZ, h_unmapped_addr()));
	CHECK_OK(get_bitmap(s.fd, s.hwpt, 0, IOVA, BUF_SIZE, PAGE_SZ, h_readonly_page()));
	/* A bit it cannot write is dropped, not an error, and the IOPTE is read and cleared. */
	{
		__u64 nr = 0, *ro = h_readonly_page();

		REQUIRE_OK(mock_dirty(s.fd, s.hwpt, seed, 1, &nr));
		CHECK_EQ(nr, 1);
		CHECK_OK(get_bitmap(s.fd, s.hwpt, 0, IOVA, BUF_SIZE, PAGE_SZ, ro));
		CHECK_EQ(ro[0], 0);
		bitmap[0] = 0;
		CHECK_OK(get_bitmap(s.fd, s.hwpt, 0, IOVA, BUF_SIZE, PAGE_SZ, bitmap));
		CHECK_EQ(bitmap[0], 0);
	}

	/* DIRTY's own checks. */
	{
		struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_DIRTY, .id = s.hwpt };

		cmd.dirty.iova = IOVA;
		cmd.dirty.length = BUF_SIZE;
		cmd.dirty.page_size = 0;
		cmd.dirty.uptr = (uintptr_t)seed;
		CHECK_ERRNO(EINVAL, test_cmd(s.fd, &cmd));
		cmd.dirty.page_size = PAGE_SZ;
		cmd.dirty.iova = IOVA + MOCK_PAGE_SIZE;
		CHECK_ERRNO(EINVAL, test_cmd(s.fd, &cmd));
		cmd.dirty.iova = IOVA;
		cmd.dirty.uptr = 0;
		CHECK_ERRNO(EINVAL, test_cmd(s.fd, &cmd));
		cmd.dirty.uptr = (uintptr_t)h_unmapped_addr();
		CHECK_ERRNO(EFAULT, test_cmd(s.fd, &cmd));
		cmd.dirty.uptr = (uintptr_t)seed;
		cmd.id = s.ioas;
		CHECK_ERRNO(ENOENT, test_cmd(s.fd, &cmd));
	}

	/* An auto domain has no dirty tracking. */
	REQUIRE_OK(mock_domain_flags(s.fd, s.ioas, 0, NULL, &auto_hwpt, NULL));
	CHECK(auto_hwpt != s.hwpt);
	CHECK_ERRNO(EOPNOTSUPP, set_dirty(s.fd, auto_hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	CHECK_ERRNO(EOPNOTSUPP, get_bitmap(s.fd, auto_hwpt, 0, IOVA, BUF_SIZE, PAGE_SZ, bitmap));

	/* A device without dirty tracking: no such HWPT for it, and no attach to one. */
	REQUIRE_OK(mock_domain_flags(s.fd, s.ioas, MOCK_FLAGS_DEVICE_NO_DIRTY, NULL, NULL,
				     &idev_nodirty));
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc(s.fd, idev_nodirty, s.ioas,
					   IOMMU_HWPT_ALLOC_DIRTY_TRACKING, NULL));
	CHECK_ERRNO(EINVAL, mock_domain_flags(s.fd, s.hwpt, MOCK_FLAGS_DEVICE_NO_DIRTY, NULL, NULL,
					      NULL));
	CHECK_OK(check_refs(s.fd, 1));
	close(s.fd);
}

TEST(dirty_op_range_checks)
{
	struct setup s;
	__u64 seed[1] = { 1 };
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_DIRTY };

	SETUP(s);
	/* More than a 16 MiB bitmap's worth of pages is EOVERFLOW, before the HWPT is looked up. */
	cmd.id = s.ioas;
	cmd.dirty.iova = IOVA;
	cmd.dirty.page_size = PAGE_SZ;
	cmd.dirty.length = ((16ULL << 20) * 8 + 1) * PAGE_SZ;
	cmd.dirty.uptr = (uintptr_t)seed;
	CHECK_ERRNO(EOVERFLOW, test_cmd(s.fd, &cmd));
	cmd.dirty.length = (16ULL << 20) * 8 * PAGE_SZ;
	CHECK_ERRNO(ENOENT, test_cmd(s.fd, &cmd));
	/* A bitmap of 3 bits reads one byte; bits past the range are not looked at. */
	REQUIRE_OK(set_dirty(s.fd, s.hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	seed[0] = 0xff;
	REQUIRE_OK(mock_dirty(s.fd, s.hwpt, seed, 3, NULL));
	{
		__u64 nr = 0;

		REQUIRE_OK(mock_dirty(s.fd, s.hwpt, seed, 3, &nr));
		CHECK_EQ(nr, 3);
	}
	CHECK_OK(check_refs(s.fd, 1));
	close(s.fd);
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0x3c, BUF_SIZE);
	RUN(dirty_bits_round_trip);
	RUN(dirty_errors);
	RUN(dirty_op_range_checks);
	return h_done();
}
