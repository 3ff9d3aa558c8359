/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The generic iommufd ioctl framing (spec uapi.md §1.1, §1.2, §6.6, §7):
 * command dispatch by number, the leading size field, min_size, zero-extension
 * of short structs, E2BIG for non-zero unknown tails, the reply length,
 * EOPNOTSUPP for reserved fields and unknown flags, EFAULT for bad pointers,
 * and numbers below 0x80 falling through to the VFIO container compatibility
 * layer.
 */
#include "harness.h"

static int fd = -1;

/* A zero-filled scratch buffer for hand-built argument structs. */
static unsigned char buf[8192] __attribute__((aligned(8)));

static void buf_reset(__u32 size)
{
	memset(buf, 0, sizeof(buf));
	memcpy(buf, &size, sizeof(size));
}

static int open_fresh(void)
{
	if (fd >= 0)
		close(fd);
	fd = iommufd_open();
	return fd;
}

struct cmd_min {
	const char *name;
	unsigned long cmd;
	__u32 min;
	__u32 ksize;
};

#define C(x, m, k) { #x, x, m, k }
/* min_size and kernel size of the core commands (uapi.md §2 table, noiommu.md
 * §2); the others are in framing_adv.c. */
static const struct cmd_min cmds[] = {
	C(IOMMU_DESTROY, 8, 8),
	C(IOMMU_IOAS_ALLOC, 12, 12),
	C(IOMMU_IOAS_ALLOW_IOVAS, 24, 24),
	C(IOMMU_IOAS_COPY, 40, 40),
	C(IOMMU_IOAS_IOVA_RANGES, 32, 32),
	C(IOMMU_IOAS_MAP, 40, 40),
	C(IOMMU_IOAS_UNMAP, 24, 24),
	C(IOMMU_OPTION, 24, 24),
	C(IOMMU_VFIO_IOAS, 12, 12),
	C(IOMMU_HWPT_ALLOC, 24, 48),
	C(IOMMU_GET_HW_INFO, 32, 40),
	C(IOMMU_IOAS_NOIOMMU_GET_PA, 40, 40),
};
#undef C
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

/* size < min_size is EINVAL for every command, whatever else is wrong. */
TEST(size_below_min_is_einval)
{
	unsigned int i;

	REQUIRE(open_fresh() >= 0);
	for (i = 0; i < NCMDS; i++) {
		int rc, e;

		buf_reset(cmds[i].min - 1);
		errno = 0;
		rc = ioctl(fd, cmds[i].cmd, buf);
		e = errno;
		if (rc != -1 || e != EINVAL)
			h_fail(__FILE__, __LINE__,
			       "%s size %u: expected -1/EINVAL, got %d/%s",
			       cmds[i].name, cmds[i].min - 1, rc,
			       h_errname(e));
		buf_reset(0);
		errno = 0;
		rc = ioctl(fd, cmds[i].cmd, buf);
		e = errno;
		if (rc != -1 || e != EINVAL)
			h_fail(__FILE__, __LINE__,
			       "%s size 0: expected -1/EINVAL, got %d/%s",
			       cmds[i].name, rc, h_errname(e));
	}
	/* Nothing was created by any of those. */
	CHECK(!ioas_exists(fd, 1));
}

/*
 * A struct shorter than the kernel's (but at least min_size) is accepted and
 * zero-extended: IOMMU_GET_HW_INFO at 32 bytes (pre-PASID userspace) and
 * IOMMU_HWPT_ALLOC at 24 bytes get past the framing and fail only on the
 * missing device (dev_id 0 is never an object: ENOENT).
 */
