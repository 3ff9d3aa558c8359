/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Nested translation on the mock driver (issue 12, stage 1): IOMMU_HWPT_ALLOC of a nested HWPT
 * on a NEST_PARENT paging HWPT with IOMMU_HWPT_DATA_SELFTEST data, the parent rules, attaching
 * mock devices to it, and IOMMU_HWPT_INVALIDATE of its IOTLB, whose entry_num is written back
 * on every path. MD_CHECK_IOTLB reads the IOTLB; the pin count of the mapped buffer is checked
 * after the steps that could change it.
 */
#include "harness.h"
#include "nested_helpers.h"

#define NPAGES 8
#define BUF_SIZE (NPAGES * PAGE_SZ)

static unsigned char *g_buf;

#define CHECK_REFS(fd, refs) CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, refs))

/* Every IOTLB entry of `hwpt` is `value`: the number of entries that are not. */
static int iotlb_all_but(int fd, __u32 hwpt, __u32 value)
{
	int bad = 0;

	for (__u32 i = 0; i < MOCK_NESTED_DOMAIN_IOTLB_NUM; i++)
		bad += check_iotlb(fd, hwpt, i, value) != 0;
	return bad;
}

#define OPEN_IOAS(fd, ioas) OPEN_MOCK_IOAS(fd, ioas, g_buf, BUF_SIZE)

/* Closing the iommufd leaves no pin behind. */
#define close_and_check(fd) mock_close_and_check(fd, g_buf, BUF_SIZE)

