/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unbinding a device from vfio-pci while its legacy group is in use (drivers/vfio/vfio_main.c
 * vfio_unregister_group_dev, group.c vfio_device_remove_group). The unbind cannot fail: with only
 * the group node open it returns its byte count at once, and the open group then answers ENODEV
 * to GET_STATUS, SET_CONTAINER and GET_DEVICE_FD (its iommu_group is gone). With a device fd open
 * the writer waits for it, and meanwhile the device is already out of its group's list:
 * GET_DEVICE_FD by its name is ENODEV. Every test binds the device again before it ends.
 */
#include <pthread.h>

#include "harness.h"
#include "edu_helpers.h"
#include "group_helpers.h"

#define DRV "/sys/bus/pci/drivers/vfio-pci"

struct unbind_call {
	ssize_t ret;
	int err;
	int done;
};

static void *unbind_thread(void *p)
{
	struct unbind_call *c = p;

	errno = 0;
	c->ret = write_text(DRV "/unbind", EDU0_BDF);
	c->err = errno;
	__atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static int root_or_skip(void)
{
	return getuid() == 0 || cap_effective(CAP_DAC_OVERRIDE);
}

/* The group node open, a container set, no device fd: the unbind is not refused. */
TEST(unbind_with_group_open)
{
	char path[64];
	int group, container, other;
	struct stat st;

	if (!root_or_skip())
		SKIP("unbinding needs uid 0 or CAP_DAC_OVERRIDE");
	REQUIRE_OK(group_path(EDU0_BDF, 0, path, sizeof(path)));
	group = group_open(EDU0_BDF, 0);
	REQUIRE(group >= 0);
	container = container_open();
	REQUIRE(container >= 0);
	REQUIRE_OK(group_set_container(group, container));

	CHECK_RET((ssize_t)strlen(EDU0_BDF), write_text(DRV "/unbind", EDU0_BDF));
	CHECK_ERRNO(ENOENT, stat(path, &st));
	CHECK_ERRNO(ENODEV, group_status(group));
	CHECK_ERRNO(ENODEV, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF));
	/* The container is still set: EINVAL comes before ENODEV; once unset, ENODEV. */
	CHECK_ERRNO(EINVAL, group_set_container(group, container));
	CHECK_OK(ioctl(group, VFIO_GROUP_UNSET_CONTAINER));
	CHECK_ERRNO(ENODEV, group_set_container(group, container));

	/* Bound again, the device has a new group node the old file is not. */
	CHECK_RET((ssize_t)strlen(EDU0_BDF), write_text(DRV "/bind", EDU0_BDF));
	other = group_open(EDU0_BDF, 0);
	CHECK(other >= 0);
	CHECK_ERRNO(ENODEV, group_status(group));
	if (other >= 0) {
		CHECK_EQ(group_status(other), VFIO_GROUP_FLAGS_VIABLE);
		close(other);
	}
	close(group);
	close(container);
}

/* A device fd from the group holds the device: the unbind waits, GET_DEVICE_FD does not. */
TEST(unbind_waits_for_device_fd)
{
	struct unbind_call call = { 0 };
	int group, container, dev, efd;
	pthread_t t;

	if (!root_or_skip())
		SKIP("unbinding needs uid 0 or CAP_DAC_OVERRIDE");
	group = group_open(EDU0_BDF, 0);
	REQUIRE(group >= 0);
	container = container_open();
	REQUIRE(container >= 0);
	REQUIRE_OK(group_set_container(group, container));
	REQUIRE_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF);
	REQUIRE(dev >= 0);
	efd = efd_new();
	REQUIRE(efd >= 0);
	REQUIRE_OK(vfio_irq_eventfd(dev, VFIO_PCI_REQ_IRQ_INDEX, efd));

	REQUIRE(pthread_create(&t, NULL, unbind_thread, &call) == 0);
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_EQ(__atomic_load_n(&call.done, __ATOMIC_SEQ_CST), 0);
	/* Out of the group's list before the wait: its name finds nothing. */
	CHECK_ERRNO(ENODEV, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF));
	/* The group still has its iommu_group while the device is held. */
	CHECK_EQ(group_status(group), VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE);
	close(dev);
	REQUIRE(pthread_join(t, NULL) == 0);
	CHECK_EQ(call.ret, (ssize_t)strlen(EDU0_BDF));
	if (call.ret < 0)
		h_note("unbind: %s", h_errname(call.err));
	CHECK_ERRNO(ENODEV, group_status(group));
	close(efd);
	close(group);
	close(container);
	CHECK_RET((ssize_t)strlen(EDU0_BDF), write_text(DRV "/bind", EDU0_BDF));
}

int main(void)
{
	h_init();
	RUN(unbind_with_group_open);
	RUN(unbind_waits_for_device_fd);
	return h_done();
}
