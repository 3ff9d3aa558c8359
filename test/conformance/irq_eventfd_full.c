/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * An interrupt into an eventfd whose counter is at its maximum: eventfd_signal() never sleeps,
 * so the trigger (the software loopback, or the device's own MSI after a DMA) returns at once
 * even when the eventfd is a blocking one that a write would block on, the counter stays
 * readable, and the device and everyone else keep being served. The kernel raises the counter
 * to 0xffffffffffffffff (which a write can never reach); an emulator signalling with a write
 * leaves it at 0xfffffffffffffffe: either reads as "at least the maximum a write allows".
 */
#include "harness.h"
#include "edu_helpers.h"

#define FULL 0xfffffffffffffffeULL
/* A trigger that waited for a reader would take forever; "at once" is generous. */
#define AT_ONCE_MS 1000

static unsigned char *g_mem;

TEST(full_blocking_eventfd_does_not_block_the_trigger)
{
	struct edu_dev d = { .fd = -1 };
	int fd = iommufd_open();
	__u32 ioas = 0;
	int efd = eventfd(0, EFD_CLOEXEC); /* blocking: a write at the maximum would sleep */
	__u64 full = FULL, v = 0;
	long long t0;
	int i;

	REQUIRE(fd >= 0 && efd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &d));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_mem, PAGE_SZ, 0x100000));
	REQUIRE_OK(edu_set_bus_master(d.fd, 1));
	REQUIRE_OK(edu_wr32(d.fd, EDU_IRQ_ACK, 0xffffffff));
	REQUIRE_OK(vfio_irq_eventfd(d.fd, VFIO_PCI_MSI_IRQ_INDEX, efd));
	REQUIRE(write(efd, &full, sizeof(full)) == (ssize_t)sizeof(full));

	t0 = h_now_ms();
	for (i = 0; i < 3; i++)
		CHECK_OK(vfio_irq_loopback(d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	/* The device's own MSI at the end of a DMA, into the same full counter. */
	CHECK_OK(edu_dma(d.fd, 0x100000, EDU_BUF, 64, EDU_CMD_RUN | EDU_CMD_IRQ, NULL));
	CHECK(h_now_ms() - t0 < AT_ONCE_MS);
	CHECK_EQ(edu_reg(d.fd, EDU_IRQ_STATUS), EDU_IRQ_DMA);
	CHECK_OK(edu_wr32(d.fd, EDU_IRQ_ACK, EDU_IRQ_DMA));

	/* Still readable, and at least what the program wrote. */
	CHECK(read(efd, &v, sizeof(v)) == (ssize_t)sizeof(v));
	CHECK(v >= FULL);
	/* Emptied, it counts again. */
	CHECK_OK(vfio_irq_loopback(d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	CHECK(read(efd, &v, sizeof(v)) == (ssize_t)sizeof(v));
	CHECK_EQ(v, 1);

	CHECK_OK(vfio_irq_disable(d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	edu_close(&d);
	close(fd);
	close(efd);
}

int main(void)
{
	h_init();
	g_mem = h_mmap(PAGE_SZ);
	memset(g_mem, 0x42, PAGE_SZ);
	RUN(full_blocking_eventfd_does_not_block_the_trigger);
	return h_done();
}
