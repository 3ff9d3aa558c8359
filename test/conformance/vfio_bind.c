/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * VFIO_DEVICE_BIND_IOMMUFD on a device cdev (uapi.md §6.2): argsz and trailing bytes, the
 * iommufd and flags checks, the VF token, EBADF/EBADFD for a bad iommufd, one bind per fd and one
 * bound fd per device, devids from the iommufd's ID space, and unbind on close.
 */
#include "harness.h"
#include "edu_helpers.h"

/* struct vfio_device_bind_iommufd followed by room for trailing bytes. */
union bind_buf {
	struct vfio_device_bind_iommufd b;
	unsigned char raw[64];
};

static int bind_raw(int dev, union bind_buf *u)
{
	return ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, u);
}

TEST(bind_argsz_below_16_is_einval)
{
	int dev = cdev_open(EDU0_CDEV);
	int iommufd = iommufd_open();
	union bind_buf u;
	__u32 sizes[] = { 0, 4, 12, 15 };
	unsigned int i;

	REQUIRE(dev >= 0 && iommufd >= 0);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(&u, 0, sizeof(u));
		u.b.argsz = sizes[i];
		u.b.iommufd = iommufd;
		CHECK_ERRNO(EINVAL, bind_raw(dev, &u));
	}
	/* Nothing was bound: a proper BIND still works. */
	CHECK_OK(vfio_bind(dev, iommufd, NULL));
	close(dev);
	close(iommufd);
}

/* Bytes past the kernel's struct (24 bytes) must be zero: E2BIG otherwise; zero is fine. */
TEST(bind_trailing_bytes)
{
	int dev = cdev_open(EDU0_CDEV);
	int iommufd = iommufd_open();
	union bind_buf u;
	__u32 devid;

	REQUIRE(dev >= 0 && iommufd >= 0);
	memset(&u, 0, sizeof(u));
	u.b.argsz = 32;
	u.b.iommufd = iommufd;
	u.raw[24] = 1;
	CHECK_ERRNO(E2BIG, bind_raw(dev, &u));
	u.raw[24] = 0;
	u.raw[31] = 0x80;
	CHECK_ERRNO(E2BIG, bind_raw(dev, &u));
	u.raw[31] = 0;
	u.b.out_devid = 0xffffffff;
	CHECK_OK(bind_raw(dev, &u));
	devid = u.b.out_devid;
	CHECK_EQ(devid, 1);
	/* The trailing bytes were not written. */
	CHECK(all_bytes(u.raw + 24, 40, 0));
	close(dev);

	/* The 16-byte struct of headers older than the token field is accepted too. */
	dev = cdev_open(EDU0_CDEV);
	REQUIRE(dev >= 0);
	memset(&u, 0, sizeof(u));
	u.b.argsz = 16;
	u.b.iommufd = iommufd;
	u.b.token_uuid_ptr = 0x1234;	/* beyond argsz: never looked at */
	CHECK_OK(bind_raw(dev, &u));
	/* The unbind of the first fd released devid 1; it is the lowest free ID again. */
	CHECK_EQ(u.b.out_devid, 1);
	close(dev);
	close(iommufd);
}

TEST(bind_negative_iommufd_is_einval)
{
	int dev = cdev_open(EDU0_CDEV);
	union bind_buf u;

	REQUIRE(dev >= 0);
	memset(&u, 0, sizeof(u));
	u.b.argsz = sizeof(u.b);
	u.b.iommufd = -1;
	CHECK_ERRNO(EINVAL, bind_raw(dev, &u));
	u.b.iommufd = -2147483647 - 1;
	CHECK_ERRNO(EINVAL, bind_raw(dev, &u));
	close(dev);
}

TEST(bind_unknown_flags_is_einval)
{
	int dev = cdev_open(EDU0_CDEV);
	int iommufd = iommufd_open();
	union bind_buf u;

	REQUIRE(dev >= 0 && iommufd >= 0);
	memset(&u, 0, sizeof(u));
	u.b.argsz = sizeof(u.b);
	u.b.iommufd = iommufd;
	u.b.flags = 1U << 1;
	CHECK_ERRNO(EINVAL, bind_raw(dev, &u));
	u.b.flags = 0x80000000U;
	CHECK_ERRNO(EINVAL, bind_raw(dev, &u));
	close(dev);
	close(iommufd);
}

/*
 * A VF token for a device that takes none (edu is no SR-IOV VF or PF): EINVAL
 * (vfio_pci_validate_vf_token: "VF token incorrectly provided"; docs/decisions.md 12). The
 * UUID is read first, so a bad pointer is EFAULT (vfio_df_check_token copies it before asking).
 */
