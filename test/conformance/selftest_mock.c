/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_TEST_CMD's mock devices and domains (issue 15): MOCK_DOMAIN makes a selftest object, a
 * mock device bound to the iommufd and an attach; an IOAS's auto domain is shared by devices
 * that can use it; mock domains map 2 KiB pages inside their aperture; REPLACE moves a device
 * and frees an auto domain left unused; ADD_RESERVED, MD_CHECK_MAP, MD_CHECK_REFS (the pin count
 * of each page of this process, checked after every step), GET_HW_INFO of a mock device,
 * DEV_CHECK_CACHE, MD_CHECK_IOTLB and SET_TEMP_MEMORY_LIMIT, each with its errno cases.
 */
#include "harness.h"
#include "selftest_helpers.h"

#include <dirent.h>

#define NPAGES 16
#define BUF_SIZE (NPAGES * PAGE_SZ)

static unsigned char *g_buf;

static int mock_domain(int fd, __u32 pt_id, __u32 *stdev, __u32 *hwpt, __u32 *idev)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = pt_id };
	int rc = test_cmd(fd, &cmd);

	if (stdev)
		*stdev = cmd.mock_domain.out_stdev_id;
	if (hwpt)
		*hwpt = cmd.mock_domain.out_hwpt_id;
	if (idev)
		*idev = cmd.mock_domain.out_idev_id;
	return rc;
}

static int add_reserved(int fd, __u32 ioas, __u64 start, __u64 length)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_ADD_RESERVED,
		.id = ioas,
		.add_reserved = { .start = start, .length = length },
	};

	return test_cmd(fd, &cmd);
}

/* The pins on every page of g_buf, as MD_CHECK_REFS reads them. */
#define CHECK_REFS(fd, refs) CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, refs))

/* A fresh iommufd and IOAS, nothing mapped; SKIP when the kernel has no test interface. */
#define OPEN_IOAS(fd, ioas) OPEN_MOCK_IOAS(fd, ioas, NULL, 0)

TEST(mock_domain_attaches_and_pins)
{
	__u32 ioas, stdev, hwpt, idev;
	__u64 iova = MOCK_APERTURE_START;
	int fd;

	OPEN_IOAS(fd, ioas);
	CHECK_REFS(fd, 0);
	REQUIRE_OK(mock_domain(fd, ioas, &stdev, &hwpt, &idev));
	CHECK(stdev != 0 && hwpt != 0 && idev != 0);
	CHECK(stdev != hwpt && hwpt != idev && stdev != idev);
	/* The selftest object is made first, then the device, then the auto domain. */
	CHECK(stdev < idev && idev < hwpt);
	CHECK_REFS(fd, 0);

	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, BUF_SIZE, iova));
	CHECK_REFS(fd, 1);
	CHECK_OK(check_map(fd, hwpt, iova, BUF_SIZE, g_buf));
	/* Every 2 KiB IOPTE points at its own half page: off by one half is a mismatch. */
	CHECK_ERRNO(EINVAL, check_map(fd, hwpt, iova, MOCK_PAGE_SIZE, g_buf + MOCK_PAGE_SIZE));
	CHECK_ERRNO(EINVAL, check_map(fd, hwpt, iova + BUF_SIZE, MOCK_PAGE_SIZE, g_buf));
	/* A second MAP of the same memory is a second pin. */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, BUF_SIZE, iova + BUF_SIZE));
	CHECK_REFS(fd, 2);
	CHECK_OK(ioas_unmap(fd, ioas, iova + BUF_SIZE, BUF_SIZE, NULL));
	CHECK_REFS(fd, 1);
	CHECK_OK(ioas_unmap(fd, ioas, iova, BUF_SIZE, NULL));
	CHECK_REFS(fd, 0);
	CHECK_ERRNO(EINVAL, check_map(fd, hwpt, iova, PAGE_SZ, g_buf));

	/* The device holds its auto domain: destroying the selftest object frees both. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, hwpt));
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, hwpt));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, idev));
	close(fd);
}

TEST(mock_domain_errors)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	__u32 ioas;
	int fd;

	OPEN_IOAS(fd, ioas);
	CHECK_ERRNO(ENOENT, mock_domain(fd, 0, NULL, NULL, NULL));
	CHECK_ERRNO(ENOENT, mock_domain(fd, ioas + 100, NULL, NULL, NULL));
	/* Bit 1 (the old huge-IOVA flag) and unknown bits are refused. */
	CHECK_ERRNO(EINVAL, mock_domain_flags(fd, ioas, 1U << 1, NULL, NULL, NULL));
	CHECK_ERRNO(EINVAL, mock_domain_flags(fd, ioas, 1U << 3, NULL, NULL, NULL));
	/* Nothing was left behind by the failures: the next id is the IOAS's neighbour. */
	{
		__u32 next;

		REQUIRE_OK(ioas_alloc(fd, &next));
		CHECK_EQ(next, ioas + 1);
	}
	/* An unknown op, and the framing of the struct. */
	cmd.op = 0;
	CHECK_ERRNO(EOPNOTSUPP, test_cmd(fd, &cmd));
	cmd.op = 1000;
	CHECK_ERRNO(EOPNOTSUPP, test_cmd(fd, &cmd));
	cmd.size = 64;
	cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN;
	CHECK_ERRNO(EINVAL, ioctl(fd, IOMMU_TEST_CMD, &cmd));
	close(fd);
}

