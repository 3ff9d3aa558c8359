/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The IOMMU_TEST_CMD calls the test-interface programs share: the command itself, a mock
 * device with its flags and its replace, the two checks made after every step (MD_CHECK_MAP,
 * MD_CHECK_REFS), and a fresh iommufd with the test interface. The nested, vIOMMU, fault and
 * PASID ops are in nested_helpers.h.
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

/*
 * MOCK_DOMAIN_REPLACE: moves the mock device `stdev` to `pt_id`; *out, if given, receives the
 * HWPT it is attached to now (for an IOAS, the auto domain).
 */
static inline int mock_replace(int fd, __u32 stdev, __u32 pt_id, __u32 *out)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
		.id = stdev,
		.mock_domain_replace = { .pt_id = pt_id },
	};
	int rc = test_cmd(fd, &cmd);

	if (out)
		*out = rc ? 0 : cmd.mock_domain_replace.pt_id;
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
 * Whether the iommufd `fd` has the test interface: sets the test's temporary memory limit,
 * which a kernel without CONFIG_IOMMUFD_TEST refuses with ENOTTY.
 */
static inline int has_test_cmd(int fd)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
				      .memory_limit = { .limit = 65536 } };

	return !(test_cmd(fd, &cmd) && errno == ENOTTY);
}

/*
 * A fresh iommufd and IOAS with the test's temporary memory limit and, unless len is 0, `buf`
 * mapped at the mock aperture's start: 0, -1 on failure, 1 without the test interface.
 */
static inline int mock_ioas_open(int *fd, __u32 *ioas, void *buf, size_t len)
{
	*fd = iommufd_open();
	if (*fd < 0 || ioas_alloc(*fd, ioas))
		return -1;
	if (!has_test_cmd(*fd))
		return 1;
	if (len == 0)
		return 0;
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
