/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The IOAS with a real (emulated) VFIO device attached through its cdev
 * (uapi.md §2.1, §2.4, §2.5, §2.9, §2.11, §2.12, §3.3, §3.4, §4.4, §5.3):
 * references make DESTROY EBUSY, the auto-domain's ID comes back as pt_id
 * and goes away on detach, the domain's page size raises the alignment and
 * its reserved regions narrow IOVA_RANGES, reservations that collide with
 * areas or allowed ranges are EADDRINUSE, huge pages cannot be turned off
 * over a populated domain, and GET_HW_INFO accepts the pre-PASID 32-byte
 * struct. Every test case is skipped when no /dev/vfio/devices/vfioN opens.
 */
#include "harness.h"

struct env {
	int fd;		/* iommufd */
	int dev;	/* vfio cdev */
	__u32 ioas;
	__u32 devid;
};

static char devpath[64];

/* iommufd + IOAS (ID 1) + a bound device (ID 2). */
static int env_open(struct env *e)
{
	memset(e, 0, sizeof(*e));
	e->dev = vfio_cdev_open_any(devpath, sizeof(devpath));
	if (e->dev < 0)
		return 1;
	e->fd = iommufd_open();
	if (e->fd < 0 || ioas_alloc(e->fd, &e->ioas) ||
	    vfio_bind(e->dev, e->fd, &e->devid))
		return -1;
	return 0;
}

static void env_close(struct env *e)
{
	if (e->dev >= 0)
		close(e->dev);
	if (e->fd >= 0)
		close(e->fd);
}

#define ENV_OPEN(e)                                                        \
	do {                                                               \
		int _rc = env_open(e);                                     \
		if (_rc > 0)                                               \
			SKIP("no VFIO device cdev");                       \
		REQUIRE(_rc == 0);                                         \
	} while (0)

/* Reads the usable ranges; returns their number (up to `cap`). */
static __u32 get_ranges(struct env *e, __u32 ioas,
			struct iommu_iova_range *r, __u32 cap, __u64 *align)
{
	__u32 num = cap;

	if (ioas_iova_ranges(e->fd, ioas, r, &num, align))
		return 0;
	return num;
}

/* The first reserved gap (complement of the usable ranges), if any. */
static int first_gap(struct iommu_iova_range *r, __u32 n,
		     struct iommu_iova_range *gap)
{
	__u32 i;

	if (n == 0)
		return 0;
	if (r[0].start != 0) {
		gap->start = 0;
		gap->last = r[0].start - 1;
		return 1;
	}
	for (i = 0; i + 1 < n; i++) {
		gap->start = r[i].last + 1;
		gap->last = r[i + 1].start - 1;
		return 1;
	}
	if (r[n - 1].last != U64_MAX_) {
		gap->start = r[n - 1].last + 1;
		gap->last = U64_MAX_;
		return 1;
	}
	return 0;
}

TEST(bound_device_is_an_object)
{
	struct env e;
	__u32 id;

	ENV_OPEN(&e);
	h_note("device %s, devid %u", devpath, e.devid);
	CHECK_EQ(e.ioas, 1);
	CHECK_EQ(e.devid, 2);
	/* driver-owned: never destroyable by the user */
	CHECK_ERRNO(EBUSY, iommu_destroy(e.fd, e.devid));
	/* wrong type for IOAS lookups */
	CHECK(!ioas_exists(e.fd, e.devid));
	CHECK_ERRNO(ENOENT, option_get(e.fd, IOMMU_OPTION_HUGE_PAGES, e.devid,
				       NULL));
	CHECK_OK(ioas_alloc(e.fd, &id));
	CHECK_EQ(id, 3);
	/* closing the device unbinds it: the ID is gone */
	close(e.dev);
	e.dev = -1;
	CHECK_ERRNO(ENOENT, iommu_destroy(e.fd, 2));
	CHECK_OK(ioas_alloc(e.fd, &id));
	CHECK_EQ(id, 2);
	env_close(&e);
}