TEST(mock_aperture_and_2k_pages)
{
	struct iommu_iova_range ranges[4];
	__u64 align, iova;
	__u32 ioas, stdev, hwpt, num = 4;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(ioas_iova_ranges(fd, ioas, ranges, &num, &align));
	CHECK_EQ(align, 1);
	REQUIRE_OK(mock_domain(fd, ioas, &stdev, &hwpt, NULL));
	num = 4;
	REQUIRE_OK(ioas_iova_ranges(fd, ioas, ranges, &num, &align));
	CHECK_EQ(num, 1);
	CHECK_EQ(ranges[0].start, MOCK_APERTURE_START);
	CHECK_EQ(ranges[0].last, MOCK_APERTURE_LAST);
	CHECK_EQ(align, MOCK_PAGE_SIZE);

	/* Outside the aperture is reserved. */
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, g_buf, PAGE_SZ, PAGE_SZ));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, g_buf, PAGE_SZ, MOCK_APERTURE_LAST + 1));
	/* Half pages: IOVA, length and offset in the page need only 2 KiB alignment. */
	iova = MOCK_APERTURE_START + MOCK_PAGE_SIZE;
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, g_buf + 1024, MOCK_PAGE_SIZE, iova));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf + MOCK_PAGE_SIZE, 3 * MOCK_PAGE_SIZE, iova));
	CHECK_OK(check_map(fd, hwpt, iova, 3 * MOCK_PAGE_SIZE, g_buf + MOCK_PAGE_SIZE));
	/* The IOPTE before the area is not the area's: nothing there. */
	CHECK_ERRNO(EINVAL, check_map(fd, hwpt, iova - MOCK_PAGE_SIZE, MOCK_PAGE_SIZE, g_buf));
	/* A neighbouring area may own the other half of the same page. */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, MOCK_PAGE_SIZE, iova - MOCK_PAGE_SIZE));
	CHECK_OK(check_map(fd, hwpt, iova - MOCK_PAGE_SIZE, 4 * MOCK_PAGE_SIZE, g_buf));
	/* Two MAPs share page 0; the second page is the first MAP's alone. */
	CHECK_OK(check_refs_of(fd, g_buf, PAGE_SZ, 2));
	CHECK_OK(check_refs_of(fd, g_buf + PAGE_SZ, PAGE_SZ, 1));
	CHECK_OK(ioas_unmap(fd, ioas, iova - MOCK_PAGE_SIZE, MOCK_PAGE_SIZE, NULL));
	CHECK_OK(check_refs_of(fd, g_buf, 2 * PAGE_SZ, 1));
	CHECK_OK(ioas_unmap(fd, ioas, iova, 3 * MOCK_PAGE_SIZE, NULL));
	CHECK_REFS(fd, 0);

	/* MD_CHECK_MAP's own checks. */
	CHECK_ERRNO(EINVAL, check_map(fd, hwpt, MOCK_APERTURE_START + 1, MOCK_PAGE_SIZE, g_buf));
	CHECK_ERRNO(EINVAL, check_map(fd, hwpt, MOCK_APERTURE_START, 100, g_buf));
	CHECK_ERRNO(EINVAL, check_map(fd, hwpt, MOCK_APERTURE_START, MOCK_PAGE_SIZE, g_buf + 8));
	CHECK_ERRNO(ENOENT, check_map(fd, 0, MOCK_APERTURE_START, MOCK_PAGE_SIZE, g_buf));
	/* An IOAS is not a paging HWPT. */
	CHECK_ERRNO(ENOENT, check_map(fd, ioas, MOCK_APERTURE_START, MOCK_PAGE_SIZE, g_buf));
	close(fd);
}

