/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_VFIO_IOAS (uapi.md §2.10): GET/SET/CLEAR of the IOAS the VFIO
 * container compatibility ioctls act on. GET without one is ENODEV, SET
 * needs an IOAS ID (ENOENT), unknown op or reserved is EOPNOTSUPP, and the
 * pointer is not a reference: destroying that IOAS silently clears it.
 */
#include "harness.h"

static int fd = -1;

static int open_fresh(void)
{
	if (fd >= 0)
		close(fd);
	fd = iommufd_open();
	return fd;
}

TEST(vfio_ioas_get_set_clear)
{
	struct iommu_vfio_ioas cmd = { .size = sizeof(cmd) };
	__u32 id, got = 0;

	REQUIRE(open_fresh() >= 0);
	CHECK_ERRNO(ENODEV, vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, &got));
	got = 1;
	CHECK_ERRNO(ENOENT, vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &got));
	got = 0;
	CHECK_ERRNO(ENOENT, vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &got));
	CHECK_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_CLEAR, NULL));

	REQUIRE_OK(ioas_alloc(fd, &id));
	REQUIRE_OK(ioas_alloc(fd, &id));
	got = 1;
	CHECK_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &got));
	CHECK_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, &got));
	CHECK_EQ(got, 1);
	got = 2;
	CHECK_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &got));
	CHECK_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, &got));
	CHECK_EQ(got, 2);
	CHECK_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_CLEAR, NULL));
	CHECK_ERRNO(ENODEV, vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, &got));
	/* CLEAR destroys nothing */
	CHECK(ioas_exists(fd, 2));

	cmd.op = 3;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_VFIO_IOAS, &cmd));
	cmd.op = IOMMU_VFIO_IOAS_GET;
	cmd.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_VFIO_IOAS, &cmd));
}

/* The compat pointer is not a reference: DESTROY works and clears it. */
TEST(destroying_the_compat_ioas_clears_it)
{
	__u32 id;

	REQUIRE(open_fresh() >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	REQUIRE_OK(vfio_ioas(fd, IOMMU_VFIO_IOAS_SET, &id));
	CHECK_OK(iommu_destroy(fd, id));
	CHECK_ERRNO(ENODEV, vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, &id));
	/* a new IOAS with the same ID is not silently the compat one */
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);
	CHECK_ERRNO(ENODEV, vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, &id));
}

int main(void)
{
	h_init();
	RUN(vfio_ioas_get_set_clear);
	RUN(destroying_the_compat_ioas_clears_it);
	return h_done();
}
