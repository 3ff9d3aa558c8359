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

#endif
