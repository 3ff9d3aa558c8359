/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * HW queues of the mock vIOMMU (IOMMU_HW_QUEUE_ALLOC of IOMMU_HW_QUEUE_TYPE_SELFTEST): the checks
 * before the vIOMMU, the queue memory pinned through an internal access on the nesting parent's
 * IOAS (a hole is ENOENT, a write-only mapping EPERM, a range that rounds past 2^64 ERANGE, a
 * page array kvmalloc refuses ENOMEM), the mock driver's index rules (at most two, queue 1 after
 * queue 0), the pinned range locked against IOMMU_IOAS_UNMAP, and the destroy order: queue 1
 * holds queue 0, every queue holds its vIOMMU.
 */
#include "harness.h"
#include "nested_helpers.h"

#define NPAGES 4
#define BUF_SIZE (NPAGES * PAGE_SZ)
#define IOVA MOCK_APERTURE_START

static unsigned char *g_buf;

#define close_and_check(fd) mock_close_and_check(fd, g_buf, BUF_SIZE)

/* What is checked before the vIOMMU's driver, and how the queue's memory is pinned. */
TEST(hw_queue_alloc_errors)
{
	__u32 ioas, stdev, parent, viommu, id;
	int fd;

	OPEN_MOCK_VIOMMU(fd, ioas, stdev, parent, viommu, NULL);
	CHECK_ERRNO(EOPNOTSUPP, hw_queue_alloc_flags(fd, 0, viommu, IOMMU_HW_QUEUE_TYPE_DEFAULT, 0,
						     IOVA, PAGE_SZ, &id));
	CHECK_ERRNO(EOPNOTSUPP, hw_queue_alloc_flags(fd, 1, viommu, IOMMU_HW_QUEUE_TYPE_SELFTEST,
						     0, IOVA, PAGE_SZ, &id));
	CHECK_ERRNO(EINVAL, hw_queue_alloc(fd, viommu, 0, IOVA, 0, &id));
	CHECK_ERRNO(EOVERFLOW, hw_queue_alloc(fd, viommu, 0, ~(__u64)0, PAGE_SZ, &id));
	/* Only then the vIOMMU, and the queue type its driver knows. */
	CHECK_ERRNO(ENOENT, hw_queue_alloc(fd, 999, 0, IOVA, PAGE_SZ, &id));
	CHECK_ERRNO(ENOENT, hw_queue_alloc(fd, parent, 0, IOVA, PAGE_SZ, &id));
	CHECK_ERRNO(EOPNOTSUPP, hw_queue_alloc_flags(fd, 0, viommu,
						     IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 0, IOVA,
						     PAGE_SZ, &id));
	/* The memory: rounded out to whole pages, an array of their frames, pinned. */
	CHECK_ERRNO(ERANGE, hw_queue_alloc(fd, viommu, 0, 0, ~(__u64)0, &id));
	CHECK_ERRNO(ENOMEM, hw_queue_alloc(fd, viommu, 0, 0, 1ULL << 41, &id));
	CHECK_ERRNO(ENOENT, hw_queue_alloc(fd, viommu, 0, IOVA, PAGE_SZ, &id));
	/* Pinned for reading: a write-only mapping will not do. */
	REQUIRE_OK(ioas_map(fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE, g_buf,
			    PAGE_SZ, &(__u64){ IOVA }));
	CHECK_ERRNO(EPERM, hw_queue_alloc(fd, viommu, 0, IOVA, PAGE_SZ, &id));
	CHECK_OK(ioas_unmap(fd, ioas, IOVA, PAGE_SZ, NULL));
	/* A hole after a mapped page. */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, PAGE_SZ, IOVA));
	CHECK_ERRNO(ENOENT, hw_queue_alloc(fd, viommu, 0, IOVA, 2 * PAGE_SZ, &id));
	CHECK_ERRNO(ENOENT, hw_queue_alloc(fd, viommu, 0, IOVA + PAGE_SZ / 2, PAGE_SZ, &id));
	/* The mock driver's indexes: below 2, and 1 only after 0. */
	CHECK_ERRNO(EIO, hw_queue_alloc(fd, viommu, 1, IOVA, PAGE_SZ, &id));
	CHECK_ERRNO(EINVAL, hw_queue_alloc(fd, viommu, IOMMU_TEST_HW_QUEUE_MAX, IOVA, PAGE_SZ,
					   &id));
	CHECK_ERRNO(EINVAL, hw_queue_alloc(fd, viommu, ~0U, IOVA, PAGE_SZ, &id));
	/* Nothing stayed pinned or locked. */
	CHECK_OK(ioas_unmap(fd, ioas, IOVA, PAGE_SZ, NULL));
	CHECK_OK(iommu_destroy(fd, viommu));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