TEST(short_struct_is_zero_extended)
{
	REQUIRE(open_fresh() >= 0);

	buf_reset(32);
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_GET_HW_INFO, buf));
	buf_reset(31);
	CHECK_ERRNO(EINVAL, ioctl(fd, IOMMU_GET_HW_INFO, buf));

	buf_reset(24);
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_HWPT_ALLOC, buf));
	buf_reset(23);
	CHECK_ERRNO(EINVAL, ioctl(fd, IOMMU_HWPT_ALLOC, buf));

	/* Bytes past a short size are never read: garbage there is fine. */
	buf_reset(32);
	memset(buf + 32, 0xff, 64);
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_GET_HW_INFO, buf));
}

/* size > kernel size with a non-zero byte in [K, size) is E2BIG, before the
 * handler looks at any field. */
TEST(long_struct_nonzero_tail_is_e2big)
{
	struct iommu_ioas_alloc *alloc = (void *)buf;
	struct iommu_destroy *destroy = (void *)buf;
	__u32 id;

	REQUIRE(open_fresh() >= 0);

	buf_reset(16);
	buf[12] = 1;
	CHECK_ERRNO(E2BIG, ioctl(fd, IOMMU_IOAS_ALLOC, buf));
	buf_reset(16);
	buf[15] = 0x80;
	CHECK_ERRNO(E2BIG, ioctl(fd, IOMMU_IOAS_ALLOC, buf));
	/* E2BIG wins over the handler's own EOPNOTSUPP for flags. */
	buf_reset(16);
	alloc->flags = 1;
	buf[13] = 1;
	CHECK_ERRNO(E2BIG, ioctl(fd, IOMMU_IOAS_ALLOC, buf));
	/* Far away in a big declared size. */
	buf_reset(4096);
	buf[4095] = 1;
	CHECK_ERRNO(E2BIG, ioctl(fd, IOMMU_IOAS_ALLOC, buf));
	/* None of the failed calls created anything. */
	CHECK(!ioas_exists(fd, 1));

	buf_reset(48);
	buf[47] = 1;
	CHECK_ERRNO(E2BIG, ioctl(fd, IOMMU_IOAS_MAP, buf));

	/* A DESTROY with a dirty tail does not destroy. */
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);
	buf_reset(64);
	destroy->id = id;
	buf[40] = 7;
	CHECK_ERRNO(E2BIG, ioctl(fd, IOMMU_DESTROY, buf));
	CHECK(ioas_exists(fd, id));
}

/* size > kernel size with an all-zero tail works; the reply is written for
 * min(size, K) bytes and nothing past it is touched. */
TEST(long_struct_zero_tail_ok_reply_truncated)
{
	struct iommu_ioas_alloc *alloc = (void *)buf;
	struct iommu_destroy *destroy = (void *)buf;
	unsigned int i;
	int bad = 0;

	REQUIRE(open_fresh() >= 0);

	buf_reset(16);
	memset(buf + 16, 0xa5, 64);
	REQUIRE_OK(ioctl(fd, IOMMU_IOAS_ALLOC, buf));
	CHECK_EQ(alloc->out_ioas_id, 1);
	CHECK_EQ(alloc->size, 16);
	for (i = 12; i < 16; i++)
		bad |= buf[i] != 0;
	for (i = 16; i < 80; i++)
		bad |= buf[i] != 0xa5;
	CHECK(!bad);

	buf_reset(4096);
	REQUIRE_OK(ioctl(fd, IOMMU_IOAS_ALLOC, buf));
	CHECK_EQ(alloc->out_ioas_id, 2);
	bad = 0;
	for (i = 12; i < 4096; i++)
		bad |= buf[i] != 0;
	CHECK(!bad);

	buf_reset(64);
	destroy->id = 2;
	CHECK_OK(ioctl(fd, IOMMU_DESTROY, buf));
	CHECK(!ioas_exists(fd, 2));
	CHECK(ioas_exists(fd, 1));
}

/* The exact size: the reply covers only the struct, bytes after the declared
 * size are left alone. */
