/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Switching the unsafe no-IOMMU mode at run time (issue 4 build item 1; noiommu.md §3.5;
 * docs/decisions.md 11 and 14). Runs with the mode off at boot. The parameter is read when a
 * device registers with VFIO (driver bind), not when it is written: setting it creates no node
 * until 0000:00:06.0 is bound to vfio-pci again, which then registers it as noiommu-vfio2 and
 * taints the kernel. Unbinding removes the node at once; while the cdev is open the writer
 * blocks until it is closed, and the device's REQ eventfd asks the user to let go.
 */
#include <pthread.h>

#include "harness.h"
#include "edu_helpers.h"

#define PARAM "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"
#define BIND "/sys/bus/pci/drivers/vfio-pci/bind"
#define UNBIND "/sys/bus/pci/drivers/vfio-pci/unbind"

static int param_is(const char *want)
{
	char buf[16];

	if (read_text(PARAM, buf, sizeof(buf)) < 0)
		return 0;
	return strcmp(buf, want) == 0;
}

struct unbind_call {
	const char *bdf;
	ssize_t ret;
	int err;
	int done;
};

/* A thread that writes the unbind file, which blocks while the device is in use. */
static void *unbind_thread(void *p)
{
	struct unbind_call *c = p;

	errno = 0;
	c->ret = write_text(UNBIND, c->bdf);
	c->err = errno;
	__atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static int tainted_user(void)
{
	char buf[32];

	if (read_text("/proc/sys/kernel/tainted", buf, sizeof(buf)) <= 0)
		return -1;
	return !!(strtoul(buf, NULL, 10) & (1UL << 6));
}

TEST(switch_on_at_run_time_then_rebind)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct unbind_call call = { .bdf = NOIOMMU_BDF };
	int iommufd, dev, efd;
	struct stat st;
	pthread_t t;

	if (getuid() != 0 && !cap_effective(CAP_DAC_OVERRIDE))
		SKIP("writing %s needs uid 0 or CAP_DAC_OVERRIDE", PARAM);
	REQUIRE(param_is("N\n"));
	CHECK_ERRNO(ENOENT, stat(NOIOMMU_CDEV, &st));
	CHECK_EQ(tainted_user(), 0);

	/* Set: the parameter reads Y, but the device registered before: still no node. */
	CHECK_RET(2, write_text(PARAM, "1\n"));
	CHECK(param_is("Y\n"));
	CHECK_ERRNO(ENOENT, stat(NOIOMMU_CDEV, &st));
	CHECK_EQ(tainted_user(), 0);
	/* Only Y/N/1/0 (param_set_bool). */
	CHECK_ERRNO(EINVAL, write_text(PARAM, "maybe"));
	CHECK(param_is("Y\n"));

	/* Bind the device to vfio-pci: it registers now, as noiommu-vfio2, and taints. */
	CHECK_RET((ssize_t)strlen(NOIOMMU_BDF), write_text(BIND, NOIOMMU_BDF));
	CHECK_OK(stat(NOIOMMU_CDEV, &st));
	CHECK_EQ(tainted_user(), 1);
	dev = cdev_open(NOIOMMU_CDEV);
	REQUIRE(dev >= 0);
	iommufd = iommufd_open();
	REQUIRE(iommufd >= 0);
	CHECK_OK(vfio_bind(dev, iommufd, NULL));

	/*
	 * Unbind while a cdev fd has it open (docs/decisions.md 11): the node goes, the REQ
	 * eventfd fires, the writer blocks until the fd is closed; the fd works meanwhile.
	 */
	efd = efd_new();
	REQUIRE(efd >= 0);
	REQUIRE_OK(vfio_irq_eventfd(dev, VFIO_PCI_REQ_IRQ_INDEX, efd));
	REQUIRE(pthread_create(&t, NULL, unbind_thread, &call) == 0);
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_ERRNO(ENOENT, stat(NOIOMMU_CDEV, &st));
	CHECK_OK(ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
	CHECK_EQ(__atomic_load_n(&call.done, __ATOMIC_SEQ_CST), 0);
	close(dev);
	close(iommufd);
	REQUIRE(pthread_join(t, NULL) == 0);
	CHECK_EQ(call.ret, (ssize_t)strlen(NOIOMMU_BDF));
	if (call.ret < 0)
		h_note("unbind: %s", h_errname(call.err));
	close(efd);
	CHECK_ERRNO(ENOENT, stat(NOIOMMU_CDEV, &st));
	/* The taint stays. */
	CHECK_EQ(tainted_user(), 1);

	/* Switched off again: a new bind fails the probe (no IOMMU group: EINVAL), no node. */
	CHECK_RET(2, write_text(PARAM, "N\n"));
	CHECK(param_is("N\n"));
	CHECK_ERRNO(EINVAL, write_text(BIND, NOIOMMU_BDF));
	CHECK_ERRNO(ENOENT, stat(NOIOMMU_CDEV, &st));
}

/* The parameter does not touch devices behind an IOMMU. */
TEST(iommu_devices_unaffected)
{
	int iommufd = iommufd_open();
	struct edu_dev d;

	REQUIRE(iommufd >= 0);
	CHECK_OK(edu_open(EDU0_CDEV, iommufd, 0, &d));
	edu_close(&d);
	close(iommufd);
}

int main(void)
{
	h_init();
	RUN(switch_on_at_run_time_then_rebind);
	RUN(iommu_devices_unaffected);
	return h_done();
}
