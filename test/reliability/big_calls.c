/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Calls that each take the server many turns (held-bystander.test.ts): 512 MiB mapped into an
 * IOAS no domain holds (nothing pinned yet), then an edu device attached to it (its new domain
 * pins and maps all of it), then the range unmapped (unpinned again), then mapped again (pinned)
 * and the program exits with it all in place (the server tears it down after the release). It
 * says each step before making it, and exits 0 only if every call succeeded.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client_calls.h"

#define LEN (512ULL << 20)
#define IOVA 0x40000000ULL

static void say(const char *step)
{
	printf("%s\n", step);
	fflush(stdout);
}

int main(void)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .iova = IOVA, .length = LEN };
	int fd = open("/dev/iommu", O_RDWR);
	int dev = open("/dev/vfio/devices/vfio0", O_RDWR);
	void *buf = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	__u32 ioas;

	if (fd < 0 || dev < 0 || buf == MAP_FAILED)
		return 2;
	if (ioas_alloc(fd, &ioas) || device_bind(dev, fd) || ioas_map_fixed(fd, ioas, buf, LEN, IOVA))
		return 3;
	say("attaching");
	if (device_attach(dev, ioas))
		return 4;
	say("unmapping");
	u.ioas_id = ioas;
	if (ioctl(fd, IOMMU_IOAS_UNMAP, &u) || u.length != LEN)
		return 5;
	if (ioas_map_fixed(fd, ioas, buf, LEN, IOVA))
		return 6;
	say("exiting");
	return 0;
}
