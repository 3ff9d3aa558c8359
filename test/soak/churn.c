/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A client for the reliability storm (storm.ts), run through the shim and killed with SIGKILL at
 * random moments. Modes:
 *
 *   churn SEED   forever: open /dev/iommu, allocate and map IOASes (pinned when a device is
 *                attached), bind and attach vfio0/vfio1 (EBUSY when another holds them), and
 *                ioctls with random commands and random argument bytes (a fuzzer); prints
 *                "calls N" every 100 calls. Errors are expected; only a crash of the server
 *                matters (ENXIO/EIO from every call), which ends it with status 3.
 *   bystander N  N rounds of a well-formed call sequence that must all succeed; prints
 *                "ok N" at the end, or "FAIL ..." and status 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>

#include "../reliability/client_calls.h"

#define PAGE 4096UL
#define BUF_PAGES 16

static unsigned long calls;
static uint64_t rng;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void counted(void)
{
	if (++calls % 100 == 0) {
		printf("calls %lu\n", calls);
		fflush(stdout);
	}
}

/* Counts call `cmd`, which returned r: its only unacceptable answer is the server being gone. */
static long checked(long r, unsigned long cmd)
{
	counted();
	if (r < 0 && (errno == ENXIO)) {
		printf("server gone (cmd %#lx)\n", cmd);
		exit(3);
	}
	return r;
}

static long call(int fd, unsigned long cmd, void *arg)
{
	return checked(ioctl(fd, cmd, arg), cmd);
}

static const unsigned long FUZZ_CMDS[] = {
	IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_ALLOW_IOVAS,
	IOMMU_IOAS_MAP, IOMMU_IOAS_COPY, IOMMU_IOAS_UNMAP, IOMMU_OPTION, IOMMU_VFIO_IOAS,
	IOMMU_HWPT_ALLOC, IOMMU_GET_HW_INFO, IOMMU_HWPT_SET_DIRTY_TRACKING,
	IOMMU_HWPT_GET_DIRTY_BITMAP, IOMMU_HWPT_INVALIDATE, IOMMU_IOAS_NOIOMMU_GET_PA,
	VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_GET_IRQ_INFO,
	VFIO_DEVICE_SET_IRQS, VFIO_DEVICE_RESET, VFIO_DEVICE_BIND_IOMMUFD,
	VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_DETACH_IOMMUFD_PT,
};

/* Random bytes with a plausible leading size, so handlers get past their framing. */
static void fuzz(int fd, unsigned char *arg)
{
	unsigned long cmd = FUZZ_CMDS[next_random() % (sizeof(FUZZ_CMDS) / sizeof(FUZZ_CMDS[0]))];
	uint32_t size = (uint32_t)(next_random() % 96);
	size_t i;

	for (i = 0; i < 128; i += 8) {
		uint64_t v = next_random();

		/* Small numbers (ids, indexes, fds) as often as wild ones. */
		if (v & 1)
			v = (v >> 1) % 8;
		memcpy(arg + i, &v, 8);
	}
	memcpy(arg, &size, 4);
	call(fd, cmd, arg);
}

static int map(int fd, uint32_t ioas, void *va, size_t len, uint64_t iova)
{
	return (int)checked(ioas_map_fixed(fd, ioas, va, len, iova), IOMMU_IOAS_MAP);
}

static void churn(unsigned char *buf, unsigned char *arg)
{
	for (;;) {
		int fd = open("/dev/iommu", O_RDWR);
		const char *path = next_random() & 1 ? "/dev/vfio/devices/vfio0" :
						       "/dev/vfio/devices/vfio1";
		__u32 ioas;
		int dev, round;

		counted();
		if (fd < 0) {
			if (errno == ENXIO) {
				printf("server gone (open)\n");
				exit(3);
			}
			continue;
		}
		checked(ioas_alloc(fd, &ioas), IOMMU_IOAS_ALLOC);
		dev = open(path, O_RDWR);
		counted();
		if (dev >= 0 && checked(device_bind(dev, fd), VFIO_DEVICE_BIND_IOMMUFD) == 0)
			checked(device_attach(dev, ioas), VFIO_DEVICE_ATTACH_IOMMUFD_PT);
		for (round = 0; round < 20; round++) {
			uint64_t iova = 0x100000 + (next_random() % 8) * PAGE * BUF_PAGES;
			size_t pages = 1 + next_random() % BUF_PAGES;
			struct iommu_ioas_unmap u = {
				.size = sizeof(u),
				.ioas_id = ioas,
				.iova = iova,
				.length = pages * PAGE,
			};

			map(fd, ioas, buf, pages * PAGE, iova);
			if (next_random() & 1)
				call(fd, IOMMU_IOAS_UNMAP, &u);
			fuzz(next_random() % 3 == 0 && dev >= 0 ? dev : fd, arg);
		}
		if (dev >= 0 && next_random() % 4 != 0)
			close(dev);
		if (next_random() % 4 != 0)
			close(fd);
	}
}

static int bystander(long rounds, unsigned char *buf)
{
	long i;

	for (i = 0; i < rounds; i++) {
		int fd = open("/dev/iommu", O_RDWR);
		struct iommu_destroy d = { .size = sizeof(d) };
		__u32 ioas;

		if (fd < 0 || ioas_alloc(fd, &ioas) != 0 || map(fd, ioas, buf, PAGE, 0x100000) != 0) {
			printf("FAIL round %ld: %s\n", i, strerror(errno));
			return 1;
		}
		d.id = ioas;
		if (ioctl(fd, IOMMU_DESTROY, &d) != 0 || close(fd) != 0) {
			printf("FAIL round %ld: %s\n", i, strerror(errno));
			return 1;
		}
	}
	printf("ok %ld\n", rounds);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned char *buf = mmap(NULL, BUF_PAGES * PAGE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *arg = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				  -1, 0);

	if (argc != 3 || buf == MAP_FAILED || arg == MAP_FAILED) {
		fprintf(stderr, "usage: churn churn SEED | churn bystander ROUNDS\n");
		return 2;
	}
	memset(buf, 0x5a, BUF_PAGES * PAGE);
	if (strcmp(argv[1], "bystander") == 0)
		return bystander(atol(argv[2]), buf);
	rng = strtoull(argv[2], NULL, 0) | 1;
	churn(buf, arg);
	return 0;
}
