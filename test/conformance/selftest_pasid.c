/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_TEST_CMD's PASID ops (issue 15): PASID_ATTACH, PASID_REPLACE, PASID_DETACH and
 * PASID_CHECK_HWPT on mock devices. A PASID needs a HWPT allocated with IOMMU_HWPT_ALLOC_PASID,
 * and while one is attached the device's RID must use such a HWPT too; a PASID beyond the
 * device's width (MOCK_PASID_WIDTH bits) is refused; IOMMU_TEST_PASID_RESERVED makes every
 * second move of that PASID fail in the driver, which a replace must survive unchanged. The
 * pin count of the mapped buffer is checked after every step.
 */
#include "harness.h"
#include "nested_helpers.h"

#define NPAGES 8
#define BUF_SIZE (NPAGES * PAGE_SZ)

static unsigned char *g_buf;

#define CHECK_REFS(fd, refs) CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, refs))

#define OPEN_IOAS(fd, ioas) OPEN_MOCK_IOAS(fd, ioas, g_buf, BUF_SIZE)

TEST(pasid_attach_needs_pasid_hwpts)
{
	__u32 ioas, stdev, auto_hwpt, idev, hwpt_p, hwpt_p2, hwpt_plain, pt;
	int fd;

	OPEN_IOAS(fd, ioas);
	CHECK_REFS(fd, 0);
	REQUIRE_OK(mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID, &stdev, &auto_hwpt, &idev));
	CHECK_REFS(fd, 1);
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_PASID, &hwpt_p));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_PASID, &hwpt_p2));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, 0, &hwpt_plain));
	/* Three more domains of one area: still one pin. */
	CHECK_REFS(fd, 1);

	/* Nothing is attached at a PASID yet; PASID 0 is the RID, on its auto domain. */
	CHECK_OK(pasid_check(fd, stdev, 100, 0));
	CHECK_OK(pasid_check(fd, stdev, 0, auto_hwpt));
	CHECK_ERRNO(EINVAL, pasid_check(fd, stdev, 0, 0));

	/* The RID's auto domain was not allocated for PASID use: no PASID may attach. */
	pt = hwpt_p;
	CHECK_ERRNO(EINVAL, pasid_attach(fd, stdev, 100, &pt));
	REQUIRE_OK(mock_replace(fd, stdev, hwpt_p, NULL));
	/* A HWPT without IOMMU_HWPT_ALLOC_PASID, or an IOAS (its auto domain), cannot serve one. */
	pt = hwpt_plain;
	CHECK_ERRNO(EINVAL, pasid_attach(fd, stdev, 100, &pt));
	pt = ioas;
	CHECK_ERRNO(EINVAL, pasid_attach(fd, stdev, 100, &pt));
	CHECK_OK(pasid_check(fd, stdev, 100, 0));

	pt = hwpt_p;
	REQUIRE_OK(pasid_attach(fd, stdev, 100, &pt));
	CHECK_EQ(pt, hwpt_p);
	CHECK_OK(pasid_check(fd, stdev, 100, hwpt_p));
	CHECK_ERRNO(EINVAL, pasid_check(fd, stdev, 100, hwpt_p2));
	CHECK_ERRNO(EINVAL, pasid_check(fd, stdev, 100, 0));
	CHECK_OK(pasid_check(fd, stdev, 101, 0));
	CHECK_REFS(fd, 1);
	/* The device is attached at that PASID already, whatever the HWPT. */
	CHECK_ERRNO(EBUSY, pasid_attach(fd, stdev, 100, &pt));
	pt = hwpt_p2;
	CHECK_ERRNO(EBUSY, pasid_attach(fd, stdev, 100, &pt));
	/* The PASID holds its HWPT; the RID may not leave for a non-PASID HWPT meanwhile. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, hwpt_p));
	CHECK_ERRNO(EINVAL, mock_replace(fd, stdev, hwpt_plain, NULL));
	CHECK_OK(mock_replace(fd, stdev, hwpt_p2, NULL));
	CHECK_OK(pasid_check(fd, stdev, 0, hwpt_p2));

	/* The device has 20 PASID bits. */
	pt = hwpt_p;
	CHECK_ERRNO(EINVAL, pasid_attach(fd, stdev, 1U << MOCK_PASID_WIDTH, &pt));
	REQUIRE_OK(pasid_attach(fd, stdev, (1U << MOCK_PASID_WIDTH) - 1, &pt));
	CHECK_OK(pasid_check(fd, stdev, (1U << MOCK_PASID_WIDTH) - 1, hwpt_p));
	CHECK_OK(pasid_detach(fd, stdev, (1U << MOCK_PASID_WIDTH) - 1));

	/* Replace moves an attached PASID only, and only to a PASID HWPT. */
	pt = hwpt_p2;
	CHECK_OK(pasid_replace(fd, stdev, 100, &pt));
	CHECK_OK(pasid_check(fd, stdev, 100, hwpt_p2));
	CHECK_OK(iommu_destroy(fd, hwpt_p));
	pt = hwpt_p2;
	CHECK_OK(pasid_replace(fd, stdev, 100, &pt));
	CHECK_ERRNO(EINVAL, pasid_replace(fd, stdev, 200, &pt));
	pt = hwpt_plain;
	CHECK_ERRNO(EINVAL, pasid_replace(fd, stdev, 100, &pt));
	CHECK_OK(pasid_check(fd, stdev, 100, hwpt_p2));
	CHECK_REFS(fd, 1);

	/* Detach blocks the PASID again; detaching nothing is no error. */
	CHECK_OK(pasid_detach(fd, stdev, 100));
	CHECK_OK(pasid_check(fd, stdev, 100, 0));
	CHECK_OK(pasid_detach(fd, stdev, 100));
	CHECK_OK(mock_replace(fd, stdev, hwpt_plain, NULL));
	CHECK_OK(iommu_destroy(fd, hwpt_p2));
	CHECK_REFS(fd, 1);
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_OK(iommu_destroy(fd, hwpt_plain));
	CHECK_REFS(fd, 0);
	close(fd);
}

