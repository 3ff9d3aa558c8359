// exec-args: --enable-unsafe-noiommu-mode
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The unsafe no-IOMMU mode switched on (noiommu.md §3.2-3.5, issue 4): the module parameter,
 * the taint, the noiommu-vfio2 node and its sysfs, CAP_SYS_RAWIO for open, and the iommufd side
 * of a device with no IOMMU: bind, attach (a software-only domain: full 64-bit IOVA space, no
 * reserved IOVA, 4 KiB alignment), replace, detach, destroy, HWPT_ALLOC and GET_HW_INFO, and an
 * IOAS shared with a device behind dmar0 (docs/decisions.md 13, as Linux 7.3 behaves).
 */
#include "harness.h"
#include "edu_helpers.h"

#include <dirent.h>

/* The IOAS shows one range over the whole 64-bit space (no reserved IOVA). */
static void check_full_range(int fd, __u32 ioas, __u64 want_align)
{
	struct iommu_iova_range r[8];
	__u64 align = 0;
	__u32 num;

	CHECK_OK(iova_ranges8(fd, ioas, r, &num, &align));
	CHECK_EQ(num, 1);
	CHECK_EQ(r[0].start, 0);
	CHECK_EQ(r[0].last, U64_MAX_);
	CHECK_EQ(align, want_align);
}

TEST(parameter_reads_y_and_kernel_is_tainted)
{
	char buf[32];
	unsigned long t;

	REQUIRE(read_text("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", buf,
			  sizeof(buf)) >= 0);
	CHECK(strcmp(buf, "Y\n") == 0);
	/* Registering a no-IOMMU device taints the kernel with TAINT_USER (bit 6). */
	REQUIRE(read_text("/proc/sys/kernel/tainted", buf, sizeof(buf)) > 0);
	t = strtoul(buf, NULL, 10);
	CHECK_EQ(t & (1UL << 6), 1UL << 6);
}

TEST(node_and_sysfs)
{
	char buf[64];
	struct stat st;
	unsigned int maj = 0, min = 0;
	int found = 0;
	DIR *d;

	/* /dev/vfio/devices/noiommu-vfio2: a char device whose numbers sysfs gives in "dev". */
	REQUIRE_OK(stat(NOIOMMU_CDEV, &st));
	CHECK(S_ISCHR(st.st_mode));
	REQUIRE(read_text("/sys/bus/pci/devices/" NOIOMMU_BDF "/vfio-dev/noiommu-vfio2/dev", buf,
			  sizeof(buf)) > 0);
	CHECK(sscanf(buf, "%u:%u", &maj, &min) == 2);
	CHECK_EQ(major(st.st_rdev), maj);
	CHECK_EQ(minor(st.st_rdev), min);
	/* The device index comes from the vfio device IDA shared with vfio0 and vfio1. */
	CHECK_EQ(min, 2);
	REQUIRE(read_text("/sys/class/vfio-dev/noiommu-vfio2/dev", buf, sizeof(buf)) > 0);

	/* A driver finds the node the way the example does: opendir(<BDF>/vfio-dev). */
	d = opendir("/sys/bus/pci/devices/" NOIOMMU_BDF "/vfio-dev");
	CHECK(d != NULL);
	if (d) {
		struct dirent *e;

		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			CHECK(strcmp(e->d_name, "noiommu-vfio2") == 0);
			found++;
		}
		closedir(d);
		CHECK_EQ(found, 1);
	}
	/* There is no plain vfio2. */
	CHECK_ERRNO(ENOENT, cdev_open("/dev/vfio/devices/vfio2"));
}

