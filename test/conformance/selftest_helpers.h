/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The IOMMU_TEST_CMD calls the test-interface programs share: the command itself, a mock
 * device with its flags, and the two checks made after every step (MD_CHECK_MAP, MD_CHECK_REFS).
 */
#ifndef SELFTEST_HELPERS_H
#define SELFTEST_HELPERS_H

#include <stdint.h>
#include <sys/ioctl.h>

#include "iommufd_test.h"

static inline int test_cmd(int fd, struct iommu_test_cmd *cmd)
{
	cmd->size = sizeof(*cmd);
	return ioctl(fd, IOMMU_TEST_CMD, cmd);
}

/* MOCK_DOMAIN_FLAGS: a mock device with dev_flags attached to pt_id; any out pointer may be NULL. */
static inline int mock_domain_flags(int fd, __u32 pt_id, __u32 dev_flags, __u32 *stdev,
				    __u32 *hwpt, __u32 *idev)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
		.id = pt_id,
		.mock_domain_flags = { .dev_flags = dev_flags },
	};
	int rc = test_cmd(fd, &cmd);

	if (stdev)
		*stdev = cmd.mock_domain_flags.out_stdev_id;
	if (hwpt)
		*hwpt = cmd.mock_domain_flags.out_hwpt_id;
	if (idev)
		*idev = cmd.mock_domain_flags.out_idev_id;
	return rc;
}

static inline int check_map(int fd, __u32 hwpt, __u64 iova, __u64 length, const void *uptr)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_MD_CHECK_MAP,
		.id = hwpt,
		.check_map = { .iova = iova, .length = length, .uptr = (uintptr_t)uptr },
	};

	return test_cmd(fd, &cmd);
}

static inline int check_refs_of(int fd, const void *uptr, __u64 length, __u32 refs)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_MD_CHECK_REFS,
		.check_refs = { .length = length, .uptr = (uintptr_t)uptr, .refs = refs },
	};

	return test_cmd(fd, &cmd);
}

/*
 * A fresh iommufd and IOAS with `buf` mapped at the mock aperture's start, with the test's
 * temporary memory limit: 0, -1 on failure, 1 without the test interface (ENOTTY).
 */
static inline int mock_ioas_open(int *fd, __u32 *ioas, void *buf, size_t len)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
				      .memory_limit = { .limit = 65536 } };

	*fd = iommufd_open();
	if (*fd < 0 || ioas_alloc(*fd, ioas))
		return -1;
	if (test_cmd(*fd, &cmd) && errno == ENOTTY)
		return 1;
	return ioas_map_fixed(*fd, *ioas, buf, len, MOCK_APERTURE_START) ? -1 : 0;
}

#define OPEN_MOCK_IOAS(fd, ioas, buf, len)                                 \
	do {                                                               \
		int _rc = mock_ioas_open(&(fd), &(ioas), (buf), (len));    \
		REQUIRE(_rc >= 0);                                         \
		if (_rc > 0)                                               \
			SKIP("no IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST)");   \
	} while (0)

/* Closes the iommufd, then checks from a new one that no page of `buf` is left pinned. */
static inline void mock_close_and_check(int fd, const void *buf, __u64 len)
{
	CHECK_OK(close(fd));
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	CHECK_OK(check_refs_of(fd, buf, len, 0));
	close(fd);
}

#endif
