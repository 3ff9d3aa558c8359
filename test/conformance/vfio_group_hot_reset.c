// exec-args: --enable-unsafe-noiommu-mode --platform examples/platforms/resets.json
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vfio-pci's hot reset on the legacy group path (drivers/vfio/pci/vfio_pci_core.c): for a device
 * opened through its group, GET_PCI_HOT_RESET_INFO names every device the reset reaches by its
 * IOMMU group id (no DEV_ID flags), ENOSPC with the count when the array does not fit; and
 * PCI_HOT_RESET takes the group fds that prove ownership: a zero-length array is for cdev-opened
 * devices (EINVAL), more fds than devices is EINVAL, a closed fd EBADF, a fd that is no group
 * EINVAL, a missing group EINVAL, every group resets. The device keeps working afterwards.
 *
 * Under the emulator the platform has a bus of two IOMMU edus (groups 0 and 1) with a bus reset
 * and a no-IOMMU edu with FLR only; on Linux in the lane the IOMMU edus sit on the root bus (no
 * hot reset: ENODEV) and the no-IOMMU edu alone behind a root port (a slot reset).
 */
#include "harness.h"
#include "edu_helpers.h"
#include "group_helpers.h"

#define MAX_REACHED 8

static const char *const NAMES[] = { "vfio0", "vfio1", "noiommu-vfio2" };

struct reset_info {
	struct vfio_pci_hot_reset_info hdr;
	struct vfio_pci_dependent_device devices[MAX_REACHED];
};

struct hot_reset {
	struct vfio_pci_hot_reset hdr;
	__s32 fds[MAX_REACHED + 1];
};

/* A device opened through its group, in a container of its own. */
struct grouped {
	int container, group, dev;
	int noiommu;
	char bdf[16];
};

static void grouped_close(struct grouped *g)
{
	if (g->dev >= 0)
		close(g->dev);
	if (g->group >= 0)
		close(g->group);
	if (g->container >= 0)
		close(g->container);
	g->dev = g->group = g->container = -1;
}

/*
 * Opens vfio-dev `name` through its group, in a container of its own, for a test case: 1 when it
 * is open; 0 when there is no such device, or when it could not be opened (a failed check).
 */
static int grouped_open(const char *name, struct grouped *g)
{
	int err;

	g->container = g->group = g->dev = -1;
	g->noiommu = strncmp(name, "noiommu-", 8) == 0;
	if (vfio_dev_bdf(name, g->bdf))
		return 0;
	g->container = container_open();
	g->group = group_open(g->bdf, g->noiommu);
	if (g->container < 0 || g->group < 0 || group_set_container(g->group, g->container) ||
	    ioctl(g->container, VFIO_SET_IOMMU,
		  g->noiommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU))
		goto fail;
	g->dev = ioctl(g->group, VFIO_GROUP_GET_DEVICE_FD, g->bdf);
	if (g->dev < 0)
		goto fail;
	return 1;
fail:
	err = errno;
	grouped_close(g);
	h_fail(__FILE__, __LINE__, "%s cannot be opened through its group: %s", name,
	       h_errname(err));
	return 0;
}

static int hot_reset(int dev, const __s32 *fds, __u32 count)
{
	struct hot_reset hr;

	memset(&hr, 0, sizeof(hr));
	hr.hdr.argsz = sizeof(hr.hdr) + count * sizeof(__s32);
	hr.hdr.count = count;
	if (count)
		memcpy(hr.fds, fds, count * sizeof(__s32));
	return ioctl(dev, VFIO_DEVICE_PCI_HOT_RESET, &hr);
}

