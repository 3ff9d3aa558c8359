/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_OPTION (uapi.md §2.9). Reserved or unknown option_id -> EOPNOTSUPP.
 * RLIMIT_MODE: object_id must be 0 (EOPNOTSUPP), unknown op EOPNOTSUPP, GET
 * is 0 (per-user) on /dev/iommu; SET needs CAP_SYS_RESOURCE (EPERM, checked
 * first), an empty context (EBUSY) and a value in {0, 1} (EINVAL).
 * HUGE_PAGES: object_id is an IOAS (ENOENT, looked up before the op is
 * decoded), GET defaults to 1, SET 0/1, other values EINVAL, and turning it
 * off over byte-granular areas is EADDRINUSE. val64 is copied back on every
 * success, SET included.
 */
#include "harness.h"

static int raw_option(int fd, __u32 option_id, __u16 op, __u16 reserved,
		      __u32 object_id, __u64 *val)
{
	struct iommu_option cmd = {
		.size = sizeof(cmd),
		.option_id = option_id,
		.op = op,
		.__reserved = reserved,
		.object_id = object_id,
		.val64 = *val,
	};
	int rc = ioctl(fd, IOMMU_OPTION, &cmd);

	*val = cmd.val64;
	return rc;
}

TEST(unknown_option_and_reserved)
{
	int fd = iommufd_open();
	__u64 v = 0;
	__u32 id;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, 2, IOMMU_OPTION_OP_GET, 0, 0, &v));
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, 2, IOMMU_OPTION_OP_GET, 0, id, &v));
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, U32_MAX_, IOMMU_OPTION_OP_SET, 0,
					   0, &v));
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE,
					   IOMMU_OPTION_OP_GET, 1, 0, &v));
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, IOMMU_OPTION_HUGE_PAGES,
					   IOMMU_OPTION_OP_GET, 0x8000, id, &v));
	/* reserved is checked before the object */
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, IOMMU_OPTION_HUGE_PAGES,
					   IOMMU_OPTION_OP_GET, 1, id + 5, &v));
	close(fd);
}

TEST(rlimit_mode_get_and_checks)
{
	int fd = iommufd_open();
	__u64 v;

	REQUIRE(fd >= 0);
	v = 0x1234;
	CHECK_OK(raw_option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET,
			    0, 0, &v));
	CHECK_EQ(v, 0);
	/* global option: object_id must be 0, for GET and SET alike */
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE,
					   IOMMU_OPTION_OP_GET, 0, 1, &v));
	v = 1;
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE,
					   IOMMU_OPTION_OP_SET, 0, 1, &v));
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE, 2, 0,
					   0, &v));
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE, 0xffff,
					   0, 0, &v));
	close(fd);
}

/*
 * Without CAP_SYS_RESOURCE in the effective set, SET is EPERM whatever the
 * value and state. The capability is dropped with the raw capset syscall;
 * the emulator must read the caller's credentials at the time of the call.
 */
TEST(rlimit_mode_set_without_cap_is_eperm)
{
	int had = cap_effective(CAP_SYS_RESOURCE);
	int fd = iommufd_open();
	__u64 v;
	__u32 id;

	REQUIRE(fd >= 0);
	if (had)
		REQUIRE_OK(cap_set_effective(CAP_SYS_RESOURCE, 0));
	REQUIRE(!cap_effective(CAP_SYS_RESOURCE));

	v = 1;
	CHECK_ERRNO(EPERM, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE,
				      IOMMU_OPTION_OP_SET, 0, 0, &v));
	v = 0;
	CHECK_ERRNO(EPERM, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE,
				      IOMMU_OPTION_OP_SET, 0, 0, &v));
	v = 7;
	CHECK_ERRNO(EPERM, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE,
				      IOMMU_OPTION_OP_SET, 0, 0, &v));
	REQUIRE_OK(ioas_alloc(fd, &id));
	v = 1;
	CHECK_ERRNO(EPERM, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE,
				      IOMMU_OPTION_OP_SET, 0, 0, &v));
	/* GET needs no privilege and the mode did not change */
	CHECK_OK(option_get(fd, IOMMU_OPTION_RLIMIT_MODE, 0, &v));
	CHECK_EQ(v, 0);

	if (had)
		CHECK_OK(cap_set_effective(CAP_SYS_RESOURCE, 1));
	close(fd);
}

