/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_TEST_CMD's event triggers (issue 15) where no queue takes the event: TRIGGER_IOPF
 * reports a page request from a mock device (dev_id is its DEVICE object); with no fault-capable
 * HWPT attached the IOMMU core answers the device itself and the op still succeeds. A device
 * that is not a mock one (a VFIO-bound edu) is EINVAL. TRIGGER_VEVENT needs the device's vIOMMU
 * and vDEVICE: without them it is ENOENT. Neither changes the pins (MD_CHECK_REFS) or the
 * device's attachment.
 */
#include "harness.h"
#include "edu_helpers.h"
#include "nested_helpers.h"

#define NPAGES 4
#define BUF_SIZE (NPAGES * PAGE_SZ)
#define IOVA MOCK_APERTURE_START

static unsigned char *g_buf;

/* Every page request here reads and writes IOVA. */
#define IOPF_RW (IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE)

#define OPEN_IOAS(fd, ioas) OPEN_MOCK_IOAS(fd, ioas, g_buf, BUF_SIZE)

TEST(trigger_iopf_without_a_fault_queue)
{
	__u32 ioas, stdev, hwpt, idev, pasid_idev;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, &hwpt, &idev));
	CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, 1));
	/* dev_id must be a DEVICE: not nothing, not the selftest object, not a HWPT. */
	CHECK_ERRNO(ENOENT, trigger_iopf(fd, 0, 0, 2, IOPF_RW, IOVA));
	CHECK_ERRNO(ENOENT, trigger_iopf(fd, 9999, 0, 2, IOPF_RW, IOVA));
	CHECK_ERRNO(ENOENT, trigger_iopf(fd, stdev, 0, 2, IOPF_RW, IOVA));
	CHECK_ERRNO(ENOENT, trigger_iopf(fd, hwpt, 0, 2, IOPF_RW, IOVA));
	/* Nobody takes the fault: the core answers the device, the op succeeds. */
	CHECK_OK(trigger_iopf(fd, idev, 0, 2, IOPF_RW, IOVA));
	CHECK_OK(trigger_iopf(fd, idev, 5, 2, IOPF_RW, IOVA));
	REQUIRE_OK(mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID, NULL, NULL, &pasid_idev));
	CHECK_OK(trigger_iopf(fd, pasid_idev, 7, 2, IOPF_RW, IOVA));
	/* Nothing changed: the device is still attached, the pages pinned once. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, hwpt));
	CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, 1));
	mock_close_and_check(fd, g_buf, BUF_SIZE);
}

TEST(trigger_vevent_without_a_viommu)
{
	__u32 ioas, stdev, idev;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, &idev));
	CHECK_ERRNO(ENOENT, trigger_vevent(fd, 0));
	CHECK_ERRNO(ENOENT, trigger_vevent(fd, stdev));
	/* A mock device with no vIOMMU (and so no vDEVICE) has nowhere to report to. */
	CHECK_ERRNO(ENOENT, trigger_vevent(fd, idev));
	CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, 1));
	close(fd);
}

TEST(trigger_iopf_on_a_vfio_device)
{
	struct edu_dev d;
	__u32 ioas;
	int fd;

	OPEN_IOAS(fd, ioas);
	if (edu_open(EDU0_CDEV, fd, ioas, &d)) {
		close(fd);
		SKIP("no edu at %s: %s", EDU0_CDEV, strerror(errno));
	}
	/* A DEVICE that is not behind the mock IOMMU. */
	CHECK_ERRNO(EINVAL, trigger_iopf(fd, d.devid, 0, 2, IOPF_RW, IOVA));
	CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, 1));
	edu_close(&d);
	close(fd);
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0x21, BUF_SIZE);
	RUN(trigger_iopf_without_a_fault_queue);
	RUN(trigger_vevent_without_a_viommu);
	RUN(trigger_iopf_on_a_vfio_device);
	return h_done();
}
