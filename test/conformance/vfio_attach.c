/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * VFIO_DEVICE_ATTACH_IOMMUFD_PT / DETACH on edu devices behind dmar0 (uapi.md §3.3-3.4, §4.4,
 * §5.3, §6.3): auto domains (created, reused by a second device, freed with their last device),
 * replace by a second ATTACH (reserved regions move with the device), errors for bad targets,
 * EBUSY for objects in use, the MSI window and alignment the attached device brings to the IOAS,
 * and the ranges widening again after detach.
 */
#include "harness.h"
#include "edu_helpers.h"

/* The IOAS shows the whole IOVA space, byte-granular: nothing attached (uapi.md §4.4). */
static void check_unattached_ranges(int fd, __u32 ioas)
{
	struct iommu_iova_range r[8];
	__u64 align = 0;
	__u32 num;

	CHECK_OK(iova_ranges8(fd, ioas, r, &num, &align));
	CHECK_EQ(num, 1);
	CHECK_EQ(r[0].start, 0);
	CHECK_EQ(r[0].last, U64_MAX_);
	CHECK_EQ(align, 1);
}

/*
 * An edu device behind dmar0 is attached to the IOAS: the MSI window is reserved, so is
 * everything past dmar0's 48-bit aperture, and maps must be 4 KiB aligned.
 */
static void check_attached_ranges(int fd, __u32 ioas)
{
	struct iommu_iova_range r[8];
	__u64 align = 0;
	__u32 num;

	CHECK_OK(iova_ranges8(fd, ioas, r, &num, &align));
	CHECK_EQ(num, 2);
	CHECK_EQ(r[0].start, 0);
	CHECK_EQ(r[0].last, MSI_START - 1);
	CHECK_EQ(r[1].start, MSI_LAST + 1);
	CHECK_EQ(r[1].last, DMAR0_APERTURE_LAST);
	CHECK_EQ(align, 4096);
}

TEST(attach_to_ioas_makes_an_auto_hwpt)
{
	int fd = iommufd_open();
	struct edu_dev d;
	__u32 ioas, pt;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &d));
	CHECK_EQ(ioas, 1);
	CHECK_EQ(d.devid, 2);
	check_unattached_ranges(fd, ioas);
	pt = ioas;
	REQUIRE_OK(vfio_attach(d.fd, &pt));
	/* The auto domain is an object of its own, with the next free ID. */
	CHECK(pt != ioas);
	CHECK_EQ(pt, 3);
	CHECK(!ioas_exists(fd, pt));
	check_attached_ranges(fd, ioas);

	/* Everything in use is EBUSY. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, d.devid));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, pt));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, ioas));

	/* Detach: the auto domain goes with its last device; the ranges widen again. */
	CHECK_OK(vfio_detach(d.fd));
	check_unattached_ranges(fd, ioas);
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, pt));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, d.devid));	/* still bound */

	/* Attach again: a fresh auto domain, and the lowest free ID (the old one) again. */
	pt = ioas;
	CHECK_OK(vfio_attach(d.fd, &pt));
	CHECK_EQ(pt, 3);
	check_attached_ranges(fd, ioas);
	CHECK_OK(vfio_detach(d.fd));
	CHECK_OK(iommu_destroy(fd, ioas));
	edu_close(&d);
	close(fd);
}

TEST(detach_of_unattached_device_is_ok)
{
	int fd = iommufd_open();
	struct edu_dev d;

	REQUIRE(fd >= 0);
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &d));
	CHECK_OK(vfio_detach(d.fd));
	CHECK_OK(vfio_detach(d.fd));
	edu_close(&d);
	close(fd);
}

TEST(second_device_reuses_the_auto_hwpt)
{
	int fd = iommufd_open();
	struct edu_dev a, b;
	__u32 ioas, pa, pb;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &a));
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, 0, &b));
	pa = a.hwpt;
	pb = ioas;
	REQUIRE_OK(vfio_attach(b.fd, &pb));
	CHECK_EQ(pb, pa);
	check_attached_ranges(fd, ioas);

	/* The first device leaves: the domain stays for the second, so do its reserved regions. */
	CHECK_OK(vfio_detach(a.fd));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, pa));
	check_attached_ranges(fd, ioas);
	/* The last one leaves: the domain is gone, the ranges widen. */
	CHECK_OK(vfio_detach(b.fd));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, pa));
	check_unattached_ranges(fd, ioas);
	edu_close(&a);
	edu_close(&b);
	close(fd);
}

/* Closing a device fd detaches it: the auto domain and its reservations go too. */
TEST(close_detaches)
{
	int fd = iommufd_open();
	struct edu_dev d;
	__u32 ioas;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &d));
	check_attached_ranges(fd, ioas);
	edu_close(&d);
	check_unattached_ranges(fd, ioas);
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 2));	/* the device */
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, 3));	/* its auto domain */
	CHECK_OK(iommu_destroy(fd, ioas));
	close(fd);
}

