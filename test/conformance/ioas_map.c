/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_MAP with FIXED_IOVA and the argument checks common to all maps
 * (uapi.md §2.5, §4.2): check order EOPNOTSUPP (flags/reserved) ->
 * EOVERFLOW (iova/length >= 2^64-1) -> EINVAL (no READ/WRITE) -> ENOENT
 * (IOAS) -> EINVAL (length 0 / too long) -> placement (alignment EINVAL,
 * iova+length overflow EOVERFLOW, overlap EEXIST). Without a domain nothing
 * is pinned and user_va is not validated.
 */
#include "harness.h"

static int fd = -1;
static __u32 ioas;
static unsigned char *mem;
#define MEMSZ (64 * PAGE_SZ)

static int setup(void)
{
	if (fd >= 0)
		close(fd);
	fd = iommufd_open();
	if (fd < 0)
		return -1;
	if (!mem)
		mem = h_mmap_exact_align(MEMSZ, PAGE_SZ);
	return ioas_alloc(fd, &ioas);
}

static int map_raw(__u32 flags, __u32 id, __u32 reserved, __u64 va, __u64 len,
		   __u64 iova)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.ioas_id = id,
		.__reserved = reserved,
		.user_va = va,
		.length = len,
		.iova = iova,
	};

	return ioctl(fd, IOMMU_IOAS_MAP, &cmd);
}

#define FIX (IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW)
#define VA ((__u64)(uintptr_t)mem)

TEST(check_order)
{
	REQUIRE_OK(setup());
	/* flags / reserved first, even with a bad IOAS and bad numbers */
	CHECK_ERRNO(EOPNOTSUPP, map_raw(FIX | 8, ioas + 9, 0, VA, 0, U64_MAX_));
	CHECK_ERRNO(EOPNOTSUPP, map_raw(FIX, ioas + 9, 1, VA, 0, U64_MAX_));
	/* then EOVERFLOW, before the READ/WRITE check and the IOAS lookup */
	CHECK_ERRNO(EOVERFLOW, map_raw(IOMMU_IOAS_MAP_FIXED_IOVA, ioas + 9, 0,
				       VA, PAGE_SZ, U64_MAX_));
	CHECK_ERRNO(EOVERFLOW, map_raw(FIX, ioas, 0, VA, U64_MAX_, 0));
	/* iova is checked even without FIXED_IOVA */
	CHECK_ERRNO(EOVERFLOW, map_raw(MAP_RW, ioas, 0, VA, PAGE_SZ, U64_MAX_));
	/* then READ/WRITE, before the IOAS lookup */
	CHECK_ERRNO(EINVAL, map_raw(IOMMU_IOAS_MAP_FIXED_IOVA, ioas + 9, 0, VA,
				    PAGE_SZ, 0x1000));
	CHECK_ERRNO(EINVAL, map_raw(0, ioas, 0, VA, PAGE_SZ, 0));
	/* then the IOAS */
	CHECK_ERRNO(ENOENT, map_raw(FIX, ioas + 9, 0, VA, PAGE_SZ, 0x1000));
	CHECK_ERRNO(ENOENT, map_raw(FIX, 0, 0, VA, PAGE_SZ, 0x1000));
	CHECK_ERRNO(ENOENT, map_raw(FIX, ioas + 9, 0, VA, 0, 0x1000));
	/* then the length */
	CHECK_ERRNO(EINVAL, map_raw(FIX, ioas, 0, VA, 0, 0x1000));
	CHECK_ERRNO(EINVAL, map_raw(MAP_RW, ioas, 0, VA, 0, 0));
	/* length > SIZE_MAX - PAGE_SIZE */
	CHECK_ERRNO(EINVAL, map_raw(FIX, ioas, 0, 0, U64_MAX_ - PAGE_SZ + 1, 0));
	CHECK_ERRNO(EINVAL, map_raw(MAP_RW, ioas, 0, 0, U64_MAX_ - 1, 0));
	/* nothing got mapped */
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, ioas, 0, U64_MAX_ - 1, NULL));
}