/* Opening the node needs CAP_SYS_RAWIO in the caller's effective set; nothing else does. */
TEST(open_needs_cap_sys_rawio)
{
	int iommufd = iommufd_open();
	struct vfio_device_info info = { .argsz = sizeof(info) };
	int dev, other;
	__u32 ioas, pt;

	REQUIRE(iommufd >= 0);
	REQUIRE(cap_effective(CAP_SYS_RAWIO));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 0));
	REQUIRE(!cap_effective(CAP_SYS_RAWIO));
	CHECK_ERRNO(EPERM, cdev_open(NOIOMMU_CDEV));
	CHECK_ERRNO(EPERM, cdev_open(NOIOMMU_CDEV));
	/* A device behind an IOMMU does not care. */
	other = cdev_open(EDU0_CDEV);
	CHECK(other >= 0);
	if (other >= 0)
		close(other);

	/* Still permitted, so it can be raised again: then the open works. */
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 1));
	dev = cdev_open(NOIOMMU_CDEV);
	REQUIRE(dev >= 0);

	/*
	 * Only the open is checked (vfio_device_fops_cdev_open): the fd, once open, binds,
	 * attaches and answers device ioctls without the capability.
	 */
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 0));
	CHECK_OK(vfio_bind(dev, iommufd, NULL));
	CHECK_OK(ioas_alloc(iommufd, &ioas));
	pt = ioas;
	CHECK_OK(vfio_attach(dev, &pt));
	CHECK_OK(ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
	CHECK_OK(vfio_detach(dev));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 1));
	close(dev);
	close(iommufd);
}

TEST(bind_attach_detach_destroy)
{
	int fd = iommufd_open();
	void *mem = h_mmap(4 * PAGE_SZ);
	struct edu_dev d;
	__u32 ioas, pt;
	int dev2;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(NOIOMMU_CDEV, fd, 0, &d));
	/* A normal DEVICE object with a devid. */
	CHECK_EQ(d.devid, 2);
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, d.devid));
	/* One bound fd per device, as for any device. */
	dev2 = cdev_open(NOIOMMU_CDEV);
	CHECK(dev2 >= 0);
	if (dev2 >= 0) {
		CHECK_ERRNO(EINVAL, vfio_bind(dev2, fd, NULL));
		close(dev2);
	}
	check_full_range(fd, ioas, 1);
	CHECK_OK(vfio_detach(d.fd));	/* not attached: a no-op */

	/* Attach to the IOAS: an auto domain (a software page table) with an id of its own. */
	pt = ioas;
	REQUIRE_OK(vfio_attach(d.fd, &pt));
	CHECK_EQ(pt, 3);
	CHECK(!ioas_exists(fd, pt));
	/* No reserved IOVA at all, full 64-bit space; the domain's 4 KiB page sets alignment. */
	check_full_range(fd, ioas, 4096);
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, d.devid));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, pt));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, ioas));

	/* Maps anywhere in the 64-bit space, the x86 MSI window included; 4 KiB aligned only. */
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, MSI_START));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 1ULL << 60));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, U64_MAX_ - PAGE_SZ + 1));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x100800));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, 0x800, 0x100000));
	check_full_range(fd, ioas, 4096);

	/* Attach again = replace with the same IOAS: the same auto domain. */
	pt = ioas;
	CHECK_OK(vfio_attach(d.fd, &pt));
	CHECK_EQ(pt, 3);

	/* Detach: the auto domain is gone; alignment is back to 1. */
	CHECK_OK(vfio_detach(d.fd));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, pt));
	check_full_range(fd, ioas, 1);
	CHECK_OK(iommu_destroy(fd, ioas));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, d.devid));

	/* Close unbinds: the device object is gone. */
	edu_close(&d);
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 2));
	close(fd);
	munmap(mem, 4 * PAGE_SZ);
}

