/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_HWPT_ALLOC (uapi.md §2.11, §5) and IOMMU_GET_HW_INFO (§2.12) with an edu device behind
 * dmar0: a manual paging HWPT is attachable by exact id, is never picked as an auto domain,
 * brings the domain's aperture and alignment to its IOAS at once (the devices' reserved regions
 * only when they attach), and is EBUSY while in use; the argument checks in the kernel's order.
 */
#include "harness.h"
#include "edu_helpers.h"

TEST(hwpt_alloc_flags0_is_attachable)
{
	int fd = iommufd_open();
	struct iommu_iova_range r[8];
	struct edu_dev a, b;
	__u32 ioas, hwpt, p, num;
	__u64 align;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &a));
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, 0, &b));
	REQUIRE_OK(hwpt_alloc(fd, a.devid, ioas, 0, &hwpt));
	CHECK_EQ(hwpt, 4);
	CHECK(!ioas_exists(fd, hwpt));

	/* The domain is in the IOAS already: its aperture and page size; no device region yet. */
	CHECK_OK(iova_ranges8(fd, ioas, r, &num, &align));
	CHECK_EQ(num, 1);
	CHECK_EQ(r[0].start, 0);
	CHECK_EQ(r[0].last, DMAR0_APERTURE_LAST);
	CHECK_EQ(align, 4096);
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, ioas));

	/* Attach by HWPT id: that exact HWPT. Both devices (two groups, one IOMMU). */
	p = hwpt;
	REQUIRE_OK(vfio_attach(a.fd, &p));
	CHECK_EQ(p, hwpt);
	p = hwpt;
	CHECK_OK(vfio_attach(b.fd, &p));
	CHECK_EQ(p, hwpt);
	CHECK_OK(iova_ranges8(fd, ioas, r, &num, &align));
	CHECK_EQ(num, 2);
	CHECK_EQ(r[0].last, MSI_START - 1);
	CHECK_EQ(r[1].start, MSI_LAST + 1);
	CHECK_EQ(r[1].last, DMAR0_APERTURE_LAST);

	CHECK_ERRNO(EBUSY, iommu_destroy(fd, hwpt));
	CHECK_OK(vfio_detach(a.fd));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, hwpt));
	CHECK_OK(vfio_detach(b.fd));
	/* A manual HWPT outlives its devices; its reservations do not. */
	CHECK_OK(iova_ranges8(fd, ioas, r, &num, &align));
	CHECK_EQ(num, 1);
	CHECK_EQ(r[0].last, DMAR0_APERTURE_LAST);
	CHECK_OK(iommu_destroy(fd, hwpt));
	CHECK_OK(iova_ranges8(fd, ioas, r, &num, &align));
	CHECK_EQ(num, 1);
	CHECK_EQ(r[0].last, U64_MAX_);
	CHECK_EQ(align, 1);
	CHECK_OK(iommu_destroy(fd, ioas));
	edu_close(&a);
	edu_close(&b);
	close(fd);
}

/* An attach to the IOAS never picks a manually allocated HWPT (uapi.md §3.4). */
TEST(manual_hwpt_is_never_an_auto_domain)
{
	int fd = iommufd_open();
	struct edu_dev a;
	__u32 ioas, hwpt, p;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &a));
	REQUIRE_OK(hwpt_alloc(fd, a.devid, ioas, 0, &hwpt));
	p = ioas;
	CHECK_OK(vfio_attach(a.fd, &p));
	CHECK(p != hwpt && p != ioas);
	/* Replace onto the manual one: the auto domain is freed. */
	{
		__u32 autop = p;

		p = hwpt;
		CHECK_OK(vfio_attach(a.fd, &p));
		CHECK_EQ(p, hwpt);
		CHECK_ERRNO(ENOENT, iommu_destroy(fd, autop));
	}
	CHECK_OK(vfio_detach(a.fd));
	CHECK_OK(iommu_destroy(fd, hwpt));
	edu_close(&a);
	close(fd);
}

