/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_MAP without FIXED_IOVA: the automatic IOVA allocator (uapi.md
 * §4.3). Alignment A = min(next_pow2(length), lowest set bit of user_va) (or
 * next_pow2(length) when user_va is 0), capped at the THP size when the
 * kernel has THP, else PAGE_SIZE; A < iova_alignment is EINVAL. Candidate in
 * a free span starting at s: round_up(s, A) | (user_va % PAGE_SIZE). The
 * search runs first-fit, lowest address first, over [PAGE_SIZE,
 * 2^64-1-PAGE_SIZE] (never page 0, never the top page), inside the allowed
 * ranges when there are any; nothing fits -> ENOSPC. length 0 -> EINVAL (the
 * generic check), length >= 2^63-1 -> EOVERFLOW.
 */
#include "harness.h"

static int fd = -1;
static __u32 ioas;

static int setup(void)
{
	if (fd >= 0)
		close(fd);
	fd = iommufd_open();
	if (fd < 0)
		return -1;
	return ioas_alloc(fd, &ioas);
}

/* Maps without FIXED_IOVA; returns the IOVA, or ~0 with errno set. */
static __u64 amap(const void *va, __u64 len)
{
	__u64 iova = 0x5a5a5a5a;

	if (ioas_map(fd, ioas, MAP_RW, va, len, &iova))
		return U64_MAX_;
	return iova;
}

static __u64 unmap_all(void)
{
	__u64 unmapped = 0;

	if (ioas_unmap(fd, ioas, 0, U64_MAX_, &unmapped))
		return U64_MAX_;
	return unmapped;
}

TEST(first_fit_from_page_size)
{
	unsigned char *va = h_mmap_exact_align(8 * PAGE_SZ, PAGE_SZ);

	REQUIRE_OK(setup());
	CHECK_EQ(amap(va, PAGE_SZ), 0x1000);
	CHECK_EQ(amap(va, PAGE_SZ), 0x2000);
	CHECK_EQ(amap(va, 2 * PAGE_SZ), 0x3000);
	/* a freed hole is found again, lowest first */
	CHECK_OK(ioas_unmap(fd, ioas, 0x1000, PAGE_SZ, NULL));
	CHECK_EQ(amap(va, PAGE_SZ), 0x1000);
	CHECK_EQ(unmap_all(), 4 * PAGE_SZ);
}

/* IOVA 0 is free and allowed, but the allocator never returns it. */
TEST(never_page_zero)
{
	unsigned char *va = h_mmap_exact_align(PAGE_SZ, PAGE_SZ);

	REQUIRE_OK(setup());
	/* A = min(16, 0x1000) = 16: the first candidate is PAGE_SIZE */
	CHECK_EQ(amap(va, 0x10), 0x1000);
	CHECK_EQ(unmap_all(), 0x10);
	/* user_va 0: A = next_pow2(1) = 1 */
	CHECK_EQ(amap(NULL, 1), 0x1000);
	CHECK_EQ(unmap_all(), 1);
}

/* The IOVA gets the same offset in its page as user_va. */
TEST(in_page_offset_kept)
{
	unsigned char *va = h_mmap_exact_align(4 * PAGE_SZ, PAGE_SZ);

	REQUIRE_OK(setup());
	/* A = min(0x100, 1) = 1 */
	CHECK_EQ(amap(va + 0x123, 0x100), 0x1123);
	CHECK_EQ(unmap_all(), 0x100);
	/* A = min(0x1000, 0x80) = 0x80: round_up(0x1000, 0x80) | 0x80 */
	CHECK_EQ(amap(va + 0x80, 0x1000), 0x1080);
	CHECK_EQ(unmap_all(), 0x1000);
	/* A = min(0x4000, 0x800) = 0x800 */
	CHECK_EQ(amap(va + 0x800, 0x3000), 0x1800);
	CHECK_EQ(unmap_all(), 0x3000);
}

/*
 * The spec's candidate formula taken literally when the free span does not
 * start on a page boundary: round_up(s, A) | offset. After an area ending at
 * 0x1222 the span starts at 0x1223; A = 0x80, offset 0x80:
 * round_up(0x1223, 0x80) = 0x1280, | 0x80 = 0x1280.
 */
TEST(candidate_formula_unaligned_span)
{
	unsigned char *va = h_mmap_exact_align(4 * PAGE_SZ, PAGE_SZ);

	REQUIRE_OK(setup());
	CHECK_EQ(amap(va + 0x123, 0x100), 0x1123);
	CHECK_EQ(amap(va + 0x80, 0x1000), 0x1280);
	/* A = 1, offset 7: first fit is the span [0x1000, 0x1122] again,
	 * round_up(0x1000, 1) | 7 = 0x1007 */
	CHECK_EQ(amap(va + 0x7, 0x10), 0x1007);
	CHECK_EQ(unmap_all(), 0x1110);
}