TEST(pasid_op_errors)
{
	__u32 ioas, stdev, idev, hwpt_p, pt;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID, &stdev, NULL, &idev));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_PASID, &hwpt_p));
	REQUIRE_OK(mock_replace(fd, stdev, hwpt_p, NULL));
	/* cmd.id must name a selftest object: not its DEVICE, an IOAS or nothing. */
	pt = hwpt_p;
	CHECK_ERRNO(ENOENT, pasid_attach(fd, idev, 1, &pt));
	CHECK_ERRNO(ENOENT, pasid_attach(fd, ioas, 1, &pt));
	CHECK_ERRNO(ENOENT, pasid_replace(fd, 0, 1, &pt));
	CHECK_ERRNO(ENOENT, pasid_detach(fd, idev, 1));
	CHECK_ERRNO(ENOENT, pasid_check(fd, idev, 1, 0));
	/* pt_id that names nothing, or an object that is no page table. */
	pt = 9999;
	CHECK_ERRNO(ENOENT, pasid_attach(fd, stdev, 1, &pt));
	pt = idev;
	CHECK_ERRNO(EINVAL, pasid_attach(fd, stdev, 1, &pt));
	CHECK_ERRNO(ENOENT, pasid_check(fd, stdev, 1, 9999));
	CHECK_ERRNO(EINVAL, pasid_check(fd, stdev, 1, ioas));
	CHECK_OK(pasid_check(fd, stdev, 1, 0));
	CHECK_REFS(fd, 1);
	close(fd);
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	CHECK_REFS(fd, 0);
	close(fd);
}

