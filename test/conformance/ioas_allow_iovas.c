/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_ALLOW_IOVAS (uapi.md §2.4, §4.3): atomic replacement of the
 * allowed list; start >= last or overlapping ranges are EINVAL, a copy fault
 * is EFAULT, reserved is EOPNOTSUPP, a bad ID is ENOENT, and a failed call
 * keeps the old list. The effect is observed through automatic IOVA
 * allocation, which only picks addresses inside the allowed list. (The
 * EADDRINUSE case needs reserved ranges, i.e. a device: ioas_device.c.)
 */
#include "harness.h"

static int fd = -1;
static __u32 ioas;
static void *mem;

static int setup(void)
{
	if (fd >= 0)
		close(fd);
	fd = iommufd_open();
	if (fd < 0)
		return -1;
	if (!mem)
		mem = h_mmap_exact_align(16 * PAGE_SZ, PAGE_SZ);
	return ioas_alloc(fd, &ioas);
}

/* Auto-maps one page and unmaps it again; returns the chosen IOVA or ~0. */
static __u64 probe_auto_iova(void)
{
	__u64 iova = 0;

	if (ioas_map_auto(fd, ioas, mem, PAGE_SZ, &iova))
		return U64_MAX_;
	if (ioas_unmap(fd, ioas, iova, PAGE_SZ, NULL))
		return U64_MAX_ - 1;
	return iova;
}

TEST(reserved_and_bad_id)
{
	struct iommu_iova_range r = { .start = 0x100000, .last = 0x1fffff };
	struct iommu_ioas_allow_iovas cmd = { .size = sizeof(cmd) };

	REQUIRE_OK(setup());
	cmd.ioas_id = ioas;
	cmd.num_iovas = 1;
	cmd.allowed_iovas = (uintptr_t)&r;
	cmd.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd));
	cmd.ioas_id = ioas + 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd));
	cmd.__reserved = 0;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd));
	cmd.ioas_id = 0;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd));
	cmd.ioas_id = ioas;
	CHECK_OK(ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd));
}

TEST(bad_ranges_are_einval)
{
	struct iommu_iova_range r[3];

	REQUIRE_OK(setup());
	/* start == last: a one-byte range is rejected */
	r[0].start = 0x100000;
	r[0].last = 0x100000;
	CHECK_ERRNO(EINVAL, ioas_allow_iovas(fd, ioas, r, 1));
	/* start > last */
	r[0].start = 0x200000;
	r[0].last = 0x1fffff;
	CHECK_ERRNO(EINVAL, ioas_allow_iovas(fd, ioas, r, 1));
	r[0].start = U64_MAX_;
	r[0].last = U64_MAX_;
	CHECK_ERRNO(EINVAL, ioas_allow_iovas(fd, ioas, r, 1));
	/* overlapping pair, either order */
	r[0].start = 0x100000;
	r[0].last = 0x1fffff;
	r[1].start = 0x1ff000;
	r[1].last = 0x2fffff;
	CHECK_ERRNO(EINVAL, ioas_allow_iovas(fd, ioas, r, 2));
	r[1].start = 0x0;
	r[1].last = 0x100000;
	CHECK_ERRNO(EINVAL, ioas_allow_iovas(fd, ioas, r, 2));
	/* identical */
	r[1] = r[0];
	CHECK_ERRNO(EINVAL, ioas_allow_iovas(fd, ioas, r, 2));
	/* contained */
	r[1].start = 0x180000;
	r[1].last = 0x18ffff;
	CHECK_ERRNO(EINVAL, ioas_allow_iovas(fd, ioas, r, 2));
	/* a later element bad, earlier ones fine */
	r[1].start = 0x400000;
	r[1].last = 0x4fffff;
	r[2].start = 0x500000;
	r[2].last = 0x500000;
	CHECK_ERRNO(EINVAL, ioas_allow_iovas(fd, ioas, r, 3));
	/* touching but not overlapping is fine; full space is fine */
	r[1].start = 0x200000;
	r[1].last = 0x2fffff;
	CHECK_OK(ioas_allow_iovas(fd, ioas, r, 2));
	r[0].start = 0;
	r[0].last = U64_MAX_;
	CHECK_OK(ioas_allow_iovas(fd, ioas, r, 1));
}

