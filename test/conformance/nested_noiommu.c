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
#include "iommufd_test_nested.h"
#include "selftest_helpers.h"

static int hwpt_alloc_nd(int fd, __u32 dev_id, __u32 pt_id, __u32 flags, __u32 fault_id,
		      const void *data, __u32 len, __u32 *out)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.dev_id = dev_id,
		.pt_id = pt_id,
		.data_type = len ? IOMMU_HWPT_DATA_SELFTEST : IOMMU_HWPT_DATA_NONE,
		.data_len = len,
		.data_uptr = (uintptr_t)data,
		.fault_id = fault_id,
	};
	int rc = ioctl(fd, IOMMU_HWPT_ALLOC, &cmd);

	if (!rc)
		*out = cmd.out_hwpt_id;
	return rc;
}

static int viommu_alloc(int fd, __u32 type, __u32 dev_id, __u32 hwpt_id, __u32 *out)
{
	struct iommu_viommu_alloc cmd = {
		.size = sizeof(cmd),
		.type = type,
		.dev_id = dev_id,
		.hwpt_id = hwpt_id,
	};
	int rc = ioctl(fd, IOMMU_VIOMMU_ALLOC, &cmd);

	if (!rc)
		*out = cmd.out_viommu_id;
	return rc;
}

static int vdevice_alloc(int fd, __u32 viommu, __u32 dev_id, __u64 virt_id, __u32 *out)
{
	struct iommu_vdevice_alloc cmd = {
		.size = sizeof(cmd),
		.viommu_id = viommu,
		.dev_id = dev_id,
		.virt_id = virt_id,
	};

	return ioctl(fd, IOMMU_VDEVICE_ALLOC, &cmd) ? -1 : (*out = cmd.out_vdevice_id, 0);
}

static int fault_alloc(int fd, __u32 *id, int *qfd)
{
	struct iommu_fault_alloc cmd = { .size = sizeof(cmd) };
	int rc = ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &cmd);

	if (!rc) {
		*id = cmd.out_fault_id;
		*qfd = (int)cmd.out_fault_fd;
	}
	return rc;
}

static int has_test_cmd(int fd)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
				      .memory_limit = { .limit = 65536 } };

	return !(test_cmd(fd, &cmd) && errno == ENOTTY);
}

TEST(noiommu_device_cannot_nest)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
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
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc_nd(fd, d.devid, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, 0, NULL,
					   0, &id));
	REQUIRE_OK(hwpt_alloc_nd(fd, d.devid, ioas, 0, 0, NULL, 0, &hwpt));
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc_nd(fd, d.devid, hwpt, 0, 0, &data, sizeof(data), &id));
	/* No vIOMMU, whatever the type. */
	CHECK_ERRNO(EOPNOTSUPP, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, d.devid, hwpt, &id));
	CHECK_ERRNO(EOPNOTSUPP, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_ARM_SMMUV3, d.devid, hwpt, &id));

	/* FAULT_ID_VALID is iommufd's, not the driver's: the HWPT is made and the device attaches. */
	REQUIRE_OK(fault_alloc(fd, &fault, &qfd));
	CHECK_ERRNO(ENOENT, hwpt_alloc_nd(fd, d.devid, ioas, IOMMU_HWPT_FAULT_ID_VALID, ioas, NULL, 0,
				       &id));
	id = 0;
	CHECK_OK(hwpt_alloc_nd(fd, d.devid, ioas, IOMMU_HWPT_FAULT_ID_VALID, fault, NULL, 0, &id));
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
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
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
	REQUIRE_OK(hwpt_alloc_nd(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, 0, NULL, 0, &parent));
	REQUIRE_OK(viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, idev, parent, &viommu));

	/* The mock IOMMU's parent and vIOMMU are not the no-IOMMU device's. */
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc_nd(fd, d.devid, parent, 0, 0, &data, sizeof(data), &id));
	CHECK_ERRNO(EINVAL, hwpt_alloc_nd(fd, d.devid, viommu, 0, 0, &data, sizeof(data), &id));
	CHECK_ERRNO(EINVAL, vdevice_alloc(fd, viommu, d.devid, 1, &id));
	/* It reports no page faults. */
	{
		struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_TRIGGER_IOPF,
					      .trigger_iopf = { .dev_id = d.devid } };

		CHECK_ERRNO(EINVAL, test_cmd(fd, &cmd));
	}

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
