// exec-args: --platform examples/platforms/intel-vtd.json
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_GET_HW_INFO behind an Intel VT-d unit (intel_iommu_hw_info(); the emulator's platform
 * option "hwInfo": "intel-vtd", what QEMU's intel-iommu gives a guest): type
 * IOMMU_HW_INFO_TYPE_INTEL_VTD, a 24-byte struct iommu_hw_info_vtd with the unit's capability
 * registers, out_capabilities IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED (edu has no ATS) and no PASID.
 * The blob is cut at data_len and data_len comes back as 24; a requested type other than the
 * default and INTEL_VTD is EOPNOTSUPP. The register values are printed, not asserted: they
 * depend on how the IOMMU was configured; only fields every VT-d unit has are checked.
 */
#include "harness.h"
#include "edu_helpers.h"

/* VT-d CAP_REG: MGAW (bits 21:16, width - 1) and SAGAW (bits 12:8, supported widths). */
#define VTD_CAP_MGAW(cap) ((((cap) >> 16) & 0x3f) + 1)
#define VTD_CAP_SAGAW(cap) (((cap) >> 8) & 0x1f)

static int hw_info(int fd, __u32 devid, __u32 flags, __u32 in_type, void *data, __u32 len,
		   struct iommu_hw_info *info)
{
	memset(info, 0, sizeof(*info));
	info->size = sizeof(*info);
	info->flags = flags;
	info->dev_id = devid;
	info->data_len = len;
	info->data_uptr = (uintptr_t)data;
	info->in_data_type = in_type;
	return ioctl(fd, IOMMU_GET_HW_INFO, info);
}

TEST(vtd_blob_and_capabilities)
{
	int fd = iommufd_open();
	struct iommu_hw_info_vtd vtd;
	struct iommu_hw_info info;
	struct edu_dev d;

	REQUIRE(fd >= 0);
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &d));
	memset(&vtd, 0xa5, sizeof(vtd));
	CHECK_OK(hw_info(fd, d.devid, 0, 0, &vtd, sizeof(vtd), &info));
	CHECK_EQ(info.out_data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD);
	CHECK_EQ(info.data_len, sizeof(vtd));
	CHECK_EQ(info.out_capabilities, IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
	CHECK_EQ(info.out_max_pasid_log2, 0);
	CHECK_EQ(vtd.flags & ~IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, 0);
	CHECK_EQ(vtd.__reserved, 0);
	CHECK(VTD_CAP_MGAW(vtd.cap_reg) >= 39);
	CHECK(VTD_CAP_SAGAW(vtd.cap_reg) != 0);
	h_note("cap_reg 0x%llx ecap_reg 0x%llx flags 0x%x", (unsigned long long)vtd.cap_reg,
	       (unsigned long long)vtd.ecap_reg, vtd.flags);
	edu_close(&d);
	close(fd);
}

TEST(vtd_blob_cut_at_data_len)
{
	int fd = iommufd_open();
	struct iommu_hw_info_vtd full, part;
	struct iommu_hw_info info;
	struct edu_dev d;
	unsigned char *p = (unsigned char *)&part;

	REQUIRE(fd >= 0);
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, 0, &d));
	REQUIRE_OK(hw_info(fd, d.devid, 0, 0, &full, sizeof(full), &info));
	memset(&part, 0xa5, sizeof(part));
	CHECK_OK(hw_info(fd, d.devid, 0, 0, &part, 12, &info));
	CHECK_EQ(info.data_len, sizeof(full));
	CHECK(memcmp(&part, &full, 12) == 0);
	CHECK(all_bytes(p + 12, sizeof(part) - 12, 0xa5));
	/* data_len 0: nothing written, the size still reported. */
	CHECK_OK(hw_info(fd, d.devid, 0, 0, NULL, 0, &info));
	CHECK_EQ(info.data_len, sizeof(full));
	CHECK_EQ(info.out_data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD);
	edu_close(&d);
	close(fd);
}

TEST(vtd_requested_type)
{
	int fd = iommufd_open();
	struct iommu_hw_info_vtd vtd;
	struct iommu_hw_info info;
	struct edu_dev d;

	REQUIRE(fd >= 0);
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &d));
	CHECK_OK(hw_info(fd, d.devid, IOMMU_HW_INFO_FLAG_INPUT_TYPE, IOMMU_HW_INFO_TYPE_INTEL_VTD,
			 &vtd, sizeof(vtd), &info));
	CHECK_EQ(info.out_data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD);
	CHECK_OK(hw_info(fd, d.devid, IOMMU_HW_INFO_FLAG_INPUT_TYPE, IOMMU_HW_INFO_TYPE_DEFAULT,
			 &vtd, sizeof(vtd), &info));
	CHECK_EQ(info.out_data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD);
	CHECK_ERRNO(EOPNOTSUPP, hw_info(fd, d.devid, IOMMU_HW_INFO_FLAG_INPUT_TYPE,
					IOMMU_HW_INFO_TYPE_ARM_SMMUV3, &vtd, sizeof(vtd), &info));
	/* Without the flag the field is ignored: any value asks for the default. */
	CHECK_OK(hw_info(fd, d.devid, 0, IOMMU_HW_INFO_TYPE_ARM_SMMUV3, &vtd, sizeof(vtd), &info));
	CHECK_EQ(info.out_data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD);
	edu_close(&d);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(vtd_blob_and_capabilities);
	RUN(vtd_blob_cut_at_data_len);
	RUN(vtd_requested_type);
	return h_done();
}