/* A second ATTACH is a replace: the device and its reserved regions move to the new IOAS. */
TEST(attach_again_replaces)
{
	int fd = iommufd_open();
	void *mem = h_mmap(4 * PAGE_SZ);
	struct edu_dev d;
	__u32 a, b, pa, pb, p;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &a));
	REQUIRE_OK(ioas_alloc(fd, &b));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, a, &d));
	pa = d.hwpt;
	CHECK_OK(ioas_map_fixed(fd, a, mem, PAGE_SZ, 0x100000));
	CHECK_OK(ioas_map_fixed(fd, b, mem, PAGE_SZ, 0x100000));
	check_attached_ranges(fd, a);
	check_unattached_ranges(fd, b);

	pb = b;
	REQUIRE_OK(vfio_attach(d.fd, &pb));
	CHECK(pb != pa && pb != a && pb != b);
	/* The old IOAS widens again (its auto domain had no other user and is gone). */
	check_unattached_ranges(fd, a);
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, pa));
	CHECK_OK(iommu_destroy(fd, a));
	check_attached_ranges(fd, b);

	/* Replacing with the HWPT already attached is a no-op success. */
	p = pb;
	CHECK_OK(vfio_attach(d.fd, &p));
	CHECK_EQ(p, pb);
	/* Replacing with the same IOAS reuses its auto domain. */
	p = b;
	CHECK_OK(vfio_attach(d.fd, &p));
	CHECK_EQ(p, pb);
	check_attached_ranges(fd, b);

	CHECK_OK(vfio_detach(d.fd));
	check_unattached_ranges(fd, b);
	/* Attach after detach is a plain attach again. */
	p = b;
	CHECK_OK(vfio_attach(d.fd, &p));
	check_attached_ranges(fd, b);
	edu_close(&d);
	close(fd);
	munmap(mem, 4 * PAGE_SZ);
}

/* A replace that cannot place the device's reserved regions changes nothing. */
TEST(failed_replace_changes_nothing)
{
	int fd = iommufd_open();
	void *mem = h_mmap(2 * PAGE_SZ);
	struct edu_dev d;
	__u32 a, b, p;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &a));
	REQUIRE_OK(ioas_alloc(fd, &b));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, a, &d));
	/* IOAS b has a mapping inside the MSI window. */
	REQUIRE_OK(ioas_map_fixed(fd, b, mem, PAGE_SZ, MSI_START));
	p = b;
	CHECK_ERRNO(EADDRINUSE, vfio_attach(d.fd, &p));
	check_attached_ranges(fd, a);
	check_unattached_ranges(fd, b);
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, d.hwpt));
	/* The would-be auto domain of b was not kept: b has no HWPT. */
	CHECK_OK(iommu_destroy(fd, b));
	CHECK_OK(vfio_detach(d.fd));
	check_unattached_ranges(fd, a);
	edu_close(&d);
	close(fd);
	munmap(mem, 2 * PAGE_SZ);
}

/* A first attach that collides with existing mappings fails and leaves the device detached. */
TEST(attach_conflicts_are_eaddrinuse)
{
	int fd = iommufd_open();
	char *mem = h_mmap(4 * PAGE_SZ);
	struct edu_dev d;
	__u32 ioas, p;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &d));

	/* A mapping in the MSI window the device reserves. */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, MSI_LAST - PAGE_SZ + 1));
	p = ioas;
	CHECK_ERRNO(EADDRINUSE, vfio_attach(d.fd, &p));
	check_unattached_ranges(fd, ioas);
	CHECK_OK(ioas_unmap(fd, ioas, MSI_LAST - PAGE_SZ + 1, PAGE_SZ, NULL));

	/* A mapping beyond dmar0's aperture. */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 1ULL << 48));
	p = ioas;
	CHECK_ERRNO(EADDRINUSE, vfio_attach(d.fd, &p));
	check_unattached_ranges(fd, ioas);
	CHECK_OK(ioas_unmap(fd, ioas, 1ULL << 48, PAGE_SZ, NULL));

	/* A byte-granular mapping the domain's 4 KiB alignment cannot hold (uapi.md §4.4). */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, mem + 0x100, 0x100, 0x200100));
	p = ioas;
	CHECK_ERRNO(EADDRINUSE, vfio_attach(d.fd, &p));
	check_unattached_ranges(fd, ioas);
	CHECK_OK(ioas_unmap(fd, ioas, 0x200100, 0x100, NULL));

	/* Nothing of the failures is left: detach is a no-op and attach works now. */
	CHECK_OK(vfio_detach(d.fd));
	p = ioas;
	CHECK_OK(vfio_attach(d.fd, &p));
	check_attached_ranges(fd, ioas);
	edu_close(&d);
	close(fd);
	munmap(mem, 4 * PAGE_SZ);
}

