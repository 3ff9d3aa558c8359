// exec-args: --enable-unsafe-noiommu-mode
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Nested translation and vIOMMUs refuse a device with no IOMMU (issue 12): its driver is
 * iommufd's no-IOMMU one, which cannot nest, has no vIOMMU and no IOMMU instance a vIOMMU could
 * share. A paging HWPT with a fault queue is still allowed (the fault flag never reaches the
 * driver), and the device attaches to it. The mock device side uses the test interface and is
 * skipped without it.
 */
#include "harness.h"
#include "edu_helpers.h"
#include "nested_helpers.h"

TEST(noiommu_device_cannot_nest)
{
	__u32 ioas, hwpt, id, fault = 0, pt;
	struct edu_dev d;
	int fd, qfd = -1;

	fd = iommufd_open();
	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	if (edu_open(NOIOMMU_CDEV, fd, 0, &d)) {
		close(fd);
		SKIP("no no-IOMMU device: %s", strerror(errno));
	}

	/* Its paging HWPTs take no flag and no data; nested ones cannot be made on them. */
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc(fd, d.devid, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &id));
	REQUIRE_OK(hwpt_alloc(fd, d.devid, ioas, 0, &hwpt));
	CHECK_ERRNO(EOPNOTSUPP, nested_alloc(fd, d.devid, hwpt, 0, IOMMU_TEST_IOTLB_DEFAULT, &id));
	/* No vIOMMU, whatever the type. */
	CHECK_ERRNO(EOPNOTSUPP, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, d.devid, hwpt, NULL,
					     0, &id));
	CHECK_ERRNO(EOPNOTSUPP, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_ARM_SMMUV3, 0, d.devid, hwpt,
					     NULL, 0, &id));

	/* FAULT_ID_VALID is iommufd's, not the driver's: the HWPT is made and the device attaches. */
	REQUIRE_OK(fault_alloc(fd, 0, &fault, &qfd));
	CHECK_ERRNO(ENOENT, hwpt_alloc_fault(fd, d.devid, ioas, IOMMU_HWPT_FAULT_ID_VALID, ioas,
					     &id));
	id = 0;
	CHECK_OK(hwpt_alloc_fault(fd, d.devid, ioas, IOMMU_HWPT_FAULT_ID_VALID, fault, &id));
	if (id) {
		pt = id;
		CHECK_OK(vfio_attach(d.fd, &pt));
		CHECK_EQ(pt, id);
		CHECK_ERRNO(EBUSY, iommu_destroy(fd, fault));
		CHECK_OK(vfio_detach(d.fd));
		CHECK_OK(iommu_destroy(fd, id));
	}
	CHECK_OK(close(qfd));
	CHECK_OK(iommu_destroy(fd, fault));
	CHECK_OK(iommu_destroy(fd, hwpt));
	edu_close(&d);
	close(fd);
}

TEST(noiommu_device_and_a_mock_viommu)
{
	__u32 ioas, stdev, idev, parent, viommu, id;
	struct edu_dev d;
	int fd;

	fd = iommufd_open();
	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	if (!has_test_cmd(fd)) {
		close(fd);
		SKIP("no IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST)");
	}
	if (edu_open(NOIOMMU_CDEV, fd, 0, &d)) {
		close(fd);
		SKIP("no no-IOMMU device: %s", strerror(errno));
	}
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, &idev));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, NULL, 0, &viommu));

	/* The mock IOMMU's parent and vIOMMU are not the no-IOMMU device's. */
	CHECK_ERRNO(EOPNOTSUPP, nested_alloc(fd, d.devid, parent, 0, IOMMU_TEST_IOTLB_DEFAULT,
					     &id));
	CHECK_ERRNO(EINVAL, nested_alloc(fd, d.devid, viommu, 0, IOMMU_TEST_IOTLB_DEFAULT, &id));
	CHECK_ERRNO(EINVAL, vdevice_alloc(fd, viommu, d.devid, 1, &id));
	/* It reports no page faults. */
	CHECK_ERRNO(EINVAL, trigger_iopf(fd, d.devid, 0, 0, 0, 0));

	CHECK_OK(iommu_destroy(fd, viommu));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	edu_close(&d);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(noiommu_device_cannot_nest);
	RUN(noiommu_device_and_a_mock_viommu);
	return h_done();
}