TEST(bind_token_for_a_device_without_one)
{
	int dev = cdev_open(EDU0_CDEV);
	int iommufd = iommufd_open();
	unsigned char uuid[16];
	union bind_buf u;

	REQUIRE(dev >= 0 && iommufd >= 0);
	memset(uuid, 0x5a, sizeof(uuid));
	memset(&u, 0, sizeof(u));
	u.b.argsz = sizeof(u.b);
	u.b.iommufd = iommufd;
	u.b.flags = VFIO_DEVICE_BIND_FLAG_TOKEN;
	u.b.token_uuid_ptr = (uintptr_t)uuid;
	CHECK_ERRNO(EINVAL, bind_raw(dev, &u));
	u.b.token_uuid_ptr = (uintptr_t)h_unmapped_addr();
	CHECK_ERRNO(EFAULT, bind_raw(dev, &u));
	/* Still unbound. */
	CHECK_OK(vfio_bind(dev, iommufd, NULL));
	close(dev);
	close(iommufd);
}

TEST(bind_fd_not_open_is_ebadf)
{
	int dev = cdev_open(EDU0_CDEV);
	int spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	__u32 devid;

	REQUIRE(dev >= 0 && spare >= 0);
	close(spare);
	CHECK_ERRNO(EBADF, vfio_bind(dev, spare, &devid));
	REQUIRE(fcntl(1000, F_GETFD) == -1);
	CHECK_ERRNO(EBADF, vfio_bind(dev, 1000, &devid));
	CHECK_ERRNO(EBADF, vfio_bind(dev, 0x7fffffff, &devid));
	close(dev);
}

/* An open fd that is no iommufd: EBADFD, whatever it is. */
TEST(bind_fd_not_an_iommufd_is_ebadfd)
{
	int dev = cdev_open(EDU0_CDEV);
	int other = cdev_open(EDU1_CDEV);
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	int efd = efd_new();
	int p[2];
	__u32 devid;

	REQUIRE(dev >= 0 && other >= 0 && nul >= 0 && efd >= 0);
	REQUIRE(pipe2(p, O_CLOEXEC) == 0);
	CHECK_ERRNO(EBADFD, vfio_bind(dev, p[0], &devid));
	CHECK_ERRNO(EBADFD, vfio_bind(dev, p[1], &devid));
	CHECK_ERRNO(EBADFD, vfio_bind(dev, nul, &devid));
	CHECK_ERRNO(EBADFD, vfio_bind(dev, efd, &devid));
	/* Emulated files that are not /dev/iommu: the device's own fd, another device's. */
	CHECK_ERRNO(EBADFD, vfio_bind(dev, dev, &devid));
	CHECK_ERRNO(EBADFD, vfio_bind(dev, other, &devid));
	close(p[0]);
	close(p[1]);
	close(nul);
	close(efd);
	close(other);
	close(dev);
}

TEST(bind_twice_on_one_fd_is_einval)
{
	int dev = cdev_open(EDU0_CDEV);
	int iommufd = iommufd_open();
	int iommufd2 = iommufd_open();
	__u32 devid = 0, devid2 = 0xdead;

	REQUIRE(dev >= 0 && iommufd >= 0 && iommufd2 >= 0);
	REQUIRE_OK(vfio_bind(dev, iommufd, &devid));
	CHECK_EQ(devid, 1);
	CHECK_ERRNO(EINVAL, vfio_bind(dev, iommufd, &devid2));
	CHECK_ERRNO(EINVAL, vfio_bind(dev, iommufd2, &devid2));
	/* The failed binds created nothing in either context. */
	CHECK_ERRNO(ENOENT, iommu_destroy(iommufd2, 1));
	CHECK_ERRNO(EBUSY, iommu_destroy(iommufd, 1));
	CHECK_ERRNO(ENOENT, iommu_destroy(iommufd, 2));
	close(dev);
	close(iommufd);
	close(iommufd2);
}

