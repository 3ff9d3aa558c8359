/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_UNMAP (uapi.md §2.8, §4.5): the IOAS is looked up first
 * (ENOENT); (iova 0, length 2^64-1) unmaps everything and succeeds on an
 * empty IOAS; otherwise iova/length >= 2^64-1 EOVERFLOW, length 0 EINVAL,
 * iova+length-1 wrap EOVERFLOW; every area touched must lie inside the range
 * (else ENOENT), areas go one at a time in ascending order (a failure part
 * way leaves the earlier ones unmapped), and a range with nothing in it is
 * ENOENT. On success `length` is set to the bytes unmapped; on failure the
 * struct is not written back.
 */
#include "harness.h"

static int fd = -1;
static __u32 ioas;
static unsigned char *mem;

static int setup(void)
{
	if (fd >= 0)
		close(fd);
	fd = iommufd_open();
	if (fd < 0)
		return -1;
	if (!mem)
		mem = h_mmap_exact_align(16 * PAGE_SZ, PAGE_SZ);
	return ioas_alloc(fd, &ioas);
}

/* Runs UNMAP and returns the length field as it is afterwards. */
static int unmap_raw(__u32 id, __u64 iova, __u64 len, __u64 *out)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd),
		.ioas_id = id,
		.iova = iova,
		.length = len,
	};
	int rc = ioctl(fd, IOMMU_IOAS_UNMAP, &cmd);

	*out = cmd.length;
	return rc;
}

TEST(check_order)
{
	__u64 out;

	REQUIRE_OK(setup());
	/* the IOAS is looked up before anything else is checked */
	CHECK_ERRNO(ENOENT, unmap_raw(ioas + 1, 0, 0, &out));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas + 1, U64_MAX_, U64_MAX_, &out));
	CHECK_ERRNO(ENOENT, unmap_raw(0, 0, U64_MAX_, &out));
	CHECK_ERRNO(EOVERFLOW, unmap_raw(ioas, U64_MAX_, PAGE_SZ, &out));
	CHECK_ERRNO(EOVERFLOW, unmap_raw(ioas, 1, U64_MAX_, &out));
	CHECK_ERRNO(EOVERFLOW, unmap_raw(ioas, U64_MAX_, 0, &out));
	CHECK_ERRNO(EINVAL, unmap_raw(ioas, 0x1000, 0, &out));
	CHECK_ERRNO(EINVAL, unmap_raw(ioas, 0, 0, &out));
	CHECK_ERRNO(EOVERFLOW, unmap_raw(ioas, U64_MAX_ - 0x10, 0x100, &out));
	CHECK_ERRNO(EOVERFLOW, unmap_raw(ioas, 3, U64_MAX_ - 1, &out));
	/* [2, 2^64-1] does not wrap: an ordinary (empty) range */
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 2, U64_MAX_ - 1, &out));
}

TEST(unmap_all)
{
	__u64 out;

	REQUIRE_OK(setup());
	/* empty: success, length 0 */
	CHECK_OK(unmap_raw(ioas, 0, U64_MAX_, &out));
	CHECK_EQ(out, 0);
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 2 * PAGE_SZ, 0));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem + 0x10, 0x20, 0x123456789));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, U64_MAX_ - PAGE_SZ + 1));
	CHECK_OK(unmap_raw(ioas, 0, U64_MAX_, &out));
	CHECK_EQ(out, 3 * PAGE_SZ + 0x20);
	CHECK_OK(unmap_raw(ioas, 0, U64_MAX_, &out));
	CHECK_EQ(out, 0);
	/* "everything" is only the exact (0, 2^64-1) pair; this one is
	 * an ordinary range, and nothing is there */
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0, U64_MAX_ - 1, &out));
}

/* Nothing in the range: ENOENT, and `length` is not written back. */
TEST(empty_range_is_enoent)
{
	__u64 out;

	REQUIRE_OK(setup());
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x100000, PAGE_SZ, &out));
	CHECK_EQ(out, PAGE_SZ);
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x100000));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x101000, 0x10000, &out));
	CHECK_EQ(out, 0x10000);
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x0ff000, PAGE_SZ, &out));
	/* after it is gone, the same unmap fails */
	CHECK_OK(unmap_raw(ioas, 0x100000, PAGE_SZ, &out));
	CHECK_EQ(out, PAGE_SZ);
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x100000, PAGE_SZ, &out));
}