TEST(auto_domain_is_shared_and_replace_frees_it)
{
	__u32 ioas, ioas2, stdev1, stdev2, hwpt1, hwpt2, pt;
	__u64 iova = MOCK_APERTURE_START;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, BUF_SIZE, iova));
	/* Mapping with no domain pins nothing. */
	CHECK_REFS(fd, 0);
	REQUIRE_OK(mock_domain(fd, ioas, &stdev1, &hwpt1, NULL));
	CHECK_REFS(fd, 1);
	REQUIRE_OK(mock_domain(fd, ioas, &stdev2, &hwpt2, NULL));
	CHECK_EQ(hwpt2, hwpt1);
	CHECK_REFS(fd, 1);

	/* Move the second device to another IOAS holding the same memory through COPY. */
	REQUIRE_OK(ioas_alloc(fd, &ioas2));
	REQUIRE_OK(ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, ioas2, ioas, BUF_SIZE,
			     &iova, iova));
	REQUIRE_OK(mock_replace(fd, stdev2, ioas2, &pt));
	CHECK(pt != hwpt1 && pt != ioas2);
	/* COPY shares the pages: still one pin. */
	CHECK_REFS(fd, 1);
	CHECK_OK(check_map(fd, pt, iova, BUF_SIZE, g_buf));

	/* The first device leaves its auto domain: nothing else uses it, so it goes. */
	hwpt2 = pt;
	REQUIRE_OK(mock_replace(fd, stdev1, ioas2, &pt));
	CHECK_EQ(pt, hwpt2);
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, hwpt1));
	CHECK_REFS(fd, 1);
	CHECK_OK(ioas_unmap(fd, ioas, iova, BUF_SIZE, NULL));
	CHECK_REFS(fd, 1);
	CHECK_OK(ioas_unmap(fd, ioas2, iova, BUF_SIZE, NULL));
	CHECK_REFS(fd, 0);

	/* REPLACE errors: not a selftest object, unknown target. */
	CHECK_ERRNO(ENOENT, mock_replace(fd, hwpt2, ioas, NULL));
	CHECK_ERRNO(ENOENT, mock_replace(fd, stdev1, 999, NULL));
	close(fd);
}

TEST(hwpt_alloc_for_a_mock_device)
{
	struct iommu_hwpt_alloc alloc = { .size = sizeof(alloc) };
	__u32 ioas, stdev, hwpt, idev, pt;
	__u64 iova = MOCK_APERTURE_START;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain(fd, ioas, &stdev, &hwpt, &idev));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, BUF_SIZE, iova));
	alloc.dev_id = idev;
	alloc.pt_id = ioas;
	REQUIRE_OK(ioctl(fd, IOMMU_HWPT_ALLOC, &alloc));
	/* A second domain maps the same pinned pages. */
	CHECK_REFS(fd, 1);
	CHECK_OK(check_map(fd, alloc.out_hwpt_id, iova, BUF_SIZE, g_buf));
	REQUIRE_OK(mock_replace(fd, stdev, alloc.out_hwpt_id, &pt));
	CHECK_EQ(pt, alloc.out_hwpt_id);
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, hwpt));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, alloc.out_hwpt_id));
	/* Flags the mock driver does not know. */
	alloc.flags = 1U << 31;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HWPT_ALLOC, &alloc));
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_REFS(fd, 1);
	CHECK_OK(iommu_destroy(fd, pt));
	CHECK_REFS(fd, 0);
	close(fd);
}

