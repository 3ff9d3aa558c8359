/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A legacy VFIO program the way QEMU starts one (group-attach-kill.test.ts): container, group,
 * type1v2, 512 MiB of "guest RAM" mapped with MAP_DMA, then GET_DEVICE_FD, whose first open
 * attaches the device to the container's IOAS (its new domain pins and maps all of it). It says
 * "getting" before that call, and "got" after it; the test kills it while the attach goes on.
 */
#include <stdio.h>
#include <sys/mman.h>

#include "../conformance/edu_helpers.h"
#include "../conformance/group_helpers.h"

#define LEN (512ULL << 20)
#define IOVA 0x40000000ULL

int main(void)
{
	int container = container_open();
	int group = group_open(EDU0_BDF, 0);
	void *buf = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int dev;

	if (container < 0 || group < 0 || buf == MAP_FAILED)
		return 2;
	if (group_set_container(group, container) ||
	    ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) ||
	    dma_map(container, DMA_RW, buf, IOVA, LEN))
		return 3;
	printf("getting\n");
	fflush(stdout);
	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, EDU0_BDF);
	if (dev < 0)
		return 4;
	printf("got\n");
	return 0;
}