TEST(reply_never_exceeds_user_size)
{
	struct iommu_ioas_alloc *alloc = (void *)buf;
	struct iommu_ioas_iova_ranges *r = (void *)buf;
	struct iommu_iova_range range[2];
	unsigned int i;
	int bad = 0;

	REQUIRE(open_fresh() >= 0);

	buf_reset(12);
	memset(buf + 12, 0x5a, 52);
	REQUIRE_OK(ioctl(fd, IOMMU_IOAS_ALLOC, buf));
	CHECK_EQ(alloc->out_ioas_id, 1);
	for (i = 12; i < 64; i++)
		bad |= buf[i] != 0x5a;
	CHECK(!bad);

	memset(range, 0, sizeof(range));
	buf_reset(32);
	r->ioas_id = 1;
	r->num_iovas = 2;
	r->allowed_iovas = (uintptr_t)range;
	memset(buf + 32, 0x5a, 32);
	REQUIRE_OK(ioctl(fd, IOMMU_IOAS_IOVA_RANGES, buf));
	CHECK_EQ(r->num_iovas, 1);
	CHECK_EQ(r->out_iova_alignment, 1);
	bad = 0;
	for (i = 32; i < 64; i++)
		bad |= buf[i] != 0x5a;
	CHECK(!bad);
}

/* Faults while reading the struct or scanning its tail are EFAULT. */
TEST(struct_read_fault_is_efault)
{
	unsigned char *two = h_mmap(2 * PAGE_SZ);
	unsigned char *edge;
	__u32 size;

	REQUIRE(open_fresh() >= 0);
	munmap(two + PAGE_SZ, PAGE_SZ);

	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, h_unmapped_addr()));
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_DESTROY, NULL));
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_MAP, (void *)8));

	/* size readable, the rest of the struct is not. */
	edge = two + PAGE_SZ - 8;
	memset(edge, 0, 8);
	size = 12;
	memcpy(edge, &size, 4);
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, edge));

	/* the struct is readable, the zero tail runs into the hole. */
	edge = two + PAGE_SZ - 12;
	memset(edge, 0, 12);
	size = 24;
	memcpy(edge, &size, 4);
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, edge));

	/* Nothing was created; the exact-size struct at the edge works. */
	CHECK(!ioas_exists(fd, 1));
	size = 12;
	memcpy(edge, &size, 4);
	CHECK_OK(ioctl(fd, IOMMU_IOAS_ALLOC, edge));
	CHECK(ioas_exists(fd, 1));
	munmap(two, PAGE_SZ);
}

/* copy_from_user cannot read a PROT_NONE page either. */
TEST(struct_in_noaccess_page_is_efault)
{
	void *p = h_noaccess_page();

	REQUIRE(open_fresh() >= 0);
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, p));
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_DESTROY, p));
	CHECK(!ioas_exists(fd, 1));
	munmap(p, PAGE_SZ);
}

/*
 * A struct the process can read but not write: the command runs, the reply
 * cannot be copied back, the call fails with EFAULT and (uapi.md §2.2) the
 * new IOAS is rolled back, its ID freed.
 */
TEST(reply_write_fault_is_efault_and_rolled_back)
{
	struct iommu_ioas_alloc *ro = h_readonly_page();
	__u32 id;

	REQUIRE(open_fresh() >= 0);
	/* The page is zero: write size 12 through a writable alias first. */
	mprotect(ro, PAGE_SZ, PROT_READ | PROT_WRITE);
	ro->size = sizeof(*ro);
	mprotect(ro, PAGE_SZ, PROT_READ);

	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, ro));
	CHECK(!ioas_exists(fd, 1));
	/* The failed call did not burn ID 1. */
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);
	munmap(ro, PAGE_SZ);
}

/* Numbers >= 0x80 that are not commands: ENOTTY, before any field is looked
 * at. (0xa0 is IOMMU_TEST_CMD on kernels with the test interface; skipped.) */
