/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_COPY (uapi.md §2.7, §4.6). Check order: unknown flags
 * EOPNOTSUPP -> length/src_iova/dst_iova >= 2^64-1 EOVERFLOW -> no
 * READ/WRITE EINVAL -> source IOAS ENOENT -> length 0 EINVAL -> src range
 * overflow EOVERFLOW -> source not covered by a gap-free run of areas ENOENT
 * -> destination IOAS ENOENT -> placement as MAP (EEXIST, EINVAL, ENOSPC)
 * -> WRITEABLE from a read-only source EPERM. The destination gets one area
 * per source area piece.
 */
#include "harness.h"

static int fd = -1;
static __u32 src, dst;
static unsigned char *mem;	/* lowest set bit of the address: 0x2000 */

#define COPY_FIX (IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW)

static int setup(void)
{
	if (fd >= 0)
		close(fd);
	fd = iommufd_open();
	if (fd < 0)
		return -1;
	if (!mem)
		mem = h_mmap_exact_align(32 * PAGE_SZ, 0x2000);
	if (ioas_alloc(fd, &src) || ioas_alloc(fd, &dst))
		return -1;
	return 0;
}

static int copy_raw(__u32 flags, __u32 d, __u32 s, __u64 len, __u64 dst_iova,
		    __u64 src_iova)
{
	struct iommu_ioas_copy cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.dst_ioas_id = d,
		.src_ioas_id = s,
		.length = len,
		.dst_iova = dst_iova,
		.src_iova = src_iova,
	};

	return ioctl(fd, IOMMU_IOAS_COPY, &cmd);
}

static __u64 unmap_len(__u32 id, __u64 iova, __u64 len)
{
	__u64 unmapped = 0;

	if (ioas_unmap(fd, id, iova, len, &unmapped))
		return U64_MAX_;
	return unmapped;
}

TEST(check_order)
{
	__u32 bad = 99;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, 4 * PAGE_SZ, 0x100000));

	CHECK_ERRNO(EOPNOTSUPP, copy_raw(COPY_FIX | 8, bad, bad, 0, U64_MAX_, 0));
	CHECK_ERRNO(EOVERFLOW, copy_raw(COPY_FIX, bad, bad, U64_MAX_, 0, 0));
	CHECK_ERRNO(EOVERFLOW, copy_raw(COPY_FIX, bad, bad, PAGE_SZ, 0, U64_MAX_));
	CHECK_ERRNO(EOVERFLOW, copy_raw(COPY_FIX, bad, bad, PAGE_SZ, U64_MAX_, 0));
	/* dst_iova is checked even without FIXED_IOVA */
	CHECK_ERRNO(EOVERFLOW, copy_raw(MAP_RW, dst, src, PAGE_SZ, U64_MAX_,
					0x100000));
	CHECK_ERRNO(EINVAL, copy_raw(IOMMU_IOAS_MAP_FIXED_IOVA, bad, bad,
				     PAGE_SZ, 0, 0));
	CHECK_ERRNO(ENOENT, copy_raw(COPY_FIX, bad, bad, 0, 0, 0));
	CHECK_ERRNO(ENOENT, copy_raw(COPY_FIX, dst, bad, PAGE_SZ, 0, 0x100000));
	/* the source is resolved before the destination */
	CHECK_ERRNO(EINVAL, copy_raw(COPY_FIX, bad, src, 0, 0, 0x100000));
	CHECK_ERRNO(EOVERFLOW, copy_raw(COPY_FIX, bad, src, 0x100,
					0, U64_MAX_ - 0x10));
	CHECK_ERRNO(ENOENT, copy_raw(COPY_FIX, bad, src, PAGE_SZ, 0, 0x200000));
	CHECK_ERRNO(ENOENT, copy_raw(COPY_FIX, bad, src, PAGE_SZ, 0x800000,
				     0x100000));
	CHECK_ERRNO(ENOENT, copy_raw(COPY_FIX, 0, src, PAGE_SZ, 0x800000,
				     0x100000));
	/* nothing appeared in the destination */
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, dst, 0, U64_MAX_ - 1, NULL));
}

