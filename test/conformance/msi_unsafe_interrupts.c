// exec-args: --platform examples/platforms/no-interrupt-remapping.json
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * MSI isolation at VFIO_DEVICE_BIND_IOMMUFD (uapi.md §6.2; iommufd's device.c): on this platform
 * dmar0 (edu 0000:00:04.0, vfio0) has no interrupt remapping and dmar1 (edu 0000:00:05.0, vfio1)
 * has; edu 0000:00:06.0 has no IOMMU (noiommu-vfio2). A device whose MSIs the platform cannot
 * isolate is refused with EPERM unless iommufd's allow_unsafe_interrupts module parameter
 * (/sys/module/iommufd/parameters/allow_unsafe_interrupts, 0644, root writes it) is set. The
 * parameter is read at bind; the refused bind leaves the fd unbound and the group free. (That a
 * user other than root cannot write it is tested in-process, src/iommufd/device.test.ts.)
 */
#include "harness.h"
#include "edu_helpers.h"

#define PARAM "/sys/module/iommufd/parameters/allow_unsafe_interrupts"

static int param_is(const char *want)
{
	char buf[16];

	if (read_text(PARAM, buf, sizeof(buf)) < 0)
		return 0;
	return strcmp(buf, want) == 0;
}

static int can_write_param(void)
{
	return getuid() == 0 || cap_effective(CAP_DAC_OVERRIDE);
}

TEST(parameter_defaults_to_n)
{
	CHECK(param_is("N\n"));
}

TEST(bind_without_isolation_is_eperm)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	int iommufd = iommufd_open();
	int dev = cdev_open(EDU0_CDEV);
	int group;
	__u32 ioas;

	REQUIRE(iommufd >= 0 && dev >= 0);
	CHECK_ERRNO(EPERM, vfio_bind(dev, iommufd, NULL));
	/* Nothing was made: the iommufd's first object still gets id 1. */
	CHECK_OK(ioas_alloc(iommufd, &ioas));
	CHECK_EQ(ioas, 1);
	/* The fd stays unbound: everything but BIND is EINVAL. */
	CHECK_ERRNO(EINVAL, vfio_attach(dev, &ioas));
	/* No DMA owner was left behind, and the group node is not blocked. */
	group = open("/dev/vfio/0", O_RDWR | O_CLOEXEC);
	CHECK(group >= 0);
	if (group >= 0) {
		CHECK_OK(ioctl(group, VFIO_GROUP_GET_STATUS, &status));
		CHECK_EQ(status.flags & VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_FLAGS_VIABLE);
		close(group);
	}
	/* Refused again the same way, not EBUSY or EINVAL: the failed bind unwound fully. */
	CHECK_ERRNO(EPERM, vfio_bind(dev, iommufd, NULL));
	close(dev);
	close(iommufd);
}

/* Isolation is per IOMMU unit: dmar1 remaps interrupts. */
TEST(isolating_unit_binds)
{
	int iommufd = iommufd_open();
	struct edu_dev d;
	__u32 ioas;

	REQUIRE(iommufd >= 0);
	REQUIRE_OK(ioas_alloc(iommufd, &ioas));
	CHECK_OK(edu_open(EDU1_CDEV, iommufd, ioas, &d));
	edu_close(&d);
	close(iommufd);
}

/* A no-IOMMU device skips the MSI check (noiommu.md §3.4). */
TEST(noiommu_device_binds)
{
	int iommufd = iommufd_open();
	struct edu_dev d;

	REQUIRE(iommufd >= 0);
	CHECK_OK(edu_open(NOIOMMU_CDEV, iommufd, 0, &d));
	edu_close(&d);
	close(iommufd);
}

TEST(parameter_allows_unsafe_interrupts)
{
	static unsigned char buf[4 * PAGE_SZ] __attribute__((aligned(4096)));
	int iommufd, dev2;
	struct edu_dev d;
	__u32 ioas;

	if (!can_write_param())
		SKIP("writing %s needs uid 0 or CAP_DAC_OVERRIDE", PARAM);
	/* Only Y/N/1/0 (param_set_bool). */
	CHECK_ERRNO(EINVAL, write_text(PARAM, "maybe"));
	CHECK(param_is("N\n"));
	CHECK_RET(2, write_text(PARAM, "Y\n"));
	CHECK(param_is("Y\n"));

	iommufd = iommufd_open();
	REQUIRE(iommufd >= 0);
	REQUIRE_OK(ioas_alloc(iommufd, &ioas));
	CHECK_OK(edu_open(EDU0_CDEV, iommufd, ioas, &d));
	if (d.fd >= 0) {
		/* A working device: DMA through dmar0 into our buffer. */
		fill_pattern(buf, PAGE_SZ, 7);
		CHECK_OK(ioas_map_fixed(iommufd, ioas, buf, sizeof(buf), 0x100000));
		CHECK_OK(edu_set_bus_master(d.fd, 1));
		CHECK_OK(edu_dma_in(d.fd, 0x100000, 0, PAGE_SZ));
		CHECK_OK(edu_dma_out(d.fd, 0, 0x102000, PAGE_SZ));
		CHECK(memcmp(buf + 2 * PAGE_SZ, buf, PAGE_SZ) == 0);
	}

	/* Cleared again: the bound device keeps working, a new bind is refused. */
	CHECK_RET(1, write_text(PARAM, "0"));
	CHECK(param_is("N\n"));
	edu_close(&d);
	dev2 = cdev_open(EDU0_CDEV);
	REQUIRE(dev2 >= 0);
	CHECK_ERRNO(EPERM, vfio_bind(dev2, iommufd, NULL));
	close(dev2);
	close(iommufd);
}

int main(void)
{
	h_init();
	RUN(parameter_defaults_to_n);
	RUN(bind_without_isolation_is_eperm);
	RUN(isolating_unit_binds);
	RUN(noiommu_device_binds);
	RUN(parameter_allows_unsafe_interrupts);
	return h_done();
}