TEST(hwpt_alloc_errors)
{
	int fd = iommufd_open();
	struct iommu_hwpt_alloc cmd;
	struct iommu_hwpt_vtd_s1 s1;
	struct edu_dev a;
	__u32 ioas, hwpt, autop;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &a));

	/* dev_id that is no device: ENOENT. */
	CHECK_ERRNO(ENOENT, hwpt_alloc(fd, 999, ioas, 0, &hwpt));
	CHECK_ERRNO(ENOENT, hwpt_alloc(fd, ioas, ioas, 0, &hwpt));
	CHECK_ERRNO(ENOENT, hwpt_alloc(fd, 0, ioas, 0, &hwpt));
	/* pt_id missing: EINVAL, not ENOENT; pt_id of a wrong type: EINVAL. */
	CHECK_ERRNO(EINVAL, hwpt_alloc(fd, a.devid, 999, 0, &hwpt));
	CHECK_ERRNO(EINVAL, hwpt_alloc(fd, a.devid, 0, 0, &hwpt));
	CHECK_ERRNO(EINVAL, hwpt_alloc(fd, a.devid, a.devid, 0, &hwpt));
	/* dmar0 cannot track dirty pages. */
	CHECK_ERRNO(EOPNOTSUPP,
		    hwpt_alloc(fd, a.devid, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt));
	/* Unknown flags. */
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc(fd, a.devid, ioas, 1U << 7, &hwpt));

	/* __reserved != 0: EOPNOTSUPP, before anything else (even a bad dev_id). */
	memset(&cmd, 0, sizeof(cmd));
	cmd.size = sizeof(cmd);
	cmd.dev_id = 999;
	cmd.pt_id = ioas;
	cmd.__reserved = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HWPT_ALLOC, &cmd));

	/* data_type NONE with a data_len, or a type without data: EINVAL, before the lookups. */
	memset(&s1, 0, sizeof(s1));
	memset(&cmd, 0, sizeof(cmd));
	cmd.size = sizeof(cmd);
	cmd.dev_id = 999;
	cmd.pt_id = ioas;
	cmd.data_type = IOMMU_HWPT_DATA_NONE;
	cmd.data_len = sizeof(s1);
	cmd.data_uptr = (uintptr_t)&s1;
	CHECK_ERRNO(EINVAL, ioctl(fd, IOMMU_HWPT_ALLOC, &cmd));
	cmd.dev_id = a.devid;
	CHECK_ERRNO(EINVAL, ioctl(fd, IOMMU_HWPT_ALLOC, &cmd));
	cmd.data_type = IOMMU_HWPT_DATA_VTD_S1;
	cmd.data_len = 0;
	CHECK_ERRNO(EINVAL, ioctl(fd, IOMMU_HWPT_ALLOC, &cmd));

	/* Framing: below the 24-byte minimum is EINVAL; exactly 24 bytes works. */
	memset(&cmd, 0, sizeof(cmd));
	cmd.size = 20;
	cmd.dev_id = a.devid;
	cmd.pt_id = ioas;
	CHECK_ERRNO(EINVAL, ioctl(fd, IOMMU_HWPT_ALLOC, &cmd));
	cmd.size = 24;
	CHECK_OK(ioctl(fd, IOMMU_HWPT_ALLOC, &cmd));
	hwpt = cmd.out_hwpt_id;
	CHECK_EQ(hwpt, 3);	/* no failed call above consumed an ID */

	/* A paging HWPT made by HWPT_ALLOC can be destroyed at once. */
	CHECK_OK(iommu_destroy(fd, hwpt));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, hwpt));

	/* An auto domain's id is no device; as pt_id it asks for a nested HWPT, which needs
	 * vendor data and a driver that nests (iommufd_hwpt_nested_alloc: EOPNOTSUPP). */
	autop = ioas;
	REQUIRE_OK(vfio_attach(a.fd, &autop));
	CHECK_ERRNO(ENOENT, hwpt_alloc(fd, autop, ioas, 0, &hwpt));
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc(fd, a.devid, autop, 0, &hwpt));
	CHECK_OK(vfio_detach(a.fd));
	edu_close(&a);
	close(fd);
}

/*
 * The default dmar0 offers no vendor blob (type NONE, length 0: docs/decisions.md 4); QEMU's
 * intel-iommu, and a platform that says "intel-vtd", a 24-byte VT-d one (hw_info_vtd.c reads it).
 * Everything here holds for either.
 */
