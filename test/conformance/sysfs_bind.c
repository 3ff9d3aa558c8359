/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Binding through sysfs as driverctl and scripts do it: every edu starts bound to vfio-pci with
 * driver_override set to it; unbinding takes the driver link, the driver's link back, the
 * vfio-dev entry and the cdev away at once; with the override cleared drivers_probe leaves the
 * device alone and vfio-pci's bind refuses it; setting it again binds it. The errnos of the bus's
 * and the driver's files, and what their modes allow even root.
 */
#include "harness.h"
#include "edu_helpers.h"

#define EDU0 "0000:00:04.0"
#define EDU1 "0000:00:05.0"
#define DEV1 "/sys/bus/pci/devices/" EDU1
#define DRV "/sys/bus/pci/drivers/vfio-pci"

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Whether the symlink at path reads exactly target. */
static int link_is(const char *path, const char *target)
{
	char buf[256];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);

	if (n < 0)
		return 0;
	buf[n] = 0;
	return strcmp(buf, target) == 0;
}

static int bound(const char *dev)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/driver", dev);
	return exists(path);
}

TEST(booted_bound_by_override)
{
	char buf[256];

	REQUIRE(read_text(DEV1 "/driver_override", buf, sizeof(buf)) > 0);
	CHECK(strcmp(buf, "vfio-pci\n") == 0);
	CHECK(link_is(DEV1 "/driver", "../../../bus/pci/drivers/vfio-pci"));
	CHECK(link_is(DRV "/" EDU1, "../../../../devices/pci0000:00/" EDU1));
	REQUIRE(read_text(DEV1 "/uevent", buf, sizeof(buf)) > 0);
	CHECK(strncmp(buf, "DRIVER=vfio-pci\n", 16) == 0);
	REQUIRE(read_text(DEV1 "/modalias", buf, sizeof(buf)) > 0);
	CHECK(strncmp(buf, "pci:v00001234d000011E8sv", 24) == 0);
}

TEST(file_modes_and_errnos)
{
	char big[4096];
	char buf[8];
	int fd;

	/* bind and unbind are 0200: not even root opens them for reading. */
	CHECK_ERRNO(EACCES, open(DRV "/unbind", O_RDWR | O_CLOEXEC));
	CHECK_ERRNO(EACCES, open(DRV "/bind", O_RDONLY | O_CLOEXEC));
	CHECK_ERRNO(EACCES, open(DEV1 "/vendor", O_WRONLY | O_CLOEXEC));
	CHECK_ERRNO(ENODEV, write_text(DRV "/unbind", "0000:00:1f.0"));
	CHECK_ERRNO(ENODEV, write_text(DRV "/bind", "0000:00:1f.0"));
	CHECK_ERRNO(EBUSY, write_text(DRV "/bind", EDU1));
	CHECK_ERRNO(ENODEV, write_text("/sys/bus/pci/drivers_probe", "nope"));
	CHECK_ERRNO(EINVAL, write_text(DRV "/new_id", "1234"));
	CHECK_ERRNO(EINVAL, write_text(DRV "/new_id", "1234 11e8 ffffffff ffffffff 0 0 5"));
	CHECK_ERRNO(EINVAL, write_text(DRV "/remove_id", "8086"));
	CHECK_ERRNO(ENODEV, write_text(DRV "/remove_id", "8086 1234"));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	CHECK_ERRNO(EINVAL, write_text(DEV1 "/driver_override", big));
	REQUIRE(read_text(DEV1 "/driver_override", big, sizeof(big)) > 0);
	CHECK(strcmp(big, "vfio-pci\n") == 0);
	/* resourceN is for mmap: a memory BAR's file has no read. */
	fd = open(DEV1 "/resource0", O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	CHECK_ERRNO(EIO, pread(fd, buf, 4, 0));
	close(fd);
}

TEST(unbind_bind_cycle)
{
	char buf[64];
	int fd;

	/* Unbound through the device's own driver link, as driverctl does. */
	CHECK_RET(12, write_text(DEV1 "/driver/unbind", EDU1));
	CHECK(!bound(DEV1));
	CHECK(!exists(DRV "/" EDU1));
	CHECK(!exists(DEV1 "/vfio-dev"));
	CHECK_ERRNO(ENOENT, open("/dev/vfio/devices/vfio1", O_RDWR | O_CLOEXEC));
	REQUIRE(read_text(DEV1 "/uevent", buf, sizeof(buf)) > 0);
	CHECK(strncmp(buf, "DRIVER=", 7) != 0);
	REQUIRE(read_text(DEV1 "/driver_override", buf, sizeof(buf)) > 0);
	CHECK(strcmp(buf, "vfio-pci\n") == 0);
	CHECK_ERRNO(ENODEV, write_text(DRV "/unbind", EDU1));

	/* No override and no id: nothing takes it, and vfio-pci's bind refuses it. */
	CHECK_RET(1, write_text(DEV1 "/driver_override", "\n"));
	REQUIRE(read_text(DEV1 "/driver_override", buf, sizeof(buf)) > 0);
	CHECK(strcmp(buf, "(null)\n") == 0);
	CHECK_RET(12, write_text("/sys/bus/pci/drivers_probe", EDU1));
	CHECK(!bound(DEV1));
	CHECK_ERRNO(ENODEV, write_text(DRV "/bind", EDU1));

	/* The override back: drivers_probe binds it, with its cdev and vfio-dev entry. */
	CHECK_RET(9, write_text(DEV1 "/driver_override", "vfio-pci\n"));
	CHECK_RET(13, write_text("/sys/bus/pci/drivers_probe", EDU1 "\n"));
	CHECK(bound(DEV1));
	CHECK(exists(DRV "/" EDU1));
	CHECK(exists(DEV1 "/vfio-dev/vfio1/dev"));

	/* And once more through vfio-pci's own unbind and bind. */
	CHECK_RET(12, write_text(DRV "/unbind", EDU1));
	CHECK(!bound(DEV1));
	CHECK_RET(12, write_text(DRV "/bind", EDU1));
	CHECK(bound(DEV1));
	fd = open("/dev/vfio/devices/vfio1", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	/* The other device never moved. */
	CHECK(bound("/sys/bus/pci/devices/" EDU0));
}

int main(void)
{
	h_init();
	RUN(booted_bound_by_override);
	RUN(file_modes_and_errnos);
	RUN(unbind_bind_cycle);
	/* Whatever happened above, leave the device bound for the next program. */
	if (!bound(DEV1)) {
		write_text(DEV1 "/driver_override", "vfio-pci");
		write_text("/sys/bus/pci/drivers_probe", EDU1);
	}
	return h_done();
}
