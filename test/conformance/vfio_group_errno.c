/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Every errno of the group node's open and ioctls (drivers/vfio/group.c), in the kernel's order
 * of checks, each leaving the group as it was: open (EBUSY), GET_STATUS (EFAULT, EINVAL),
 * SET_CONTAINER (EFAULT, EBADF, EINVAL, EBADFD), UNSET_CONTAINER (EINVAL), GET_DEVICE_FD
 * without a container (ENODEV before EINVAL), and ENOTTY for everything else.
 * GET_DEVICE_FD's name rules are in vfio_group_name.c, the no-IOMMU group's in
 * vfio_group_noiommu.c.
 */
#include "harness.h"
#include "edu_helpers.h"
#include "group_helpers.h"

static int g_group = -1;

static int reopen_group(void)
{
	if (g_group >= 0)
		close(g_group);
	g_group = group_open(EDU0_BDF, 0);
	return g_group;
}

TEST(open_once)
{
	REQUIRE(reopen_group() >= 0);
	CHECK_ERRNO(EBUSY, group_open(EDU0_BDF, 0));
	/* once closed, it opens again */
	close(g_group);
	g_group = group_open(EDU0_BDF, 0);
	CHECK(g_group >= 0);
	/* a group node is no container, and no no-IOMMU node exists for an IOMMU group */
	{
		char path[64];

		REQUIRE_OK(group_path(EDU0_BDF, 1, path, sizeof(path)));
		CHECK_ERRNO(ENOENT, open(path, O_RDWR));
	}
}

TEST(get_status)
{
	unsigned char buf[64];
	struct vfio_group_status *st = (void *)buf;

	REQUIRE(reopen_group() >= 0);
	CHECK_ERRNO(EFAULT, ioctl(g_group, VFIO_GROUP_GET_STATUS, NULL));
	CHECK_ERRNO(EFAULT, ioctl(g_group, VFIO_GROUP_GET_STATUS, h_unmapped_addr()));
	/* readable but not writable: the result cannot be stored */
	{
		struct vfio_group_status *ro = h_readonly_page();

		CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_STATUS, ro));
		ro = mmap(NULL, PAGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		REQUIRE(ro != MAP_FAILED);
		ro->argsz = sizeof(*ro);
		mprotect(ro, PAGE_SZ, PROT_READ);
		CHECK_ERRNO(EFAULT, ioctl(g_group, VFIO_GROUP_GET_STATUS, ro));
	}
	memset(buf, 0xee, sizeof(buf));
	st->argsz = 7;
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_STATUS, st));
	st->argsz = 0;
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_STATUS, st));
	/* a larger argsz is fine; only the 8 known bytes come back, flags in are ignored */
	st->argsz = sizeof(buf);
	st->flags = 0xffffffff;
	CHECK_OK(ioctl(g_group, VFIO_GROUP_GET_STATUS, st));
	CHECK_EQ(st->argsz, sizeof(buf));
	CHECK_EQ(st->flags, VFIO_GROUP_FLAGS_VIABLE);
	CHECK(all_bytes(buf + 8, sizeof(buf) - 8, 0xee));
}