TEST(copy_whole_area_fixed)
{
	__u64 dst_iova = 0x800000;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, 4 * PAGE_SZ, 0x100000));
	CHECK_OK(ioas_copy(fd, COPY_FIX, dst, src, 4 * PAGE_SZ, &dst_iova,
			   0x100000));
	CHECK_EQ(dst_iova, 0x800000);
	/* it is one area of exactly that size */
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, dst, 0x800000, PAGE_SZ, NULL));
	CHECK_EQ(unmap_len(dst, 0x800000, 4 * PAGE_SZ), 4 * PAGE_SZ);
	/* the source is untouched */
	CHECK_EQ(unmap_len(src, 0x100000, 4 * PAGE_SZ), 4 * PAGE_SZ);
}

/* Any sub-range of a mapped area may be copied (decision: the code's rule,
 * uapi.md §2.7, not the header's "exactly match"). */
TEST(copy_sub_range)
{
	__u64 dst_iova = 0x800000;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, 4 * PAGE_SZ, 0x100000));
	CHECK_OK(ioas_copy(fd, COPY_FIX, dst, src, 2 * PAGE_SZ, &dst_iova,
			   0x101000));
	CHECK_EQ(unmap_len(dst, 0x800000, 2 * PAGE_SZ), 2 * PAGE_SZ);
	dst_iova = 0x900000;
	CHECK_OK(ioas_copy(fd, COPY_FIX, dst, src, 0x123, &dst_iova, 0x101234));
	CHECK_EQ(unmap_len(dst, 0x900000, 0x123), 0x123);
}

/* A run of adjacent areas copies as one call; the destination keeps the
 * source's area boundaries. */
TEST(copy_across_adjacent_areas)
{
	__u64 dst_iova = 0x800000;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, 2 * PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, src, mem + 8 * PAGE_SZ, 2 * PAGE_SZ,
				  0x102000));
	CHECK_OK(ioas_copy(fd, COPY_FIX, dst, src, 2 * PAGE_SZ, &dst_iova,
			   0x101000));
	/* two areas of one page each */
	CHECK_EQ(unmap_len(dst, 0x800000, PAGE_SZ), PAGE_SZ);
	CHECK_EQ(unmap_len(dst, 0x801000, PAGE_SZ), PAGE_SZ);
	/* the whole run of three pages... */
	dst_iova = 0x900000;
	CHECK_OK(ioas_copy(fd, COPY_FIX, dst, src, 4 * PAGE_SZ, &dst_iova,
			   0x100000));
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, dst, 0x900000, PAGE_SZ, NULL));
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, dst, 0x901000, 2 * PAGE_SZ, NULL));
	CHECK_EQ(unmap_len(dst, 0x900000, 2 * PAGE_SZ), 2 * PAGE_SZ);
	CHECK_EQ(unmap_len(dst, 0x902000, 2 * PAGE_SZ), 2 * PAGE_SZ);
}

TEST(source_holes_are_enoent)
{
	__u64 dst_iova = 0x800000;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, PAGE_SZ, 0x102000));
	/* gap in the middle */
	CHECK_ERRNO(ENOENT, ioas_copy(fd, COPY_FIX, dst, src, 3 * PAGE_SZ,
				      &dst_iova, 0x100000));
	/* starts in a hole */
	CHECK_ERRNO(ENOENT, ioas_copy(fd, COPY_FIX, dst, src, 2 * PAGE_SZ,
				      &dst_iova, 0x101000));
	/* runs past the end of the last area */
	CHECK_ERRNO(ENOENT, ioas_copy(fd, COPY_FIX, dst, src, PAGE_SZ + 1,
				      &dst_iova, 0x102000));
	/* one byte before the first area */
	CHECK_ERRNO(ENOENT, ioas_copy(fd, COPY_FIX, dst, src, PAGE_SZ,
				      &dst_iova, 0x0fffff));
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, dst, 0, U64_MAX_ - 1, NULL));
}

