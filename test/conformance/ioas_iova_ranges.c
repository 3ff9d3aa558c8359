/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_IOVA_RANGES (uapi.md §2.3, §4.4): the holes between reserved
 * ranges over [0, 2^64-1] and the IOVA alignment. A fresh IOAS has one range
 * {0, 2^64-1} with alignment 1. A too small array gives EMSGSIZE with the
 * struct (count and alignment) still written back. Neither mappings nor the
 * allowed list change the answer.
 */
#include "harness.h"

TEST(fresh_ioas_one_full_range)
{
	struct iommu_iova_range r[4];
	int fd = iommufd_open();
	__u64 align = 0;
	__u32 id, num = 4;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	memset(r, 0xcc, sizeof(r));
	REQUIRE_OK(ioas_iova_ranges(fd, id, r, &num, &align));
	CHECK_EQ(num, 1);
	CHECK_EQ(r[0].start, 0);
	CHECK_EQ(r[0].last, U64_MAX_);
	CHECK_EQ(align, 1);
	/* Only num entries are written; the rest of the array is untouched. */
	CHECK_EQ(r[1].start, 0xccccccccccccccccULL);
	CHECK_EQ(r[1].last, 0xccccccccccccccccULL);
	CHECK_EQ(r[3].last, 0xccccccccccccccccULL);
	close(fd);
}

TEST(too_small_is_emsgsize_with_count)
{
	struct iommu_ioas_iova_ranges cmd = { .size = sizeof(cmd) };
	int fd = iommufd_open();
	__u32 id;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));

	/* Capacity 0 (and no array at all): nothing is written to the array,
	 * the call fails, num_iovas and the alignment are still returned. */
	cmd.ioas_id = id;
	cmd.num_iovas = 0;
	cmd.allowed_iovas = 0;
	cmd.out_iova_alignment = 0xdead;
	CHECK_ERRNO(EMSGSIZE, ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
	CHECK_EQ(cmd.num_iovas, 1);
	CHECK_EQ(cmd.out_iova_alignment, 1);
	CHECK_EQ(cmd.ioas_id, id);

	/* Retry with the returned count works. */
	{
		struct iommu_iova_range r;

		cmd.allowed_iovas = (uintptr_t)&r;
		REQUIRE_OK(ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
		CHECK_EQ(cmd.num_iovas, 1);
		CHECK_EQ(r.start, 0);
		CHECK_EQ(r.last, U64_MAX_);
	}
	close(fd);
}

TEST(errors)
{
	struct iommu_ioas_iova_ranges cmd = { .size = sizeof(cmd) };
	struct iommu_iova_range r[2];
	int fd = iommufd_open();
	__u32 id;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));

	cmd.ioas_id = id;
	cmd.num_iovas = 2;
	cmd.allowed_iovas = (uintptr_t)r;

	cmd.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
	/* reserved is checked before the ID */
	cmd.ioas_id = id + 100;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
	cmd.__reserved = 0;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
	cmd.ioas_id = 0;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd));

	/* The array is written: a bad or read-only one is EFAULT. */
	cmd.ioas_id = id;
	cmd.allowed_iovas = (uintptr_t)h_unmapped_addr();
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
	cmd.allowed_iovas = 0;
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
	close(fd);
}

/* copy_to_user into memory the process cannot write is EFAULT too. */
TEST(readonly_array_is_efault)
{
	struct iommu_ioas_iova_ranges cmd = { .size = sizeof(cmd) };
	int fd = iommufd_open();
	void *ro = h_readonly_page();
	__u32 id;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	cmd.ioas_id = id;
	cmd.num_iovas = 2;
	cmd.allowed_iovas = (uintptr_t)ro;
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
	close(fd);
	munmap(ro, PAGE_SZ);
}

/* Areas are not reserved ranges and the allowed list is not reported. */
TEST(maps_and_allowed_list_not_reflected)
{
	struct iommu_iova_range allow[2] = {
		{ .start = 0x100000, .last = 0x1fffff },
		{ .start = 0x800000, .last = 0x8fffff },
	};
	struct iommu_iova_range r[4];
	void *mem = h_mmap(4 * PAGE_SZ);
	int fd = iommufd_open();
	__u64 align, iova;
	__u32 id, num;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_OK(ioas_map_fixed(fd, id, mem, 4 * PAGE_SZ, 0x40000));
	CHECK_OK(ioas_map_auto(fd, id, mem, PAGE_SZ, &iova));
	CHECK_OK(ioas_allow_iovas(fd, id, allow, 2));
	num = 4;
	REQUIRE_OK(ioas_iova_ranges(fd, id, r, &num, &align));
	CHECK_EQ(num, 1);
	CHECK_EQ(r[0].start, 0);
	CHECK_EQ(r[0].last, U64_MAX_);
	CHECK_EQ(align, 1);
	close(fd);
	munmap(mem, 4 * PAGE_SZ);
}

/* Turning huge pages off forces the alignment to PAGE_SIZE (§2.9); turning
 * them back on (no domain, no access) brings it back to 1. */
TEST(alignment_follows_huge_pages_option)
{
	struct iommu_iova_range r[1];
	int fd = iommufd_open();
	__u64 align;
	__u32 id, num;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	REQUIRE_OK(option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 0));
	num = 1;
	REQUIRE_OK(ioas_iova_ranges(fd, id, r, &num, &align));
	CHECK_EQ(align, PAGE_SZ);
	CHECK_EQ(num, 1);
	CHECK_EQ(r[0].start, 0);
	CHECK_EQ(r[0].last, U64_MAX_);
	/*
	 * Decision (kernel io_pagetable.c iopt_enable_large_pages): enabling
	 * recomputes the alignment from scratch, so with no domain and no
	 * access it drops back to 1 (uapi.md §4.4 "recomputes alignment").
	 */
	REQUIRE_OK(option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 1));
	num = 1;
	REQUIRE_OK(ioas_iova_ranges(fd, id, r, &num, &align));
	CHECK_EQ(align, 1);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(fresh_ioas_one_full_range);
	RUN(too_small_is_emsgsize_with_count);
	RUN(errors);
	RUN(readonly_array_is_efault);
	RUN(maps_and_allowed_list_not_reflected);
	RUN(alignment_follows_huge_pages_option);
	return h_done();
}