TEST(nested_alloc_rules)
{
	__u32 ioas, stdev, auto_hwpt, idev, parent, plain, nested, nested2, other, id;
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	unsigned char big[16] = { 0 };
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, &auto_hwpt, &idev));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, 0, &plain));
	CHECK_REFS(fd, 1);

	/* Only a NEST_PARENT paging HWPT of the device's driver, never an auto domain. */
	CHECK_ERRNO(EINVAL, nested_alloc(fd, idev, plain, 0, IOMMU_TEST_IOTLB_DEFAULT, &id));
	CHECK_ERRNO(EINVAL, nested_alloc(fd, idev, auto_hwpt, 0, IOMMU_TEST_IOTLB_DEFAULT, &id));
	/* Flags a nested HWPT cannot have, and no data at all. */
	CHECK_ERRNO(EOPNOTSUPP, nested_alloc(fd, idev, parent, IOMMU_HWPT_ALLOC_NEST_PARENT,
					     IOMMU_TEST_IOTLB_DEFAULT, &id));
	CHECK_ERRNO(EOPNOTSUPP, nested_alloc(fd, idev, parent, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
					     IOMMU_TEST_IOTLB_DEFAULT, &id));
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc(fd, idev, parent, 0, &id));
	/* The flag checks come before the parent's. */
	CHECK_ERRNO(EOPNOTSUPP, nested_alloc(fd, idev, plain, IOMMU_HWPT_ALLOC_NEST_PARENT,
					     IOMMU_TEST_IOTLB_DEFAULT, &id));
	/* The driver's data: its type, then its length (4 to 8 bytes), then its memory. */
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc_data(fd, idev, parent, 0, 0, IOMMU_HWPT_DATA_VTD_S1,
						&data, sizeof(data), &id));
	CHECK_ERRNO(EINVAL, hwpt_alloc_data(fd, idev, parent, 0, 0, IOMMU_HWPT_DATA_SELFTEST, &data,
					    3, &id));
	CHECK_ERRNO(EINVAL, hwpt_alloc_data(fd, idev, parent, 0, 0, IOMMU_HWPT_DATA_SELFTEST, big,
					    sizeof(big), &id));
	CHECK_ERRNO(EFAULT, hwpt_alloc_data(fd, idev, parent, 0, 0, IOMMU_HWPT_DATA_SELFTEST,
					    h_unmapped_addr(), sizeof(data), &id));
	/* A FAULT id that names no fault queue. */
	CHECK_ERRNO(ENOENT, nested_alloc(fd, idev, parent, IOMMU_HWPT_FAULT_ID_VALID,
					 IOMMU_TEST_IOTLB_DEFAULT, &id));

	/* The first version of the data (iotlb only) is enough; every entry starts as iotlb. */
	REQUIRE_OK(hwpt_alloc_data(fd, idev, parent, 0, 0, IOMMU_HWPT_DATA_SELFTEST, &data, 4,
				   &nested));
	CHECK_EQ(iotlb_all_but(fd, nested, IOMMU_TEST_IOTLB_DEFAULT), 0);
	CHECK_ERRNO(EINVAL, check_iotlb(fd, nested, 0, IOMMU_TEST_IOTLB_DEFAULT + 1));
	CHECK_ERRNO(EINVAL, check_iotlb(fd, nested, MOCK_NESTED_DOMAIN_IOTLB_ID_MAX + 1,
					IOMMU_TEST_IOTLB_DEFAULT));
	REQUIRE_OK(nested_alloc(fd, idev, parent, IOMMU_HWPT_ALLOC_PASID, 0x1234, &nested2));
	CHECK_EQ(iotlb_all_but(fd, nested2, 0x1234), 0);
	/* Only nested HWPTs have an IOTLB; a nested HWPT is no parent. */
	CHECK_ERRNO(ENOENT, check_iotlb(fd, parent, 0, IOMMU_TEST_IOTLB_DEFAULT));
	CHECK_ERRNO(ENOENT, check_iotlb(fd, ioas, 0, IOMMU_TEST_IOTLB_DEFAULT));
	CHECK_ERRNO(EINVAL, nested_alloc(fd, idev, nested, 0, IOMMU_TEST_IOTLB_DEFAULT, &id));
	/* Nothing nested is attached or mapped: still one pin. */
	CHECK_REFS(fd, 1);

	/* A paging HWPT takes the same data; the default page table only. */
	CHECK_OK(hwpt_alloc_data(fd, idev, ioas, 0, 0, IOMMU_HWPT_DATA_SELFTEST, &data,
				 sizeof(data), &other));
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc_data(fd, idev, ioas, 0, 0, IOMMU_HWPT_DATA_VTD_S1, &data,
						sizeof(data), &id));
	CHECK_OK(iommu_destroy(fd, other));

	/* The parent is held while a nested HWPT uses it. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, nested));
	CHECK_ERRNO(ENOENT, check_iotlb(fd, nested, 0, IOMMU_TEST_IOTLB_DEFAULT));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, nested2));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, plain));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

TEST(nested_attach_and_replace)
{
	__u32 ioas, stdev, stdev2, auto_hwpt, idev, parent, nested, hwpt2, pt;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, &auto_hwpt, &idev));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(nested_alloc(fd, idev, parent, 0, IOMMU_TEST_IOTLB_DEFAULT, &nested));

	/* Move the device onto the nested HWPT: the auto domain it leaves goes away. */
	CHECK_OK(mock_replace(fd, stdev, nested, &pt));
	CHECK_EQ(pt, nested);
	CHECK_OK(pasid_check(fd, stdev, 0, nested));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, auto_hwpt));
	/* The parent's mapping stays pinned once. */
	CHECK_REFS(fd, 1);
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, nested));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, parent));

	/* A second mock device created straight on the nested HWPT. */
	REQUIRE_OK(mock_domain_flags(fd, nested, 0, &stdev2, &hwpt2, NULL));
	CHECK_EQ(hwpt2, nested);
	CHECK_OK(pasid_check(fd, stdev2, 0, nested));
	CHECK_OK(iommu_destroy(fd, stdev2));

	/* Back to the parent, then to the IOAS (a new auto domain). */
	CHECK_OK(mock_replace(fd, stdev, parent, &pt));
	CHECK_OK(pasid_check(fd, stdev, 0, parent));
	CHECK_OK(iommu_destroy(fd, nested));
	CHECK_OK(mock_replace(fd, stdev, ioas, &pt));
	CHECK(pt != parent && pt != ioas);
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_REFS(fd, 1);
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

