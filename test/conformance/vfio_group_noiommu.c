// exec-args: --enable-unsafe-noiommu-mode
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The no-IOMMU group path, as DPDK's vfio-pci driver takes it with enable_unsafe_noiommu_mode:
 * /dev/vfio/noiommu-<G> (a placeholder group named "vfio-noiommu"), CAP_SYS_RAWIO to open it,
 * SET_CONTAINER putting the container in no-IOMMU mode, VFIO_SET_IOMMU with the type1 types
 * refused (tried first on purpose) and VFIO_NOIOMMU_IOMMU needing CAP_SYS_RAWIO, GET_DEVICE_FD
 * (the first open needs CAP_SYS_RAWIO and no compat IOAS), an IOMMU group and a no-IOMMU group
 * never sharing a container, and the device's DMA to the physical addresses of the program's own
 * memory, found in /proc/self/pagemap.
 */
#include "harness.h"
#include "edu_helpers.h"
#include "group_helpers.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

/* Whether EDU0 is behind an IOMMU on this machine (not in the all-no-IOMMU variant). */
static int edu0_has_iommu(void)
{
	char path[64];
	struct stat st;

	return group_path(EDU0_BDF, 0, path, sizeof(path)) == 0 && stat(path, &st) == 0;
}

/* The no-IOMMU group in a fresh container, no-IOMMU type set. */
struct noiommu {
	int container;
	int group;
};

static void noiommu_close(struct noiommu *n)
{
	if (n->group >= 0)
		close(n->group);
	if (n->container >= 0)
		close(n->container);
	n->group = n->container = -1;
}

static int noiommu_open(struct noiommu *n)
{
	n->container = container_open();
	n->group = group_open(NOIOMMU_BDF, 1);
	if (n->container < 0 || n->group < 0)
		return -1;
	if (group_set_container(n->group, n->container))
		return -1;
	return ioctl(n->container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU);
}

TEST(group_node_and_sysfs)
{
	char path[64], buf[64];
	struct stat st;
	int g = group_number(NOIOMMU_BDF);

	REQUIRE(g >= 0);
	REQUIRE_OK(group_path(NOIOMMU_BDF, 1, path, sizeof(path)));
	REQUIRE_OK(stat(path, &st));
	CHECK(S_ISCHR(st.st_mode));
	/* the group has no plain node */
	REQUIRE_OK(group_path(NOIOMMU_BDF, 0, path, sizeof(path)));
	CHECK_ERRNO(ENOENT, stat(path, &st));
	snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/%d/name", g);
	REQUIRE(read_text(path, buf, sizeof(buf)) > 0);
	CHECK(strcmp(buf, "vfio-noiommu\n") == 0);
	snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/%d/devices/%s", g, NOIOMMU_BDF);
	CHECK_OK(lstat(path, &st));
}

TEST(open_needs_cap_sys_rawio)
{
	int group;

	REQUIRE(cap_effective(CAP_SYS_RAWIO));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 0));
	CHECK_ERRNO(EPERM, group_open(NOIOMMU_BDF, 1));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 1));
	group = group_open(NOIOMMU_BDF, 1);
	REQUIRE(group >= 0);
	CHECK_ERRNO(EBUSY, group_open(NOIOMMU_BDF, 1));
	/* viable: nothing else owns it */
	CHECK_EQ(group_status(group), VFIO_GROUP_FLAGS_VIABLE);
	close(group);
}

