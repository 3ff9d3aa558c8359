/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The mock driver's data for nested translation and virtual IOMMUs, as the conformance programs
 * use it: the driver data of IOMMU_HWPT_ALLOC, IOMMU_HWPT_INVALIDATE records, IOMMU_VIOMMU_ALLOC
 * data and vEVENTQ payloads, with their type numbers. Written for iommufd-emu from the
 * interface's layout (docs/nested.md); not the kernel's header.
 */
#ifndef IOMMUFD_EMU_CONFORMANCE_IOMMUFD_TEST_NESTED_H
#define IOMMUFD_EMU_CONFORMANCE_IOMMUFD_TEST_NESTED_H

#include "iommufd_test.h"

/* IOMMU_HWPT_ALLOC: data_type and data of a mock domain (paging or nested). */
#define IOMMU_HWPT_DATA_SELFTEST 0xdead
#define IOMMU_TEST_IOTLB_DEFAULT 0xbadbeef
#define MOCK_NESTED_DOMAIN_IOTLB_ID_MAX 3
#define MOCK_NESTED_DOMAIN_IOTLB_NUM 4

struct iommu_hwpt_selftest {
	__u32 iotlb;		/* every IOTLB entry of a nested domain starts as this */
	__u32 pagetable_type;	/* a paging domain's table: 0 the default one */
};

/* IOMMU_HWPT_INVALIDATE of a nested mock domain. */
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST 0xdeadbeef
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeef
#define IOMMU_TEST_INVALIDATE_FLAG_ALL (1U << 0)

struct iommu_hwpt_invalidate_selftest {
	__u32 flags;
	__u32 iotlb_id;		/* at most 3, even with IOMMU_TEST_INVALIDATE_FLAG_ALL */
};

/* IOMMU_VIOMMU_ALLOC of the mock driver: out_data echoes in_data, and an mmap region of two
 * pages on the iommufd whose first word is in_data. */
#define IOMMU_VIOMMU_TYPE_SELFTEST 0xdeadbeef

struct iommu_viommu_selftest {
	__u32 in_data;
	__u32 out_data;
	__aligned_u64 out_mmap_offset;
	__aligned_u64 out_mmap_length;
};

/* IOMMU_HWPT_INVALIDATE of a mock vIOMMU: clears a vDEVICE's device cache entries. */
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST 0xdeadbeef
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeef

struct iommu_viommu_invalidate_selftest {
	__u32 flags;
	__u32 vdev_id;		/* the vDEVICE's virt_id */
	__u32 cache_id;		/* ignored with IOMMU_TEST_INVALIDATE_FLAG_ALL */
};

/* IOMMU_VEVENTQ_ALLOC of the mock driver; each event's payload. */
#define IOMMU_VEVENTQ_TYPE_SELFTEST 0xbeefbeef

struct iommu_viommu_event_selftest {
	__u32 virt_id;
};

/* IOMMU_HW_QUEUE_ALLOC of the mock driver: queue 1 needs queue 0. */
#define IOMMU_HW_QUEUE_TYPE_SELFTEST 0xdeadbeef
#define IOMMU_TEST_HW_QUEUE_MAX 2

#endif
