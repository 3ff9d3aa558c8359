/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The unsafe no-IOMMU mode switched off (the default; noiommu.md §3.5): the edu device with no
 * IOMMU at 0000:00:06.0 gets no VFIO node at all, neither /dev/vfio/devices/noiommu-vfioN nor a
 * vfio-dev entry in sysfs; the module parameter reads N; nothing tainted the kernel; the devices
 * behind dmar0 are unaffected.
 */
#include "harness.h"
#include "edu_helpers.h"

#include <dirent.h>

TEST(parameter_reads_n)
{
	char buf[16];

	REQUIRE(read_text("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", buf,
			  sizeof(buf)) >= 0);
	CHECK(strcmp(buf, "N\n") == 0);
	if (strcmp(buf, "N\n"))
		h_note("parameter reads \"%s\"", buf);
}

TEST(no_device_node)
{
	struct stat st;
	char path[64];
	int i;

	CHECK_ERRNO(ENOENT, cdev_open(NOIOMMU_CDEV));
	CHECK_ERRNO(ENOENT, stat(NOIOMMU_CDEV, &st));
	CHECK_ERRNO(ENOENT, access(NOIOMMU_CDEV, F_OK));
	/* No node under any other name either: only vfio0 and vfio1 exist. */
	CHECK_ERRNO(ENOENT, cdev_open("/dev/vfio/devices/vfio2"));
	for (i = 0; i < 8; i++) {
		snprintf(path, sizeof(path), "/dev/vfio/devices/noiommu-vfio%d", i);
		CHECK_ERRNO(ENOENT, cdev_open(path));
	}
	/* Nor the legacy group node of a no-IOMMU group. */
	CHECK_ERRNO(ENOENT, open("/dev/vfio/noiommu-0", O_RDWR | O_CLOEXEC));
}

TEST(no_sysfs_vfio_dev_entry)
{
	struct stat st;
	char buf[64];
	DIR *d;

	/* The PCI device itself is there... */
	REQUIRE(read_text("/sys/bus/pci/devices/" NOIOMMU_BDF "/vendor", buf, sizeof(buf)) > 0);
	CHECK(strcmp(buf, "0x1234\n") == 0);
	/* ... but its vfio-dev directory does not exist, or lists nothing. */
	d = opendir("/sys/bus/pci/devices/" NOIOMMU_BDF "/vfio-dev");
	if (d) {
		struct dirent *e;

		while ((e = readdir(d)))
			CHECK(e->d_name[0] == '.');
		closedir(d);
	}
	CHECK_ERRNO(ENOENT, read_text("/sys/bus/pci/devices/" NOIOMMU_BDF
				      "/vfio-dev/noiommu-vfio2/dev", buf, sizeof(buf)));
	CHECK_ERRNO(ENOENT, lstat("/sys/class/vfio-dev/noiommu-vfio2", &st));
}

/*
 * Decision: with the mode off nothing on the emulated machine taints the kernel, so TAINT_USER
 * (bit 6) is clear. (A real host may be tainted for unrelated reasons.)
 */
TEST(kernel_not_tainted_by_vfio)
{
	char buf[32];
	unsigned long t;

	REQUIRE(read_text("/proc/sys/kernel/tainted", buf, sizeof(buf)) > 0);
	t = strtoul(buf, NULL, 10);
	CHECK_EQ(t & (1UL << 6), 0);
}

TEST(iommu_devices_unaffected)
{
	int iommufd = iommufd_open();
	struct edu_dev a, b;
	char buf[64];

	REQUIRE(iommufd >= 0);
	CHECK_OK(edu_open(EDU0_CDEV, iommufd, 0, &a));
	CHECK_OK(edu_open(EDU1_CDEV, iommufd, 0, &b));
	edu_close(&a);
	edu_close(&b);
	close(iommufd);
	CHECK(read_text("/sys/bus/pci/devices/" EDU0_BDF "/vfio-dev/vfio0/dev", buf,
			sizeof(buf)) > 0);
}

int main(void)
{
	h_init();
	RUN(parameter_reads_n);
	RUN(no_device_node);
	RUN(no_sysfs_vfio_dev_entry);
	RUN(kernel_not_tainted_by_vfio);
	RUN(iommu_devices_unaffected);
	return h_done();
}