/* DPDK's order: type1 first (refused, nothing changes), then the no-IOMMU type. */
TEST(type1_refused_then_noiommu_type)
{
	struct noiommu n = { -1, -1 };
	__u32 ioas = 0;

	n.container = container_open();
	n.group = group_open(NOIOMMU_BDF, 1);
	REQUIRE(n.container >= 0 && n.group >= 0);
	CHECK_RET(1, ioctl(n.container, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU));
	/* before any group, there is nothing to set */
	CHECK_ERRNO(EINVAL, ioctl(n.container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU));
	REQUIRE_OK(group_set_container(n.group, n.container));
	CHECK_EQ(group_status(n.group), VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
	CHECK_ERRNO(EINVAL, ioctl(n.container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	CHECK_ERRNO(EINVAL, ioctl(n.container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU));
	/* no compat IOAS was made for the no-IOMMU group, and none is made by these */
	CHECK_ERRNO(ENODEV, vfio_ioas(n.container, IOMMU_VFIO_IOAS_GET, &ioas));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 0));
	CHECK_ERRNO(EPERM, ioctl(n.container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 1));
	CHECK_OK(ioctl(n.container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU));
	CHECK_OK(ioctl(n.container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU));
	/* the type1 ioctls have no IOAS to work on */
	{
		struct vfio_iommu_type1_info info = { .argsz = sizeof(info) };
		void *mem = h_mmap(PAGE_SZ);

		CHECK_ERRNO(ENODEV, ioctl(n.container, VFIO_IOMMU_GET_INFO, &info));
		CHECK_ERRNO(ENODEV, dma_map(n.container, DMA_RW, mem, 0x100000, PAGE_SZ));
		CHECK_ERRNO(ENODEV, dma_unmap(n.container, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0, NULL));
		munmap(mem, PAGE_SZ);
	}
	CHECK_ERRNO(ENODEV, vfio_ioas(n.container, IOMMU_VFIO_IOAS_GET, &ioas));
	noiommu_close(&n);
}

/* The device's first open needs CAP_SYS_RAWIO; later opens of the open device do not. */
TEST(get_device_fd)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct vfio_region_info bar0 = { .argsz = sizeof(bar0) };
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct noiommu n = { -1, -1 };
	int dev, again;

	REQUIRE_OK(noiommu_open(&n));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 0));
	CHECK_ERRNO(EPERM, ioctl(n.group, VFIO_GROUP_GET_DEVICE_FD, NOIOMMU_BDF));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 1));
	dev = ioctl(n.group, VFIO_GROUP_GET_DEVICE_FD, NOIOMMU_BDF);
	REQUIRE(dev >= 0);
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 0));
	again = ioctl(n.group, VFIO_GROUP_GET_DEVICE_FD, NOIOMMU_BDF);
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 1));
	CHECK(again >= 0);
	if (again >= 0)
		close(again);
	CHECK_OK(ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
	CHECK(info.flags & VFIO_DEVICE_FLAGS_PCI);
	CHECK_EQ(info.num_regions, VFIO_PCI_NUM_REGIONS);
	bar0.index = VFIO_PCI_BAR0_REGION_INDEX;
	CHECK_OK(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &bar0));
	CHECK_EQ(bar0.size, 1 << 20);
	CHECK_EQ(edu_reg(dev, EDU_ID), EDU_ID_VALUE);
	/* a group's device fd is bound already */
	bind.iommufd = n.container;
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind));
	close(dev);
	noiommu_close(&n);
}

/* A compat IOAS means the user expected translation: the no-IOMMU device is not opened. */
TEST(compat_ioas_refuses_noiommu)
{
	struct noiommu n = { -1, -1 };
	__u32 ioas = 0;

	/* set before SET_CONTAINER: the group is refused and nothing is set */
	n.container = container_open();
	n.group = group_open(NOIOMMU_BDF, 1);
	REQUIRE(n.container >= 0 && n.group >= 0);
	REQUIRE_OK(ioas_alloc(n.container, &ioas));
	REQUIRE_OK(vfio_ioas(n.container, IOMMU_VFIO_IOAS_SET, &ioas));
	CHECK_ERRNO(EINVAL, group_set_container(n.group, n.container));
	CHECK_EQ(group_status(n.group), VFIO_GROUP_FLAGS_VIABLE);
	CHECK_ERRNO(EINVAL, ioctl(n.group, VFIO_GROUP_UNSET_CONTAINER));
	noiommu_close(&n);

	/* set after: the device's first open is refused */
	REQUIRE_OK(noiommu_open(&n));
	REQUIRE_OK(ioas_alloc(n.container, &ioas));
	REQUIRE_OK(vfio_ioas(n.container, IOMMU_VFIO_IOAS_SET, &ioas));
	CHECK_ERRNO(EPERM, ioctl(n.group, VFIO_GROUP_GET_DEVICE_FD, NOIOMMU_BDF));
	/* cleared again, it opens */
	REQUIRE_OK(vfio_ioas(n.container, IOMMU_VFIO_IOAS_CLEAR, NULL));
	{
		int dev = ioctl(n.group, VFIO_GROUP_GET_DEVICE_FD, NOIOMMU_BDF);

		CHECK(dev >= 0);
		if (dev >= 0)
			close(dev);
	}
	noiommu_close(&n);
}

