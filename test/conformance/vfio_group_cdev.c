/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A device's group user and its cdev user exclude each other (vfio_device_block_group()): while
 * the group node is open no cdev of the group binds (EBUSY), and while a cdev is bound the group
 * node does not open (EBUSY). An open but unbound cdev blocks nothing, and another group is not
 * affected. A device the group path opened is refused to a cdev even after the group node is
 * closed (EINVAL: only the group path may open a device twice).
 */
#include "harness.h"
#include "edu_helpers.h"
#include "group_helpers.h"

TEST(open_group_blocks_cdev_bind)
{
	int iommufd = iommufd_open();
	int group, cdev;

	REQUIRE(iommufd >= 0);
	group = group_open(EDU0_BDF, 0);
	REQUIRE(group >= 0);
	/* opening the cdev is fine, binding it is not */
	cdev = cdev_open(EDU0_CDEV);
	REQUIRE(cdev >= 0);
	CHECK_ERRNO(EBUSY, vfio_bind(cdev, iommufd, NULL));
	/* the device of another group binds */
	{
		struct edu_dev d1;

		CHECK_OK(edu_open(EDU1_CDEV, iommufd, 0, &d1));
		edu_close(&d1);
	}
	/* the refused bind left nothing behind: with the group closed the same fd binds */
	close(group);
	CHECK_OK(vfio_bind(cdev, iommufd, NULL));
	close(cdev);
	close(iommufd);
}

TEST(bound_cdev_blocks_group_open)
{
	int iommufd = iommufd_open();
	int group, cdev;
	struct edu_dev d;

	REQUIRE(iommufd >= 0);
	/* open but unbound: the group still opens */
	cdev = cdev_open(EDU0_CDEV);
	REQUIRE(cdev >= 0);
	group = group_open(EDU0_BDF, 0);
	CHECK(group >= 0);
	if (group >= 0)
		close(group);
	close(cdev);

	REQUIRE_OK(edu_open(EDU0_CDEV, iommufd, 0, &d));
	CHECK_ERRNO(EBUSY, group_open(EDU0_BDF, 0));
	/* another group opens */
	group = group_open(EDU1_BDF, 0);
	CHECK(group >= 0);
	if (group >= 0)
		close(group);
	/* the cdev closed (unbound), the group opens again */
	edu_close(&d);
	group = group_open(EDU0_BDF, 0);
	CHECK(group >= 0);
	if (group >= 0)
		close(group);
	close(iommufd);
}

/* The group node closed under an open device fd: the device stays the group path's. */
TEST(device_opened_by_group_refuses_cdev)
{
	int iommufd = iommufd_open();
	int container = container_open();
	int group, dev, cdev;

	REQUIRE(iommufd >= 0 && container >= 0);
	group = group_open(EDU0_BDF, 0);
	REQUIRE(group >= 0);
	REQUIRE_OK(group_set_container(group, container));
	REQUIRE_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF);
	REQUIRE(dev >= 0);
	close(group);
	cdev = cdev_open(EDU0_CDEV);
	REQUIRE(cdev >= 0);
	CHECK_ERRNO(EINVAL, vfio_bind(cdev, iommufd, NULL));
	/* the device fd closed, the device is free for the cdev */
	close(dev);
	CHECK_OK(vfio_bind(cdev, iommufd, NULL));
	/* and, bound, it keeps the group node shut */
	CHECK_ERRNO(EBUSY, group_open(EDU0_BDF, 0));
	close(cdev);
	close(container);
	close(iommufd);
}

int main(void)
{
	h_init();
	RUN(open_group_blocks_cdev_bind);
	RUN(bound_cdev_blocks_group_open);
	RUN(device_opened_by_group_refuses_cdev);
	return h_done();
}
