/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Pinning and RLIMIT_MEMLOCK accounting (uapi.md §4.7) with an edu device behind dmar0: maps
 * without a domain pin nothing and do not check the VA; adding a domain pins every area; pins are
 * charged once per pages object, against the caller's real RLIMIT_MEMLOCK when it lacks
 * CAP_IPC_LOCK; ENOMEM leaves nothing pinned; unmap and detach give the charge back; holes and
 * read-only memory are EFAULT at pin time.
 */
#include <sys/resource.h>

#include "harness.h"
#include "edu_helpers.h"

#define LIMIT (64 * 1024)

/* Drops CAP_IPC_LOCK (so pins are charged) and sets RLIMIT_MEMLOCK to `limit` bytes. */
static int limit_memlock(rlim_t limit)
{
	struct rlimit rl;

	if (cap_set_effective(CAP_IPC_LOCK, 0) || getrlimit(RLIMIT_MEMLOCK, &rl))
		return -1;
	rl.rlim_cur = limit;
	return setrlimit(RLIMIT_MEMLOCK, &rl);
}

TEST(charges_follow_pins)
{
	int fd = iommufd_open();
	struct edu_dev d;
	__u32 ioas;
	char *buf = h_mmap(256 * 1024);

	REQUIRE(fd >= 0 && buf);
	REQUIRE_OK(limit_memlock(LIMIT));
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	/* No domain yet: nothing is pinned, so even far more than the limit maps fine. */
	CHECK_OK(ioas_map_fixed(fd, ioas, buf, 128 * 1024, 0x100000));
	/* Attaching pins every area: 128 KiB > 64 KiB is ENOMEM, and the attach fails as a whole. */
	d.fd = cdev_open(EDU0_CDEV);
	REQUIRE(d.fd >= 0);
	REQUIRE_OK(vfio_bind(d.fd, fd, &d.devid));
	d.hwpt = ioas;
	CHECK_ERRNO(ENOMEM, vfio_attach(d.fd, &d.hwpt));
	CHECK_OK(ioas_unmap(fd, ioas, 0x100000, 128 * 1024, NULL));

	d.hwpt = ioas;
	REQUIRE_OK(vfio_attach(d.fd, &d.hwpt));
	CHECK_OK(ioas_map_fixed(fd, ioas, buf, 32 * 1024, 0x100000));
	CHECK_ERRNO(ENOMEM, ioas_map_fixed(fd, ioas, buf + 32 * 1024, 64 * 1024, 0x200000));
	/* The failed map left nothing behind: exactly the rest of the limit still fits. */
	CHECK_OK(ioas_map_fixed(fd, ioas, buf + 32 * 1024, 32 * 1024, 0x200000));
	CHECK_ERRNO(ENOMEM, ioas_map_fixed(fd, ioas, buf + 64 * 1024, 4096, 0x300000));
	/* Unmap gives the charge back. */
	CHECK_OK(ioas_unmap(fd, ioas, 0x100000, 32 * 1024, NULL));
	CHECK_OK(ioas_map_fixed(fd, ioas, buf + 64 * 1024, 32 * 1024, 0x300000));
	/* Detach unpins everything (the auto domain goes): the whole budget is free again. */
	CHECK_OK(vfio_detach(d.fd));
	CHECK_OK(ioas_unmap(fd, ioas, 0, U64_MAX_, NULL));
	d.hwpt = ioas;
	REQUIRE_OK(vfio_attach(d.fd, &d.hwpt));
	CHECK_OK(ioas_map_fixed(fd, ioas, buf, LIMIT, 0x100000));
	edu_close(&d);
	close(fd);
	munmap(buf, 256 * 1024);
	CHECK_OK(cap_set_effective(CAP_IPC_LOCK, 1));
}

TEST(copy_shares_one_charge)
{
	int fd = iommufd_open();
	struct edu_dev a, b;
	__u32 ioas1, ioas2;
	__u64 dst = 0x500000;
	char *buf = h_mmap(64 * 1024);

	REQUIRE(fd >= 0 && buf);
	REQUIRE_OK(limit_memlock(LIMIT));
	REQUIRE_OK(ioas_alloc(fd, &ioas1));
	REQUIRE_OK(ioas_alloc(fd, &ioas2));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas1, &a));
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, ioas2, &b));
	CHECK_OK(ioas_map_fixed(fd, ioas1, buf, 48 * 1024, 0x100000));
	/* The copy into the second IOAS pins the same pages object: no second charge. */
	CHECK_OK(ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, ioas2, ioas1, 48 * 1024, &dst, 0x100000));
	CHECK_OK(ioas_map_fixed(fd, ioas1, buf + 48 * 1024, 16 * 1024, 0x200000));
	CHECK_ERRNO(ENOMEM, ioas_map_fixed(fd, ioas2, buf, 4096, 0x900000));
	edu_close(&a);
	edu_close(&b);
	close(fd);
	munmap(buf, 64 * 1024);
	CHECK_OK(cap_set_effective(CAP_IPC_LOCK, 1));
}

TEST(bad_memory_is_efault_at_pin_time)
{
	int fd = iommufd_open();
	struct edu_dev d;
	__u32 ioas, lazy;
	void *hole = h_unmapped_addr();
	void *ro = h_readonly_page();

	REQUIRE(fd >= 0 && ro);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(ioas_alloc(fd, &lazy));
	/* Without a domain the VA is not looked at. */
	CHECK_OK(ioas_map_fixed(fd, lazy, hole, 4096, 0x100000));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &d));
	CHECK_ERRNO(EFAULT, ioas_map_fixed(fd, ioas, hole, 4096, 0x100000));
	/* A writable map needs write pins: read-only memory is EFAULT; a read-only map is fine. */
	CHECK_ERRNO(EFAULT, ioas_map_fixed(fd, ioas, ro, 4096, 0x200000));
	__u64 iova = 0x200000;
	CHECK_OK(ioas_map(fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE, ro, 4096, &iova));
	/* Attaching to the IOAS holding the hole pins it: EFAULT, and nothing changes. */
	edu_close(&d);
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, 0, &d));
	d.hwpt = lazy;
	CHECK_ERRNO(EFAULT, vfio_attach(d.fd, &d.hwpt));
	edu_close(&d);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(charges_follow_pins);
	RUN(copy_shares_one_charge);
	RUN(bad_memory_is_efault_at_pin_time);
	return h_done();
}