/* One container serves either IOMMU groups or no-IOMMU groups, never both. */
TEST(iommu_and_noiommu_groups_never_share_a_container)
{
	int container, iommu_group, noiommu_group;

	if (!edu0_has_iommu()) {
		SKIP("no device behind an IOMMU on this machine");
		return;
	}
	container = container_open();
	iommu_group = group_open(EDU0_BDF, 0);
	noiommu_group = group_open(NOIOMMU_BDF, 1);
	REQUIRE(container >= 0 && iommu_group >= 0 && noiommu_group >= 0);
	REQUIRE_OK(group_set_container(iommu_group, container));
	CHECK_ERRNO(EINVAL, group_set_container(noiommu_group, container));
	CHECK_EQ(group_status(noiommu_group), VFIO_GROUP_FLAGS_VIABLE);
	CHECK_OK(ioctl(iommu_group, VFIO_GROUP_UNSET_CONTAINER));
	close(container);

	/* the other way round: a no-IOMMU container refuses the IOMMU group */
	container = container_open();
	REQUIRE(container >= 0);
	REQUIRE_OK(group_set_container(noiommu_group, container));
	CHECK_ERRNO(EINVAL, group_set_container(iommu_group, container));
	CHECK_EQ(group_status(iommu_group), VFIO_GROUP_FLAGS_VIABLE);
	close(container);
	close(noiommu_group);
	close(iommu_group);
}

/* The no-IOMMU device's cdev and its group exclude each other as an IOMMU device's do. */
TEST(group_and_cdev_exclude_each_other)
{
	int group, cdev, iommufd = iommufd_open();

	REQUIRE(iommufd >= 0);
	group = group_open(NOIOMMU_BDF, 1);
	REQUIRE(group >= 0);
	cdev = cdev_open(NOIOMMU_CDEV);
	REQUIRE(cdev >= 0);
	CHECK_ERRNO(EBUSY, vfio_bind(cdev, iommufd, NULL));
	close(group);
	REQUIRE_OK(vfio_bind(cdev, iommufd, NULL));
	CHECK_ERRNO(EBUSY, group_open(NOIOMMU_BDF, 1));
	close(cdev);
	group = group_open(NOIOMMU_BDF, 1);
	CHECK(group >= 0);
	if (group >= 0)
		close(group);
	close(iommufd);
}

/* pread of the pagemap entry for the page holding va into *entry: pread's result. */
static ssize_t pagemap_read(int fd, const void *va, __u64 *entry)
{
	*entry = ~0ULL;
	return pread(fd, entry, sizeof(*entry), (off_t)((uintptr_t)va / PAGE_SZ) * 8);
}

/* /proc/self/pagemap's entry for the page holding va, or 0 with errno set on failure. */
static __u64 pagemap_entry(int fd, const void *va)
{
	__u64 entry;

	if (pagemap_read(fd, va, &entry) != 8)
		return 0;
	return entry;
}

#define PM_PRESENT (1ULL << 63)
#define PM_PFN_MASK ((1ULL << 55) - 1)

/* The physical address of va, from /proc/self/pagemap (as DPDK's rte_mem_virt2phy finds it). */
static __u64 virt_to_phys(const void *va)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	__u64 entry;

	if (fd < 0)
		return 0;
	entry = pagemap_entry(fd, va);
	close(fd);
	if (!(entry & PM_PRESENT) || !(entry & PM_PFN_MASK))
		return 0;
	return (entry & PM_PFN_MASK) * PAGE_SZ + ((uintptr_t)va & (PAGE_SZ - 1));
}