TEST(attach_creates_auto_domain)
{
	struct iommu_iova_range r[8];
	struct env e;
	__u32 pt, n, i;
	__u64 align;

	ENV_OPEN(&e);
	pt = e.ioas;
	REQUIRE_OK(vfio_attach(e.dev, &pt));
	/* pt_id comes back as the auto-domain HWPT, a new object */
	CHECK_EQ(pt, 3);
	CHECK_ERRNO(EBUSY, iommu_destroy(e.fd, e.ioas));
	CHECK_ERRNO(EBUSY, iommu_destroy(e.fd, pt));
	CHECK_ERRNO(EBUSY, iommu_destroy(e.fd, e.devid));
	CHECK(!ioas_exists(e.fd, pt));

	n = get_ranges(&e, e.ioas, r, 8, &align);
	h_note("attached: %u ranges, alignment 0x%llx", n,
	       (unsigned long long)align);
	for (i = 0; i < n; i++)
		h_note("  [0x%llx, 0x%llx]", (unsigned long long)r[i].start,
		       (unsigned long long)r[i].last);
	CHECK(n >= 1);
	/* x86 IOMMUs: 4 KiB is the smallest page (uapi.md §4.4) */
	CHECK_EQ(align, PAGE_SZ);
	for (i = 0; i < n; i++) {
		CHECK(r[i].start <= r[i].last);
		if (i)
			CHECK(r[i].start > r[i - 1].last + 1);
	}

	/* detach: the auto domain is destroyed with its ID, the ranges and
	 * alignment of an empty IOAS come back */
	CHECK_OK(vfio_detach(e.dev));
	CHECK_ERRNO(ENOENT, iommu_destroy(e.fd, pt));
	n = get_ranges(&e, e.ioas, r, 8, &align);
	CHECK_EQ(n, 1);
	CHECK_EQ(r[0].start, 0);
	CHECK_EQ(r[0].last, U64_MAX_);
	CHECK_EQ(align, 1);
	/* detaching again is a no-op */
	CHECK_OK(vfio_detach(e.dev));
	CHECK_OK(iommu_destroy(e.fd, e.ioas));
	env_close(&e);
}

TEST(reserved_ranges_block_maps_and_allowed_list)
{
	unsigned char *mem = h_mmap_exact_align(4 * PAGE_SZ, PAGE_SZ);
	struct iommu_iova_range r[8], gap, ok;
	struct env e;
	__u64 align, iova;
	__u32 pt, n, i;

	ENV_OPEN(&e);
	pt = e.ioas;
	REQUIRE_OK(vfio_attach(e.dev, &pt));
	n = get_ranges(&e, e.ioas, r, 8, &align);
	if (!first_gap(r, n, &gap)) {
		env_close(&e);
		SKIP("device reports no reserved IOVA ranges");
	}
	h_note("reserved gap [0x%llx, 0x%llx]", (unsigned long long)gap.start,
	       (unsigned long long)gap.last);
	/* FIXED map into a reserved range: EINVAL */
	CHECK_ERRNO(EINVAL, ioas_map_fixed(e.fd, e.ioas, mem, PAGE_SZ,
					   gap.start & ~(PAGE_SZ - 1)));
	/* allowed range over a reserved one: EADDRINUSE */
	CHECK_ERRNO(EADDRINUSE, ioas_allow_iovas(e.fd, e.ioas, &gap, 1));
	/* automatic IOVAs land inside the usable ranges */
	for (i = 0; i < 8; i++) {
		__u32 j;
		int inside = 0;

		REQUIRE_OK(ioas_map_auto(e.fd, e.ioas, mem, 4 * PAGE_SZ, &iova));
		for (j = 0; j < n; j++)
			inside |= iova >= r[j].start &&
				  iova + 4 * PAGE_SZ - 1 <= r[j].last;
		CHECK(inside);
	}
	/* an allowed range inside a usable one is fine */
	ok.start = r[0].start + 0x100000;
	ok.last = ok.start + 0xfffff;
	if (ok.last <= r[0].last)
		CHECK_OK(ioas_allow_iovas(e.fd, e.ioas, &ok, 1));
	CHECK_OK(vfio_detach(e.dev));
	env_close(&e);
}

/* Attach reserves the device's regions and the aperture: an allowed range
 * or an area already there makes it fail with EADDRINUSE; the failed
 * attach leaves no object behind. */