TEST(get_hw_info_of_a_device)
{
	int fd = iommufd_open();
	struct iommu_hw_info info;
	unsigned char buf[64];
	struct edu_dev a;
	__u32 ioas, autop, type, blob;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &a));

	memset(&info, 0xff, sizeof(info));
	info.size = sizeof(info);
	info.flags = 0;
	info.dev_id = a.devid;
	info.data_len = 0;
	info.data_uptr = 0;
	info.__reserved[0] = info.__reserved[1] = info.__reserved[2] = 0;
	REQUIRE_OK(ioctl(fd, IOMMU_GET_HW_INFO, &info));
	type = info.out_data_type;
	blob = info.data_len;	/* the blob's length, whatever the buffer's */
	CHECK(type == IOMMU_HW_INFO_TYPE_NONE || type == IOMMU_HW_INFO_TYPE_INTEL_VTD);
	CHECK_EQ(blob, type == IOMMU_HW_INFO_TYPE_NONE ? 0 : 24);
	/* No dirty tracking; edu has no ATS (7.3 reports that for every device: decisions.md 52). */
	CHECK_EQ(info.out_capabilities, IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
	CHECK_EQ(info.out_max_pasid_log2, 0);

	/* A buffer is zeroed past the blob, and data_len says the blob's length. */
	memset(buf, 0xaa, sizeof(buf));
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	info.dev_id = a.devid;
	info.data_len = sizeof(buf);
	info.data_uptr = (uintptr_t)buf;
	CHECK_OK(ioctl(fd, IOMMU_GET_HW_INFO, &info));
	CHECK_EQ(info.data_len, blob);
	CHECK(all_bytes(buf + blob, sizeof(buf) - blob, 0));

	/* The 32-byte struct of userspace before out_capabilities is accepted. */
	memset(&info, 0, sizeof(info));
	info.size = 32;
	info.dev_id = a.devid;
	info.out_capabilities = 0x1234;
	CHECK_OK(ioctl(fd, IOMMU_GET_HW_INFO, &info));
	CHECK_EQ(info.out_capabilities, 0x1234);	/* beyond size: untouched */

	/* Attached or not, the same answer. */
	autop = ioas;
	REQUIRE_OK(vfio_attach(a.fd, &autop));
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	info.dev_id = a.devid;
	CHECK_OK(ioctl(fd, IOMMU_GET_HW_INFO, &info));
	CHECK_EQ(info.out_data_type, type);
	info.data_len = 0;	/* it came back as the blob's length, with no buffer to take it */

	/* Ids that are not devices: ENOENT. */
	info.dev_id = ioas;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	info.dev_id = autop;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	info.dev_id = 999;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	info.dev_id = 0;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_GET_HW_INFO, &info));

	/* Unknown flags or reserved bytes: EOPNOTSUPP. */
	info.dev_id = a.devid;
	info.flags = 1U << 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	info.flags = 0;
	info.__reserved[1] = 1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	info.__reserved[1] = 0;
	CHECK_OK(ioctl(fd, IOMMU_GET_HW_INFO, &info));

	edu_close(&a);
	close(fd);
}

/*
 * A data_len far beyond the blob: the kernel copies the blob, then clears the rest of
 * userspace's buffer in place with clear_user(), so the bytes up to the first unmapped page are
 * zeroed and the call is EFAULT.
 */
TEST(get_hw_info_huge_data_len)
{
	long page = sysconf(_SC_PAGESIZE);
	int fd = iommufd_open();
	struct iommu_hw_info info;
	struct edu_dev a;
	unsigned char *buf;
	__u32 blob;

	REQUIRE(fd >= 0);
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &a));
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	info.dev_id = a.devid;
	REQUIRE_OK(ioctl(fd, IOMMU_GET_HW_INFO, &info));
	blob = info.data_len;
	REQUIRE(blob <= 64);
	buf = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(buf != MAP_FAILED);
	REQUIRE(munmap(buf + page, page) == 0);
	memset(buf, 0xaa, page);

	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	info.dev_id = a.devid;
	info.data_len = 0xffffffff;
	info.data_uptr = (uintptr_t)(buf + 64);
	CHECK_ERRNO(EFAULT, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	CHECK(all_bytes(buf, 64, 0xaa));
	CHECK(all_bytes(buf + 64 + blob, page - 64 - blob, 0));

	/* Exactly the mapped part: no error, all of it past the blob zeroed, data_len the blob's. */
	memset(buf, 0xaa, page);
	info.data_len = page;
	info.data_uptr = (uintptr_t)buf;
	CHECK_OK(ioctl(fd, IOMMU_GET_HW_INFO, &info));
	CHECK_EQ(info.data_len, blob);
	CHECK(all_bytes(buf + blob, page - blob, 0));

	munmap(buf, page);
	edu_close(&a);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(hwpt_alloc_flags0_is_attachable);
	RUN(manual_hwpt_is_never_an_auto_domain);
	RUN(hwpt_alloc_errors);
	RUN(get_hw_info_of_a_device);
	RUN(get_hw_info_huge_data_len);
	return h_done();
}