/* The header alone: ENODEV, or ENOSPC with the count and nothing else written. */
TEST(info_header_and_enospc)
{
	int seen = 0;

	for (unsigned i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++) {
		struct reset_info ri;
		struct grouped g;

		if (!grouped_open(NAMES[i], &g))
			continue;
		seen++;
		memset(&ri, 0xa5, sizeof(ri));
		ri.hdr.argsz = sizeof(ri.hdr);
		errno = 0;
		CHECK_EQ(ioctl(g.dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &ri), -1);
		if (errno == ENOSPC) {
			CHECK_EQ(ri.hdr.argsz, sizeof(ri.hdr));
			CHECK_EQ(ri.hdr.flags, 0);
			CHECK(ri.hdr.count >= 1 && ri.hdr.count <= MAX_REACHED);
			CHECK_EQ(ri.devices[0].segment, 0xa5a5);
			/* Room for one less than needed: ENOSPC again, the same count. */
			if (ri.hdr.count > 1 && ri.hdr.count <= MAX_REACHED) {
				__u32 count = ri.hdr.count;

				ri.hdr.argsz = sizeof(ri.hdr) + (count - 1) * sizeof(ri.devices[0]);
				CHECK_ERRNO(ENOSPC,
					    ioctl(g.dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &ri));
				CHECK_EQ(ri.hdr.count, count);
			}
		} else {
			CHECK_EQ(errno, ENODEV);
			/* No bus or slot reset: the reset itself is ENODEV, after the count check. */
			CHECK_ERRNO(EINVAL, hot_reset(g.dev, NULL, 0));
			CHECK_ERRNO(ENODEV, hot_reset(g.dev, &g.group, 1));
		}
		grouped_close(&g);
	}
	if (!seen)
		SKIP("no VFIO device");
}

/*
 * With room for the array: group ids, each the IOMMU group of the device at that address, the
 * device itself among them; then PCI_HOT_RESET's errnos and a reset with every group.
 */
TEST(group_ids_then_reset_with_every_group)
{
	int seen = 0;

	for (unsigned i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++) {
		__s32 fds[MAX_REACHED + 1];
		unsigned nfds = 0, self = 0, missing = 0;
		int own = -1, opened[MAX_REACHED];
		unsigned nopened = 0;
		struct reset_info ri;
		struct grouped g;

		if (!grouped_open(NAMES[i], &g))
			continue;
		memset(&ri, 0xa5, sizeof(ri));
		ri.hdr.argsz = sizeof(ri);
		if (ioctl(g.dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &ri)) {
			CHECK_EQ(errno, ENODEV);
			grouped_close(&g);
			continue;
		}
		seen++;
		own = group_number(g.bdf);
		CHECK_EQ(ri.hdr.flags, 0);
		REQUIRE(ri.hdr.count >= 1 && ri.hdr.count <= MAX_REACHED);
		if (ri.hdr.count < MAX_REACHED)
			CHECK_EQ(ri.devices[ri.hdr.count].segment, 0xa5a5);
		fds[nfds++] = g.group;
		for (unsigned j = 0; j < ri.hdr.count; j++) {
			struct vfio_pci_dependent_device *dd = &ri.devices[j];
			char bdf[16];
			int fd;

			snprintf(bdf, sizeof(bdf), "%04x:%02x:%02x.%u", dd->segment, dd->bus,
				 dd->devfn >> 3, dd->devfn & 7);
			CHECK_EQ((int)dd->group_id, group_number(bdf));
			if (strcmp(bdf, g.bdf) == 0) {
				self = 1;
				CHECK_EQ((int)dd->group_id, own);
			}
			if ((int)dd->group_id == own)
				continue;
			missing = 1;
			fd = group_open(bdf, g.noiommu);
			CHECK(fd >= 0);
			if (fd >= 0) {
				opened[nopened++] = fd;
				fds[nfds++] = fd;
			}
		}
		CHECK(self);

		/* The checks, in the kernel's order. */
		CHECK_ERRNO(EINVAL, hot_reset(g.dev, NULL, 0));
		{
			__s32 more[MAX_REACHED + 1];

			for (unsigned j = 0; j <= ri.hdr.count; j++)
				more[j] = g.group;
			CHECK_ERRNO(EINVAL, hot_reset(g.dev, more, ri.hdr.count + 1));
		}
		{
			__s32 bad = 999;

			CHECK_ERRNO(EBADF, hot_reset(g.dev, &bad, 1));
			CHECK_ERRNO(EINVAL, hot_reset(g.dev, &g.container, 1));
		}
		if (missing)
			CHECK_ERRNO(EINVAL, hot_reset(g.dev, &g.group, 1));
		CHECK_OK(hot_reset(g.dev, fds, nfds));
		edu_check_still_works(g.dev);
		for (unsigned j = 0; j < nopened; j++)
			close(opened[j]);
		grouped_close(&g);
	}
	if (!seen)
		SKIP("no device with a bus or slot reset");
}

int main(void)
{
	h_init();
	RUN(info_header_and_enospc);
	RUN(group_ids_then_reset_with_every_group);
	return h_done();
}