TEST(unknown_command_is_enotty)
{
	static const unsigned int nrs[] = { 0x96, 0x97, 0x9f, 0xa1, 0xc0, 0xfe, 0xff };
	unsigned int i;

	REQUIRE(open_fresh() >= 0);
	for (i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
		buf_reset(64);
		CHECK_ERRNO(ENOTTY, ioctl(fd, _IO(IOMMUFD_TYPE, nrs[i]), buf));
	}
	/*
	 * Decision (kernel main.c): a number past the end of the command table
	 * goes to the VFIO compat handler before the size is read, so a bad
	 * pointer still gives ENOTTY, not EFAULT.
	 */
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IO(IOMMUFD_TYPE, 0xff), NULL));
}

/* A command's number with direction or size bits (or another type byte) is
 * not that command: ENOTTY, and nothing happens. */
TEST(number_with_dir_or_size_bits_is_enotty)
{
	struct iommu_ioas_alloc *alloc = (void *)buf;
	struct iommu_destroy *destroy = (void *)buf;
	__u32 id;

	REQUIRE(open_fresh() >= 0);

	buf_reset(sizeof(*alloc));
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IOWR(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC,
					    struct iommu_ioas_alloc), buf));
	buf_reset(sizeof(*alloc));
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IOR(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC,
					   struct iommu_ioas_alloc), buf));
	buf_reset(sizeof(*alloc));
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IOW(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC,
					   struct iommu_ioas_alloc), buf));
	buf_reset(sizeof(*alloc));
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IOC(_IOC_NONE, IOMMUFD_TYPE,
					   IOMMUFD_CMD_IOAS_ALLOC, 12), buf));
	buf_reset(sizeof(*alloc));
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IO('x', IOMMUFD_CMD_IOAS_ALLOC), buf));
	CHECK(!ioas_exists(fd, 1));

	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);
	buf_reset(sizeof(*destroy));
	destroy->id = id;
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IOW(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY,
					   struct iommu_destroy), buf));
	CHECK(ioas_exists(fd, id));
}

/* Numbers below 0x80 reach the VFIO container compatibility layer. */
TEST(low_numbers_reach_vfio_compat)
{
	REQUIRE(open_fresh() >= 0);

	CHECK_RET(VFIO_API_VERSION, ioctl(fd, VFIO_GET_API_VERSION));
	CHECK_RET(1, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
	CHECK_RET(1, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU));
	CHECK_RET(1, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL));
	CHECK_RET(0, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR));
	CHECK_RET(0, ioctl(fd, VFIO_CHECK_EXTENSION,
			   __VFIO_RESERVED_TYPE1_NESTING_IOMMU));
	CHECK_RET(0, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU));
	CHECK_RET(0, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_EEH));
	CHECK_RET(0, ioctl(fd, VFIO_CHECK_EXTENSION, 12345));

	/* Unknown there: ENOTTY, whatever the argument. */
	buf_reset(64);
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IO(IOMMUFD_TYPE, 0x7f), buf));
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IO(IOMMUFD_TYPE, 0x00), buf));
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IO(IOMMUFD_TYPE, 0x7f), NULL));
	CHECK_ERRNO(ENOTTY, ioctl(fd, VFIO_IOMMU_DIRTY_PAGES, buf));
	CHECK_ERRNO(ENOTTY, ioctl(fd, VFIO_IOMMU_ENABLE));
	CHECK_ERRNO(ENOTTY, ioctl(fd, VFIO_IOMMU_DISABLE));
	CHECK_ERRNO(ENOTTY, ioctl(fd, VFIO_GROUP_GET_STATUS, buf));
	CHECK_ERRNO(ENOTTY, ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, buf));
	/* The compat layer matches whole numbers too. */
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IOR(VFIO_TYPE, VFIO_BASE + 0, int)));
	CHECK_ERRNO(ENOTTY, ioctl(fd, _IOW(VFIO_TYPE, VFIO_BASE + 1, int),
				  VFIO_TYPE1v2_IOMMU));
}