TEST(copy_fault_is_efault)
{
	struct iommu_iova_range *edge;
	unsigned char *two = h_mmap(2 * PAGE_SZ);

	REQUIRE_OK(setup());
	CHECK_ERRNO(EFAULT, ioas_allow_iovas(fd, ioas, h_unmapped_addr(), 1));
	CHECK_ERRNO(EFAULT, ioas_allow_iovas(fd, ioas, NULL, 1));
	/* first element readable, second runs into a hole */
	munmap(two + PAGE_SZ, PAGE_SZ);
	edge = (void *)(two + PAGE_SZ - sizeof(*edge));
	edge->start = 0x100000;
	edge->last = 0x1fffff;
	CHECK_ERRNO(EFAULT, ioas_allow_iovas(fd, ioas, edge, 2));
	CHECK_OK(ioas_allow_iovas(fd, ioas, edge, 1));
	/* num 0 reads nothing: a NULL array is fine (it clears the list) */
	CHECK_OK(ioas_allow_iovas(fd, ioas, NULL, 0));
	munmap(two, PAGE_SZ);
}

/* Automatic allocation stays inside the allowed ranges; a failing call
 * leaves the previous list in force; num 0 clears it. */
TEST(list_steers_allocation_and_failure_keeps_old)
{
	struct iommu_iova_range a[2] = {
		{ .start = 0x300000, .last = 0x3fffff },
		{ .start = 0x900000, .last = 0x9fffff },
	};
	struct iommu_iova_range bad[2] = {
		{ .start = 0x10000, .last = 0x1ffff },
		{ .start = 0x18000, .last = 0x2ffff },
	};

	REQUIRE_OK(setup());
	CHECK_EQ(probe_auto_iova(), PAGE_SZ);
	REQUIRE_OK(ioas_allow_iovas(fd, ioas, a, 2));
	CHECK_EQ(probe_auto_iova(), 0x300000);

	CHECK_ERRNO(EINVAL, ioas_allow_iovas(fd, ioas, bad, 2));
	CHECK_EQ(probe_auto_iova(), 0x300000);
	CHECK_ERRNO(EFAULT, ioas_allow_iovas(fd, ioas, h_unmapped_addr(), 2));
	CHECK_EQ(probe_auto_iova(), 0x300000);

	/* Replacement, not addition. */
	REQUIRE_OK(ioas_allow_iovas(fd, ioas, &a[1], 1));
	CHECK_EQ(probe_auto_iova(), 0x900000);

	REQUIRE_OK(ioas_allow_iovas(fd, ioas, NULL, 0));
	CHECK_EQ(probe_auto_iova(), PAGE_SZ);
}

/* FIXED_IOVA maps are not checked against the allowed list, and existing
 * mappings do not stop a list from being set. */
TEST(fixed_maps_ignore_the_list)
{
	struct iommu_iova_range a = { .start = 0x300000, .last = 0x3fffff };
	__u64 unmapped;

	REQUIRE_OK(setup());
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x300000));
	REQUIRE_OK(ioas_allow_iovas(fd, ioas, &a, 1));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x10000));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0));
	CHECK_OK(ioas_unmap(fd, ioas, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, 3 * PAGE_SZ);
}

int main(void)
{
	h_init();
	RUN(reserved_and_bad_id);
	RUN(bad_ranges_are_einval);
	RUN(copy_fault_is_efault);
	RUN(list_steers_allocation_and_failure_keeps_old);
	RUN(fixed_maps_ignore_the_list);
	return h_done();
}