/*
 * Decision (kernel pages.c iopt_alloc_user_pages, not in the spec): a
 * user_va + length that wraps past 2^64 is EOVERFLOW, checked before the
 * length limits.
 */
TEST(user_va_plus_length_overflow)
{
	REQUIRE_OK(setup());
	CHECK_ERRNO(EOVERFLOW, map_raw(FIX, ioas, 0, U64_MAX_ - PAGE_SZ + 1,
				       2 * PAGE_SZ, 0x100000));
	CHECK_ERRNO(EOVERFLOW, map_raw(MAP_RW, ioas, 0, U64_MAX_ - 0xff,
				       0x200, 0));
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, ioas, 0, U64_MAX_ - 1, NULL));
}

TEST(fixed_map_basic)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = FIX,
		.user_va = VA,
		.length = 4 * PAGE_SZ,
		.iova = 0x100000,
	};
	__u64 unmapped;

	REQUIRE_OK(setup());
	cmd.ioas_id = ioas;
	REQUIRE_OK(ioctl(fd, IOMMU_IOAS_MAP, &cmd));
	CHECK_EQ(cmd.iova, 0x100000);
	CHECK_EQ(cmd.length, 4 * PAGE_SZ);
	CHECK_EQ(cmd.user_va, VA);
	CHECK_OK(ioas_unmap(fd, ioas, 0x100000, 4 * PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, 4 * PAGE_SZ);

	/* READABLE only and WRITEABLE only are both fine */
	CHECK_OK(ioas_map(fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA |
			  IOMMU_IOAS_MAP_READABLE, mem, PAGE_SZ,
			  &(__u64){ 0x200000 }));
	CHECK_OK(ioas_map(fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA |
			  IOMMU_IOAS_MAP_WRITEABLE, mem, PAGE_SZ,
			  &(__u64){ 0x300000 }));
	/* IOVA 0 is usable with FIXED_IOVA (nothing is reserved) */
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0));
	CHECK_OK(ioas_unmap(fd, ioas, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, 3 * PAGE_SZ);
}

/* Alignment 1 (no domain): any byte IOVA, length and offset work; the top
 * of the address space is reachable with FIXED_IOVA. */
TEST(byte_granular_and_top_of_space)
{
	__u64 unmapped;

	REQUIRE_OK(setup());
	CHECK_OK(ioas_map_fixed(fd, ioas, mem + 0x123, 1, 0x12345));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem + 0x7, 0x1001, 0x20001));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, 1, U64_MAX_ - 1));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, U64_MAX_ - 2 * PAGE_SZ));
	CHECK_OK(ioas_unmap(fd, ioas, 0x12345, 1, &unmapped));
	CHECK_EQ(unmapped, 1);
	CHECK_OK(ioas_unmap(fd, ioas, 0x20001, 0x1001, &unmapped));
	CHECK_EQ(unmapped, 0x1001);
	CHECK_OK(ioas_unmap(fd, ioas, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, PAGE_SZ + 1);

	/* [2^64 - PAGE_SIZE, 2^64 - 1]: the last IOVA is 2^64-1, no overflow */
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, U64_MAX_ - PAGE_SZ + 1));
	/* iova + length - 1 past 2^64-1 wraps: EOVERFLOW (before EEXIST) */
	CHECK_ERRNO(EOVERFLOW, ioas_map_fixed(fd, ioas, mem, PAGE_SZ + 2,
					      U64_MAX_ - PAGE_SZ));
	CHECK_ERRNO(EOVERFLOW, ioas_map_fixed(fd, ioas, mem, 2 * PAGE_SZ,
					      U64_MAX_ - PAGE_SZ));
	CHECK_OK(ioas_unmap(fd, ioas, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, PAGE_SZ);
}

