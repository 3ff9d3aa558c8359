/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The victim of the SIGKILL storm (storm.ts): an unmodified C program that drives the emulator
 * through the shim as hard as it can, forever, from a seed: iommufds, IOASes, maps of 4 KiB and
 * 2 MiB-aligned buffers, unmaps, copies, destroys, device binds and attaches, edu DMA through the
 * IOMMU and (with no IOMMU) to the physical addresses GET_PA gives, interrupt eventfds, BAR reads
 * through a mapping, closes, forked children that share its files, and the unsafe DMA attack
 * (garbage over the frames the I/O page tables live in; first, once, where it must land). It
 * prints "ready" once
 * every kind of call has been made at least once, then keeps going until it is killed at a random
 * point, most likely in the middle of a call.
 *
 * Usage: churn SEED
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define BUF_PAGES 64
#define MAX_FDS 4
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_BUF 0x40000
#define CONFIG_OFF (7ULL << 40)

static uint64_t rng;

static uint64_t next(void)
{
	/* xorshift64*: the run is a function of the seed */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

static unsigned pick(unsigned n)
{
	return (unsigned)(next() % n);
}

static int iommufds[MAX_FDS];
static unsigned char *buf;
static const char *const devices[] = {
	"/dev/vfio/devices/vfio0",
	"/dev/vfio/devices/vfio1",
	"/dev/vfio/devices/noiommu-vfio2",
};
static int devfd[3] = { -1, -1, -1 };
static int devbound[3];

static int any_iommufd(void)
{
	int fd = iommufds[pick(MAX_FDS)];

	if (fd < 0) {
		fd = open("/dev/iommu", O_RDWR);
		for (int i = 0; i < MAX_FDS && fd >= 0; i++) {
			if (iommufds[i] < 0) {
				iommufds[i] = fd;
				break;
			}
		}
	}
	return fd;
}

static __u32 ioas_alloc(int fd)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };

	return ioctl(fd, IOMMU_IOAS_ALLOC, &a) ? 0 : a.out_ioas_id;
}

static int map(int fd, __u32 ioas, __u64 *iova, __u64 *len)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m),
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
	};
	unsigned first = pick(BUF_PAGES), n = 1 + pick(BUF_PAGES - first);

	m.user_va = (uintptr_t)(buf + first * PAGE);
	m.length = n * PAGE;
	if (pick(2)) {
		m.flags |= IOMMU_IOAS_MAP_FIXED_IOVA;
		m.iova = 0x100000 + pick(64) * PAGE;
	}
	if (ioctl(fd, IOMMU_IOAS_MAP, &m))
		return -1;
	*iova = m.iova;
	*len = m.length;
	return 0;
}

static void unmap(int fd, __u32 ioas, __u64 iova, __u64 len)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = len };

	ioctl(fd, IOMMU_IOAS_UNMAP, &u);
}

static void destroy(int fd, __u32 id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };

	ioctl(fd, IOMMU_DESTROY, &d);
}

static void reg64(int fd, unsigned long off, uint64_t v)
{
	if (pwrite(fd, &v, 8, off) != 8)
		return;
}

static void bus_master(int fd)
{
	uint16_t cmd = 0;

	if (pread(fd, &cmd, 2, CONFIG_OFF + 4) == 2) {
		cmd |= 0x6;
		if (pwrite(fd, &cmd, 2, CONFIG_OFF + 4) != 2)
			return;
	}
}

/* Bind device d to fd and attach it to a new IOAS with one mapping; DMA a little. */
static void device_round(int d, int fd)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = fd };
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at) };
	__u64 iova = 0, len = 0;
	__u32 ioas;

	if (devfd[d] < 0) {
		devfd[d] = open(devices[d], O_RDWR);
		devbound[d] = 0;
		if (devfd[d] < 0)
			return;
	}
	if (!devbound[d]) {
		if (ioctl(devfd[d], VFIO_DEVICE_BIND_IOMMUFD, &bind))
			return;
		devbound[d] = 1;
	}
	ioas = ioas_alloc(fd);
	if (!ioas)
		return;
	at.pt_id = ioas;
	if (map(fd, ioas, &iova, &len) == 0 && ioctl(devfd[d], VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == 0) {
		__u64 target = iova;

		if (d == 2) {
			struct iommu_ioas_noiommu_get_pa pa = {
				.size = sizeof(pa), .ioas_id = ioas, .iova = iova, .length = PAGE,
			};

			if (ioctl(fd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa))
				return;
			target = pa.out_phys;
		}
		bus_master(devfd[d]);
		if (d == 2 && pick(2) == 0) {
			/*
			 * The unsafe DMA attack: garbage over the low frames, where the I/O page
			 * tables of every domain live (decision 200).
			 */
			reg64(devfd[d], EDU_DMA_SRC, EDU_BUF);
			reg64(devfd[d], EDU_DMA_DST, 0x100000 + pick(16) * PAGE + pick(512) * 8);
			reg64(devfd[d], EDU_DMA_COUNT, 8 + pick(64));
			reg64(devfd[d], EDU_DMA_CMD, 3);
		} else {
			reg64(devfd[d], EDU_DMA_SRC, target);
			reg64(devfd[d], EDU_DMA_DST, EDU_BUF);
			reg64(devfd[d], EDU_DMA_COUNT, 64);
			reg64(devfd[d], EDU_DMA_CMD, 1);
		}
		if (pick(2)) {
			struct vfio_device_detach_iommufd_pt de = { .argsz = sizeof(de) };

			ioctl(devfd[d], VFIO_DEVICE_DETACH_IOMMUFD_PT, &de);
		}
	}
}