/* Areas are never split or truncated. */
TEST(cutting_an_area_is_enoent)
{
	__u64 out;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 4 * PAGE_SZ, 0x100000));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x100000, PAGE_SZ, &out));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x101000, PAGE_SZ, &out));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x103000, 0x10000, &out));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x0ff000, 2 * PAGE_SZ, &out));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x100000, 4 * PAGE_SZ - 1, &out));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x100001, 4 * PAGE_SZ, &out));
	CHECK_EQ(out, 4 * PAGE_SZ);
	/* still there in full */
	CHECK_OK(unmap_raw(ioas, 0x100000, 4 * PAGE_SZ, &out));
	CHECK_EQ(out, 4 * PAGE_SZ);
}

/* A superset covering several areas and holes unmaps them all. */
TEST(superset_with_holes)
{
	__u64 out;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 2 * PAGE_SZ, 0x104000));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem + 3, 5, 0x200003));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x300000));
	CHECK_OK(unmap_raw(ioas, 0x0f0000, 0x200000, &out));
	CHECK_EQ(out, 3 * PAGE_SZ + 5);
	/* byte-exact range around a byte-granular area */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem + 3, 5, 0x200003));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x200004, 5, &out));
	CHECK_OK(unmap_raw(ioas, 0x200003, 5, &out));
	CHECK_EQ(out, 5);
	CHECK_OK(unmap_raw(ioas, 0, U64_MAX_, &out));
	CHECK_EQ(out, PAGE_SZ);
}

/*
 * Not atomic: areas are removed in ascending IOVA order, so when a later
 * area sticks out of the range the earlier ones are already gone.
 */
TEST(failure_part_way_is_not_rolled_back)
{
	__u64 out;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x102000));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 4 * PAGE_SZ, 0x104000));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x100000, 0x6000, &out));
	/* not written back on failure */
	CHECK_EQ(out, 0x6000);
	/* the two covered areas went */
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x100000, PAGE_SZ, &out));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x102000, PAGE_SZ, &out));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, 4 * PAGE_SZ, 0x100000));
	/* the one sticking out is intact */
	CHECK_OK(unmap_raw(ioas, 0x104000, 4 * PAGE_SZ, &out));
	CHECK_EQ(out, 4 * PAGE_SZ);
	CHECK_OK(unmap_raw(ioas, 0, U64_MAX_, &out));
	CHECK_EQ(out, 4 * PAGE_SZ);
}

/* An area that starts before the range is the first one touched: nothing
 * is removed at all. */
TEST(first_area_sticking_out_removes_nothing)
{
	__u64 out;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 2 * PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x104000));
	CHECK_ERRNO(ENOENT, unmap_raw(ioas, 0x101000, 0x10000, &out));
	CHECK_OK(unmap_raw(ioas, 0, U64_MAX_, &out));
	CHECK_EQ(out, 3 * PAGE_SZ);
}

/* COPY areas and MAP areas are unmapped alike; the source's pages are
 * shared but each area goes on its own. */
TEST(copied_areas)
{
	__u64 out, dst_iova = 0x500000;
	__u32 other;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_alloc(fd, &other));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 4 * PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, other,
			     ioas, 4 * PAGE_SZ, &dst_iova, 0x100000));
	dst_iova = 0x200000;
	REQUIRE_OK(ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, ioas,
			     ioas, 2 * PAGE_SZ, &dst_iova, 0x101000));
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, ioas, 0x200000, PAGE_SZ, NULL));
	CHECK_OK(unmap_raw(ioas, 0x100000, 4 * PAGE_SZ, &out));
	CHECK_EQ(out, 4 * PAGE_SZ);
	CHECK_OK(unmap_raw(ioas, 0x200000, 2 * PAGE_SZ, &out));
	CHECK_EQ(out, 2 * PAGE_SZ);
	CHECK_OK(unmap_raw(other, 0, U64_MAX_, &out));
	CHECK_EQ(out, 4 * PAGE_SZ);
}

/* Map/unmap churn leaves no residue. */
TEST(churn)
{
	__u64 out, iova;
	int i;

	REQUIRE_OK(setup());
	for (i = 0; i < 500; i++) {
		REQUIRE_OK(ioas_map_auto(fd, ioas, mem, 2 * PAGE_SZ, &iova));
		CHECK_EQ(iova, 0x1000);
		REQUIRE_OK(unmap_raw(ioas, iova, 2 * PAGE_SZ, &out));
		CHECK_EQ(out, 2 * PAGE_SZ);
	}
	CHECK_OK(unmap_raw(ioas, 0, U64_MAX_, &out));
	CHECK_EQ(out, 0);
}

int main(void)
{
	h_init();
	RUN(check_order);
	RUN(unmap_all);
	RUN(empty_range_is_enoent);
	RUN(cutting_an_area_is_enoent);
	RUN(superset_with_holes);
	RUN(failure_part_way_is_not_rolled_back);
	RUN(first_area_sticking_out_removes_nothing);
	RUN(copied_areas);
	RUN(churn);
	return h_done();
}
