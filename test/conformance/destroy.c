/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_DESTROY (uapi.md §2.1) and the object ID space (§3.2): IDs start at
 * 1, the lowest free ID is reused, failed calls do not consume IDs, destroyed
 * or never-existing IDs are ENOENT. (EBUSY needs a referenced object and is
 * covered with a device in ioas_device.c.)
 */
#include "harness.h"

TEST(destroy_unknown_id_is_enoent)
{
	int fd = iommufd_open();

	REQUIRE(fd >= 0);
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 0));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 1));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 2));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 0x7fffffff));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 0x80000000));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, U32_MAX_));
	close(fd);
}

TEST(destroy_then_gone)
{
	int fd = iommufd_open();
	__u32 id;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);
	CHECK(ioas_exists(fd, id));
	CHECK_OK(iommu_destroy(fd, id));
	CHECK(!ioas_exists(fd, id));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, id));
	/* Every use of the dead ID is ENOENT. */
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, id, 0, U64_MAX_, NULL));
	CHECK_ERRNO(ENOENT, option_get(fd, IOMMU_OPTION_HUGE_PAGES, id, NULL));
	close(fd);
}

/* Destroying an IOAS that still has mappings is fine: they go with it. */
TEST(destroy_ioas_with_mappings)
{
	int fd = iommufd_open();
	void *mem = h_mmap(4 * PAGE_SZ);
	__u64 iova;
	__u32 id;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_OK(ioas_map_fixed(fd, id, mem, 2 * PAGE_SZ, 0x100000));
	CHECK_OK(ioas_map_auto(fd, id, mem, 4 * PAGE_SZ, &iova));
	CHECK_OK(iommu_destroy(fd, id));
	CHECK(!ioas_exists(fd, id));
	close(fd);
	munmap(mem, 4 * PAGE_SZ);
}

TEST(ids_start_at_one_and_lowest_free_is_reused)
{
	int fd = iommufd_open();
	__u32 a, b, c, d;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &a));
	REQUIRE_OK(ioas_alloc(fd, &b));
	REQUIRE_OK(ioas_alloc(fd, &c));
	CHECK_EQ(a, 1);
	CHECK_EQ(b, 2);
	CHECK_EQ(c, 3);

	CHECK_OK(iommu_destroy(fd, 2));
	REQUIRE_OK(ioas_alloc(fd, &d));
	CHECK_EQ(d, 2);

	CHECK_OK(iommu_destroy(fd, 1));
	CHECK_OK(iommu_destroy(fd, 3));
	REQUIRE_OK(ioas_alloc(fd, &d));
	CHECK_EQ(d, 1);
	REQUIRE_OK(ioas_alloc(fd, &d));
	CHECK_EQ(d, 3);
	REQUIRE_OK(ioas_alloc(fd, &d));
	CHECK_EQ(d, 4);
	close(fd);
}

/* Failed creations give their reserved ID back. */
TEST(failed_calls_do_not_burn_ids)
{
	struct iommu_ioas_alloc bad = { .size = sizeof(bad), .flags = 1 };
	int fd = iommufd_open();
	__u32 id;

	REQUIRE(fd >= 0);
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_ALLOC, &bad));
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_ALLOC, &bad));
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);

	/* Failed non-creating calls do not touch the ID space either. */
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 7));
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, 1, 0x1000, 0x1000, NULL));
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 2);
	close(fd);
}

/* The reply cannot be written: the new IOAS is destroyed again and its ID
 * released (uapi.md §2.2). */
TEST(failed_reply_does_not_burn_id)
{
	struct iommu_ioas_alloc *ro = h_readonly_page();
	int fd = iommufd_open();
	__u32 id;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	mprotect(ro, PAGE_SZ, PROT_READ | PROT_WRITE);
	ro->size = sizeof(*ro);
	mprotect(ro, PAGE_SZ, PROT_READ);
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, ro));
	CHECK(!ioas_exists(fd, 2));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 2));
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 2);
	close(fd);
	munmap(ro, PAGE_SZ);
}

/* Many objects: IDs are dense and each one is destroyable exactly once. */
TEST(many_ids)
{
	int fd = iommufd_open();
	__u32 i, id;

	REQUIRE(fd >= 0);
	for (i = 1; i <= 200; i++) {
		REQUIRE_OK(ioas_alloc(fd, &id));
		CHECK_EQ(id, i);
	}
	for (i = 1; i <= 200; i += 2)
		CHECK_OK(iommu_destroy(fd, i));
	/* The odd IDs come back in ascending order. */
	for (i = 1; i <= 200; i += 2) {
		REQUIRE_OK(ioas_alloc(fd, &id));
		CHECK_EQ(id, i);
	}
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 201);
	for (i = 1; i <= 201; i++)
		CHECK_OK(iommu_destroy(fd, i));
	for (i = 1; i <= 201; i++)
		CHECK_ERRNO(ENOENT, iommu_destroy(fd, i));
	close(fd);
}

/* Closing the fd destroys everything; a new open starts again at 1. */
TEST(close_releases_everything)
{
	int fd = iommufd_open();
	__u32 id;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 2);
	close(fd);
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	CHECK(!ioas_exists(fd, 1));
	CHECK(!ioas_exists(fd, 2));
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(destroy_unknown_id_is_enoent);
	RUN(destroy_then_gone);
	RUN(destroy_ioas_with_mappings);
	RUN(ids_start_at_one_and_lowest_free_is_reused);
	RUN(failed_calls_do_not_burn_ids);
	RUN(failed_reply_does_not_burn_id);
	RUN(many_ids);
	RUN(close_releases_everything);
	return h_done();
}