TEST(attach_bad_targets)
{
	int fd = iommufd_open();
	struct edu_dev a, b;
	struct vfio_device_attach_iommufd_pt at;
	__u32 ioas, p;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &a));
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, 0, &b));

	/* No such object. */
	p = 999;
	CHECK_ERRNO(ENOENT, vfio_attach(a.fd, &p));
	p = 0;
	CHECK_ERRNO(ENOENT, vfio_attach(a.fd, &p));
	/* An object that is neither an IOAS nor a HWPT: a device (its own id or another's). */
	p = a.devid;
	CHECK_ERRNO(EINVAL, vfio_attach(a.fd, &p));
	p = b.devid;
	CHECK_ERRNO(EINVAL, vfio_attach(a.fd, &p));
	/* A failed ATTACH does not write pt_id back. */
	memset(&at, 0, sizeof(at));
	at.argsz = sizeof(at);
	at.pt_id = b.devid;
	CHECK_ERRNO(EINVAL, ioctl(a.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at));
	CHECK_EQ(at.pt_id, b.devid);

	/* argsz below 12 and unknown flags are EINVAL (vfio_df_ioctl_attach_pt). */
	memset(&at, 0, sizeof(at));
	at.argsz = 8;
	at.pt_id = ioas;
	CHECK_ERRNO(EINVAL, ioctl(a.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at));
	at.argsz = sizeof(at);
	at.flags = 1U << 1;
	CHECK_ERRNO(EINVAL, ioctl(a.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at));

	/* Still detached: the IOAS is untouched. */
	check_unattached_ranges(fd, ioas);
	/* The 12-byte struct (no pasid) is enough. */
	at.argsz = 12;
	at.flags = 0;
	at.pt_id = ioas;
	CHECK_OK(ioctl(a.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at));
	CHECK(at.pt_id != ioas);
	/* While attached, a bad replace target changes nothing. */
	p = 999;
	CHECK_ERRNO(ENOENT, vfio_attach(a.fd, &p));
	p = b.devid;
	CHECK_ERRNO(EINVAL, vfio_attach(a.fd, &p));
	check_attached_ranges(fd, ioas);
	edu_close(&a);
	edu_close(&b);
	close(fd);
}

TEST(detach_bad_args)
{
	int fd = iommufd_open();
	struct vfio_device_detach_iommufd_pt de;
	struct edu_dev d;
	__u32 ioas;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &d));
	memset(&de, 0, sizeof(de));
	de.argsz = 4;
	CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &de));
	de.argsz = sizeof(de);
	de.flags = 1U << 1;
	CHECK_ERRNO(EINVAL, ioctl(d.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &de));
	check_attached_ranges(fd, ioas);
	de.flags = 0;
	de.argsz = 8;
	CHECK_OK(ioctl(d.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &de));
	check_unattached_ranges(fd, ioas);
	edu_close(&d);
	close(fd);
}

/* With the device attached, no map may touch the MSI window or leave the aperture. */
TEST(map_into_reserved_ranges_is_einval)
{
	int fd = iommufd_open();
	void *mem = h_mmap(4 * PAGE_SZ);
	struct edu_dev d;
	__u32 ioas;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &d));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, 2 * PAGE_SZ, MSI_START - PAGE_SZ));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, PAGE_SZ, MSI_START));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0xfee80000));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, 2 * PAGE_SZ, MSI_LAST + 1 - PAGE_SZ));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 1ULL << 48));
	/* Alignment is 4 KiB now. */
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, PAGE_SZ, 0x100800));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(fd, ioas, mem, 0x800, 0x100000));
	/* Right next to the window is fine. */
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, MSI_START - PAGE_SZ));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, MSI_LAST + 1));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, DMAR0_APERTURE_LAST + 1 - PAGE_SZ));

	/* After detach the window is ordinary IOVA again. */
	CHECK_OK(vfio_detach(d.fd));
	CHECK_OK(ioas_map_fixed(fd, ioas, mem, PAGE_SZ, MSI_START));
	/* ... and the device cannot come back while that mapping is there. */
	{
		__u32 p = ioas;

		CHECK_ERRNO(EADDRINUSE, vfio_attach(d.fd, &p));
	}
	edu_close(&d);
	close(fd);
	munmap(mem, 4 * PAGE_SZ);
}

int main(void)
{
	h_init();
	RUN(attach_to_ioas_makes_an_auto_hwpt);
	RUN(detach_of_unattached_device_is_ok);
	RUN(second_device_reuses_the_auto_hwpt);
	RUN(close_detaches);
	RUN(attach_again_replaces);
	RUN(failed_replace_changes_nothing);
	RUN(attach_conflicts_are_eaddrinuse);
	RUN(attach_bad_targets);
	RUN(detach_bad_args);
	RUN(map_into_reserved_ranges_is_einval);
	return h_done();
}