TEST(add_reserved_iova)
{
	struct iommu_iova_range ranges[4];
	__u32 ioas, num = 4;
	__u64 base = 1ULL << 32;
	int fd;

	OPEN_IOAS(fd, ioas);
	CHECK_ERRNO(ENOENT, add_reserved(fd, ioas + 1, base, PAGE_SZ));
	/* An empty or wrapping range is refused, before the IOAS is looked up. */
	CHECK_ERRNO(EINVAL, add_reserved(fd, ioas + 1, base, 0));
	CHECK_ERRNO(EOVERFLOW, add_reserved(fd, ioas + 1, U64_MAX_ - PAGE_SZ + 1, 2 * PAGE_SZ));
	CHECK_OK(add_reserved(fd, ioas, U64_MAX_ - PAGE_SZ + 1, PAGE_SZ));
	REQUIRE_OK(add_reserved(fd, ioas, base, 16 * PAGE_SZ));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, g_buf, PAGE_SZ, base + PAGE_SZ));
	REQUIRE_OK(ioas_iova_ranges(fd, ioas, ranges, &num, NULL));
	CHECK_EQ(num, 2);
	CHECK_EQ(ranges[0].last, base - 1);
	CHECK_EQ(ranges[1].start, base + 16 * PAGE_SZ);
	/* Over a mapping, or over an allowed range: EADDRINUSE. */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, PAGE_SZ, 2 * base));
	CHECK_ERRNO(EADDRINUSE, add_reserved(fd, ioas, 2 * base, PAGE_SZ));
	{
		struct iommu_iova_range allow = { .start = 3 * base, .last = 3 * base + PAGE_SZ - 1 };

		REQUIRE_OK(ioas_unmap(fd, ioas, 2 * base, PAGE_SZ, NULL));
		REQUIRE_OK(ioas_allow_iovas(fd, ioas, &allow, 1));
		CHECK_ERRNO(EADDRINUSE, add_reserved(fd, ioas, 3 * base, 1));
	}
	/* The IOAS goes with its reservation. */
	CHECK_OK(iommu_destroy(fd, ioas));
	close(fd);
}

TEST(check_refs_errors)
{
	__u32 ioas;
	int fd;

	OPEN_IOAS(fd, ioas);
	CHECK_ERRNO(EINVAL, check_refs_of(fd, g_buf + 8, PAGE_SZ, 0));
	CHECK_ERRNO(EINVAL, check_refs_of(fd, g_buf, PAGE_SZ + 8, 0));
	CHECK_ERRNO(EIO, check_refs_of(fd, g_buf, PAGE_SZ, 1));
	CHECK_ERRNO(EFAULT, check_refs_of(fd, h_unmapped_addr(), PAGE_SZ, 0));
	CHECK_OK(check_refs_of(fd, g_buf, 0, 7));
	close(fd);
}

