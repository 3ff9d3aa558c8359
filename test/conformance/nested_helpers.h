/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The calls the nested-translation, vIOMMU, HW queue, fault queue and PASID programs share: one
 * wrapper per ioctl (HWPT_ALLOC with driver data or a fault queue, HWPT_INVALIDATE,
 * FAULT_QUEUE_ALLOC, VIOMMU_ALLOC, VDEVICE_ALLOC, VEVENTQ_ALLOC, HW_QUEUE_ALLOC) and per
 * IOMMU_TEST_CMD op of those areas, with every argument the programs vary. Each returns the
 * call's result with errno intact and writes its outputs on every path, as harness.h's do: the
 * new object's id (or fd) on success, 0 (or -1) on failure. Include after harness.h; the
 * programs keep their own test logic.
 */
#ifndef NESTED_HELPERS_H
#define NESTED_HELPERS_H

#include <poll.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "iommufd_test_nested.h"
#include "selftest_helpers.h"

/*
 * IOMMU_HWPT_ALLOC with everything: flags, a fault queue (used with IOMMU_HWPT_FAULT_ID_VALID)
 * and `len` bytes of driver data of `data_type` at `data`. *out, if given, receives the id.
 */
static inline int hwpt_alloc_data(int fd, __u32 dev_id, __u32 pt_id, __u32 flags, __u32 fault_id,
				  __u32 data_type, const void *data, __u32 len, __u32 *out)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.dev_id = dev_id,
		.pt_id = pt_id,
		.data_type = data_type,
		.data_len = len,
		.data_uptr = (uintptr_t)data,
		.fault_id = fault_id,
	};
	int rc = ioctl(fd, IOMMU_HWPT_ALLOC, &cmd);

	if (out)
		*out = rc ? 0 : cmd.out_hwpt_id;
	return rc;
}

/* A HWPT without driver data whose faults go to `fault_id` (with IOMMU_HWPT_FAULT_ID_VALID). */
static inline int hwpt_alloc_fault(int fd, __u32 dev_id, __u32 pt_id, __u32 flags, __u32 fault_id,
				   __u32 *out)
{
	return hwpt_alloc_data(fd, dev_id, pt_id, flags, fault_id, IOMMU_HWPT_DATA_NONE, NULL, 0,
			       out);
}

/* A nested mock HWPT on `parent` (a NEST_PARENT HWPT or a vIOMMU), its IOTLB set to `iotlb`. */
static inline int nested_alloc(int fd, __u32 dev_id, __u32 parent, __u32 flags, __u32 iotlb,
			       __u32 *out)
{
	struct iommu_hwpt_selftest data = { .iotlb = iotlb };

	return hwpt_alloc_data(fd, dev_id, parent, flags, 0, IOMMU_HWPT_DATA_SELFTEST, &data,
			       sizeof(data), out);
}

/*
 * IOMMU_HWPT_INVALIDATE with `num` records of `len` bytes at `data`: the ioctl's result, and
 * the entry_num it wrote back in *done (on every path).
 */
static inline int hwpt_invalidate(int fd, __u32 id, __u32 type, const void *data, __u32 len,
				  __u32 num, __u32 reserved, __u32 *done)
{
	struct iommu_hwpt_invalidate cmd = {
		.size = sizeof(cmd),
		.hwpt_id = id,
		.data_uptr = (uintptr_t)data,
		.data_type = type,
		.entry_len = len,
		.entry_num = num,
		.__reserved = reserved,
	};
	int rc = ioctl(fd, IOMMU_HWPT_INVALIDATE, &cmd);

	*done = cmd.entry_num;
	return rc;
}

/* IOMMU_FAULT_QUEUE_ALLOC: the queue's object id and its fd. */
static inline int fault_alloc(int fd, __u32 flags, __u32 *id, int *qfd)
{
	struct iommu_fault_alloc cmd = { .size = sizeof(cmd), .flags = flags };
	int rc = ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &cmd);

	*id = rc ? 0 : cmd.out_fault_id;
	*qfd = rc ? -1 : (int)cmd.out_fault_fd;
	return rc;
}