TEST(overlap_is_eexist)
{
	__u64 unmapped;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 4 * PAGE_SZ, 0x100000));
	/* same range, start inside, end inside, containing, single byte */
	CHECK_ERRNO(EEXIST, ioas_map_fixed(fd, ioas, mem, 4 * PAGE_SZ, 0x100000));
	CHECK_ERRNO(EEXIST, ioas_map_fixed(fd, ioas, mem, 4 * PAGE_SZ, 0x102000));
	CHECK_ERRNO(EEXIST, ioas_map_fixed(fd, ioas, mem, 4 * PAGE_SZ, 0x0fe000));
	CHECK_ERRNO(EEXIST, ioas_map_fixed(fd, ioas, mem, 16 * PAGE_SZ, 0x0f8000));
	CHECK_ERRNO(EEXIST, ioas_map_fixed(fd, ioas, mem, 1, 0x103fff));
	CHECK_ERRNO(EEXIST, ioas_map_fixed(fd, ioas, mem, 2, 0x0fffff));
	/* adjacent on both sides is fine */
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x104000));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x0ff000));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, 1, 0x0fefff));
	/* the same memory may be mapped many times */
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, 4 * PAGE_SZ, 0x200000));
	CHECK_OK(ioas_unmap(fd, ioas, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, 10 * PAGE_SZ + 1);
}

/*
 * Without any domain the pages are not pinned at MAP time and user_va is
 * not validated: memory that is not there, or not writable, maps fine.
 */
TEST(lazy_map_does_not_touch_memory)
{
	void *hole = h_unmapped_addr();
	void *ro = h_readonly_page();
	__u64 unmapped, iova = 0;

	REQUIRE_OK(setup());
	CHECK_OK(ioas_map_fixed(fd, ioas, hole, PAGE_SZ, 0x100000));
	CHECK_OK(ioas_map_fixed(fd, ioas, ro, PAGE_SZ, 0x200000));
	CHECK_OK(ioas_map_auto(fd, ioas, hole, PAGE_SZ, &iova));
	CHECK_OK(ioas_map_fixed(fd, ioas, (void *)0x1000, 1ULL << 40, 1ULL << 41));
	CHECK_OK(ioas_unmap(fd, ioas, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, 3 * PAGE_SZ + (1ULL << 40));
	munmap(ro, PAGE_SZ);
}

/* With huge pages off the IOAS alignment is PAGE_SIZE (§2.9): iova, length
 * and the in-page offset of user_va must all be multiples of it (§4.2). */
TEST(alignment_enforced_when_not_one)
{
	__u64 unmapped;

	REQUIRE_OK(setup());
	REQUIRE_OK(option_set(fd, IOMMU_OPTION_HUGE_PAGES, ioas, 0));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x100800));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x100001));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, PAGE_SZ + 1, 0x100000));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, 0x800, 0x100000));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem + 0x800, PAGE_SZ, 0x100000));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem + 1, PAGE_SZ, 0x100000));
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, ioas, 0, U64_MAX_ - 1, NULL));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem + PAGE_SZ, 2 * PAGE_SZ, 0x100000));
	CHECK_OK(ioas_unmap(fd, ioas, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, 2 * PAGE_SZ);
}

/* Each MAP makes exactly one area: two adjacent maps are two areas. */
TEST(each_map_is_one_area)
{
	__u64 unmapped;

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 2 * PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem + 2 * PAGE_SZ, 2 * PAGE_SZ,
				  0x102000));
	CHECK_OK(ioas_unmap(fd, ioas, 0x102000, 2 * PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, 2 * PAGE_SZ);
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, ioas, 0x100000, PAGE_SZ, NULL));
	CHECK_OK(ioas_unmap(fd, ioas, 0x100000, 2 * PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, 2 * PAGE_SZ);
}

int main(void)
{
	h_init();
	RUN(check_order);
	RUN(user_va_plus_length_overflow);
	RUN(fixed_map_basic);
	RUN(byte_granular_and_top_of_space);
	RUN(overlap_is_eexist);
	RUN(lazy_map_does_not_touch_memory);
	RUN(alignment_enforced_when_not_one);
	RUN(each_map_is_one_area);
	return h_done();
}