TEST(hw_info_of_mock_devices)
{
	struct iommu_test_hw_info info;
	struct iommu_hw_info cmd = { .size = sizeof(cmd) };
	__u32 ioas, idev, idev_nodirty, idev_pasid;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain(fd, ioas, NULL, NULL, &idev));
	REQUIRE_OK(mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_NO_DIRTY, NULL, NULL,
				     &idev_nodirty));
	REQUIRE_OK(mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID, NULL, NULL, &idev_pasid));

	memset(&info, 0x55, sizeof(info));
	cmd.dev_id = idev;
	cmd.data_len = sizeof(info);
	cmd.data_uptr = (uintptr_t)&info;
	REQUIRE_OK(ioctl(fd, IOMMU_GET_HW_INFO, &cmd));
	CHECK_EQ(cmd.out_data_type, IOMMU_HW_INFO_TYPE_SELFTEST);
	CHECK_EQ(cmd.data_len, sizeof(info));
	CHECK_EQ(info.flags, 0);
	CHECK_EQ(info.test_reg, IOMMU_HW_INFO_SELFTEST_REGVAL);
	/* The mock driver's capable() knows no IOMMU_CAP_PCI_ATS_SUPPORTED, so 7.3 reports it. */
	CHECK_EQ(cmd.out_capabilities,
		 IOMMU_HW_CAP_DIRTY_TRACKING | IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
	CHECK_EQ(cmd.out_max_pasid_log2, 0);

	/* A short buffer gets the start of the blob; the length says the whole. */
	memset(&info, 0x55, sizeof(info));
	cmd.data_len = 4;
	REQUIRE_OK(ioctl(fd, IOMMU_GET_HW_INFO, &cmd));
	CHECK_EQ(cmd.data_len, sizeof(info));
	CHECK_EQ(info.flags, 0);
	CHECK_EQ(info.test_reg, 0x55555555);

	/* Asking for a type: the driver's own, or the default, or one it does not have. */
	cmd.data_len = sizeof(info);
	cmd.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
	cmd.in_data_type = IOMMU_HW_INFO_TYPE_SELFTEST;
	CHECK_OK(ioctl(fd, IOMMU_GET_HW_INFO, &cmd));
	CHECK_EQ(cmd.out_data_type, IOMMU_HW_INFO_TYPE_SELFTEST);
	cmd.in_data_type = IOMMU_HW_INFO_TYPE_DEFAULT;
	CHECK_OK(ioctl(fd, IOMMU_GET_HW_INFO, &cmd));
	CHECK_EQ(cmd.out_data_type, IOMMU_HW_INFO_TYPE_SELFTEST);
	cmd.in_data_type = IOMMU_HW_INFO_TYPE_INTEL_VTD;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_GET_HW_INFO, &cmd));
	/* Without the flag the field is only an output. */
	cmd.flags = 0;
	cmd.in_data_type = IOMMU_HW_INFO_TYPE_INTEL_VTD;
	CHECK_OK(ioctl(fd, IOMMU_GET_HW_INFO, &cmd));
	CHECK_EQ(cmd.out_data_type, IOMMU_HW_INFO_TYPE_SELFTEST);

	cmd.dev_id = idev_nodirty;
	cmd.data_len = sizeof(info);
	REQUIRE_OK(ioctl(fd, IOMMU_GET_HW_INFO, &cmd));
	CHECK_EQ(cmd.out_capabilities, IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);

	cmd.dev_id = idev_pasid;
	REQUIRE_OK(ioctl(fd, IOMMU_GET_HW_INFO, &cmd));
	CHECK_EQ(cmd.out_max_pasid_log2, 20);
	close(fd);
}

TEST(dev_check_cache_and_iotlb)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_DEV_CHECK_CACHE };
	__u32 ioas, stdev, hwpt, idev, i;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain(fd, ioas, &stdev, &hwpt, &idev));
	cmd.id = idev;
	for (i = 0; i <= MOCK_DEV_CACHE_ID_MAX; i++) {
		cmd.check_dev_cache.id = i;
		cmd.check_dev_cache.cache = IOMMU_TEST_DEV_CACHE_DEFAULT;
		CHECK_OK(test_cmd(fd, &cmd));
	}
	cmd.check_dev_cache.id = MOCK_DEV_CACHE_ID_MAX + 1;
	CHECK_ERRNO(EINVAL, test_cmd(fd, &cmd));
	cmd.check_dev_cache.id = 0;
	cmd.check_dev_cache.cache = 0;
	CHECK_ERRNO(EINVAL, test_cmd(fd, &cmd));
	cmd.id = stdev;
	CHECK_ERRNO(ENOENT, test_cmd(fd, &cmd));

	/* Only a nested HWPT has an IOTLB to check: a paging one is not found as one. */
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_MD_CHECK_IOTLB;
	cmd.id = hwpt;
	CHECK_ERRNO(ENOENT, test_cmd(fd, &cmd));
	close(fd);
}