/* A device is open through one bound cdev fd at a time (vfio_df_open: open_count != 0). */
TEST(second_open_cannot_bind_while_first_is_bound)
{
	int iommufd = iommufd_open();
	int iommufd2 = iommufd_open();
	int first = cdev_open(EDU0_CDEV);
	int second = cdev_open(EDU0_CDEV);	/* opening twice is allowed */
	struct vfio_device_info info = { .argsz = sizeof(info) };
	__u32 devid;

	REQUIRE(iommufd >= 0 && iommufd2 >= 0);
	REQUIRE(first >= 0);
	REQUIRE(second >= 0);
	REQUIRE_OK(vfio_bind(first, iommufd, &devid));
	CHECK_ERRNO(EINVAL, vfio_bind(second, iommufd, &devid));
	CHECK_ERRNO(EINVAL, vfio_bind(second, iommufd2, &devid));
	/* The second fd stays inert. */
	CHECK_ERRNO(EINVAL, ioctl(second, VFIO_DEVICE_GET_INFO, &info));
	/* The first one works. */
	CHECK_OK(ioctl(first, VFIO_DEVICE_GET_INFO, &info));

	/* Closing the bound fd unbinds: the device object is gone and the second fd may bind. */
	close(first);
	CHECK_ERRNO(ENOENT, iommu_destroy(iommufd, devid));
	CHECK_OK(vfio_bind(second, iommufd2, &devid));
	CHECK_EQ(devid, 1);
	CHECK_OK(ioctl(second, VFIO_DEVICE_GET_INFO, &info));
	close(second);
	close(iommufd);
	close(iommufd2);
}

/* devids come from the iommufd's ID space, shared with every other object. */
TEST(devids_share_the_object_id_space)
{
	int iommufd = iommufd_open();
	struct edu_dev a, b;
	__u32 ioas;

	REQUIRE(iommufd >= 0);
	REQUIRE_OK(ioas_alloc(iommufd, &ioas));
	CHECK_EQ(ioas, 1);
	REQUIRE_OK(edu_open(EDU0_CDEV, iommufd, 0, &a));
	REQUIRE_OK(edu_open(EDU1_CDEV, iommufd, 0, &b));
	CHECK_EQ(a.devid, 2);
	CHECK_EQ(b.devid, 3);
	/* A device object is not an IOAS and cannot be destroyed by the user. */
	CHECK(!ioas_exists(iommufd, a.devid));
	CHECK_ERRNO(EBUSY, iommu_destroy(iommufd, a.devid));
	CHECK_ERRNO(EBUSY, iommu_destroy(iommufd, b.devid));
	edu_close(&a);
	/* Unbound on close: the ID is free and handed out again. */
	CHECK_ERRNO(ENOENT, iommu_destroy(iommufd, 2));
	REQUIRE_OK(ioas_alloc(iommufd, &ioas));
	CHECK_EQ(ioas, 2);
	edu_close(&b);
	close(iommufd);
}

/* The two devices sit in different groups: each may bind to a context of its own. */
TEST(devices_in_different_contexts)
{
	int fd1 = iommufd_open(), fd2 = iommufd_open();
	struct edu_dev a, b;

	REQUIRE(fd1 >= 0 && fd2 >= 0);
	REQUIRE_OK(edu_open(EDU0_CDEV, fd1, 0, &a));
	CHECK_OK(edu_open(EDU1_CDEV, fd2, 0, &b));
	CHECK_EQ(a.devid, 1);
	CHECK_EQ(b.devid, 1);
	edu_close(&a);
	edu_close(&b);
	close(fd1);
	close(fd2);
}

/* The bound device holds the iommufd: closing the program's iommufd fd changes nothing. */
TEST(bound_device_keeps_its_iommufd)
{
	int iommufd = iommufd_open();
	struct edu_dev d;
	__u32 ioas, pt;

	REQUIRE(iommufd >= 0);
	REQUIRE_OK(ioas_alloc(iommufd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, iommufd, 0, &d));
	close(iommufd);
	pt = ioas;
	CHECK_OK(vfio_attach(d.fd, &pt));
	CHECK(pt != ioas);
	CHECK_OK(vfio_detach(d.fd));
	edu_close(&d);
}

int main(void)
{
	h_init();
	RUN(bind_argsz_below_16_is_einval);
	RUN(bind_trailing_bytes);
	RUN(bind_negative_iommufd_is_einval);
	RUN(bind_unknown_flags_is_einval);
	RUN(bind_token_for_a_device_without_one);
	RUN(bind_fd_not_open_is_ebadf);
	RUN(bind_fd_not_an_iommufd_is_ebadfd);
	RUN(bind_twice_on_one_fd_is_einval);
	RUN(second_open_cannot_bind_while_first_is_bound);
	RUN(devids_share_the_object_id_space);
	RUN(devices_in_different_contexts);
	RUN(bound_device_keeps_its_iommufd);
	return h_done();
}