TEST(replace_moves_to_another_ioas)
{
	int fd = iommufd_open();
	struct edu_dev d;
	__u32 a, b, pa, pb;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &a));
	REQUIRE_OK(ioas_alloc(fd, &b));
	REQUIRE_OK(edu_open(NOIOMMU_CDEV, fd, a, &d));
	pa = d.hwpt;
	check_full_range(fd, a, 4096);
	check_full_range(fd, b, 1);
	pb = b;
	REQUIRE_OK(vfio_attach(d.fd, &pb));
	CHECK(pb != pa);
	check_full_range(fd, a, 1);
	check_full_range(fd, b, 4096);
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, pa));
	CHECK_OK(iommu_destroy(fd, a));
	/* Bad targets. */
	pa = 999;
	CHECK_ERRNO(ENOENT, vfio_attach(d.fd, &pa));
	pa = d.devid;
	CHECK_ERRNO(EINVAL, vfio_attach(d.fd, &pa));
	check_full_range(fd, b, 4096);
	edu_close(&d);
	check_full_range(fd, b, 1);
	close(fd);
}

/* Attaching adds a 4 KiB-page domain: an existing byte-granular mapping is in the way. */
TEST(attach_with_unaligned_area_is_eaddrinuse)
{
	int fd = iommufd_open();
	char *mem = h_mmap(2 * PAGE_SZ);
	struct edu_dev d;
	__u32 ioas, pt;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(NOIOMMU_CDEV, fd, 0, &d));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem + 0x80, 0x100, 0x10080));
	pt = ioas;
	CHECK_ERRNO(EADDRINUSE, vfio_attach(d.fd, &pt));
	check_full_range(fd, ioas, 1);
	CHECK_OK(ioas_unmap(fd, ioas, 0x10080, 0x100, NULL));
	pt = ioas;
	CHECK_OK(vfio_attach(d.fd, &pt));
	edu_close(&d);
	close(fd);
	munmap(mem, 2 * PAGE_SZ);
}

TEST(hwpt_alloc_on_noiommu_device)
{
	int fd = iommufd_open();
	struct iommu_hwpt_vtd_s1 s1;
	struct iommu_hwpt_alloc cmd;
	struct edu_dev d;
	__u32 ioas, hwpt, pt;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(NOIOMMU_CDEV, fd, 0, &d));

	/* The software domain takes no flags and no user data: EOPNOTSUPP. */
	CHECK_ERRNO(EOPNOTSUPP,
		    hwpt_alloc(fd, d.devid, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt));
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc(fd, d.devid, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &hwpt));
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc(fd, d.devid, ioas, IOMMU_HWPT_ALLOC_PASID, &hwpt));
	memset(&s1, 0, sizeof(s1));
	memset(&cmd, 0, sizeof(cmd));
	cmd.size = sizeof(cmd);
	cmd.dev_id = d.devid;
	cmd.pt_id = ioas;
	cmd.data_type = IOMMU_HWPT_DATA_VTD_S1;
	cmd.data_len = sizeof(s1);
	cmd.data_uptr = (uintptr_t)&s1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HWPT_ALLOC, &cmd));
	check_full_range(fd, ioas, 1);

	/* Flags 0: a paging HWPT with a no-IOMMU domain, in the IOAS at once. */
	REQUIRE_OK(hwpt_alloc(fd, d.devid, ioas, 0, &hwpt));
	CHECK_EQ(hwpt, 3);	/* no failed call burnt an ID */
	check_full_range(fd, ioas, 4096);
	/* A nested HWPT on top of it: the no-IOMMU ops cannot nest. */
	memset(&cmd, 0, sizeof(cmd));
	cmd.size = sizeof(cmd);
	cmd.dev_id = d.devid;
	cmd.pt_id = hwpt;
	cmd.data_type = IOMMU_HWPT_DATA_VTD_S1;
	cmd.data_len = sizeof(s1);
	cmd.data_uptr = (uintptr_t)&s1;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_HWPT_ALLOC, &cmd));

	/* Attachable by id; EBUSY while attached; destroyable after detach. */
	pt = hwpt;
	CHECK_OK(vfio_attach(d.fd, &pt));
	CHECK_EQ(pt, hwpt);
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, hwpt));
	CHECK_OK(vfio_detach(d.fd));
	check_full_range(fd, ioas, 4096);	/* the manual HWPT stays */
	CHECK_OK(iommu_destroy(fd, hwpt));
	check_full_range(fd, ioas, 1);
	edu_close(&d);
	close(fd);
}