/* IOMMU_VIOMMU_ALLOC of `type` on the NEST_PARENT HWPT `hwpt_id`, with `len` bytes of data. */
static inline int viommu_alloc(int fd, __u32 type, __u32 flags, __u32 dev_id, __u32 hwpt_id,
			       void *data, __u32 len, __u32 *out)
{
	struct iommu_viommu_alloc cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.type = type,
		.dev_id = dev_id,
		.hwpt_id = hwpt_id,
		.data_len = len,
		.data_uptr = (uintptr_t)data,
	};
	int rc = ioctl(fd, IOMMU_VIOMMU_ALLOC, &cmd);

	*out = rc ? 0 : cmd.out_viommu_id;
	return rc;
}

static inline int vdevice_alloc(int fd, __u32 viommu, __u32 dev_id, __u64 virt_id, __u32 *out)
{
	struct iommu_vdevice_alloc cmd = {
		.size = sizeof(cmd),
		.viommu_id = viommu,
		.dev_id = dev_id,
		.virt_id = virt_id,
	};
	int rc = ioctl(fd, IOMMU_VDEVICE_ALLOC, &cmd);

	*out = rc ? 0 : cmd.out_vdevice_id;
	return rc;
}

/* IOMMU_VEVENTQ_ALLOC: the queue's object id and its fd. */
static inline int veventq_alloc(int fd, __u32 viommu, __u32 type, __u32 depth, __u32 flags,
				__u32 reserved, __u32 *id, int *qfd)
{
	struct iommu_veventq_alloc cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.viommu_id = viommu,
		.type = type,
		.veventq_depth = depth,
		.__reserved = reserved,
	};
	int rc = ioctl(fd, IOMMU_VEVENTQ_ALLOC, &cmd);

	*id = rc ? 0 : cmd.out_veventq_id;
	*qfd = rc ? -1 : (int)cmd.out_veventq_fd;
	return rc;
}

/* IOMMU_HW_QUEUE_ALLOC with everything. */
static inline int hw_queue_alloc_flags(int fd, __u32 flags, __u32 viommu, __u32 type,
				       __u32 index, __u64 iova, __u64 length, __u32 *out)
{
	struct iommu_hw_queue_alloc cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.viommu_id = viommu,
		.type = type,
		.index = index,
		.nesting_parent_iova = iova,
		.length = length,
	};
	int rc = ioctl(fd, IOMMU_HW_QUEUE_ALLOC, &cmd);

	*out = rc ? 0 : cmd.out_hw_queue_id;
	return rc;
}

/* A queue of the mock vIOMMU: no flags, IOMMU_HW_QUEUE_TYPE_SELFTEST. */
static inline int hw_queue_alloc(int fd, __u32 viommu, __u32 index, __u64 iova, __u64 length,
				 __u32 *out)
{
	return hw_queue_alloc_flags(fd, 0, viommu, IOMMU_HW_QUEUE_TYPE_SELFTEST, index, iova,
				    length, out);
}

/*
 * An iommufd with an IOAS (nothing mapped), a mock device on it, a NEST_PARENT HWPT and a mock
 * vIOMMU on that, given `data` (its region, when data is not NULL): 0, -1 on failure, 1
 * without the test interface (ENOTTY).
 */
static inline int mock_viommu_open(int *fd, __u32 *ioas, __u32 *stdev, __u32 *parent,
				   __u32 *viommu, struct iommu_viommu_selftest *data)
{
	__u32 idev;

	*fd = iommufd_open();
	if (*fd < 0 || ioas_alloc(*fd, ioas))
		return -1;
	if (mock_domain_flags(*fd, *ioas, 0, stdev, NULL, &idev))
		return errno == ENOTTY ? 1 : -1;
	if (hwpt_alloc(*fd, idev, *ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, parent))
		return -1;
	return viommu_alloc(*fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, *parent, data,
			    data ? sizeof(*data) : 0, viommu)
		       ? -1
		       : 0;
}

