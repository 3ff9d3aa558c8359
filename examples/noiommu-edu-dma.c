// SPDX-License-Identifier: GPL-2.0-only
/*
 * A small userspace driver for a PCI device that sits behind NO IOMMU, the way DPDK/SPDK-style
 * drivers work on machines and VMs without one, using the VFIO cdev + iommufd no-IOMMU mode:
 *
 *   1. find the edu device (1234:11e8) and its noiommu-vfioN node through sysfs,
 *   2. open /dev/vfio/devices/noiommu-vfioN (needs CAP_SYS_RAWIO),
 *   3. bind it to an iommufd, allocate an IOAS and attach the device to it,
 *   4. map a buffer with IOVA = VA (this pins it, so its physical pages cannot move),
 *   5. ask IOMMU_IOAS_NOIOMMU_GET_PA for the physical address of each piece,
 *   6. program the device's DMA engine with those PHYSICAL addresses and check the bytes.
 *
 * With no IOMMU, the device reaches memory by physical address: nothing stops a wrong address
 * from scribbling over memory that is not yours. That is why the mode is "unsafe".
 *
 * Build: gcc -I include -o noiommu-edu-dma examples/noiommu-edu-dma.c
 * Run:   iommufd-emu exec --enable-unsafe-noiommu-mode -- ./noiommu-edu-dma
 *
 * With --pause it waits for a line on stdin before cleaning up, with the buffer still mapped
 * and pinned: time to look at it (iommufd-emu demo --inspect, exec --inspect).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define EDU_ID 0x00
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_DMA_BUFFER 0x40000
#define EDU_CMD_RUN 0x1
#define EDU_CMD_TO_RAM 0x2

#define CONFIG_OFFSET(off) ((7ULL << 40) + (off))
#define BAR0_OFFSET(off) ((0ULL << 40) + (off))
#define BUF_SIZE (64 * 1024)

static void die(const char *what)
{
	fprintf(stderr, "noiommu-edu-dma: %s: %s\n", what, strerror(errno));
	exit(1);
}

static unsigned read_hex_file(const char *path)
{
	char buf[32] = { 0 };
	FILE *f = fopen(path, "r");

	if (!f || !fgets(buf, sizeof(buf), f))
		return 0;
	fclose(f);
	return (unsigned)strtoul(buf, NULL, 16);
}

/* Step 1: walk /sys/bus/pci/devices for an edu device that has a no-IOMMU VFIO node. */
static int find_device(char *bdf, size_t bdf_len, char *node, size_t node_len)
{
	DIR *devices = opendir("/sys/bus/pci/devices");
	struct dirent *d;

	if (!devices)
		die("opendir /sys/bus/pci/devices");
	while ((d = readdir(devices))) {
		char path[512];
		DIR *vfio_dev;
		struct dirent *v;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", d->d_name);
		if (read_hex_file(path) != 0x1234)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", d->d_name);
		if (read_hex_file(path) != 0x11e8)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", d->d_name);
		vfio_dev = opendir(path);
		if (!vfio_dev)
			continue;
		while ((v = readdir(vfio_dev))) {
			if (strncmp(v->d_name, "noiommu-vfio", 12) == 0) {
				snprintf(bdf, bdf_len, "%s", d->d_name);
				snprintf(node, node_len, "/dev/vfio/devices/%s", v->d_name);
				closedir(vfio_dev);
				closedir(devices);
				return 0;
			}
		}
		closedir(vfio_dev);
	}
	closedir(devices);
	return -1;
}

static uint32_t reg_read32(int dev, uint64_t off)
{
	uint32_t v;

	if (pread(dev, &v, 4, BAR0_OFFSET(off)) != 4)
		die("pread BAR0");
	return v;
}

static void reg_write64(int dev, uint64_t off, uint64_t v)
{
	if (pwrite(dev, &v, 8, BAR0_OFFSET(off)) != 8)
		die("pwrite BAR0");
}

/* Start a DMA and wait for the device to clear the RUN bit. */
static void edu_dma(int dev, uint64_t src, uint64_t dst, uint64_t count, int to_ram)
{
	reg_write64(dev, EDU_DMA_SRC, src);
	reg_write64(dev, EDU_DMA_DST, dst);
	reg_write64(dev, EDU_DMA_COUNT, count);
	reg_write64(dev, EDU_DMA_CMD, EDU_CMD_RUN | (to_ram ? EDU_CMD_TO_RAM : 0));
	for (int i = 0; i < 10000000; i++)
		if (!(reg_read32(dev, EDU_DMA_CMD) & EDU_CMD_RUN))
			return;
	fprintf(stderr, "noiommu-edu-dma: DMA did not complete\n");
	exit(1);
}