/* What a no-IOMMU driver reads in pagemap: frames for its own present pages, to CAP_SYS_ADMIN. */
TEST(pagemap_gives_physical_addresses)
{
	unsigned char *buf = h_mmap(4 * PAGE_SZ);
	__u64 entry, e8[2];
	int fd;

	mlock(buf, 2 * PAGE_SZ);
	memset(buf, 1, 2 * PAGE_SZ);
	fd = open("/proc/self/pagemap", O_RDONLY);
	REQUIRE(fd >= 0);
	entry = pagemap_entry(fd, buf);
	CHECK(entry & PM_PRESENT);
	CHECK((entry & PM_PFN_MASK) != 0);
	/* the same page, the same frame; the next page another */
	CHECK_EQ(pagemap_entry(fd, buf + 100) & PM_PFN_MASK, entry & PM_PFN_MASK);
	CHECK(virt_to_phys(buf + PAGE_SZ) != 0);
	CHECK(virt_to_phys(buf + PAGE_SZ) / PAGE_SZ != (entry & PM_PFN_MASK));
	/* a page never touched is not present; an address with nothing mapped reads all zero */
	CHECK_RET(8, pagemap_read(fd, buf + 3 * PAGE_SZ, &entry));
	CHECK_EQ(entry & PM_PRESENT, 0);
	CHECK_RET(8, pagemap_read(fd, h_unmapped_addr(), &entry));
	CHECK_EQ(entry, 0);
	entry = pagemap_entry(fd, buf);
	/* whole entries at whole entries' offsets only */
	CHECK_ERRNO(EINVAL, pread(fd, e8, 8, 4));
	CHECK_ERRNO(EINVAL, pread(fd, e8, 12, 0));
	/* two entries in one read, in address order */
	CHECK_RET(16, pread(fd, e8, 16, (off_t)((uintptr_t)buf / PAGE_SZ) * 8));
	CHECK_EQ(e8[0] & PM_PFN_MASK, entry & PM_PFN_MASK);
	CHECK_EQ(e8[1] & PM_PFN_MASK, virt_to_phys(buf + PAGE_SZ) / PAGE_SZ);
	close(fd);

	/* the frame numbers are shown to a file opened with CAP_SYS_ADMIN, whoever reads it */
	REQUIRE(cap_effective(CAP_SYS_ADMIN));
	REQUIRE_OK(cap_set_effective(CAP_SYS_ADMIN, 0));
	fd = open("/proc/self/pagemap", O_RDONLY);
	REQUIRE_OK(cap_set_effective(CAP_SYS_ADMIN, 1));
	REQUIRE(fd >= 0);
	CHECK_RET(8, pagemap_read(fd, buf, &entry));
	CHECK(entry & PM_PRESENT);
	CHECK_EQ(entry & PM_PFN_MASK, 0);
	close(fd);
	/* and a file opened with it shows them to a reader that has dropped it */
	fd = open("/proc/self/pagemap", O_RDONLY);
	REQUIRE(fd >= 0);
	REQUIRE_OK(cap_set_effective(CAP_SYS_ADMIN, 0));
	CHECK_RET(8, pagemap_read(fd, buf, &entry));
	REQUIRE_OK(cap_set_effective(CAP_SYS_ADMIN, 1));
	CHECK(entry & PM_PRESENT);
	CHECK_EQ(entry & PM_PFN_MASK, virt_to_phys(buf) / PAGE_SZ);
	close(fd);
	munlock(buf, 2 * PAGE_SZ);
}

/* The device DMAs to the program's own memory by the physical addresses pagemap gave. */
TEST(edu_dma_by_physical_address)
{
	unsigned char *buf = h_mmap(2 * PAGE_SZ);
	struct noiommu n = { -1, -1 };
	__u64 src, dst;
	int dev;

	mlock(buf, 2 * PAGE_SZ);
	fill_pattern(buf, PAGE_SZ, 21);
	memset(buf + PAGE_SZ, 0, PAGE_SZ);
	src = virt_to_phys(buf);
	dst = virt_to_phys(buf + PAGE_SZ);
	REQUIRE(src != 0 && dst != 0);
	REQUIRE_OK(noiommu_open(&n));
	dev = ioctl(n.group, VFIO_GROUP_GET_DEVICE_FD, NOIOMMU_BDF);
	REQUIRE(dev >= 0);
	REQUIRE_OK(edu_set_bus_master(dev, 1));
	CHECK_OK(edu_dma_in(dev, src, 0, EDU_BUF_SIZE));
	CHECK_OK(edu_dma_out(dev, 0, dst, EDU_BUF_SIZE));
	CHECK(memcmp(buf, buf + PAGE_SZ, PAGE_SZ) == 0);
	close(dev);
	noiommu_close(&n);
	munlock(buf, 2 * PAGE_SZ);
}

int main(void)
{
	h_init();
	RUN(group_node_and_sysfs);
	RUN(open_needs_cap_sys_rawio);
	RUN(type1_refused_then_noiommu_type);
	RUN(get_device_fd);
	RUN(compat_ioas_refuses_noiommu);
	RUN(iommu_and_noiommu_groups_never_share_a_container);
	RUN(group_and_cdev_exclude_each_other);
	RUN(pagemap_gives_physical_addresses);
	RUN(edu_dma_by_physical_address);
	return h_done();
}