TEST(destination_placement)
{
	__u64 dst_iova = 0;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, 4 * PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, dst, mem, 4 * PAGE_SZ, 0x800000));
	dst_iova = 0x803000;
	CHECK_ERRNO(EEXIST, ioas_copy(fd, COPY_FIX, dst, src, 4 * PAGE_SZ,
				      &dst_iova, 0x100000));
	/* src == dst works, and overlapping itself is EEXIST */
	dst_iova = 0x100000;
	CHECK_ERRNO(EEXIST, ioas_copy(fd, COPY_FIX, src, src, 4 * PAGE_SZ,
				      &dst_iova, 0x100000));
	dst_iova = 0x200000;
	CHECK_OK(ioas_copy(fd, COPY_FIX, src, src, 4 * PAGE_SZ, &dst_iova,
			   0x100000));
	CHECK_EQ(unmap_len(src, 0x200000, 4 * PAGE_SZ), 4 * PAGE_SZ);
	/* iova + length - 1 wrapping */
	dst_iova = U64_MAX_ - PAGE_SZ;
	CHECK_ERRNO(EOVERFLOW, ioas_copy(fd, COPY_FIX, dst, src, 2 * PAGE_SZ,
					 &dst_iova, 0x100000));
}

/*
 * Automatic destination IOVA: alignment from the first source chunk's
 * address (user_va + offset into the area), in-page offset kept.
 */
TEST(destination_automatic)
{
	unsigned long long maxa = h_max_auto_align();
	__u64 dst_iova = 0;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, 8 * PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, src, mem + 0x100, 0x200, 0x200100));

	/* chunk address = mem + 0x1000 (lowest bit 0x1000):
	 * A = min(0x2000, 0x1000) -> [0x1000, 0x2fff] */
	CHECK_OK(ioas_copy(fd, MAP_RW, dst, src, 2 * PAGE_SZ, &dst_iova,
			   0x101000));
	CHECK_EQ(dst_iova, 0x1000);
	/* chunk address = mem (lowest bit 0x2000): A = min(0x4000, 0x2000)
	 * = 0x2000 -> round_up(0x3000, 0x2000) = 0x4000; PAGE_SIZE on a
	 * kernel without THP -> 0x3000 */
	CHECK_OK(ioas_copy(fd, MAP_RW, dst, src, 4 * PAGE_SZ, &dst_iova,
			   0x100000));
	CHECK_EQ(dst_iova, maxa >= 0x2000 ? 0x4000 : 0x3000);
	/* chunk address mem + 0x180: A = min(0x80, 0x80), offset 0x180:
	 * first span [0x3000, 0x3fff] (THP) or [0x7000, ...] */
	CHECK_OK(ioas_copy(fd, MAP_RW, dst, src, 0x80, &dst_iova, 0x200180));
	CHECK_EQ(dst_iova, maxa >= 0x2000 ? 0x3180 : 0x7180);
	CHECK_OK(ioas_unmap(fd, dst, 0, U64_MAX_, &dst_iova));
	CHECK_EQ(dst_iova, 6 * PAGE_SZ + 0x80);
}

/* WRITEABLE from a source mapped without WRITEABLE is EPERM (after the
 * placement checks); READABLE works. */