TEST(temp_memory_limit)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT };
	__u32 ioas, hwpt;
	__u64 iova = MOCK_APERTURE_START;
	int fd;

	OPEN_IOAS(fd, ioas);
	cmd.memory_limit.limit = 11;
	CHECK_ERRNO(EINVAL, test_cmd(fd, &cmd));
	cmd.memory_limit.limit = 12;
	REQUIRE_OK(test_cmd(fd, &cmd));
	/* Tiny batches change nothing a program can see. */
	REQUIRE_OK(mock_domain(fd, ioas, NULL, &hwpt, NULL));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, BUF_SIZE, iova));
	CHECK_OK(check_map(fd, hwpt, iova, BUF_SIZE, g_buf));
	CHECK_REFS(fd, 1);
	cmd.memory_limit.limit = 65536;
	CHECK_OK(test_cmd(fd, &cmd));
	close(fd);
}

/* The names on the mock bus, one per live mock device; returns how many (the last in `last`). */
static int mock_bus_devices(char *last, size_t len)
{
	DIR *d = opendir("/sys/bus/iommufd_mock/devices");
	struct dirent *e;
	int n = 0;

	/* The emulator's sysfs has no empty directories (decision 44): no devices, no directory. */
	if (!d)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "iommufd_mock", 12) != 0)
			continue;
		n++;
		snprintf(last, len, "%s", e->d_name);
	}
	closedir(d);
	return n;
}

TEST(mock_devices_on_their_bus_in_sysfs)
{
	char name[64] = "", path[160], target[160];
	__u32 ioas, stdev;
	ssize_t n;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE(mock_bus_devices(name, sizeof(name)) == 0);
	REQUIRE_OK(mock_domain(fd, ioas, &stdev, NULL, NULL));
	CHECK_EQ(mock_bus_devices(name, sizeof(name)), 1);
	/* The bus lists the device by a link to its directory under /sys/devices. */
	snprintf(path, sizeof(path), "/sys/bus/iommufd_mock/devices/%s", name);
	n = readlink(path, target, sizeof(target) - 1);
	REQUIRE(n > 0);
	target[n] = 0;
	CHECK(strncmp(target, "../../../devices/iommufd_mock", 29) == 0);
	CHECK(strcmp(target + 17, name) == 0);
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_EQ(mock_bus_devices(name, sizeof(name)), 0);
	CHECK(readlink(path, target, sizeof(target)) < 0);
	/* Closing the iommufd removes them too. */
	REQUIRE_OK(mock_domain(fd, ioas, NULL, NULL, NULL));
	CHECK_EQ(mock_bus_devices(name, sizeof(name)), 1);
	close(fd);
	CHECK_EQ(mock_bus_devices(name, sizeof(name)), 0);
}

/* Closing the iommufd destroys the mock devices and drops every pin. */
TEST(close_drops_every_pin)
{
	__u32 ioas;
	int fd, fd2;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain(fd, ioas, NULL, NULL, NULL));
	REQUIRE_OK(mock_domain(fd, ioas, NULL, NULL, NULL));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, BUF_SIZE, MOCK_APERTURE_START));
	CHECK_REFS(fd, 1);
	CHECK_OK(close(fd));
	fd2 = iommufd_open();
	REQUIRE(fd2 >= 0);
	CHECK_OK(check_refs_of(fd2, g_buf, BUF_SIZE, 0));
	close(fd2);
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0xa5, BUF_SIZE);
	RUN(mock_domain_attaches_and_pins);
	RUN(mock_domain_errors);
	RUN(mock_aperture_and_2k_pages);
	RUN(auto_domain_is_shared_and_replace_frees_it);
	RUN(hwpt_alloc_for_a_mock_device);
	RUN(add_reserved_iova);
	RUN(check_refs_errors);
	RUN(hw_info_of_mock_devices);
	RUN(dev_check_cache_and_iotlb);
	RUN(temp_memory_limit);
	RUN(close_drops_every_pin);
	RUN(mock_devices_on_their_bus_in_sysfs);
	return h_done();
}