/* Two queues: the pinned page is locked, queue 1 holds queue 0, both hold the vIOMMU. */
TEST(hw_queue_lifetime)
{
	__u32 ioas, stdev, parent, viommu, q0, q1, id, next;
	__u64 unmapped;
	int fd;

	OPEN_MOCK_VIOMMU(fd, ioas, stdev, parent, viommu, NULL);
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, PAGE_SZ, IOVA));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf + PAGE_SZ, PAGE_SZ, IOVA + PAGE_SZ));

	REQUIRE_OK(hw_queue_alloc(fd, viommu, 0, IOVA, PAGE_SZ, &q0));
	CHECK_ERRNO(EEXIST, hw_queue_alloc(fd, viommu, 0, IOVA, PAGE_SZ, &id));
	/* The queue's internal access took the next id; its driver (the queue) holds it. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, q0 + 1));
	REQUIRE_OK(ioas_alloc(fd, &next));
	CHECK_EQ(next, q0 + 2);
	CHECK_OK(iommu_destroy(fd, next));
	/* The queue's page cannot be unmapped (not even as part of a larger range); the next can. */
	CHECK_ERRNO(EBUSY, ioas_unmap(fd, ioas, IOVA, PAGE_SZ, NULL));
	CHECK_ERRNO(EBUSY, ioas_unmap(fd, ioas, 0, ~(__u64)0, &unmapped));
	CHECK_OK(ioas_unmap(fd, ioas, IOVA + PAGE_SZ, PAGE_SZ, NULL));

	/* Queue 1 in the second half of the same page. */
	REQUIRE_OK(hw_queue_alloc(fd, viommu, 1, IOVA + PAGE_SZ / 2, PAGE_SZ / 2, &q1));
	CHECK_ERRNO(EEXIST, hw_queue_alloc(fd, viommu, 1, IOVA, PAGE_SZ, &id));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, q0));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, viommu));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, q1));
	/* 7.3's mock frees slot 0 whichever queue goes: queue 0 can be made a second time. */
	REQUIRE_OK(hw_queue_alloc(fd, viommu, 0, IOVA, PAGE_SZ, &id));
	CHECK_OK(iommu_destroy(fd, id));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, viommu));
	CHECK_ERRNO(EBUSY, ioas_unmap(fd, ioas, IOVA, PAGE_SZ, NULL));
	CHECK_OK(iommu_destroy(fd, q0));
	/* The access went with its queue. */
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, q0 + 1));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, q1));
	CHECK_OK(ioas_unmap(fd, ioas, IOVA, PAGE_SZ, NULL));

	/*
	 * 7.3's mock driver never records a queue's index, so destroying any queue empties slot 0:
	 * slot 1 stays taken for good, slot 0 is free again.
	 */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, PAGE_SZ, IOVA));
	CHECK_ERRNO(EEXIST, hw_queue_alloc(fd, viommu, 1, IOVA, PAGE_SZ, &id));
	REQUIRE_OK(hw_queue_alloc(fd, viommu, 0, IOVA + 8, 64, &q0));
	CHECK_OK(iommu_destroy(fd, q0));
	CHECK_OK(iommu_destroy(fd, viommu));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

/* Closing the iommufd with both queues there frees them (and unpins) in the right order. */
TEST(close_with_queues)
{
	__u32 ioas, stdev, parent, viommu, q0, q1;
	int fd;

	OPEN_MOCK_VIOMMU(fd, ioas, stdev, parent, viommu, NULL);
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, 2 * PAGE_SZ, IOVA));
	REQUIRE_OK(hw_queue_alloc(fd, viommu, 0, IOVA, PAGE_SZ, &q0));
	REQUIRE_OK(hw_queue_alloc(fd, viommu, 1, IOVA + PAGE_SZ, PAGE_SZ, &q1));
	close_and_check(fd);
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0x5a, BUF_SIZE);
	RUN(hw_queue_alloc_errors);
	RUN(hw_queue_lifetime);
	RUN(close_with_queues);
	return h_done();
}