TEST(set_container)
{
	int container = container_open();
	int pipefd[2], cdev, iommufd, other, bad;

	REQUIRE(container >= 0);
	REQUIRE(reopen_group() >= 0);
	REQUIRE_OK(pipe(pipefd));
	CHECK_ERRNO(EFAULT, ioctl(g_group, VFIO_GROUP_SET_CONTAINER, NULL));
	CHECK_ERRNO(EFAULT, ioctl(g_group, VFIO_GROUP_SET_CONTAINER, h_unmapped_addr()));
	bad = -1;
	CHECK_ERRNO(EBADF, ioctl(g_group, VFIO_GROUP_SET_CONTAINER, &bad));
	bad = 1000;
	CHECK_ERRNO(EBADF, ioctl(g_group, VFIO_GROUP_SET_CONTAINER, &bad));
	/* open files that are no container */
	CHECK_ERRNO(EBADFD, group_set_container(g_group, pipefd[0]));
	CHECK_ERRNO(EBADFD, group_set_container(g_group, g_group));
	cdev = cdev_open(EDU0_CDEV);
	if (cdev >= 0) {
		CHECK_ERRNO(EBADFD, group_set_container(g_group, cdev));
		close(cdev);
	}
	/* none of that set anything */
	CHECK_EQ(group_status(g_group), VFIO_GROUP_FLAGS_VIABLE);
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_UNSET_CONTAINER));

	REQUIRE_OK(group_set_container(g_group, container));
	/* set once: another container, the same one, or a non-container all EINVAL ... */
	other = container_open();
	CHECK_ERRNO(EINVAL, group_set_container(g_group, other));
	CHECK_ERRNO(EINVAL, group_set_container(g_group, container));
	CHECK_ERRNO(EINVAL, group_set_container(g_group, pipefd[0]));
	/* ... but the fd is looked up first */
	bad = -1;
	CHECK_ERRNO(EBADF, ioctl(g_group, VFIO_GROUP_SET_CONTAINER, &bad));
	CHECK_EQ(group_status(g_group), VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
	CHECK_OK(ioctl(g_group, VFIO_GROUP_UNSET_CONTAINER));
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_UNSET_CONTAINER));

	/* /dev/iommu is a container as well */
	iommufd = iommufd_open();
	REQUIRE(iommufd >= 0);
	CHECK_OK(group_set_container(g_group, iommufd));
	CHECK_OK(ioctl(iommufd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	CHECK_OK(ioctl(g_group, VFIO_GROUP_UNSET_CONTAINER));
	close(iommufd);
	close(other);
	close(container);
	close(pipefd[0]);
	close(pipefd[1]);
}

/* The container set, the container fd closed: the group holds the container on its own. */
TEST(group_holds_its_container)
{
	int container = container_open();
	__u32 ioas = 0;
	int dev;

	REQUIRE(container >= 0);
	REQUIRE(reopen_group() >= 0);
	REQUIRE_OK(group_set_container(g_group, container));
	REQUIRE_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	CHECK_OK(vfio_ioas(container, IOMMU_VFIO_IOAS_GET, &ioas));
	close(container);
	CHECK_EQ(group_status(g_group), VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
	dev = ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF);
	CHECK(dev >= 0);
	if (dev >= 0) {
		CHECK_EQ(edu_reg(dev, EDU_ID), EDU_ID_VALUE);
		close(dev);
	}
	CHECK_OK(ioctl(g_group, VFIO_GROUP_UNSET_CONTAINER));
}

TEST(get_device_fd_without_container)
{
	REQUIRE(reopen_group() >= 0);
	/* the name is looked up first */
	CHECK_ERRNO(ENODEV, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:1f.7"));
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF));
	/* nothing was opened: a cdev of the device still binds afterwards */
	{
		int iommufd = iommufd_open();
		struct edu_dev d;

		close(g_group);
		g_group = -1;
		REQUIRE(iommufd >= 0);
		CHECK_OK(edu_open(EDU0_CDEV, iommufd, 0, &d));
		edu_close(&d);
		close(iommufd);
	}
}

TEST(other_ioctls_are_enotty)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };

	REQUIRE(reopen_group() >= 0);
	CHECK_ERRNO(ENOTTY, ioctl(g_group, VFIO_GET_API_VERSION));
	CHECK_ERRNO(ENOTTY, ioctl(g_group, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
	CHECK_ERRNO(ENOTTY, ioctl(g_group, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	CHECK_ERRNO(ENOTTY, ioctl(g_group, VFIO_DEVICE_GET_INFO, &info));
	CHECK_ERRNO(ENOTTY, ioctl(g_group, _IO(VFIO_TYPE, VFIO_BASE + 60)));
	CHECK_ERRNO(ENOTTY, ioctl(g_group, IOMMU_IOAS_ALLOC, &info));
	/* and the group's commands on a container are not the container's */
	{
		int container = container_open();

		REQUIRE(container >= 0);
		CHECK_ERRNO(ENOTTY, ioctl(container, VFIO_GROUP_GET_STATUS, &info));
		CHECK_ERRNO(ENOTTY, ioctl(container, VFIO_GROUP_UNSET_CONTAINER));
		close(container);
	}
}

int main(void)
{
	h_init();
	RUN(open_once);
	RUN(get_status);
	RUN(set_container);
	RUN(group_holds_its_container);
	RUN(get_device_fd_without_container);
	RUN(other_ioctls_are_enotty);
	if (g_group >= 0)
		close(g_group);
	return h_done();
}
