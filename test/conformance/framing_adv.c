/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The generic framing for the commands beyond the IOAS core: dirty tracking,
 * invalidation, fault queues, MAP_FILE, vIOMMU/vDEVICE/vEVENTQ/HW queue and
 * CHANGE_PROCESS (uapi.md §1.1, §2.13-§2.21). They are registered in every
 * kernel of the baseline, so they answer with their own errnos (never
 * ENOTTY): size < min_size is EINVAL, reserved fields and unknown flags are
 * EOPNOTSUPP before any object lookup, missing objects are ENOENT.
 */
#include "harness.h"

static int fd = -1;
static unsigned char buf[256] __attribute__((aligned(8)));

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
};

#define C(x, m) { #x, x, m }
static const struct cmd_min cmds[] = {
	C(IOMMU_HWPT_SET_DIRTY_TRACKING, 16),
	C(IOMMU_HWPT_GET_DIRTY_BITMAP, 48),
	C(IOMMU_HWPT_INVALIDATE, 32),
	C(IOMMU_FAULT_QUEUE_ALLOC, 16),
	C(IOMMU_IOAS_MAP_FILE, 40),
	C(IOMMU_VIOMMU_ALLOC, 24),
	C(IOMMU_VDEVICE_ALLOC, 24),
	C(IOMMU_IOAS_CHANGE_PROCESS, 8),
	C(IOMMU_VEVENTQ_ALLOC, 28),
	C(IOMMU_HW_QUEUE_ALLOC, 40),
};
#undef C
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

TEST(size_below_min_is_einval)
{
	unsigned int i;

	REQUIRE(open_fresh() >= 0);
	for (i = 0; i < NCMDS; i++) {
		__u32 sizes[2] = { cmds[i].min - 1, 0 };
		int k;

		for (k = 0; k < 2; k++) {
			int rc, e;

			memset(buf, 0, sizeof(buf));
			memcpy(buf, &sizes[k], 4);
			errno = 0;
			rc = ioctl(fd, cmds[i].cmd, buf);
			e = errno;
			if (rc != -1 || e != EINVAL)
				h_fail(__FILE__, __LINE__,
				       "%s size %u: expected -1/EINVAL, got %d/%s",
				       cmds[i].name, sizes[k], rc, h_errname(e));
		}
	}
}

/* Shorter-than-kernel structs at their minimum size get past the framing
 * (VIOMMU_ALLOC 24 of 40, VEVENTQ_ALLOC 28 of 32): with type DEFAULT both
 * are EOPNOTSUPP, not EINVAL. */
TEST(short_structs_accepted)
{
	REQUIRE(open_fresh() >= 0);
	memset(buf, 0, sizeof(buf));
	buf[0] = 24;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_VIOMMU_ALLOC, buf));
	memset(buf, 0, sizeof(buf));
	buf[0] = 28;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_VEVENTQ_ALLOC, buf));
}

/* The same rule for the device / nesting / event commands: the checks come
 * before the (here missing) objects are looked up. */
TEST(reserved_and_unknown_flags_adv)
{
	struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt) };
	struct iommu_hw_info info = { .size = sizeof(info) };
	struct iommu_hwpt_set_dirty_tracking dirty = { .size = sizeof(dirty) };
	struct iommu_hwpt_get_dirty_bitmap bitmap = { .size = sizeof(bitmap) };
	struct iommu_hwpt_invalidate inv = { .size = sizeof(inv) };
	struct iommu_fault_alloc fault = { .size = sizeof(fault) };
	struct iommu_viommu_alloc viommu = { .size = sizeof(viommu) };
	struct iommu_veventq_alloc veventq = { .size = sizeof(veventq) };
	struct iommu_hw_queue_alloc hwq = { .size = sizeof(hwq) };
	struct iommu_ioas_change_process chg = { .size = sizeof(chg) };
	int i;

	REQUIRE(open_fresh() >= 0);

	hwpt.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HWPT_ALLOC, &hwpt));

	info.flags = 2;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	info.flags = 0;
	for (i = 0; i < 3; i++) {
		memset(info.__reserved, 0, sizeof(info.__reserved));
		info.__reserved[i] = 1;
		CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	}

	dirty.flags = 2;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &dirty));

	bitmap.flags = 2;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &bitmap));
	bitmap.flags = 0;
	bitmap.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &bitmap));

	inv.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HWPT_INVALIDATE, &inv));

	fault.flags = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fault));

	viommu.flags = 1;
	viommu.type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_VIOMMU_ALLOC, &viommu));
	viommu.flags = 0;
	viommu.type = IOMMU_VIOMMU_TYPE_DEFAULT;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_VIOMMU_ALLOC, &viommu));

	veventq.flags = 1;
	veventq.type = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3;
	veventq.veventq_depth = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_VEVENTQ_ALLOC, &veventq));

	hwq.flags = 1;
	hwq.type = IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV;
	hwq.length = PAGE_SZ;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HW_QUEUE_ALLOC, &hwq));

	chg.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &chg));
}

/* Well-formed calls naming objects that do not exist. */
TEST(missing_objects_are_enoent)
{
	struct iommu_hwpt_set_dirty_tracking dirty = { .size = sizeof(dirty) };
	struct iommu_hwpt_get_dirty_bitmap bitmap = { .size = sizeof(bitmap) };
	struct iommu_vdevice_alloc vdev = { .size = sizeof(vdev) };
	struct iommu_ioas_map_file mf = { .size = sizeof(mf) };

	REQUIRE(open_fresh() >= 0);
	dirty.hwpt_id = 5;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &dirty));
	bitmap.hwpt_id = 5;
	bitmap.length = PAGE_SZ;
	bitmap.page_size = PAGE_SZ;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &bitmap));
	vdev.viommu_id = 5;
	vdev.dev_id = 6;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_VDEVICE_ALLOC, &vdev));
	/* MAP_FILE: the IOAS is looked up first, then a bad fd is EBADF */
	mf.flags = MAP_RW;
	mf.ioas_id = 1;
	mf.fd = -1;
	mf.length = PAGE_SZ;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
	REQUIRE_OK(ioas_alloc(fd, &mf.ioas_id));
	mf.fd = -1;
	mf.length = PAGE_SZ;
	CHECK_ERRNO(EBADF, ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
}

int main(void)
{
	h_init();
	RUN(size_below_min_is_einval);
	RUN(short_structs_accepted);
	RUN(reserved_and_unknown_flags_adv);
	RUN(missing_objects_are_enoent);
	return h_done();
}