/* Non-zero reserved fields and unknown flag bits: EOPNOTSUPP, checked before
 * object lookups (so even with a valid IOAS). */
TEST(reserved_and_unknown_flags_core)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_ioas_iova_ranges ranges = { .size = sizeof(ranges) };
	struct iommu_ioas_allow_iovas allow = { .size = sizeof(allow) };
	struct iommu_ioas_map map = { .size = sizeof(map) };
	struct iommu_ioas_copy copy = { .size = sizeof(copy) };
	struct iommu_option option = { .size = sizeof(option) };
	struct iommu_vfio_ioas vioas = { .size = sizeof(vioas) };
	struct iommu_iova_range r[1];
	void *mem = h_mmap(PAGE_SZ);
	__u32 id;

	REQUIRE(open_fresh() >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));

	alloc.flags = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));
	alloc.flags = 0x80000000;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));

	ranges.ioas_id = id;
	ranges.num_iovas = 1;
	ranges.allowed_iovas = (uintptr_t)r;
	ranges.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &ranges));

	allow.ioas_id = id;
	allow.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &allow));

	map.ioas_id = id;
	map.user_va = (uintptr_t)mem;
	map.length = PAGE_SZ;
	map.flags = MAP_RW | (1 << 3);
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_MAP, &map));
	map.flags = MAP_RW | 0x80000000;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_MAP, &map));
	map.flags = MAP_RW;
	map.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_MAP, &map));

	copy.flags = MAP_RW | (1 << 3);
	copy.src_ioas_id = id;
	copy.dst_ioas_id = id;
	copy.length = PAGE_SZ;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_COPY, &copy));

	option.option_id = IOMMU_OPTION_HUGE_PAGES;
	option.op = IOMMU_OPTION_OP_GET;
	option.object_id = id;
	option.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_OPTION, &option));

	vioas.op = IOMMU_VFIO_IOAS_GET;
	vioas.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_VFIO_IOAS, &vioas));

	/* Nothing was mapped or created by any of that. */
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, id, 0, U64_MAX_ - 1, NULL));
	CHECK(!ioas_exists(fd, id + 1));
	munmap(mem, PAGE_SZ);
}

/* IOMMU_IOAS_NOIOMMU_GET_PA (0x95) is registered unconditionally: never
 * ENOTTY; with length 0 it fails with one of its own errnos (EOPNOTSUPP
 * without the no-IOMMU support, EPERM without CAP_SYS_RAWIO, else EINVAL). */
TEST(get_pa_is_a_command)
{
	struct iommu_ioas_noiommu_get_pa pa = { .size = sizeof(pa) };
	int rc, e;

	REQUIRE(open_fresh() >= 0);
	errno = 0;
	rc = ioctl(fd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa);
	e = errno;
	CHECK_EQ(rc, -1);
	if (e != EOPNOTSUPP && e != EPERM && e != EINVAL)
		h_fail(__FILE__, __LINE__,
		       "GET_PA length 0: expected EOPNOTSUPP/EPERM/EINVAL, got %s",
		       h_errname(e));
	pa.size = 39;
	CHECK_ERRNO(EINVAL, ioctl(fd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa));
}

int main(void)
{
	h_init();
	RUN(size_below_min_is_einval);
	RUN(short_struct_is_zero_extended);
	RUN(long_struct_nonzero_tail_is_e2big);
	RUN(long_struct_zero_tail_ok_reply_truncated);
	RUN(reply_never_exceeds_user_size);
	RUN(struct_read_fault_is_efault);
	RUN(struct_in_noaccess_page_is_efault);
	RUN(reply_write_fault_is_efault_and_rolled_back);
	RUN(unknown_command_is_enotty);
	RUN(number_with_dir_or_size_bits_is_enotty);
	RUN(low_numbers_reach_vfio_compat);
	RUN(reserved_and_unknown_flags_core);
	RUN(get_pa_is_a_command);
	return h_done();
}