TEST(attach_conflicts_are_eaddrinuse)
{
	unsigned char *mem = h_mmap_exact_align(4 * PAGE_SZ, PAGE_SZ);
	struct iommu_iova_range r[8], gap;
	struct env e;
	__u32 pt, n, id;
	__u64 align;

	ENV_OPEN(&e);
	pt = e.ioas;
	REQUIRE_OK(vfio_attach(e.dev, &pt));
	n = get_ranges(&e, e.ioas, r, 8, &align);
	REQUIRE_OK(vfio_detach(e.dev));
	if (!first_gap(r, n, &gap)) {
		env_close(&e);
		SKIP("device reports no reserved IOVA ranges");
	}

	REQUIRE_OK(ioas_allow_iovas(e.fd, e.ioas, &gap, 1));
	pt = e.ioas;
	CHECK_ERRNO(EADDRINUSE, vfio_attach(e.dev, &pt));
	REQUIRE_OK(ioas_allow_iovas(e.fd, e.ioas, NULL, 0));

	REQUIRE_OK(ioas_map_fixed(e.fd, e.ioas, mem, PAGE_SZ,
				  gap.start & ~(PAGE_SZ - 1)));
	pt = e.ioas;
	CHECK_ERRNO(EADDRINUSE, vfio_attach(e.dev, &pt));
	REQUIRE_OK(ioas_unmap(e.fd, e.ioas, 0, U64_MAX_, NULL));

	/* the failed attaches did not burn IDs */
	REQUIRE_OK(ioas_alloc(e.fd, &id));
	CHECK_EQ(id, 3);
	CHECK_OK(iommu_destroy(e.fd, id));
	pt = e.ioas;
	CHECK_OK(vfio_attach(e.dev, &pt));
	CHECK_EQ(pt, 3);
	CHECK_OK(vfio_detach(e.dev));
	env_close(&e);
}

/* The domain raises the alignment to PAGE_SIZE; byte-granular areas that
 * do not fit make the attach EADDRINUSE. */
TEST(attach_over_unaligned_area_is_eaddrinuse)
{
	unsigned char *mem = h_mmap_exact_align(4 * PAGE_SZ, PAGE_SZ);
	struct env e;
	__u64 unmapped;
	__u32 pt;

	ENV_OPEN(&e);
	REQUIRE_OK(ioas_map_fixed(e.fd, e.ioas, mem + 0x10, 0x100, 0x100010));
	pt = e.ioas;
	CHECK_ERRNO(EADDRINUSE, vfio_attach(e.dev, &pt));
	REQUIRE_OK(ioas_unmap(e.fd, e.ioas, 0, U64_MAX_, &unmapped));
	/* page-aligned areas are kept and mapped into the new domain */
	REQUIRE_OK(ioas_map_fixed(e.fd, e.ioas, mem, 2 * PAGE_SZ, 0x100000));
	pt = e.ioas;
	CHECK_OK(vfio_attach(e.dev, &pt));
	/* now the alignment is enforced for new maps */
	CHECK_ERRNO(EINVAL, ioas_map_fixed(e.fd, e.ioas, mem, PAGE_SZ, 0x200800));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(e.fd, e.ioas, mem, 0x800, 0x200000));
	CHECK_ERRNO(EINVAL, ioas_map_fixed(e.fd, e.ioas, mem + 8, PAGE_SZ,
					   0x200000));
	CHECK_OK(ioas_map_fixed(e.fd, e.ioas, mem, PAGE_SZ, 0x200000));
	CHECK_OK(ioas_unmap(e.fd, e.ioas, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, 3 * PAGE_SZ);
	CHECK_OK(vfio_detach(e.dev));
	env_close(&e);
}

/* HUGE_PAGES cannot be turned off while the IOAS has both a domain and
 * mappings (EINVAL); with a domain but no mappings it can. */
TEST(huge_pages_off_with_populated_domain)
{
	unsigned char *mem = h_mmap_exact_align(4 * PAGE_SZ, PAGE_SZ);
	struct env e;
	__u64 v;
	__u32 pt;

	ENV_OPEN(&e);
	pt = e.ioas;
	REQUIRE_OK(vfio_attach(e.dev, &pt));
	CHECK_OK(option_set(e.fd, IOMMU_OPTION_HUGE_PAGES, e.ioas, 0));
	CHECK_OK(option_set(e.fd, IOMMU_OPTION_HUGE_PAGES, e.ioas, 1));
	REQUIRE_OK(ioas_map_fixed(e.fd, e.ioas, mem, 2 * PAGE_SZ, 0x100000));
	CHECK_ERRNO(EINVAL, option_set(e.fd, IOMMU_OPTION_HUGE_PAGES, e.ioas, 0));
	CHECK_OK(option_get(e.fd, IOMMU_OPTION_HUGE_PAGES, e.ioas, &v));
	CHECK_EQ(v, 1);
	CHECK_OK(ioas_unmap(e.fd, e.ioas, 0, U64_MAX_, NULL));
	CHECK_OK(vfio_detach(e.dev));
	env_close(&e);
}