TEST(write_from_read_only_source_is_eperm)
{
	__u64 dst_iova = 0;

	REQUIRE_OK(setup());
	dst_iova = 0x100000;
	REQUIRE_OK(ioas_map(fd, src, IOMMU_IOAS_MAP_FIXED_IOVA |
			    IOMMU_IOAS_MAP_READABLE, mem, 2 * PAGE_SZ, &dst_iova));
	REQUIRE_OK(ioas_map_fixed(fd, dst, mem, PAGE_SZ, 0x900000));
	dst_iova = 0x800000;
	CHECK_ERRNO(EPERM, ioas_copy(fd, COPY_FIX, dst, src, 2 * PAGE_SZ,
				     &dst_iova, 0x100000));
	CHECK_ERRNO(EPERM, ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA |
				     IOMMU_IOAS_MAP_WRITEABLE, dst, src,
				     2 * PAGE_SZ, &dst_iova, 0x100000));
	/* placement failures win over EPERM */
	dst_iova = 0x900000;
	CHECK_ERRNO(EEXIST, ioas_copy(fd, COPY_FIX, dst, src, 2 * PAGE_SZ,
				      &dst_iova, 0x100000));
	dst_iova = 0x800000;
	CHECK_OK(ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA |
			   IOMMU_IOAS_MAP_READABLE, dst, src, 2 * PAGE_SZ,
			   &dst_iova, 0x100000));
	CHECK_EQ(unmap_len(dst, 0x800000, 2 * PAGE_SZ), 2 * PAGE_SZ);
	/* a writable source may be copied read-only */
	dst_iova = 0x800000;
	CHECK_OK(ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA |
			   IOMMU_IOAS_MAP_READABLE, src, dst, PAGE_SZ,
			   &dst_iova, 0x900000));
}

/* Copies live on their own: unmapping or destroying the source keeps them. */
TEST(copies_are_independent)
{
	__u32 third;
	__u64 dst_iova = 0x800000;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_alloc(fd, &third));
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, 4 * PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_copy(fd, COPY_FIX, dst, src, 4 * PAGE_SZ, &dst_iova,
			     0x100000));
	CHECK_EQ(unmap_len(src, 0x100000, 4 * PAGE_SZ), 4 * PAGE_SZ);
	/* copy of the copy */
	dst_iova = 0x300000;
	CHECK_OK(ioas_copy(fd, COPY_FIX, third, dst, 4 * PAGE_SZ, &dst_iova,
			   0x800000));
	CHECK_OK(iommu_destroy(fd, dst));
	CHECK_EQ(unmap_len(third, 0x300000, 4 * PAGE_SZ), 4 * PAGE_SZ);
}

/* With huge pages off in the destination (alignment PAGE_SIZE) unaligned
 * pieces cannot go there. */
TEST(destination_alignment)
{
	__u64 dst_iova = 0;

	REQUIRE_OK(setup());
	REQUIRE_OK(option_set(fd, IOMMU_OPTION_HUGE_PAGES, dst, 0));
	REQUIRE_OK(ioas_map_fixed(fd, src, mem, 4 * PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, src, mem + 0x100, PAGE_SZ, 0x200100));
	dst_iova = 0x800800;
	CHECK_ERRNO(EINVAL, ioas_copy(fd, COPY_FIX, dst, src, PAGE_SZ,
				      &dst_iova, 0x100000));
	dst_iova = 0x800000;
	CHECK_ERRNO(EINVAL, ioas_copy(fd, COPY_FIX, dst, src, 0x800,
				      &dst_iova, 0x100000));
	/* the source piece starts 0x100 into its page */
	CHECK_ERRNO(EINVAL, ioas_copy(fd, COPY_FIX, dst, src, PAGE_SZ,
				      &dst_iova, 0x200100));
	CHECK_OK(ioas_copy(fd, COPY_FIX, dst, src, PAGE_SZ, &dst_iova,
			   0x101000));
	CHECK_EQ(unmap_len(dst, 0x800000, PAGE_SZ), PAGE_SZ);
}

int main(void)
{
	h_init();
	RUN(check_order);
	RUN(copy_whole_area_fixed);
	RUN(copy_sub_range);
	RUN(copy_across_adjacent_areas);
	RUN(source_holes_are_enoent);
	RUN(destination_placement);
	RUN(destination_automatic);
	RUN(write_from_read_only_source_is_eperm);
	RUN(copies_are_independent);
	RUN(destination_alignment);
	return h_done();
}
