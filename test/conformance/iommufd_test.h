/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The iommufd test interface (IOMMU_TEST_CMD) as the conformance programs use
 * it: a kernel built with CONFIG_IOMMUFD_TEST answers it, with mock devices
 * behind a mock IOMMU. Written for iommufd-emu from the interface's layout
 * (docs/test-interface.md); not the kernel's header.
 */
#ifndef IOMMUFD_EMU_CONFORMANCE_IOMMUFD_TEST_H
#define IOMMUFD_EMU_CONFORMANCE_IOMMUFD_TEST_H

#include <linux/iommufd.h>
#include <linux/types.h>

#define IOMMU_TEST_CMD _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32)

enum {
	IOMMU_TEST_OP_ADD_RESERVED = 1,
	IOMMU_TEST_OP_MOCK_DOMAIN,
	IOMMU_TEST_OP_MD_CHECK_MAP,
	IOMMU_TEST_OP_MD_CHECK_REFS,
	IOMMU_TEST_OP_CREATE_ACCESS,
	IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
	IOMMU_TEST_OP_ACCESS_PAGES,
	IOMMU_TEST_OP_ACCESS_RW,
	IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
	IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
	IOMMU_TEST_OP_ACCESS_REPLACE_IOAS,
	IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
	IOMMU_TEST_OP_DIRTY,
	IOMMU_TEST_OP_MD_CHECK_IOTLB,
	IOMMU_TEST_OP_TRIGGER_IOPF,
	IOMMU_TEST_OP_DEV_CHECK_CACHE,
	IOMMU_TEST_OP_TRIGGER_VEVENT,
	IOMMU_TEST_OP_PASID_ATTACH,
	IOMMU_TEST_OP_PASID_REPLACE,
	IOMMU_TEST_OP_PASID_DETACH,
	IOMMU_TEST_OP_PASID_CHECK_HWPT,
	IOMMU_TEST_OP_DMABUF_GET,
	IOMMU_TEST_OP_DMABUF_REVOKE,
};

/* The mock domain: 2 KiB pages inside a 2 GiB - 16 MiB window. */
#define MOCK_APERTURE_START (1ULL << 24)
#define MOCK_APERTURE_LAST ((1ULL << 31) - 1)
#define MOCK_PAGE_SIZE 2048ULL

/* dev_flags of MOCK_DOMAIN_FLAGS (bit 1 was the retired huge-IOVA flag). */
#define MOCK_FLAGS_DEVICE_NO_DIRTY (1U << 0)
#define MOCK_FLAGS_DEVICE_PASID (1U << 2)

/* The PASID width of a MOCK_FLAGS_DEVICE_PASID device, and the PASID whose driver call fails
 * every second time it moves to a domain. */
#define MOCK_PASID_WIDTH 20
#define IOMMU_TEST_PASID_RESERVED 1024

/* CREATE_ACCESS, ACCESS_PAGES and ACCESS_RW flags. */
#define MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES (1U << 0)
#define MOCK_FLAGS_ACCESS_WRITE (1U << 0)
#define MOCK_FLAGS_ACCESS_SYZ (1U << 16)
#define MOCK_ACCESS_RW_WRITE (1U << 0)
#define MOCK_ACCESS_RW_SLOW_PATH (1U << 2)

#define MOCK_DEV_CACHE_ID_MAX 3
#define IOMMU_TEST_DEV_CACHE_DEFAULT 0xbaddad

#define IOMMU_HW_INFO_TYPE_SELFTEST 0xfeedbeef
#define IOMMU_HW_INFO_SELFTEST_REGVAL 0xdeadbeef

struct iommu_test_hw_info {
	__u32 flags;
	__u32 test_reg;
};

struct iommu_test_cmd {
	__u32 size;
	__u32 op;
	__u32 id;
	__u32 __reserved;
	union {
		struct {
			__aligned_u64 start;
			__aligned_u64 length;
		} add_reserved;
		struct {
			__u32 out_stdev_id;
			__u32 out_hwpt_id;
			__u32 out_idev_id;
		} mock_domain;
		struct {
			__u32 out_stdev_id;
			__u32 out_hwpt_id;
			__u32 out_idev_id;
			__u32 dev_flags;
		} mock_domain_flags;
		struct {
			__u32 pt_id;
		} mock_domain_replace;
		struct {
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
		} check_map;
		struct {
			__aligned_u64 length;
			__aligned_u64 uptr;
			__u32 refs;
		} check_refs;
		struct {
			__u32 out_access_fd;
			__u32 flags;
		} create_access;
		struct {
			__u32 access_pages_id;
		} destroy_access_pages;
		struct {
			__u32 flags;
			__u32 out_access_pages_id;
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
		} access_pages;
		struct {
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
			__u32 flags;
		} access_rw;
		struct {
			__u32 limit;
		} memory_limit;
		struct {
			__u32 ioas_id;
		} access_replace_ioas;
		struct {
			__u32 flags;
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 page_size;
			__aligned_u64 uptr;
			__aligned_u64 out_nr_dirty;
		} dirty;
		struct {
			__u32 id;
			__u32 iotlb;
		} check_iotlb;
		struct {
			__u32 dev_id;
			__u32 pasid;
			__u32 grpid;
			__u32 perm;
			__u64 addr;
		} trigger_iopf;
		struct {
			__u32 id;
			__u32 cache;
		} check_dev_cache;
		struct {
			__u32 dev_id;
		} trigger_vevent;
		struct {
			__u32 pasid;
			__u32 pt_id; /* in: IOAS or HWPT, out: the HWPT used */
		} pasid_attach, pasid_replace;
		struct {
			__u32 pasid;
		} pasid_detach;
		struct {
			__u32 pasid;
			__u32 hwpt_id; /* 0: nothing may be attached */
		} pasid_check;
		struct {
			__u32 length;
			__u32 open_flags;
		} dmabuf_get;
		struct {
			__s32 dmabuf_fd;
			__u32 revoked;
		} dmabuf_revoke;
	};
	__u32 last;
};

#endif
