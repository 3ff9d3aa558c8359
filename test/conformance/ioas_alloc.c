/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_ALLOC (uapi.md §2.2, §4.4): flags must be 0 (EOPNOTSUPP), the
 * new IOAS is empty with the full IOVA range, alignment 1 and huge pages on;
 * a reply that cannot be written rolls the object back (EFAULT).
 */
#include "harness.h"

TEST(flags_must_be_zero)
{
	int fd = iommufd_open();
	unsigned int bit;

	REQUIRE(fd >= 0);
	for (bit = 0; bit < 32; bit++) {
		struct iommu_ioas_alloc cmd = {
			.size = sizeof(cmd),
			.flags = 1U << bit,
		};

		CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_ALLOC, &cmd));
	}
	CHECK(!ioas_exists(fd, 1));
	close(fd);
}

/* out_ioas_id is output only: whatever the caller put there is ignored. */
TEST(out_id_is_output_only)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd), .out_ioas_id = 77 };
	int fd = iommufd_open();

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioctl(fd, IOMMU_IOAS_ALLOC, &cmd));
	CHECK_EQ(cmd.out_ioas_id, 1);
	CHECK_EQ(cmd.size, sizeof(cmd));
	CHECK_EQ(cmd.flags, 0);
	close(fd);
}

TEST(fresh_ioas_state)
{
	struct iommu_iova_range r[2];
	int fd = iommufd_open();
	__u64 align = 0, hp = 0;
	__u32 id, num = 2;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	memset(r, 0xcc, sizeof(r));
	REQUIRE_OK(ioas_iova_ranges(fd, id, r, &num, &align));
	CHECK_EQ(num, 1);
	CHECK_EQ(r[0].start, 0);
	CHECK_EQ(r[0].last, U64_MAX_);
	CHECK_EQ(align, 1);
	CHECK_OK(option_get(fd, IOMMU_OPTION_HUGE_PAGES, id, &hp));
	CHECK_EQ(hp, 1);
	/* Empty: unmap-all succeeds and reports 0 bytes. */
	{
		__u64 unmapped = 123;

		CHECK_OK(ioas_unmap(fd, id, 0, U64_MAX_, &unmapped));
		CHECK_EQ(unmapped, 0);
	}
	/* Not the VFIO compat IOAS just by existing. */
	CHECK_ERRNO(ENODEV, vfio_ioas(fd, IOMMU_VFIO_IOAS_GET, NULL));
	close(fd);
}

/* Two IOASes are independent address spaces. */
TEST(ioases_are_independent)
{
	void *mem = h_mmap(PAGE_SZ);
	int fd = iommufd_open();
	__u64 unmapped;
	__u32 a, b;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &a));
	REQUIRE_OK(ioas_alloc(fd, &b));
	CHECK_OK(ioas_map_fixed(fd, a, mem, PAGE_SZ, 0x10000));
	CHECK_OK(ioas_map_fixed(fd, b, mem, PAGE_SZ, 0x10000));
	CHECK_OK(ioas_unmap(fd, a, 0x10000, PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, PAGE_SZ);
	CHECK_OK(ioas_unmap(fd, b, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, PAGE_SZ);
	close(fd);
	munmap(mem, PAGE_SZ);
}

TEST(reply_fault_rolls_back)
{
	struct iommu_ioas_alloc *ro = h_readonly_page();
	int fd = iommufd_open();
	__u32 id;

	REQUIRE(fd >= 0);
	mprotect(ro, PAGE_SZ, PROT_READ | PROT_WRITE);
	ro->size = sizeof(*ro);
	mprotect(ro, PAGE_SZ, PROT_READ);
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, ro));
	CHECK(!ioas_exists(fd, 1));
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);
	close(fd);
	munmap(ro, PAGE_SZ);
}

int main(void)
{
	h_init();
	RUN(flags_must_be_zero);
	RUN(out_id_is_output_only);
	RUN(fresh_ioas_state);
	RUN(ioases_are_independent);
	RUN(reply_fault_rolls_back);
	return h_done();
}