/* Re-attaching to another IOAS replaces; the old auto domain goes. */
TEST(replace_frees_old_auto_domain)
{
	struct env e;
	__u32 other, pt, pt2;

	ENV_OPEN(&e);
	REQUIRE_OK(ioas_alloc(e.fd, &other));
	CHECK_EQ(other, 3);
	pt = e.ioas;
	REQUIRE_OK(vfio_attach(e.dev, &pt));
	CHECK_EQ(pt, 4);
	pt2 = other;
	REQUIRE_OK(vfio_attach(e.dev, &pt2));
	/* lowest free ID at the time the new domain was made */
	CHECK_EQ(pt2, 5);
	CHECK_ERRNO(ENOENT, iommu_destroy(e.fd, pt));
	CHECK_OK(iommu_destroy(e.fd, e.ioas));
	CHECK_ERRNO(EBUSY, iommu_destroy(e.fd, other));
	/* attaching to the HWPT it already has is a no-op success */
	pt = pt2;
	CHECK_OK(vfio_attach(e.dev, &pt));
	CHECK_EQ(pt, pt2);
	CHECK_OK(vfio_detach(e.dev));
	CHECK_ERRNO(ENOENT, iommu_destroy(e.fd, pt2));
	CHECK_OK(iommu_destroy(e.fd, other));
	env_close(&e);
}

/* Closing the device fd detaches and unbinds: everything it held goes. */
TEST(close_device_releases_references)
{
	struct env e;
	__u32 pt;

	ENV_OPEN(&e);
	pt = e.ioas;
	REQUIRE_OK(vfio_attach(e.dev, &pt));
	close(e.dev);
	e.dev = -1;
	CHECK_ERRNO(ENOENT, iommu_destroy(e.fd, pt));
	CHECK_ERRNO(ENOENT, iommu_destroy(e.fd, e.devid));
	CHECK_OK(iommu_destroy(e.fd, e.ioas));
	env_close(&e);
}

/* A manually allocated HWPT_PAGING holds its IOAS; pt_id must name an IOAS
 * (missing or wrong type: EINVAL), dev_id a device (ENOENT). */
TEST(hwpt_alloc_references)
{
	struct iommu_hwpt_alloc cmd = { .size = sizeof(cmd) };
	struct iommu_iova_range r[8];
	struct env e;
	__u64 align;
	__u32 hwpt, pt;

	ENV_OPEN(&e);
	cmd.dev_id = e.devid;
	cmd.pt_id = e.ioas;
	REQUIRE_OK(ioctl(e.fd, IOMMU_HWPT_ALLOC, &cmd));
	hwpt = cmd.out_hwpt_id;
	CHECK_EQ(hwpt, 3);
	/* the domain is in the IOAS now: alignment PAGE_SIZE */
	get_ranges(&e, e.ioas, r, 8, &align);
	CHECK_EQ(align, PAGE_SZ);
	CHECK_ERRNO(EBUSY, iommu_destroy(e.fd, e.ioas));

	/* attach to it by ID: pt_id comes back unchanged */
	pt = hwpt;
	CHECK_OK(vfio_attach(e.dev, &pt));
	CHECK_EQ(pt, hwpt);
	CHECK_ERRNO(EBUSY, iommu_destroy(e.fd, hwpt));
	CHECK_OK(vfio_detach(e.dev));
	/* not an auto domain: it survives the detach */
	CHECK_OK(iommu_destroy(e.fd, hwpt));
	get_ranges(&e, e.ioas, r, 8, &align);
	CHECK_EQ(align, 1);

	cmd.pt_id = 77;
	CHECK_ERRNO(EINVAL, ioctl(e.fd, IOMMU_HWPT_ALLOC, &cmd));
	cmd.pt_id = e.devid;
	CHECK_ERRNO(EINVAL, ioctl(e.fd, IOMMU_HWPT_ALLOC, &cmd));
	cmd.pt_id = e.ioas;
	cmd.dev_id = e.ioas;
	CHECK_ERRNO(ENOENT, ioctl(e.fd, IOMMU_HWPT_ALLOC, &cmd));
	cmd.dev_id = 0;
	CHECK_ERRNO(ENOENT, ioctl(e.fd, IOMMU_HWPT_ALLOC, &cmd));
	/* none of the failures used an ID */
	CHECK_OK(ioas_alloc(e.fd, &pt));
	CHECK_EQ(pt, 3);
	CHECK_OK(iommu_destroy(e.fd, e.ioas));
	env_close(&e);
}

