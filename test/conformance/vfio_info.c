/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What vfio-pci reports for an edu device (edu.md §6.2-6.4, uapi.md §6.4): GET_INFO,
 * GET_REGION_INFO, GET_IRQ_INFO, RESET; config space through region 7 (IDs, bus mastering off
 * after open) and BAR0 registers through region 0, by pread/pwrite at index << 40.
 */
#include "harness.h"
#include "edu_helpers.h"

static int g_iommufd = -1;

/* Opens and binds `path` (not attached: nothing here needs DMA). */
static int open_bound(const char *path)
{
	struct edu_dev d;

	if (edu_open(path, g_iommufd, 0, &d))
		return -1;
	return d.fd;
}

static void check_device_info(int dev)
{
	struct vfio_device_info info;

	memset(&info, 0xff, sizeof(info));
	info.argsz = sizeof(info);
	REQUIRE_OK(ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
	/* PCI; no RESET (edu has no FLR or PM reset: docs/decisions.md 10); no caps. */
	CHECK_EQ(info.flags, VFIO_DEVICE_FLAGS_PCI);
	CHECK_EQ(info.num_regions, 9);
	CHECK_EQ(info.num_irqs, 5);
	CHECK_EQ(info.cap_offset, 0);
	CHECK_EQ(info.argsz, sizeof(info));

	/* argsz 16 (minsz): only the first 16 bytes come back. */
	memset(&info, 0xff, sizeof(info));
	info.argsz = 16;
	CHECK_OK(ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
	CHECK_EQ(info.num_irqs, 5);
	CHECK_EQ(info.cap_offset, 0xffffffff);
	/* Below minsz: EINVAL. */
	info.argsz = 15;
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
}

TEST(get_info)
{
	int dev = open_bound(EDU0_CDEV);

	REQUIRE(dev >= 0);
	check_device_info(dev);
	close(dev);
	dev = open_bound(EDU1_CDEV);
	REQUIRE(dev >= 0);
	check_device_info(dev);
	close(dev);
}

TEST(get_region_info)
{
	int dev = open_bound(EDU0_CDEV);
	struct vfio_region_info ri;
	__u32 i;

	REQUIRE(dev >= 0);
	/* BAR0: 1 MiB, READ|WRITE|MMAP, at offset 0. */
	CHECK_OK(vfio_region_info(dev, VFIO_PCI_BAR0_REGION_INDEX, &ri));
	CHECK_EQ(ri.size, 0x100000);
	CHECK_EQ(ri.flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			   VFIO_REGION_INFO_FLAG_MMAP);
	CHECK_EQ(ri.offset, 0);
	CHECK_EQ(ri.index, 0);
	CHECK_EQ(ri.cap_offset, 0);

	/* BAR1-5 and the ROM: absent, size 0, no flags, still at index << 40. */
	for (i = VFIO_PCI_BAR1_REGION_INDEX; i <= VFIO_PCI_ROM_REGION_INDEX; i++) {
		CHECK_OK(vfio_region_info(dev, i, &ri));
		CHECK_EQ(ri.size, 0);
		CHECK_EQ(ri.flags, 0);
		CHECK_EQ(ri.offset, VFIO_REGION_OFF(i));
		CHECK_EQ(ri.index, i);
	}

	/* Config space: 256 bytes (conventional PCI), READ|WRITE, never mmap, at 7 << 40. */
	CHECK_OK(vfio_region_info(dev, VFIO_PCI_CONFIG_REGION_INDEX, &ri));
	CHECK_EQ(ri.size, 256);
	CHECK_EQ(ri.flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE);
	CHECK_EQ(ri.offset, 0x70000000000ULL);

	/* VGA: not a VGA device. Past the last region: EINVAL. */
	CHECK_ERRNO(EINVAL, vfio_region_info(dev, VFIO_PCI_VGA_REGION_INDEX, &ri));
	CHECK_ERRNO(EINVAL, vfio_region_info(dev, 9, &ri));
	CHECK_ERRNO(EINVAL, vfio_region_info(dev, 0xffffffff, &ri));

	/* argsz below the 32-byte struct: EINVAL. */
	memset(&ri, 0, sizeof(ri));
	ri.argsz = 16;
	ri.index = 0;
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &ri));
	close(dev);
}

