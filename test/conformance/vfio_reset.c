// exec-args: --enable-unsafe-noiommu-mode --platform examples/platforms/resets.json
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vfio-pci's resets through the cdev, for whatever reset each device has (uapi.md §6.4; edu.md
 * §6.7): the RESET flag of GET_INFO holds exactly when VFIO_DEVICE_RESET works;
 * GET_PCI_HOT_RESET_INFO is ENODEV without a bus or slot reset, else ENOSPC with the count, then
 * every device the reset reaches with its devid in the caller's iommufd (DEV_ID flags);
 * PCI_HOT_RESET's errnos, and a hot reset allowed only when the caller's iommufd owns every
 * device it reaches. A device keeps working, with its config state, after each reset.
 *
 * Under the emulator the platform has a bus of two IOMMU edus with a bus reset and a no-IOMMU
 * edu with FLR; on Linux in the lane the IOMMU edus sit on the root bus (no reset) and the
 * no-IOMMU edu alone behind a root port (a slot reset, which also serves VFIO_DEVICE_RESET).
 */
#include "harness.h"
#include "edu_helpers.h"

#define MAX_REACHED 8

static const char *const CDEVS[] = { EDU0_CDEV, EDU1_CDEV, NOIOMMU_CDEV };

struct reset_info {
	struct vfio_pci_hot_reset_info hdr;
	struct vfio_pci_dependent_device devices[MAX_REACHED];
};

/* The PCI address of the device at `cdev` (its vfio-dev's), as segment, bus and devfn. */
static int bdf_of(const char *cdev, unsigned *seg, unsigned *bus, unsigned *devfn)
{
	char bdf[PCI_BDF_LEN];
	unsigned dev, fn;

	if (vfio_dev_bdf(strrchr(cdev, '/') + 1, bdf))
		return -1;
	if (sscanf(bdf, "%4x:%2x:%2x.%1u", seg, bus, &dev, &fn) != 4)
		return -1;
	*devfn = dev << 3 | fn;
	return 0;
}

static int hot_reset_info(int dev, struct reset_info *ri)
{
	memset(ri, 0xa5, sizeof(*ri));
	ri->hdr.argsz = sizeof(*ri);
	return ioctl(dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, ri);
}

static int hot_reset_cdev(int dev)
{
	struct vfio_pci_hot_reset hr = { .argsz = sizeof(hr), .count = 0 };

	return ioctl(dev, VFIO_DEVICE_PCI_HOT_RESET, &hr);
}

/* GET_INFO's RESET flag and VFIO_DEVICE_RESET agree, for every device there is. */
TEST(reset_flag_means_reset_works)
{
	int fd = iommufd_open(), seen = 0;

	REQUIRE(fd >= 0);
	for (unsigned i = 0; i < sizeof(CDEVS) / sizeof(CDEVS[0]); i++) {
		struct vfio_device_info info = { .argsz = sizeof(info) };
		struct edu_dev d;

		if (edu_open(CDEVS[i], fd, 0, &d))
			continue;
		seen++;
		CHECK_OK(ioctl(d.fd, VFIO_DEVICE_GET_INFO, &info));
		if (info.flags & VFIO_DEVICE_FLAGS_RESET) {
			CHECK_OK(ioctl(d.fd, VFIO_DEVICE_RESET));
			edu_check_still_works(d.fd);
		} else {
			CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_RESET));
		}
		edu_close(&d);
	}
	close(fd);
	if (!seen)
		SKIP("no VFIO device");
}

/* The header alone: ENODEV, or ENOSPC with the count and nothing else written. */
TEST(hot_reset_info_header)
{
	int fd = iommufd_open(), seen = 0;

	REQUIRE(fd >= 0);
	for (unsigned i = 0; i < sizeof(CDEVS) / sizeof(CDEVS[0]); i++) {
		struct reset_info ri;
		struct edu_dev d;
		int ret;

		if (edu_open(CDEVS[i], fd, 0, &d))
			continue;
		seen++;
		memset(&ri, 0xa5, sizeof(ri));
		ri.hdr.argsz = 8;
		CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &ri));
		ri.hdr.argsz = sizeof(ri.hdr);
		errno = 0;
		ret = ioctl(d.fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &ri);
		CHECK_EQ(ret, -1);
		if (errno == ENOSPC) {
			CHECK_EQ(ri.hdr.argsz, sizeof(ri.hdr));
			CHECK_EQ(ri.hdr.flags, 0);
			CHECK(ri.hdr.count >= 1 && ri.hdr.count <= MAX_REACHED);
			CHECK_EQ(ri.devices[0].segment, 0xa5a5);
		} else {
			CHECK_EQ(errno, ENODEV);
		}
		edu_close(&d);
	}
	close(fd);
	if (!seen)
		SKIP("no VFIO device");
}

/*
 * With room for the array: the device itself is among those reached, by its devid, and every
 * one is on its bus; DEV_ID_OWNED exactly when all of them are bound here.
 */