static void irq_round(int d)
{
	char b[sizeof(struct vfio_irq_set) + sizeof(int)];
	struct vfio_irq_set *set = (void *)b;
	int efd = eventfd(0, EFD_NONBLOCK);

	if (devfd[d] < 0 || efd < 0) {
		if (efd >= 0)
			close(efd);
		return;
	}
	set->argsz = sizeof(b);
	set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	set->index = VFIO_PCI_INTX_IRQ_INDEX;
	set->start = 0;
	set->count = 1;
	memcpy(set->data, &efd, sizeof(int));
	ioctl(devfd[d], VFIO_DEVICE_SET_IRQS, set);
	if (pick(2))
		close(efd);
}

static void bar_round(int d)
{
	volatile uint32_t *bar;

	if (devfd[d] < 0)
		return;
	bar = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, devfd[d], 0);
	if (bar == MAP_FAILED)
		return;
	(void)bar[0];
	bar[1] = (uint32_t)next();
	munmap((void *)bar, PAGE);
}

static void close_round(void)
{
	unsigned i = pick(MAX_FDS + 3);

	if (i < MAX_FDS) {
		if (iommufds[i] >= 0)
			close(iommufds[i]);
		iommufds[i] = -1;
		return;
	}
	i -= MAX_FDS;
	if (devfd[i] >= 0)
		close(devfd[i]);
	devfd[i] = -1;
}

static void one_call(int kind)
{
	int fd = any_iommufd();
	__u64 iova = 0, len = 0;
	__u32 ioas, ioas2;

	if (fd < 0)
		return;
	switch (kind) {
	case 0: /* map and unmap */
		ioas = ioas_alloc(fd);
		if (ioas && map(fd, ioas, &iova, &len) == 0 && pick(2))
			unmap(fd, ioas, iova, len);
		break;
	case 1: /* copy between two IOASes, then destroy the source */
		ioas = ioas_alloc(fd);
		ioas2 = ioas_alloc(fd);
		if (ioas && ioas2 && map(fd, ioas, &iova, &len) == 0) {
			struct iommu_ioas_copy c = {
				.size = sizeof(c), .flags = IOMMU_IOAS_MAP_READABLE,
				.dst_ioas_id = ioas2, .src_ioas_id = ioas, .length = len, .src_iova = iova,
			};

			ioctl(fd, IOMMU_IOAS_COPY, &c);
			destroy(fd, ioas);
		}
		break;
	case 2: /* destroy whatever id comes up */
		destroy(fd, 1 + pick(16));
		break;
	case 3:
	case 4:
		device_round(pick(3), fd);
		break;
	case 5:
		irq_round(pick(3));
		break;
	case 6:
		bar_round(pick(3));
		break;
	case 7:
		close_round();
		break;
	case 8: /* a child that shares every file, calls, and exits (or dies with us) */
		if (pick(4) == 0) {
			pid_t pid = fork();

			if (pid == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				for (int i = 0; i < 8; i++)
					one_call(pick(3));
				_exit(0);
			}
			if (pid > 0 && pick(2))
				waitpid(pid, NULL, 0);
		}
		break;
	}
}

/*
 * The unsafe DMA attack, made certain: with nothing else mapped yet, the no-IOMMU device's
 * software page table is the first the kernel allocates, first fit from 1 MiB, so a 4 KiB write
 * of garbage at PA 0x100000 lands on its top level. The kernel must report it and keep answering:
 * GET_PA gives what it gave before (decision 200). Exits 10+ when it does not.
 */
static void attack(void)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at) };
	struct iommu_ioas_noiommu_get_pa pa = { .size = sizeof(pa), .length = PAGE };
	unsigned char garbage[PAGE];
	__u64 iova = 0, len = 0, before;
	int fd = any_iommufd(), dev = open(devices[2], O_RDWR);
	uint32_t status = 1;

	if (fd < 0 || dev < 0)
		exit(10);
	bind.iommufd = fd;
	pa.ioas_id = ioas_alloc(fd);
	at.pt_id = pa.ioas_id; /* the attach writes back the HWPT's id */
	if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind) || !at.pt_id ||
	    map(fd, pa.ioas_id, &iova, &len) || ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
		exit(11);
	pa.iova = iova;
	if (ioctl(fd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa))
		exit(12);
	before = pa.out_phys;
	for (unsigned i = 0; i < PAGE; i++)
		garbage[i] = (unsigned char)next();
	if (pwrite(dev, garbage, PAGE, EDU_BUF) != PAGE)
		exit(13);
	bus_master(dev);
	reg64(dev, EDU_DMA_SRC, EDU_BUF);
	reg64(dev, EDU_DMA_DST, 0x100000);
	reg64(dev, EDU_DMA_COUNT, PAGE);
	reg64(dev, EDU_DMA_CMD, 3);
	while (status & 1)
		if (pread(dev, &status, 4, EDU_DMA_CMD) != 4)
			exit(14);
	pa.out_phys = 0;
	if (ioctl(fd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa) || pa.out_phys != before)
		exit(15);
	devfd[2] = dev;
	devbound[2] = 1;
}

int main(int argc, char **argv)
{
	int seen = 0, done = 0;

	rng = argc > 1 ? strtoull(argv[1], NULL, 0) * 2 + 1 : 1;
	signal(SIGCHLD, SIG_IGN); /* children reap themselves */
	for (int i = 0; i < MAX_FDS; i++)
		iommufds[i] = -1;
	buf = mmap(NULL, BUF_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 2;
	memset(buf, 0x5a, BUF_PAGES * PAGE);
	attack();
	for (unsigned long n = 0;; n++) {
		int kind = (int)pick(9);

		one_call(kind);
		seen |= 1 << kind;
		if (!done && seen == 0x1ff) {
			/* every kind of call made: the storm may strike from now on */
			printf("ready %lu\n", n);
			fflush(stdout);
			done = 1;
		}
	}
}