/* Alignment from the address, at or below PAGE_SIZE (no THP dependence). */
TEST(alignment_from_source_address)
{
	unsigned char *va = h_mmap_exact_align(8 * PAGE_SZ, PAGE_SZ);

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, va, 0x800, 0x1000));
	/* A = min(0x4000, 0x1000) = 0x1000: round_up(0x1800, 0x1000) */
	CHECK_EQ(amap(va, 0x3000), 0x2000);
	/* A = min(0x2000, 0x800) = 0x800, offset 0x800: the span at 0x1800
	 * is too small, the next one starts at 0x5000 -> 0x5800 */
	CHECK_EQ(amap(va + 0x800, 0x2000), 0x5800);
	/* A = min(0x1000, 0x400) = 0x400, offset 0x400: the spans left at
	 * [0x1800, 0x1fff] (candidate 0x1c00) and [0x5000, 0x57ff] (0x5400)
	 * are too small; [0x7800, ...] gives 0x7800 | 0x400 = 0x7c00 */
	CHECK_EQ(amap(va + 0x400, 0x1000), 0x7c00);
	CHECK_EQ(unmap_all(), 0x800 + 0x3000 + 0x2000 + 0x1000);
}

/*
 * Alignments above PAGE_SIZE: capped at the THP size (2 MiB on x86) when the
 * kernel has transparent huge pages, else at PAGE_SIZE (uapi.md §4.3).
 * Decision: "has THP" is read from /sys/kernel/mm/transparent_hugepage,
 * which exists exactly when the kernel is built with THP.
 */
TEST(alignment_above_page_size)
{
	unsigned long long maxa = h_max_auto_align();
	unsigned char *va64k = h_mmap_exact_align(0x10000, 0x10000);
	unsigned char *va4m = h_mmap_exact_align(0x400000, 0x400000);

	h_note("automatic alignment cap 0x%llx", maxa);
	if (maxa != 0x200000 && maxa != PAGE_SZ)
		SKIP("unexpected THP size 0x%llx", maxa);
	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, va64k, PAGE_SZ, 0x1000));
	if (maxa == 0x200000) {
		/* A = 0x10000 */
		CHECK_EQ(amap(va64k, 0x10000), 0x10000);
		/* A = min(4 MiB, 4 MiB) capped to 2 MiB */
		CHECK_EQ(amap(va4m, 0x400000), 0x200000);
		/* user_va 0: A = next_pow2(0x3000) = 0x4000 */
		CHECK_EQ(amap(NULL, 0x3000), 0x4000);
	} else {
		/* everything capped to PAGE_SIZE: plain first fit */
		CHECK_EQ(amap(va64k, 0x10000), 0x2000);
		CHECK_EQ(amap(va4m, 0x400000), 0x12000);
		CHECK_EQ(amap(NULL, 0x3000), 0x412000);
	}
	CHECK_EQ(unmap_all(), PAGE_SZ + 0x10000 + 0x400000 + 0x3000);
}

TEST(skips_holes_that_are_too_small)
{
	unsigned char *va = h_mmap_exact_align(4 * PAGE_SZ, PAGE_SZ);

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, va, PAGE_SZ, 0x1000));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, va, PAGE_SZ, 0x3000));
	CHECK_EQ(amap(va, 2 * PAGE_SZ), 0x4000);
	/* an exact fit is taken */
	CHECK_EQ(amap(va, PAGE_SZ), 0x2000);
	CHECK_EQ(unmap_all(), 5 * PAGE_SZ);
}

TEST(allowed_ranges_honoured)
{
	struct iommu_iova_range allow[2] = {
		{ .start = 0x100000, .last = 0x1fffff },
		{ .start = 0x400000, .last = 0x4fffff },
	};
	unsigned char *va = h_mmap_exact_align(0x200000, PAGE_SZ);

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_allow_iovas(fd, ioas, allow, 2));
	/* too big for any allowed range */
	CHECK_EQ(amap(va, 0x200000), U64_MAX_);
	CHECK_EQ(errno, ENOSPC);
	CHECK_EQ(amap(va, 0x100000), 0x100000);
	CHECK_EQ(amap(va, 0x100000), 0x400000);
	CHECK_EQ(amap(va, PAGE_SZ), U64_MAX_);
	CHECK_EQ(errno, ENOSPC);
	CHECK_EQ(amap(NULL, 1), U64_MAX_);
	CHECK_EQ(errno, ENOSPC);
	/* FIXED_IOVA still maps outside the allowed ranges */
	CHECK_OK(ioas_map_fixed(fd, ioas, va, PAGE_SZ, 0x10000));
	CHECK_EQ(unmap_all(), 0x201000);
}

/* An allowed range covering page 0: the window still starts at PAGE_SIZE. */
TEST(allowed_range_at_zero)
{
	struct iommu_iova_range allow = { .start = 0, .last = 0x1fff };
	unsigned char *va = h_mmap_exact_align(PAGE_SZ, PAGE_SZ);

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_allow_iovas(fd, ioas, &allow, 1));
	CHECK_EQ(amap(va, PAGE_SZ), 0x1000);
	CHECK_EQ(amap(va, 1), U64_MAX_);
	CHECK_EQ(errno, ENOSPC);
	CHECK_EQ(unmap_all(), PAGE_SZ);
}