TEST(hot_reset_info_devices)
{
	int fd = iommufd_open(), seen = 0;

	REQUIRE(fd >= 0);
	for (unsigned i = 0; i < sizeof(CDEVS) / sizeof(CDEVS[0]); i++) {
		unsigned seg, bus, devfn, owned = 1, self = 0;
		struct reset_info ri;
		struct edu_dev d;

		if (edu_open(CDEVS[i], fd, 0, &d))
			continue;
		if (bdf_of(CDEVS[i], &seg, &bus, &devfn)) {
			CHECK(!"no PCI address in /sys/class/vfio-dev");
			edu_close(&d);
			continue;
		}
		if (hot_reset_info(d.fd, &ri)) {
			CHECK_EQ(errno, ENODEV);
			edu_close(&d);
			continue;
		}
		seen++;
		CHECK(ri.hdr.count >= 1 && ri.hdr.count <= MAX_REACHED);
		CHECK(ri.hdr.flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID);
		for (unsigned j = 0; j < ri.hdr.count && j < MAX_REACHED; j++) {
			struct vfio_pci_dependent_device *dd = &ri.devices[j];

			CHECK_EQ(dd->segment, seg);
			CHECK_EQ(dd->bus, bus);
			if (dd->devfn == devfn) {
				self = 1;
				CHECK_EQ(dd->devid, d.devid);
			}
			if (dd->devid == (__u32)VFIO_PCI_DEVID_NOT_OWNED)
				owned = 0;
		}
		CHECK(self);
		CHECK_EQ(!!(ri.hdr.flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED), owned);
		/* Nothing past the array is written. */
		if (ri.hdr.count < MAX_REACHED)
			CHECK_EQ(ri.devices[ri.hdr.count].segment, 0xa5a5);
		edu_close(&d);
	}
	close(fd);
	if (!seen)
		SKIP("no device with a bus or slot reset");
}

/* PCI_HOT_RESET's argument checks, in the kernel's order. */
TEST(hot_reset_errnos)
{
	int fd = iommufd_open(), seen = 0;

	REQUIRE(fd >= 0);
	for (unsigned i = 0; i < sizeof(CDEVS) / sizeof(CDEVS[0]); i++) {
		struct {
			struct vfio_pci_hot_reset hdr;
			__s32 fds[1];
		} hr;
		struct reset_info ri;
		struct edu_dev d;
		int has_reset;

		if (edu_open(CDEVS[i], fd, 0, &d))
			continue;
		seen++;
		has_reset = hot_reset_info(d.fd, &ri) == 0;
		memset(&hr, 0, sizeof(hr));
		hr.hdr.argsz = 8;
		CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_PCI_HOT_RESET, &hr));
		hr.hdr.argsz = sizeof(hr);
		hr.hdr.flags = 1;
		CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_PCI_HOT_RESET, &hr));
		/* A cdev-opened device proves ownership by its iommufd: no group fds. */
		hr.hdr.flags = 0;
		hr.hdr.count = 1;
		hr.fds[0] = fd;
		CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_PCI_HOT_RESET, &hr));
		if (!has_reset)
			CHECK_ERRNO(ENODEV, hot_reset_cdev(d.fd));
		edu_close(&d);
	}
	close(fd);
	if (!seen)
		SKIP("no VFIO device");
}

/*
 * A hot reset needs every device it reaches owned by the caller's iommufd: bound to it, or in an
 * IOMMU group it has bound. Bound elsewhere, the others make it EINVAL.
 */
TEST(hot_reset_needs_every_device_owned)
{
	int fd = iommufd_open(), other = iommufd_open(), seen = 0;

	REQUIRE(fd >= 0 && other >= 0);
	for (unsigned i = 0; i < sizeof(CDEVS) / sizeof(CDEVS[0]); i++) {
		struct edu_dev d, peers[sizeof(CDEVS) / sizeof(CDEVS[0])];
		unsigned npeers = 0;
		struct reset_info ri;

		if (edu_open(CDEVS[i], fd, 0, &d))
			continue;
		if (hot_reset_info(d.fd, &ri)) {
			edu_close(&d);
			continue;
		}
		seen++;
		if (ri.hdr.flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED) {
			/* Alone on its bus or slot (as nothing else is open). */
			CHECK_OK(hot_reset_cdev(d.fd));
			edu_check_still_works(d.fd);
			edu_close(&d);
			continue;
		}
		/* Others share the reset: bound to another iommufd they block it... */
		for (unsigned j = 0; j < sizeof(CDEVS) / sizeof(CDEVS[0]); j++) {
			if (j != i && edu_open(CDEVS[j], other, 0, &peers[npeers]) == 0)
				npeers++;
		}
		CHECK(npeers >= 1);
		CHECK_ERRNO(EINVAL, hot_reset_cdev(d.fd));
		REQUIRE_OK(hot_reset_info(d.fd, &ri));
		CHECK(!(ri.hdr.flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED));
		for (unsigned j = 0; j < npeers; j++)
			edu_close(&peers[j]);
		/* ...bound here they let it through. */
		npeers = 0;
		for (unsigned j = 0; j < sizeof(CDEVS) / sizeof(CDEVS[0]); j++) {
			if (j != i && edu_open(CDEVS[j], fd, 0, &peers[npeers]) == 0)
				npeers++;
		}
		REQUIRE_OK(hot_reset_info(d.fd, &ri));
		CHECK(ri.hdr.flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED);
		CHECK_OK(hot_reset_cdev(d.fd));
		edu_check_still_works(d.fd);
		for (unsigned j = 0; j < npeers; j++) {
			edu_check_still_works(peers[j].fd);
			edu_close(&peers[j]);
		}
		edu_close(&d);
	}
	close(fd);
	close(other);
	if (!seen)
		SKIP("no device with a bus or slot reset");
}

int main(void)
{
	h_init();
	RUN(reset_flag_means_reset_works);
	RUN(hot_reset_info_header);
	RUN(hot_reset_info_devices);
	RUN(hot_reset_errnos);
	RUN(hot_reset_needs_every_device_owned);
	return h_done();
}
