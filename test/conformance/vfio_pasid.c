/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * VFIO_DEVICE_ATTACH/DETACH_IOMMUFD_PT with the PASID flag on a cdev (uapi.md §6.3): vfio-pci
 * takes it (it has pasid_attach_ioas), so the flag is never EOPNOTSUPP; argsz must reach the
 * pasid field and the field must be readable; then iommufd decides, and an edu, which has no
 * PASID capability, gets iommufd's answer. Detaching a PASID never attached does nothing.
 */
#include "harness.h"
#include "edu_helpers.h"

struct attach_args {
	__u32 argsz, flags, pt_id, pasid;
};

struct detach_args {
	__u32 argsz, flags, pasid;
};

TEST(pasid_attach_and_detach_arguments)
{
	int fd = iommufd_open();
	struct attach_args at;
	struct detach_args dt;
	struct edu_dev d;
	__u32 ioas;
	char *page;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &d));

	/* argsz that stops before pasid. */
	at = (struct attach_args){ .argsz = 12, .flags = VFIO_DEVICE_ATTACH_PASID, .pt_id = ioas,
				   .pasid = 1 };
	CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at));
	/* An unknown flag. */
	at = (struct attach_args){ .argsz = 16, .flags = 2, .pt_id = ioas };
	CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at));

	/* pasid past the end of the mapping: EFAULT, after the argsz check. */
	page = h_mmap(2 * 4096);
	REQUIRE(page != NULL);
	REQUIRE(munmap(page + 4096, 4096) == 0);
	{
		struct attach_args *tail = (struct attach_args *)(page + 4096 - 12);

		/* Only its first 12 bytes are mapped: set them one by one. */
		tail->argsz = 16;
		tail->flags = VFIO_DEVICE_ATTACH_PASID;
		tail->pt_id = ioas;
		CHECK_ERRNO(EFAULT, ioctl(d.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, tail));
	}

	/* An edu has no PASID: iommufd refuses the attach, and pt_id is not written. */
	at = (struct attach_args){ .argsz = 16, .flags = VFIO_DEVICE_ATTACH_PASID, .pt_id = ioas,
				   .pasid = 1 };
	CHECK_EQ(ioctl(d.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), -1);
	CHECK(errno == EINVAL || errno == EOPNOTSUPP);
	h_note("PASID attach of an edu: %s", strerror(errno));
	CHECK_EQ(at.pt_id, ioas);

	/* Detach: argsz short of pasid, an unknown flag, a PASID never attached. */
	dt = (struct detach_args){ .argsz = 8, .flags = VFIO_DEVICE_DETACH_PASID, .pasid = 1 };
	CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt));
	dt = (struct detach_args){ .argsz = 12, .flags = 2 };
	CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt));
	dt = (struct detach_args){ .argsz = 12, .flags = VFIO_DEVICE_DETACH_PASID, .pasid = 5 };
	CHECK_OK(ioctl(d.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt));

	/* The RID still attaches as usual afterwards. */
	at = (struct attach_args){ .argsz = 16, .flags = 0, .pt_id = ioas };
	CHECK_OK(ioctl(d.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at));

	munmap(page, 4096);
	edu_close(&d);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(pasid_attach_and_detach_arguments);
	return h_done();
}