/*
 * IOMMU_GET_HW_INFO at the pre-PASID size of 32 bytes works and leaves the
 * 8 bytes after it (out_capabilities in today's struct) untouched; the
 * user buffer is filled up to data_len (zeroed past the blob) and data_len
 * comes back as the blob's size.
 */
TEST(hw_info_short_struct)
{
	unsigned char buf[64] __attribute__((aligned(8)));
	unsigned char data[64];
	struct iommu_hw_info *info = (void *)buf;
	struct env e;
	unsigned int i;
	int bad = 0;

	ENV_OPEN(&e);
	memset(buf, 0, sizeof(buf));
	memset(buf + 32, 0xaa, 32);
	memset(data, 0xcc, sizeof(data));
	info->size = 32;
	info->dev_id = e.devid;
	info->data_len = sizeof(data);
	info->data_uptr = (uintptr_t)data;
	REQUIRE_OK(ioctl(e.fd, IOMMU_GET_HW_INFO, info));
	for (i = 32; i < 64; i++)
		bad |= buf[i] != 0xaa;
	CHECK(!bad);
	h_note("hw_info: type %u, data_len %u", info->out_data_type,
	       info->data_len);
	CHECK(info->data_len <= sizeof(data));
	bad = 0;
	for (i = info->data_len; i < sizeof(data); i++)
		bad |= data[i] != 0;
	CHECK(!bad);
	CHECK_EQ(info->out_max_pasid_log2, 0);

	/* full size: out_capabilities is written (known bits only) */
	memset(buf, 0, sizeof(buf));
	memset(buf + 32, 0xaa, 32);
	info->size = sizeof(*info);
	info->dev_id = e.devid;
	REQUIRE_OK(ioctl(e.fd, IOMMU_GET_HW_INFO, info));
	CHECK_EQ(info->out_capabilities & ~0xfULL, 0);
	bad = 0;
	for (i = 40; i < 64; i++)
		bad |= buf[i] != 0xaa;
	CHECK(!bad);

	/* an IOAS is not a device */
	info->dev_id = e.ioas;
	CHECK_ERRNO(ENOENT, ioctl(e.fd, IOMMU_GET_HW_INFO, info));
	env_close(&e);
}

/* A second device behind the same IOMMU shares the auto domain. */
TEST(second_device_shares_auto_domain)
{
	struct env e;
	int dev2 = -1, i;
	__u32 devid2, pt, pt2;
	char path[64];

	ENV_OPEN(&e);
	for (i = 0; i < 32 && dev2 < 0; i++) {
		snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", i);
		if (strcmp(path, devpath))
			dev2 = open(path, O_RDWR | O_CLOEXEC);
	}
	if (dev2 < 0) {
		env_close(&e);
		SKIP("only one VFIO device cdev");
	}
	REQUIRE_OK(vfio_bind(dev2, e.fd, &devid2));
	CHECK_EQ(devid2, 3);
	pt = e.ioas;
	REQUIRE_OK(vfio_attach(e.dev, &pt));
	CHECK_EQ(pt, 4);
	pt2 = e.ioas;
	REQUIRE_OK(vfio_attach(dev2, &pt2));
	CHECK_EQ(pt2, pt);
	/* the domain lives while either device uses it */
	CHECK_OK(vfio_detach(e.dev));
	CHECK_ERRNO(EBUSY, iommu_destroy(e.fd, pt));
	CHECK_OK(vfio_detach(dev2));
	CHECK_ERRNO(ENOENT, iommu_destroy(e.fd, pt));
	close(dev2);
	env_close(&e);
}

int main(void)
{
	h_init();
	RUN(bound_device_is_an_object);
	RUN(attach_creates_auto_domain);
	RUN(reserved_ranges_block_maps_and_allowed_list);
	RUN(attach_conflicts_are_eaddrinuse);
	RUN(attach_over_unaligned_area_is_eaddrinuse);
	RUN(huge_pages_off_with_populated_domain);
	RUN(replace_frees_old_auto_domain);
	RUN(close_device_releases_references);
	RUN(hwpt_alloc_references);
	RUN(hw_info_short_struct);
	RUN(second_device_shares_auto_domain);
	return h_done();
}