#define OPEN_MOCK_VIOMMU(fd, ioas, stdev, parent, viommu, data)                            \
	do {                                                                               \
		int _rc = mock_viommu_open(&(fd), &(ioas), &(stdev), &(parent), &(viommu), \
					   (data));                                        \
		REQUIRE(_rc >= 0);                                                         \
		if (_rc > 0)                                                               \
			SKIP("no IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST)");                   \
	} while (0)

/* MD_CHECK_IOTLB: entry `id` of the nested mock HWPT's IOTLB is `value`. */
static inline int check_iotlb(int fd, __u32 hwpt, __u32 id, __u32 value)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_MD_CHECK_IOTLB,
		.id = hwpt,
		.check_iotlb = { .id = id, .iotlb = value },
	};

	return test_cmd(fd, &cmd);
}

/* DEV_CHECK_CACHE: entry `id` of the mock device's cache is `value`. */
static inline int dev_cache(int fd, __u32 idev, __u32 id, __u32 value)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_DEV_CHECK_CACHE,
		.id = idev,
		.check_dev_cache = { .id = id, .cache = value },
	};

	return test_cmd(fd, &cmd);
}

/* TRIGGER_IOPF: a page request from the device `dev_id` (its PASID, group, access, address). */
static inline int trigger_iopf(int fd, __u32 dev_id, __u32 pasid, __u32 grpid, __u32 perm,
			       __u64 addr)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_TRIGGER_IOPF,
		.trigger_iopf = { .dev_id = dev_id, .pasid = pasid, .grpid = grpid, .perm = perm,
				  .addr = addr },
	};

	return test_cmd(fd, &cmd);
}

/* TRIGGER_VEVENT: the mock driver reports an event of the device `dev_id` to its vIOMMU. */
static inline int trigger_vevent(int fd, __u32 dev_id)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_TRIGGER_VEVENT,
		.trigger_vevent = { .dev_id = dev_id },
	};

	return test_cmd(fd, &cmd);
}

/* PASID_ATTACH, _REPLACE or _DETACH (`op`) of the mock device; *pt_id in, and out on success. */
static inline int pasid_op(int fd, __u32 op, __u32 stdev, __u32 pasid, __u32 *pt_id)
{
	struct iommu_test_cmd cmd = {
		.op = op,
		.id = stdev,
		.pasid_attach = { .pasid = pasid, .pt_id = pt_id ? *pt_id : 0 },
	};
	int rc = test_cmd(fd, &cmd);

	if (!rc && pt_id)
		*pt_id = cmd.pasid_attach.pt_id;
	return rc;
}

#define pasid_attach(fd, stdev, pasid, pt) \
	pasid_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, pasid, pt)
#define pasid_replace(fd, stdev, pasid, pt) \
	pasid_op(fd, IOMMU_TEST_OP_PASID_REPLACE, stdev, pasid, pt)
#define pasid_detach(fd, stdev, pasid) pasid_op(fd, IOMMU_TEST_OP_PASID_DETACH, stdev, pasid, NULL)

/* PASID_CHECK_HWPT: `pasid` of the mock device is attached to `hwpt`. */
static inline int pasid_check(int fd, __u32 stdev, __u32 pasid, __u32 hwpt)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_PASID_CHECK_HWPT,
		.id = stdev,
		.pasid_check = { .pasid = pasid, .hwpt_id = hwpt },
	};

	return test_cmd(fd, &cmd);
}

/* poll() of one queue fd for `events`: the revents (0 on a timeout, -1 on error). */
static inline int poll_one(int qfd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = qfd, .events = events };
	int rc = poll(&p, 1, timeout_ms);

	return rc < 0 ? -1 : rc == 0 ? 0 : p.revents;
}

#endif