TEST(rlimit_mode_set_with_cap)
{
	int fd, fd2;
	__u64 v;
	__u32 id;

	if (!cap_effective(CAP_SYS_RESOURCE))
		SKIP("process lacks CAP_SYS_RESOURCE");
	fd = iommufd_open();
	REQUIRE(fd >= 0);

	v = 1;
	CHECK_OK(raw_option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET,
			    0, 0, &v));
	CHECK_EQ(v, 1);
	CHECK_OK(option_get(fd, IOMMU_OPTION_RLIMIT_MODE, 0, &v));
	CHECK_EQ(v, 1);
	/* per context: another open is still per-user */
	fd2 = iommufd_open();
	REQUIRE(fd2 >= 0);
	CHECK_OK(option_get(fd2, IOMMU_OPTION_RLIMIT_MODE, 0, &v));
	CHECK_EQ(v, 0);
	close(fd2);

	v = 2;
	CHECK_ERRNO(EINVAL, raw_option(fd, IOMMU_OPTION_RLIMIT_MODE,
				       IOMMU_OPTION_OP_SET, 0, 0, &v));
	CHECK_OK(option_set(fd, IOMMU_OPTION_RLIMIT_MODE, 0, 0));
	CHECK_OK(option_get(fd, IOMMU_OPTION_RLIMIT_MODE, 0, &v));
	CHECK_EQ(v, 0);

	/* any object at all makes it EBUSY (before the value is checked) */
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_ERRNO(EBUSY, option_set(fd, IOMMU_OPTION_RLIMIT_MODE, 0, 1));
	CHECK_ERRNO(EBUSY, option_set(fd, IOMMU_OPTION_RLIMIT_MODE, 0, 2));
	CHECK_OK(iommu_destroy(fd, id));
	CHECK_OK(option_set(fd, IOMMU_OPTION_RLIMIT_MODE, 0, 1));
	CHECK_OK(option_get(fd, IOMMU_OPTION_RLIMIT_MODE, 0, &v));
	CHECK_EQ(v, 1);
	close(fd);
}

/* /dev/vfio/vfio provided by iommufd opens in per-process ("mm") mode. */
TEST(rlimit_mode_default_on_vfio_container)
{
	int fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	__u64 v = 0;
	int rc;

	if (fd < 0)
		SKIP("no /dev/vfio/vfio (%s)", h_errname(errno));
	rc = option_get(fd, IOMMU_OPTION_RLIMIT_MODE, 0, &v);
	if (rc && errno == ENOTTY) {
		close(fd);
		SKIP("/dev/vfio/vfio is a legacy VFIO container, not iommufd");
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(v, 1);
	close(fd);
}

TEST(huge_pages_get_set)
{
	int fd = iommufd_open();
	__u64 v;
	__u32 id;

	REQUIRE(fd >= 0);
	CHECK_ERRNO(ENOENT, option_get(fd, IOMMU_OPTION_HUGE_PAGES, 0, &v));
	CHECK_ERRNO(ENOENT, option_get(fd, IOMMU_OPTION_HUGE_PAGES, 1, &v));
	CHECK_ERRNO(ENOENT, option_set(fd, IOMMU_OPTION_HUGE_PAGES, 1, 0));
	REQUIRE_OK(ioas_alloc(fd, &id));

	v = 0x77;
	CHECK_OK(raw_option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, 0,
			    id, &v));
	CHECK_EQ(v, 1);
	/* SET copies val64 back too */
	v = 0;
	CHECK_OK(raw_option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, 0,
			    id, &v));
	CHECK_EQ(v, 0);
	CHECK_OK(option_get(fd, IOMMU_OPTION_HUGE_PAGES, id, &v));
	CHECK_EQ(v, 0);
	CHECK_OK(option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 0));
	CHECK_OK(option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 1));
	CHECK_OK(option_get(fd, IOMMU_OPTION_HUGE_PAGES, id, &v));
	CHECK_EQ(v, 1);
	CHECK_ERRNO(EINVAL, option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 2));
	CHECK_ERRNO(EINVAL, option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, U64_MAX_));
	CHECK_OK(option_get(fd, IOMMU_OPTION_HUGE_PAGES, id, &v));
	CHECK_EQ(v, 1);

	/* unknown op: EOPNOTSUPP with a valid IOAS, ENOENT without (the IOAS
	 * is looked up first) */
	v = 0;
	CHECK_ERRNO(EOPNOTSUPP, raw_option(fd, IOMMU_OPTION_HUGE_PAGES, 2, 0,
					   id, &v));
	CHECK_ERRNO(ENOENT, raw_option(fd, IOMMU_OPTION_HUGE_PAGES, 2, 0,
				       id + 1, &v));
	/* the option belongs to one IOAS */
	{
		__u32 id2;

		REQUIRE_OK(ioas_alloc(fd, &id2));
		CHECK_OK(option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 0));
		CHECK_OK(option_get(fd, IOMMU_OPTION_HUGE_PAGES, id2, &v));
		CHECK_EQ(v, 1);
	}
	close(fd);
}

