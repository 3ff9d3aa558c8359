/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A VFIO device cdev fd before VFIO_DEVICE_BIND_IOMMUFD (uapi.md §6.1-6.2): the fd is inert.
 * BIND is the only call it accepts; every other ioctl (known to VFIO, to iommufd, or to nobody),
 * read, pread, write, pwrite and mmap is EINVAL (vfio_device_fops_*: !df->access_granted). Once
 * bound, the same calls reach vfio-pci.
 */
#include "harness.h"
#include "edu_helpers.h"

/* Every call on the unbound cdev fd `dev` must be EINVAL. */
static void check_all_einval(int dev)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = 0 };
	struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = 0 };
	struct vfio_irq_set is = {
		.argsz = sizeof(is),
		.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
		.index = VFIO_PCI_MSI_IRQ_INDEX,
	};
	struct vfio_pci_hot_reset_info hri = { .argsz = sizeof(hri) };
	struct vfio_pci_hot_reset hr = { .argsz = sizeof(hr) };
	struct vfio_device_feature feat = {
		.argsz = sizeof(feat),
		.flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET,
	};
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = 1 };
	struct vfio_device_detach_iommufd_pt de = { .argsz = sizeof(de) };
	struct vfio_device_ioeventfd ioe = { .argsz = sizeof(ioe) };
	struct iommu_ioas_alloc ia = { .size = sizeof(ia) };
	char buf[16] = { 0 };
	void *p;

	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &ri));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &ii));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_SET_IRQS, &is));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_RESET));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &hri));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_PCI_HOT_RESET, &hr));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_FEATURE, &feat));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_IOEVENTFD, &ioe));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &de));
	/* Container/group numbers and iommufd numbers mean nothing here either. */
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_GET_API_VERSION));
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
	CHECK_ERRNO(EINVAL, ioctl(dev, IOMMU_IOAS_ALLOC, &ia));
	/* A number nobody defines. */
	CHECK_ERRNO(EINVAL, ioctl(dev, _IO(VFIO_TYPE, 0x7f), buf));
	CHECK_ERRNO(EINVAL, ioctl(dev, _IO('x', 0x42), buf));

	/* Region access: BAR0 and config space, by read/write and by offset. */
	CHECK_ERRNO(EINVAL, read(dev, buf, 4));
	CHECK_ERRNO(EINVAL, write(dev, buf, 4));
	CHECK_ERRNO(EINVAL, pread(dev, buf, 4, (off_t)BAR0_OFF(EDU_ID)));
	CHECK_ERRNO(EINVAL, pwrite(dev, buf, 4, (off_t)BAR0_OFF(EDU_LIVENESS)));
	CHECK_ERRNO(EINVAL, pread(dev, buf, 2, (off_t)CFG_OFF(0)));
	CHECK_ERRNO(EINVAL, pwrite(dev, buf, 2, (off_t)CFG_OFF(PCI_CMD_REG)));

	errno = 0;
	p = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, dev, 0);
	CHECK(p == MAP_FAILED);
	if (p == MAP_FAILED)
		CHECK_EQ(errno, EINVAL);
	else
		munmap(p, 0x1000);
}

TEST(unbound_cdev_accepts_nothing_but_bind)
{
	int dev = cdev_open(EDU0_CDEV);

	REQUIRE(dev >= 0);
	check_all_einval(dev);
	close(dev);
}

TEST(unbound_vfio1_too)
{
	int dev = cdev_open(EDU1_CDEV);

	REQUIRE(dev >= 0);
	check_all_einval(dev);
	close(dev);
}

/* A failed BIND grants nothing: the fd stays inert, and a good BIND afterwards works. */
TEST(failed_bind_leaves_fd_unbound)
{
	int dev = cdev_open(EDU0_CDEV);
	int iommufd = iommufd_open();
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	__u32 devid;

	REQUIRE(dev >= 0 && iommufd >= 0 && nul >= 0);
	CHECK_ERRNO(EBADFD, vfio_bind(dev, nul, &devid));
	CHECK_ERRNO(EINVAL, vfio_bind(dev, -1, &devid));
	check_all_einval(dev);
	CHECK_OK(vfio_bind(dev, iommufd, &devid));
	CHECK_EQ(devid, 1);
	close(nul);
	close(dev);
	close(iommufd);
}

/* Once bound, the very same calls reach vfio-pci. */
TEST(bound_cdev_reaches_vfio_pci)
{
	int dev = cdev_open(EDU0_CDEV);
	int iommufd = iommufd_open();
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct iommu_ioas_alloc ia = { .size = sizeof(ia) };
	struct vfio_device_detach_iommufd_pt de = { .argsz = sizeof(de) };
	__u32 id = 0;
	__u16 vendor = 0;
	char buf[16];

	REQUIRE(dev >= 0 && iommufd >= 0);
	REQUIRE_OK(vfio_bind(dev, iommufd, NULL));
	CHECK_OK(ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
	CHECK_OK(ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &de));
	CHECK_RET(4, pread(dev, &id, 4, (off_t)BAR0_OFF(EDU_ID)));
	CHECK_EQ(id, EDU_ID_VALUE);
	CHECK_RET(2, pread(dev, &vendor, 2, (off_t)CFG_OFF(0)));
	CHECK_EQ(vendor, 0x1234);
	/* vfio-pci answers numbers it does not know with ENOTTY (vfio_pci_core_ioctl default). */
	CHECK_ERRNO(ENOTTY, ioctl(dev, IOMMU_IOAS_ALLOC, &ia));
	CHECK_ERRNO(ENOTTY, ioctl(dev, _IO(VFIO_TYPE, 0x7f), buf));
	close(dev);
	close(iommufd);
}

int main(void)
{
	h_init();
	RUN(unbound_cdev_accepts_nothing_but_bind);
	RUN(unbound_vfio1_too);
	RUN(failed_bind_leaves_fd_unbound);
	RUN(bound_cdev_reaches_vfio_pci);
	return h_done();
}