TEST(get_irq_info)
{
	int dev = open_bound(EDU0_CDEV);
	struct vfio_irq_info ii;

	REQUIRE(dev >= 0);
	/* INTx: pin A, EVENTFD|MASKABLE|AUTOMASKED. */
	CHECK_OK(vfio_irq_info(dev, VFIO_PCI_INTX_IRQ_INDEX, &ii));
	CHECK_EQ(ii.flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE |
			   VFIO_IRQ_INFO_AUTOMASKED);
	CHECK_EQ(ii.count, 1);
	CHECK_EQ(ii.index, VFIO_PCI_INTX_IRQ_INDEX);
	/* MSI: one vector, EVENTFD|NORESIZE. */
	CHECK_OK(vfio_irq_info(dev, VFIO_PCI_MSI_IRQ_INDEX, &ii));
	CHECK_EQ(ii.flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE);
	CHECK_EQ(ii.count, 1);
	/* MSI-X: none (edu has no MSI-X capability), same flags. */
	CHECK_OK(vfio_irq_info(dev, VFIO_PCI_MSIX_IRQ_INDEX, &ii));
	CHECK_EQ(ii.count, 0);
	CHECK_EQ(ii.flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE);
	/* ERR: one for every device since 7.3 (older kernels: PCI Express only). */
	CHECK_OK(vfio_irq_info(dev, VFIO_PCI_ERR_IRQ_INDEX, &ii));
	CHECK_EQ(ii.count, 1);
	CHECK_EQ(ii.flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE);
	/* REQ: one, EVENTFD|NORESIZE like every index but INTx. */
	CHECK_OK(vfio_irq_info(dev, VFIO_PCI_REQ_IRQ_INDEX, &ii));
	CHECK_EQ(ii.count, 1);
	CHECK_EQ(ii.flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE);
	/* No index 5; argsz below 16. */
	CHECK_ERRNO(EINVAL, vfio_irq_info(dev, 5, &ii));
	memset(&ii, 0, sizeof(ii));
	ii.argsz = 12;
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &ii));
	close(dev);
}

TEST(reset_and_hot_reset_info)
{
	int dev = open_bound(EDU0_CDEV);
	struct vfio_pci_hot_reset_info hri;

	REQUIRE(dev >= 0);
	/* No reset method: EINVAL (docs/decisions.md 10). */
	CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_RESET));
	/* Alone on the root bus: no hot reset (edu.md §6.7). */
	memset(&hri, 0, sizeof(hri));
	hri.argsz = sizeof(hri);
	CHECK_ERRNO(ENODEV, ioctl(dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &hri));
	/* The device still works afterwards. */
	CHECK_EQ(edu_reg(dev, EDU_ID), EDU_ID_VALUE);
	close(dev);
}

TEST(config_space)
{
	int dev = open_bound(EDU0_CDEV);
	unsigned char cfg[64];

	REQUIRE(dev >= 0);
	REQUIRE(pread(dev, cfg, sizeof(cfg), (off_t)CFG_OFF(0)) == (ssize_t)sizeof(cfg));
	CHECK_EQ(cfg[0] | cfg[1] << 8, 0x1234);	/* vendor */
	CHECK_EQ(cfg[2] | cfg[3] << 8, 0x11e8);	/* device */
	CHECK_EQ(cfg[8], 0x10);				/* revision */
	CHECK_EQ(cfg[9], 0x00);				/* prog-if */
	CHECK_EQ(cfg[10], 0xff);			/* sub-class */
	CHECK_EQ(cfg[11], 0x00);			/* base class */
	CHECK_EQ(cfg[14] & 0x7f, 0);			/* header type 0 */
	CHECK_EQ(cfg[0x2c] | cfg[0x2d] << 8, 0x1af4);	/* subsystem vendor */
	CHECK_EQ(cfg[0x2e] | cfg[0x2f] << 8, 0x1100);	/* subsystem */
	CHECK_EQ(cfg[0x06] & 0x10, 0x10);		/* status: capability list */
	CHECK_EQ(cfg[0x34], 0x40);			/* the MSI capability */
	CHECK_EQ(cfg[0x3d], 1);				/* interrupt pin A */
	{
		unsigned char cap = 0;

		CHECK_RET(1, pread(dev, &cap, 1, (off_t)CFG_OFF(0x40)));
		CHECK_EQ(cap, 0x05);	/* PCI_CAP_ID_MSI */
	}

	/*
	 * vfio-pci enables the device at open: memory decode on; bus mastering off, and the
	 * kernel selftest vfio_pci_device_test.config_space_read_write asserts exactly that.
	 */
	CHECK_EQ((cfg[4] | cfg[5] << 8) & PCI_CMD_MASTER, 0);
	CHECK_EQ((cfg[4] | cfg[5] << 8) & PCI_CMD_MEMORY, PCI_CMD_MEMORY);
	CHECK_EQ(edu_bus_master(dev), 0);
	CHECK_OK(edu_set_bus_master(dev, 1));
	CHECK_EQ(edu_bus_master(dev), 1);
	CHECK_OK(edu_set_bus_master(dev, 0));
	CHECK_EQ(edu_bus_master(dev), 0);

	/* Left on at close, it is off again after the next open (vfio_pci_core_disable). */
	CHECK_OK(edu_set_bus_master(dev, 1));
	close(dev);
	dev = open_bound(EDU0_CDEV);
	REQUIRE(dev >= 0);
	CHECK_EQ(edu_bus_master(dev), 0);
	close(dev);
}

