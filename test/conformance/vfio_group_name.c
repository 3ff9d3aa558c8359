/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * VFIO_GROUP_GET_DEVICE_FD reads the device's name as strndup_user(arg, PAGE_SIZE) does: up to
 * its NUL and no further, so a name that ends right before an inaccessible page is found; EFAULT
 * only when a byte before the NUL is unreadable, EINVAL when no NUL comes within a page; then
 * vfio-pci's match(): the device's PCI name, optionally followed by spaces and `vf_token=<uuid>`.
 *
 * And QEMU's legacy backend's order: the container is opened by code that runs before any
 * library's constructor (here the program's .preinit_array, in QEMU a library's constructor
 * touching an emulated path first), the guest's memory is mapped with MAP_DMA, and only then is
 * the device opened (its attach fills the domain from those mappings) and made to DMA.
 */
#include "harness.h"
#include "edu_helpers.h"
#include "group_helpers.h"

/* The container, opened before every constructor (the shim's included). */
static int g_early_container = -1;

static void open_container_first(void)
{
	g_early_container = container_open();
}

__attribute__((section(".preinit_array"), used)) static void (*const preinit_open)(void) =
	open_container_first;

static int g_group = -1;

/* Group 0 of EDU0 with the early container set and type1v2 selected. */
static int setup_group(void)
{
	if (g_group >= 0)
		return 0;
	g_group = group_open(EDU0_BDF, 0);
	if (g_group < 0)
		return -1;
	if (group_set_container(g_group, g_early_container))
		return -1;
	return ioctl(g_early_container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
}

/* `name` copied so that its last byte (the NUL, unless `nul` is 0) is the last byte before a
 * PROT_NONE page; returns where it starts. */
static char *before_noaccess(const char *name, size_t len, int nul)
{
	char *two = h_mmap(2 * PAGE_SZ);
	size_t n = len + (nul ? 1 : 0);
	char *at = two + PAGE_SZ - n;

	mprotect(two + PAGE_SZ, PAGE_SZ, PROT_NONE);
	memcpy(at, name, len);
	if (nul)
		at[len] = 0;
	return at;
}

TEST(container_opened_before_any_constructor)
{
	REQUIRE(g_early_container >= 0);
	CHECK_RET(VFIO_API_VERSION, ioctl(g_early_container, VFIO_GET_API_VERSION));
	CHECK_RET(1, ioctl(g_early_container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
}

/* QEMU's order: MAP_DMA of the guest's memory first, the device opened after. */
TEST(map_dma_then_open_device_then_dma)
{
	unsigned char *mem = h_mmap_exact_align(4 * PAGE_SZ, PAGE_SZ);
	int dev;

	REQUIRE(g_early_container >= 0);
	REQUIRE_OK(setup_group());
	REQUIRE_OK(dma_map(g_early_container, DMA_RW, mem, 0x100000, 4 * PAGE_SZ));
	dev = ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF);
	REQUIRE(dev >= 0);
	CHECK_OK(edu_set_bus_master(dev, 1));
	fill_pattern(mem, PAGE_SZ, 7);
	memset(mem + PAGE_SZ, 0, PAGE_SZ);
	CHECK_OK(edu_dma_in(dev, 0x100000, 0, EDU_BUF_SIZE));
	CHECK_OK(edu_dma_out(dev, 0, 0x101000, EDU_BUF_SIZE));
	CHECK(memcmp(mem, mem + PAGE_SZ, PAGE_SZ) == 0);
	close(dev);
	CHECK_OK(dma_unmap(g_early_container, 0, 0x100000, 4 * PAGE_SZ, NULL));
}

TEST(name_ending_right_before_a_noaccess_page)
{
	const char *name = EDU0_BDF;
	int dev;

	REQUIRE_OK(setup_group());
	/* the NUL is the page's last byte */
	dev = ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, before_noaccess(name, strlen(name), 1));
	CHECK(dev >= 0);
	if (dev >= 0)
		close(dev);
	/* QEMU's case: the name 32 bytes before the page's end, its NUL well inside */
	{
		char *two = h_mmap(2 * PAGE_SZ);

		mprotect(two + PAGE_SZ, PAGE_SZ, PROT_NONE);
		strcpy(two + PAGE_SZ - 32, name);
		dev = ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, two + PAGE_SZ - 32);
		CHECK(dev >= 0);
		if (dev >= 0)
			close(dev);
	}
}