/* Step 5: the physical address and contiguous length behind one IOVA. */
static int get_pa(int iommufd, uint32_t ioas_id, uint64_t iova, uint64_t max, uint64_t *pa, uint64_t *len)
{
	struct iommu_ioas_noiommu_get_pa get_pa = {
		.size = sizeof(get_pa),
		.ioas_id = ioas_id,
		.iova = iova,
		.length = max,
	};

	if (ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &get_pa))
		return -1;
	*pa = get_pa.out_phys;
	*len = get_pa.length;
	return 0;
}

int main(int argc, char **argv)
{
	char bdf[64], node[128];
	int pause = argc > 1 && strcmp(argv[1], "--pause") == 0;

	if (find_device(bdf, sizeof(bdf), node, sizeof(node))) {
		fprintf(stderr, "noiommu-edu-dma: no edu device with a noiommu-vfio node; "
				"is enable_unsafe_noiommu_mode on?\n");
		return 1;
	}
	printf("1. found edu device %s, no-IOMMU VFIO node %s\n", bdf, node);

	int dev = open(node, O_RDWR);
	if (dev < 0)
		die("open the no-IOMMU cdev (needs CAP_SYS_RAWIO)");
	int iommufd = open("/dev/iommu", O_RDWR);
	if (iommufd < 0)
		die("open /dev/iommu");
	printf("2. opened %s and /dev/iommu\n", node);

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		die("VFIO_DEVICE_BIND_IOMMUFD");
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		die("IOMMU_IOAS_ALLOC");
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = alloc.out_ioas_id };
	if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	printf("3. bound as device %u, IOAS %u, attached through software page table (HWPT %u)\n",
	       bind.out_devid, alloc.out_ioas_id, attach.pt_id);

	uint8_t *buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		die("mmap");
	for (int i = 0; i < BUF_SIZE; i++)
		buf[i] = (uint8_t)(i * 7);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)buf,
		.length = BUF_SIZE,
		.iova = (uintptr_t)buf,
	};
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		die("IOMMU_IOAS_MAP");
	printf("4. mapped %d KiB at IOVA = VA = %p: the pages are now pinned\n", BUF_SIZE / 1024, (void *)buf);

	printf("5. physical layout of the buffer (IOMMU_IOAS_NOIOMMU_GET_PA):\n");
	uint64_t first_pa = 0, second_pa = 0;
	for (uint64_t off = 0; off < BUF_SIZE;) {
		uint64_t pa, len;

		if (get_pa(iommufd, alloc.out_ioas_id, (uintptr_t)buf + off, BUF_SIZE - off, &pa, &len))
			die("IOMMU_IOAS_NOIOMMU_GET_PA");
		printf("   VA %p -> PA 0x%" PRIx64 ", %" PRIu64 " contiguous bytes\n", (void *)(buf + off), pa, len);
		if (off == 0)
			first_pa = pa;
		if (off <= 4096 && off + len > 4096)
			second_pa = pa + (4096 - off);
		off += len;
	}

	/* Bus mastering lets the device DMA at all. */
	uint16_t cmd;
	if (pread(dev, &cmd, 2, CONFIG_OFFSET(4)) != 2)
		die("read PCI command");
	cmd |= 0x6;
	if (pwrite(dev, &cmd, 2, CONFIG_OFFSET(4)) != 2)
		die("write PCI command");
	printf("6. edu id register 0x%08x; bus mastering on\n", reg_read32(dev, EDU_ID));

	edu_dma(dev, first_pa, EDU_DMA_BUFFER, 256, 0);
	printf("   DMA 256 bytes from PA 0x%" PRIx64 " (buffer page 0) into the device\n", first_pa);
	edu_dma(dev, EDU_DMA_BUFFER, second_pa, 256, 1);
	printf("   DMA 256 bytes from the device to PA 0x%" PRIx64 " (buffer page 1)\n", second_pa);
	if (memcmp(buf, buf + 4096, 256) != 0) {
		fprintf(stderr, "noiommu-edu-dma: the bytes did not arrive\n");
		return 1;
	}
	printf("7. page 1 now holds a copy of page 0: the device moved the bytes by physical address\n");
	if (pause) {
		int c;

		printf("   paused with the buffer mapped and pinned: press Enter to clean up\n");
		fflush(stdout);
		while ((c = getchar()) != EOF && c != '\n')
			;
	}

	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = alloc.out_ioas_id, .iova = (uintptr_t)buf, .length = BUF_SIZE };
	if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap))
		die("IOMMU_IOAS_UNMAP");
	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
	if (ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach))
		die("VFIO_DEVICE_DETACH_IOMMUFD_PT");
	close(dev);
	close(iommufd);
	printf("8. unmapped (pages unpinned), detached and closed: done\n");
	return 0;
}