/*
 * docs/decisions.md 4: GET_HW_INFO of a no-IOMMU device is EOPNOTSUPP (there is no IOMMU
 * driver to ask), after the device lookup: a wrong id is still ENOENT. Nothing is written back.
 */
TEST(get_hw_info_of_noiommu_device)
{
	int fd = iommufd_open();
	struct iommu_hw_info info;
	struct edu_dev d;
	__u8 blob[16];

	REQUIRE(fd >= 0);
	REQUIRE_OK(edu_open(NOIOMMU_CDEV, fd, 0, &d));
	memset(&info, 0, sizeof(info));
	memset(blob, 0xa5, sizeof(blob));
	info.size = sizeof(info);
	info.dev_id = d.devid;
	info.data_len = sizeof(blob);
	info.data_uptr = (uintptr_t)blob;
	info.out_capabilities = 0xff;
	CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	CHECK_EQ(info.data_len, sizeof(blob));
	CHECK_EQ(info.out_capabilities, 0xff);
	CHECK(all_bytes(blob, sizeof(blob), 0xa5));
	info.dev_id = d.devid + 100;
	CHECK_ERRNO(ENOENT, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	edu_close(&d);
	close(fd);
}

/* The device UAPI is the same as for any edu device. */
TEST(device_info_as_usual)
{
	int fd = iommufd_open();
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct vfio_region_info ri;
	struct edu_dev d;

	REQUIRE(fd >= 0);
	REQUIRE_OK(edu_open(NOIOMMU_CDEV, fd, 0, &d));
	CHECK_OK(ioctl(d.fd, VFIO_DEVICE_GET_INFO, &info));
	/* As for any device: PCI, and RESET exactly when a reset works (vfio_reset.c). */
	CHECK_EQ(info.flags & ~VFIO_DEVICE_FLAGS_RESET, VFIO_DEVICE_FLAGS_PCI);
	CHECK_EQ(info.num_regions, 9);
	CHECK_EQ(info.num_irqs, 5);
	CHECK_OK(vfio_region_info(d.fd, 0, &ri));
	CHECK_EQ(ri.size, 0x100000);
	CHECK_EQ(edu_reg(d.fd, EDU_ID), EDU_ID_VALUE);
	CHECK_EQ(edu_bus_master(d.fd), 0);
	if (info.flags & VFIO_DEVICE_FLAGS_RESET)
		CHECK_OK(ioctl(d.fd, VFIO_DEVICE_RESET));
	else
		CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_RESET));
	edu_close(&d);
	close(fd);
}

/*
 * docs/decisions.md 13, as Linux 7.3 does it: a no-IOMMU device attached to an IOAS after a
 * device behind dmar0 joins dmar0's auto HWPT (nothing checks a domain's owner for a device the
 * iommu core never sees), so GET_PA is EOPNOTSUPP: the pages are stored in dmar0's domain. The
 * no-IOMMU device can move onto any HWPT; a dmar0 device cannot attach to a no-IOMMU HWPT
 * (EINVAL, the owner rule) nor be replaced onto one (ENODEV: that domain has no attach_dev).
 * Once dmar0's HWPT is gone, a no-IOMMU HWPT left on the IOAS stores the pages: GET_PA works.
 */