TEST(reserved_pasid_fails_a_replace)
{
	__u32 ioas, stdev, idev, hwpt_a, hwpt_b, pt;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID, &stdev, NULL, &idev));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_PASID, &hwpt_a));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_PASID, &hwpt_b));
	REQUIRE_OK(mock_replace(fd, stdev, hwpt_a, NULL));
	pt = hwpt_a;
	REQUIRE_OK(pasid_attach(fd, stdev, IOMMU_TEST_PASID_RESERVED, &pt));
	/* The driver fails this move: the PASID stays where it was. */
	pt = hwpt_b;
	CHECK_ERRNO(ENOMEM, pasid_replace(fd, stdev, IOMMU_TEST_PASID_RESERVED, &pt));
	CHECK_OK(pasid_check(fd, stdev, IOMMU_TEST_PASID_RESERVED, hwpt_a));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, hwpt_a));
	/* The next move succeeds, the one after fails again. */
	pt = hwpt_b;
	CHECK_OK(pasid_replace(fd, stdev, IOMMU_TEST_PASID_RESERVED, &pt));
	CHECK_OK(pasid_check(fd, stdev, IOMMU_TEST_PASID_RESERVED, hwpt_b));
	pt = hwpt_a;
	CHECK_ERRNO(ENOMEM, pasid_replace(fd, stdev, IOMMU_TEST_PASID_RESERVED, &pt));
	CHECK_OK(pasid_check(fd, stdev, IOMMU_TEST_PASID_RESERVED, hwpt_b));
	/* A new attach counts as the first move again: the replace after it fails. */
	CHECK_OK(pasid_detach(fd, stdev, IOMMU_TEST_PASID_RESERVED));
	pt = hwpt_a;
	CHECK_OK(pasid_attach(fd, stdev, IOMMU_TEST_PASID_RESERVED, &pt));
	pt = hwpt_b;
	CHECK_ERRNO(ENOMEM, pasid_replace(fd, stdev, IOMMU_TEST_PASID_RESERVED, &pt));
	CHECK_OK(pasid_check(fd, stdev, IOMMU_TEST_PASID_RESERVED, hwpt_a));
	CHECK_OK(pasid_replace(fd, stdev, IOMMU_TEST_PASID_RESERVED, &pt));
	CHECK_OK(pasid_check(fd, stdev, IOMMU_TEST_PASID_RESERVED, hwpt_b));
	CHECK_OK(pasid_detach(fd, stdev, IOMMU_TEST_PASID_RESERVED));
	CHECK_REFS(fd, 1);
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_OK(iommu_destroy(fd, hwpt_a));
	CHECK_OK(iommu_destroy(fd, hwpt_b));
	CHECK_REFS(fd, 0);
	close(fd);
}

TEST(two_devices_share_a_pasid_hwpt)
{
	__u32 ioas, stdev1, stdev2, idev1, hwpt_p, pt;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID, &stdev1, NULL, &idev1));
	REQUIRE_OK(hwpt_alloc(fd, idev1, ioas, IOMMU_HWPT_ALLOC_PASID, &hwpt_p));
	REQUIRE_OK(mock_domain_flags(fd, hwpt_p, MOCK_FLAGS_DEVICE_PASID, &stdev2, NULL, NULL));
	REQUIRE_OK(mock_replace(fd, stdev1, hwpt_p, NULL));
	/* Each device is alone in its group: each attaches its own PASID 7. */
	pt = hwpt_p;
	CHECK_OK(pasid_attach(fd, stdev1, 7, &pt));
	CHECK_OK(pasid_attach(fd, stdev2, 7, &pt));
	CHECK_OK(pasid_check(fd, stdev2, 7, hwpt_p));
	CHECK_OK(pasid_detach(fd, stdev1, 7));
	CHECK_OK(pasid_check(fd, stdev1, 7, 0));
	CHECK_OK(pasid_check(fd, stdev2, 7, hwpt_p));
	CHECK_OK(pasid_detach(fd, stdev2, 7));
	CHECK_REFS(fd, 1);
	CHECK_OK(iommu_destroy(fd, stdev1));
	CHECK_OK(iommu_destroy(fd, stdev2));
	CHECK_OK(iommu_destroy(fd, hwpt_p));
	close(fd);
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	CHECK_REFS(fd, 0);
	close(fd);
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0x5a, BUF_SIZE);
	RUN(pasid_attach_needs_pasid_hwpts);
	RUN(pasid_op_errors);
	RUN(reserved_pasid_fails_a_replace);
	RUN(two_devices_share_a_pasid_hwpt);
	return h_done();
}