TEST(name_running_into_a_noaccess_page)
{
	const char *name = EDU0_BDF;

	REQUIRE_OK(setup_group());
	/* every byte of the name readable, its NUL would be on the inaccessible page */
	CHECK_ERRNO(EFAULT, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD,
				  before_noaccess(name, strlen(name), 0)));
	CHECK_ERRNO(EFAULT, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, h_noaccess_page()));
	CHECK_ERRNO(EFAULT, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, h_unmapped_addr()));
	CHECK_ERRNO(EFAULT, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, NULL));
}

TEST(name_longer_than_a_page)
{
	char *two = h_mmap(2 * PAGE_SZ);

	REQUIRE_OK(setup_group());
	/* a whole page without a NUL, then an inaccessible page: too long, not a fault */
	mprotect(two + PAGE_SZ, PAGE_SZ, PROT_NONE);
	memset(two, 'x', PAGE_SZ);
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, two));
	/* PAGE_SIZE - 1 characters and the NUL fit: read, and no such device */
	two[PAGE_SZ - 1] = 0;
	CHECK_ERRNO(ENODEV, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, two));
	/* the same across a page boundary (the NUL one page on) */
	{
		char *three = h_mmap(3 * PAGE_SZ);

		memset(three, 'y', 3 * PAGE_SZ);
		three[100 + PAGE_SZ] = 0;
		CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, three + 100));
		three[100 + PAGE_SZ - 1] = 0;
		CHECK_ERRNO(ENODEV, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, three + 100));
	}
}

/* GET_DEVICE_FD once, closing what it returns: the fd's sign and errno, as a call would. */
static int get_device_fd_once(int group, const char *name)
{
	int dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, name);

	if (dev >= 0) {
		close(dev);
		return 0;
	}
	return -1;
}

/* vfio-pci's match(): the PCI name, then nothing or spaces and options, only vf_token= known. */
TEST(name_and_vfio_pci_options)
{
	char name[128];

	REQUIRE_OK(setup_group());
	CHECK_ERRNO(ENODEV, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, ""));
	/* the name without its domain, as some tools print it */
	CHECK_ERRNO(ENODEV, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF + 5));
	/* a device of another group */
	CHECK_ERRNO(ENODEV, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, EDU1_BDF));
	/* something other than a space right after the name: another name */
	snprintf(name, sizeof(name), "%sx", EDU0_BDF);
	CHECK_ERRNO(ENODEV, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, name));
	/* trailing spaces are no options at all */
	snprintf(name, sizeof(name), "%s   ", EDU0_BDF);
	CHECK_OK(get_device_fd_once(g_group, name));
	/* an unknown option */
	snprintf(name, sizeof(name), "%s foo", EDU0_BDF);
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, name));
	/* a VF token too short to be a UUID, then one that is not a UUID */
	snprintf(name, sizeof(name), "%s vf_token=1234", EDU0_BDF);
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, name));
	snprintf(name, sizeof(name), "%s vf_token=zzzzzzzz-0000-0000-0000-000000000000", EDU0_BDF);
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, name));
	/* a well-formed token for a device that is neither an SR-IOV PF nor a VF */
	snprintf(name, sizeof(name), "%s vf_token=2ab74924-c335-45f4-9b16-8569e5b08258", EDU0_BDF);
	CHECK_ERRNO(EINVAL, ioctl(g_group, VFIO_GROUP_GET_DEVICE_FD, name));
	/*
	 * Nothing was left open by a refused call: with the group closed, the cdev binds only if
	 * no device fd of the group has the device open (vfio_df_open: EINVAL otherwise).
	 */
	close(g_group);
	g_group = -1;
	{
		int iommufd = iommufd_open();
		struct edu_dev d;

		REQUIRE(iommufd >= 0);
		CHECK_OK(edu_open(EDU0_CDEV, iommufd, 0, &d));
		edu_close(&d);
		close(iommufd);
	}
}

int main(void)
{
	h_init();
	RUN(container_opened_before_any_constructor);
	RUN(map_dma_then_open_device_then_dma);
	RUN(name_ending_right_before_a_noaccess_page);
	RUN(name_running_into_a_noaccess_page);
	RUN(name_longer_than_a_page);
	RUN(name_and_vfio_pci_options);
	if (g_group >= 0)
		close(g_group);
	if (g_early_container >= 0)
		close(g_early_container);
	return h_done();
}