/* The top page [2^64-PAGE_SIZE, 2^64-1] is never chosen. */
TEST(never_top_page)
{
	struct iommu_iova_range allow = {
		.start = U64_MAX_ - 2 * PAGE_SZ + 1,
		.last = U64_MAX_ - 1,
	};
	unsigned char *va = h_mmap_exact_align(PAGE_SZ, PAGE_SZ);

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_allow_iovas(fd, ioas, &allow, 1));
	CHECK_EQ(amap(va, PAGE_SZ), U64_MAX_ - 2 * PAGE_SZ + 1);
	CHECK_EQ(amap(va, PAGE_SZ), U64_MAX_);
	CHECK_EQ(errno, ENOSPC);
	CHECK_EQ(amap(va + 1, 1), U64_MAX_);
	CHECK_EQ(errno, ENOSPC);
	CHECK_EQ(unmap_all(), PAGE_SZ);
}

/* The whole window taken by one (lazy) FIXED map: ENOSPC, nothing added. */
TEST(enospc_when_window_is_full)
{
	const __u64 len = U64_MAX_ - 2 * PAGE_SZ + 1; /* [0x1000, 2^64-0x1001] */

	REQUIRE_OK(setup());
	REQUIRE_OK(ioas_map_fixed(fd, ioas, (void *)0x1000, len, PAGE_SZ));
	CHECK_EQ(amap(NULL, 1), U64_MAX_);
	CHECK_EQ(errno, ENOSPC);
	CHECK_EQ(amap((void *)0x1000, PAGE_SZ), U64_MAX_);
	CHECK_EQ(errno, ENOSPC);
	/* page 0 and the top page are free, but only FIXED_IOVA reaches them */
	CHECK_OK(ioas_map_fixed(fd, ioas, (void *)0x1000, PAGE_SZ, 0));
	CHECK_OK(ioas_map_fixed(fd, ioas, (void *)0x1000, PAGE_SZ,
				U64_MAX_ - PAGE_SZ + 1));
	/* (unmapping all three at once would sum to 2^64 bytes) */
	CHECK_OK(ioas_unmap(fd, ioas, U64_MAX_ - PAGE_SZ + 1, PAGE_SZ, NULL));
	CHECK_EQ(unmap_all(), len + PAGE_SZ);
}

TEST(length_limits)
{
	__u64 iova = 0;

	REQUIRE_OK(setup());
	CHECK_ERRNO(EINVAL, ioas_map(fd, ioas, MAP_RW, (void *)0x1000, 0, &iova));
	CHECK_ERRNO(EOVERFLOW, ioas_map(fd, ioas, MAP_RW, (void *)0x1000,
					0x7fffffffffffffffULL, &iova));
	CHECK_ERRNO(EOVERFLOW, ioas_map(fd, ioas, MAP_RW, (void *)0x1000,
					0x8000000000000000ULL, &iova));
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, ioas, 0, U64_MAX_ - 1, NULL));
	/* just below the limit still works (nothing is pinned) */
	CHECK_EQ(amap((void *)0x1000, 0x7ffffffffffffffeULL), 0x1000);
	CHECK_EQ(unmap_all(), 0x7ffffffffffffffeULL);
}

/* A below the IOAS alignment is EINVAL (alignment PAGE_SIZE with huge pages
 * off). */
TEST(alignment_below_ioas_alignment)
{
	unsigned char *va = h_mmap_exact_align(2 * PAGE_SZ, PAGE_SZ);

	REQUIRE_OK(setup());
	REQUIRE_OK(option_set(fd, IOMMU_OPTION_HUGE_PAGES, ioas, 0));
	/* A = min(0x1000, 0x10) = 0x10 < 0x1000 */
	CHECK_EQ(amap(va + 0x10, PAGE_SZ), U64_MAX_);
	CHECK_EQ(errno, EINVAL);
	/* length not a multiple of the alignment */
	CHECK_EQ(amap(va, 0x800), U64_MAX_);
	CHECK_EQ(errno, EINVAL);
	CHECK_EQ(amap(va, PAGE_SZ), 0x1000);
	CHECK_EQ(unmap_all(), PAGE_SZ);
}

int main(void)
{
	h_init();
	RUN(first_fit_from_page_size);
	RUN(never_page_zero);
	RUN(in_page_offset_kept);
	RUN(candidate_formula_unaligned_span);
	RUN(alignment_from_source_address);
	RUN(alignment_above_page_size);
	RUN(skips_holes_that_are_too_small);
	RUN(allowed_ranges_honoured);
	RUN(allowed_range_at_zero);
	RUN(never_top_page);
	RUN(enospc_when_window_is_full);
	RUN(length_limits);
	RUN(alignment_below_ioas_alignment);
	return h_done();
}