/* Turning huge pages off raises the alignment to PAGE_SIZE; existing
 * (domain-less, byte-granular) areas that do not fit make it EADDRINUSE
 * and nothing changes. */
TEST(huge_pages_off_over_unaligned_areas)
{
	unsigned char *mem = h_mmap_exact_align(4 * PAGE_SZ, PAGE_SZ);
	struct iommu_iova_range r[1];
	int fd = iommufd_open();
	__u64 v, align, unmapped;
	__u32 id, num;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));

	/* unaligned IOVA */
	REQUIRE_OK(ioas_map_fixed(fd, id, mem, PAGE_SZ, 0x100800));
	CHECK_ERRNO(EADDRINUSE, option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 0));
	CHECK_OK(ioas_unmap(fd, id, 0, U64_MAX_, &unmapped));
	/* unaligned length */
	REQUIRE_OK(ioas_map_fixed(fd, id, mem, PAGE_SZ + 1, 0x100000));
	CHECK_ERRNO(EADDRINUSE, option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 0));
	CHECK_OK(ioas_unmap(fd, id, 0, U64_MAX_, &unmapped));
	/* unaligned offset of user_va in its page */
	REQUIRE_OK(ioas_map_fixed(fd, id, mem + 0x10, PAGE_SZ, 0x100000));
	CHECK_ERRNO(EADDRINUSE, option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 0));

	CHECK_OK(option_get(fd, IOMMU_OPTION_HUGE_PAGES, id, &v));
	CHECK_EQ(v, 1);
	num = 1;
	CHECK_OK(ioas_iova_ranges(fd, id, r, &num, &align));
	CHECK_EQ(align, 1);
	CHECK_OK(ioas_unmap(fd, id, 0, U64_MAX_, &unmapped));

	/* page-aligned areas are fine */
	REQUIRE_OK(ioas_map_fixed(fd, id, mem + PAGE_SZ, 2 * PAGE_SZ, 0x100000));
	CHECK_OK(option_set(fd, IOMMU_OPTION_HUGE_PAGES, id, 0));
	num = 1;
	CHECK_OK(ioas_iova_ranges(fd, id, r, &num, &align));
	CHECK_EQ(align, PAGE_SZ);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(unknown_option_and_reserved);
	RUN(rlimit_mode_get_and_checks);
	RUN(rlimit_mode_set_without_cap_is_eperm);
	RUN(rlimit_mode_set_with_cap);
	RUN(rlimit_mode_default_on_vfio_container);
	RUN(huge_pages_get_set);
	RUN(huge_pages_off_over_unaligned_areas);
	return h_done();
}
