/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Killed while its map pins (pin-kill.test.ts): a thread maps 512 MiB into an IOAS with an edu
 * device's domain attached; once another thread's unmap of the range is EBUSY (the map is
 * pinning it), "busy" is printed and the process waits for its SIGKILL.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>

#include "client_calls.h"

#define LEN (512ULL << 20)
#define IOVA 0x40000000ULL

static int fd;
static __u32 ioas;
static void *buf;
static volatile int map_done;

static void *map_run(void *p)
{
	(void)p;
	ioas_map_fixed(fd, ioas, buf, LEN, IOVA);
	map_done = 1;
	return NULL;
}

int main(void)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u) };
	pthread_t t;
	int dev, r;

	fd = open("/dev/iommu", O_RDWR);
	dev = open("/dev/vfio/devices/vfio0", O_RDWR);
	if (fd < 0 || dev < 0 || ioas_alloc(fd, &ioas))
		return 2;
	if (device_bind(dev, fd) || device_attach(dev, ioas))
		return 3;
	buf = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || pthread_create(&t, NULL, map_run, NULL))
		return 4;
	do {
		u.ioas_id = ioas;
		u.iova = IOVA;
		u.length = LEN;
		r = ioctl(fd, IOMMU_IOAS_UNMAP, &u);
	} while (r == -1 && errno == ENOENT && !map_done);
	if (r != -1 || errno != EBUSY)
		return 5;
	printf("busy\n");
	fflush(stdout);
	for (;;)
		pause();
}