TEST(invalidate_entry_num_written_back)
{
	struct iommu_hwpt_invalidate_selftest inv[3];
	__u32 ioas, stdev, auto_hwpt, idev, parent, nested, done;
	unsigned char wide[16];
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, &auto_hwpt, &idev));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(nested_alloc(fd, idev, parent, 0, IOMMU_TEST_IOTLB_DEFAULT, &nested));
	memset(inv, 0, sizeof(inv));

	/* The framing's errors: entry_num goes back as 0. */
	CHECK_ERRNO(EOPNOTSUPP, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
						inv, sizeof(inv[0]), 1, 1, &done));
	CHECK_EQ(done, 0);
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, NULL,
					    sizeof(inv[0]), 1, 0, &done));
	CHECK_EQ(done, 0);
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv, 0,
					    1, 0, &done));
	CHECK_EQ(done, 0);
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv,
					    PAGE_SZ + 1, 1, 0, &done));
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv,
					    sizeof(inv[0]), (1U << 19) + 1, 0, &done));
	CHECK_EQ(done, 0);
	CHECK_ERRNO(ENOENT, hwpt_invalidate(fd, 0, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv,
					    sizeof(inv[0]), 1, 0, &done));
	/* Only nested HWPTs (and vIOMMUs) are invalidated. */
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, parent, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv,
					    sizeof(inv[0]), 1, 0, &done));
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, ioas, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv,
					    sizeof(inv[0]), 1, 0, &done));
	CHECK_EQ(done, 0);

	/* No record: a probe of the data type. */
	CHECK_OK(hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, NULL, 0, 0, 0,
				 &done));
	CHECK_EQ(done, 0);
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
					    NULL, 0, 0, 0, &done));
	CHECK_EQ(iotlb_all_but(fd, nested, IOMMU_TEST_IOTLB_DEFAULT), 0);

	/* A record with an unknown flag, or an id past the IOTLB, stops the batch there. */
	inv[0] = (struct iommu_hwpt_invalidate_selftest){ .flags = 1U << 1, .iotlb_id = 0 };
	CHECK_ERRNO(EOPNOTSUPP, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
						inv, sizeof(inv[0]), 1, 0, &done));
	CHECK_EQ(done, 0);
	inv[0] = (struct iommu_hwpt_invalidate_selftest){ .iotlb_id = 1 };
	inv[1] = (struct iommu_hwpt_invalidate_selftest){ .iotlb_id = 2 };
	inv[2] = (struct iommu_hwpt_invalidate_selftest){ .iotlb_id = 4 };
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv,
					    sizeof(inv[0]), 3, 0, &done));
	CHECK_EQ(done, 2);
	CHECK_OK(check_iotlb(fd, nested, 0, IOMMU_TEST_IOTLB_DEFAULT));
	CHECK_OK(check_iotlb(fd, nested, 1, 0));
	CHECK_OK(check_iotlb(fd, nested, 2, 0));
	CHECK_OK(check_iotlb(fd, nested, 3, IOMMU_TEST_IOTLB_DEFAULT));

	/* Records shorter than the first version, or longer than the driver's: EINVAL. */
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv, 4,
					    1, 0, &done));
	CHECK_EQ(done, 0);
	memset(wide, 0, sizeof(wide));
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, wide,
					    sizeof(wide), 1, 0, &done));
	/* Unreadable records. */
	CHECK_ERRNO(EFAULT, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
					    h_unmapped_addr(), sizeof(inv[0]), 1, 0, &done));
	CHECK_EQ(done, 0);

	/* FLAG_ALL clears every entry, whatever the id, but the id is still checked first. */
	inv[0] = (struct iommu_hwpt_invalidate_selftest){ .flags = IOMMU_TEST_INVALIDATE_FLAG_ALL,
							  .iotlb_id = 99 };
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv,
					    sizeof(inv[0]), 1, 0, &done));
	CHECK_EQ(done, 0);
	inv[0].iotlb_id = 0;
	CHECK_OK(hwpt_invalidate(fd, nested, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, inv,
				 sizeof(inv[0]), 1, 0, &done));
	CHECK_EQ(done, 1);
	CHECK_EQ(iotlb_all_but(fd, nested, 0), 0);

	CHECK_OK(iommu_destroy(fd, nested));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0x5a, BUF_SIZE);
	RUN(nested_alloc_rules);
	RUN(nested_attach_and_replace);
	RUN(invalidate_entry_num_written_back);
	return h_done();
}