TEST(bar0_registers)
{
	int dev = open_bound(EDU0_CDEV);
	__u32 v = 0;
	__u64 q = 0;
	long long deadline;

	REQUIRE(dev >= 0);
	CHECK_EQ(edu_reg(dev, EDU_ID), EDU_ID_VALUE);
	/* Liveness: reads back the complement of what was written. */
	CHECK_OK(edu_wr32(dev, EDU_LIVENESS, 0x12345678));
	CHECK_EQ(edu_reg(dev, EDU_LIVENESS), 0xedcba987U);
	/* Unimplemented offsets read all ones, the DMA buffer's device address included. */
	CHECK_EQ(edu_reg(dev, 0x0c), 0xffffffffU);
	CHECK_EQ(edu_reg(dev, 0x40000), 0xffffffffU);
	/* Write-only registers read all ones. */
	CHECK_EQ(edu_reg(dev, EDU_IRQ_RAISE), 0xffffffffU);

	/* The factorial unit: asynchronous, status bit 0 while computing. */
	CHECK_OK(edu_wr32(dev, EDU_FACTORIAL, 10));
	deadline = h_now_ms() + EDU_TIMEOUT_MS;
	while ((edu_reg(dev, EDU_STATUS) & 1) && h_now_ms() < deadline)
		usleep(50);
	CHECK_EQ(edu_reg(dev, EDU_STATUS) & 1, 0);
	CHECK_EQ(edu_reg(dev, EDU_FACTORIAL), 3628800);

	/* DMA registers: 8-byte stores and loads; 4-byte stores zero-extend; 0x84 is no register. */
	CHECK_OK(edu_wr64(dev, EDU_DMA_SRC, 0x123456789abcdef0ULL));
	CHECK_OK(edu_rd64(dev, EDU_DMA_SRC, &q));
	CHECK_EQ(q, 0x123456789abcdef0ULL);
	CHECK_OK(edu_wr32(dev, EDU_DMA_SRC + 4, 0x11111111));
	CHECK_OK(edu_rd64(dev, EDU_DMA_SRC, &q));
	CHECK_EQ(q, 0x123456789abcdef0ULL);
	CHECK_OK(edu_wr32(dev, EDU_DMA_SRC, 0x40000));
	CHECK_OK(edu_rd64(dev, EDU_DMA_SRC, &q));
	CHECK_EQ(q, 0x40000);
	/* The command register ignores writes without the RUN bit. */
	CHECK_OK(edu_rd32(dev, EDU_DMA_CMD, &v));
	CHECK_OK(edu_wr64(dev, EDU_DMA_CMD, EDU_CMD_TO_RAM));
	CHECK_EQ(edu_reg(dev, EDU_DMA_CMD), v);

	/* Past the end of BAR0: EINVAL. */
	CHECK_ERRNO(EINVAL, pread(dev, &v, 4, (off_t)BAR0_OFF(0x100000)));
	close(dev);
}

int main(void)
{
	h_init();
	g_iommufd = iommufd_open();
	if (g_iommufd < 0) {
		printf("Bail out! open /dev/iommu: %s\n", strerror(errno));
		return 2;
	}
	RUN(get_info);
	RUN(get_region_info);
	RUN(get_irq_info);
	RUN(reset_and_hot_reset_info);
	RUN(config_space);
	RUN(bar0_registers);
	close(g_iommufd);
	return h_done();
}