TEST(mixed_ioas_iommu_device_first)
{
	int fd = iommufd_open();
	void *mem = h_mmap(2 * PAGE_SZ);
	struct iommu_iova_range r[8];
	struct edu_dev io, io1, no;
	__u32 ioas, pt, num, nohwpt;
	__u64 align;

	REQUIRE(fd >= 0);
	memset(mem, 1, 2 * PAGE_SZ);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &io));
	REQUIRE_OK(edu_open(NOIOMMU_CDEV, fd, ioas, &no));
	CHECK_EQ(no.hwpt, io.hwpt);
	/* The IOMMU device's reservations apply to the shared IOAS. */
	CHECK_OK(iova_ranges8(fd, ioas, r, &num, &align));
	CHECK_EQ(num, 2);
	CHECK_EQ(r[0].last, MSI_START - 1);
	CHECK_EQ(r[1].last, DMAR0_APERTURE_LAST);
	CHECK_EQ(align, 4096);

	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 2 * PAGE_SZ, 0x100000));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(fd, ioas, 0x100000, PAGE_SZ));

	/* A no-IOMMU HWPT on the same IOAS: dmar0's domain keeps storing the pages. */
	REQUIRE_OK(hwpt_alloc(fd, no.devid, ioas, 0, &nohwpt));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(fd, ioas, 0x100000, PAGE_SZ));
	/* A dmar0 device: attach refused by the owner rule, replace by the domain's ops. */
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, 0, &io1));
	pt = nohwpt;
	CHECK_ERRNO(EINVAL, vfio_attach(io1.fd, &pt));
	pt = nohwpt;
	CHECK_ERRNO(ENODEV, vfio_attach(io.fd, &pt));
	/* The no-IOMMU device moves onto its own kind of HWPT and back onto dmar0's. */
	pt = nohwpt;
	CHECK_OK(vfio_attach(no.fd, &pt));
	pt = io.hwpt;
	CHECK_OK(vfio_attach(no.fd, &pt));
	CHECK_EQ(pt, io.hwpt);

	/* dmar0's auto HWPT goes with its last device, the no-IOMMU one: GET_PA works then. */
	CHECK_OK(vfio_detach(io.fd));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(fd, ioas, 0x100000, PAGE_SZ));
	CHECK_OK(vfio_detach(no.fd));
	CHECK_OK(get_pa_try(fd, ioas, 0x100000, PAGE_SZ));
	CHECK_OK(iommu_destroy(fd, nohwpt));
	edu_close(&io1);
	edu_close(&io);
	edu_close(&no);
	close(fd);
	munmap(mem, 2 * PAGE_SZ);
}

TEST(mixed_ioas_noiommu_device_first)
{
	int fd = iommufd_open();
	void *mem = h_mmap(2 * PAGE_SZ);
	struct edu_dev io, no;
	__u32 ioas;
	__u64 len = PAGE_SZ, pa = 0;

	REQUIRE(fd >= 0);
	memset(mem, 1, 2 * PAGE_SZ);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(NOIOMMU_CDEV, fd, ioas, &no));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, 2 * PAGE_SZ, 0x100000));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &io));
	CHECK(no.hwpt != io.hwpt);
	/* The first domain (the no-IOMMU one) keeps storing the pages: GET_PA works. */
	CHECK_OK(get_pa(fd, ioas, 0x100000, &len, &pa));
	CHECK_EQ(len, PAGE_SZ);
	/* A map made while both domains exist is stored in the first one too. */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x200000));
	CHECK_OK(get_pa_try(fd, ioas, 0x200000, PAGE_SZ));
	/* The no-IOMMU device leaves: dmar0's domain is the storage now. */
	CHECK_OK(vfio_detach(no.fd));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(fd, ioas, 0x100000, PAGE_SZ));
	edu_close(&io);
	edu_close(&no);
	close(fd);
	munmap(mem, 2 * PAGE_SZ);
}

int main(void)
{
	h_init();
	RUN(parameter_reads_y_and_kernel_is_tainted);
	RUN(node_and_sysfs);
	RUN(open_needs_cap_sys_rawio);
	RUN(bind_attach_detach_destroy);
	RUN(replace_moves_to_another_ioas);
	RUN(attach_with_unaligned_area_is_eaddrinuse);
	RUN(hwpt_alloc_on_noiommu_device);
	RUN(get_hw_info_of_noiommu_device);
	RUN(device_info_as_usual);
	RUN(mixed_ioas_iommu_device_first);
	RUN(mixed_ioas_noiommu_device_first);
	return h_done();
}
