// exec-args: --enable-unsafe-noiommu-mode
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * DMA by physical address with the edu device that has no IOMMU (noiommu.md §3.6, issue 4): the
 * driver maps its memory (IOVA = VA), which pins it, asks IOMMU_IOAS_NOIOMMU_GET_PA for the
 * physical address of each piece, and programs the device with those addresses; the device moves
 * the bytes between two pinned pages. Nothing translates: the IOVA is only a lookup key, and bus
 * mastering still gates the DMA.
 */
#include "harness.h"
#include "edu_helpers.h"

#define NPAGES 8
#define PG(i) (g_mem + (size_t)(i) * PAGE_SZ)

static unsigned char *g_mem;

struct setup {
	int fd;
	__u32 ioas;
	struct edu_dev d;
	__u64 pa[NPAGES];	/* physical address of each page of g_mem */
};

static int setup(struct setup *s)
{
	int i;

	s->d.fd = -1;
	s->fd = iommufd_open();
	if (s->fd < 0 || ioas_alloc(s->fd, &s->ioas))
		return -1;
	if (edu_open(NOIOMMU_CDEV, s->fd, s->ioas, &s->d))
		return -1;
	if (ioas_map_fixed(s->fd, s->ioas, g_mem, NPAGES * PAGE_SZ, (uintptr_t)g_mem))
		return -1;
	for (i = 0; i < NPAGES; i++) {
		__u64 len = PAGE_SZ;

		if (get_pa(s->fd, s->ioas, (uintptr_t)PG(i), &len, &s->pa[i]))
			return -1;
		if (len != PAGE_SZ) {
			errno = ERANGE;
			return -1;
		}
	}
	return edu_set_bus_master(s->d.fd, 1);
}

static void teardown(struct setup *s)
{
	edu_close(&s->d);
	if (s->fd >= 0)
		close(s->fd);
}

TEST(dma_between_two_pinned_pages)
{
	struct setup s;
	__u64 cmd = 0;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s));
	fill_pattern(PG(0), PAGE_SZ, 40);

	/* Page 0 -> device buffer -> page 1, by physical address. */
	CHECK_OK(edu_dma_in(s.d.fd, s.pa[0], 0, EDU_BUF_SIZE));
	CHECK_OK(edu_dma(s.d.fd, EDU_BUF, s.pa[1], EDU_BUF_SIZE, EDU_CMD_RUN | EDU_CMD_TO_RAM,
			 &cmd));
	CHECK_EQ(cmd, EDU_CMD_TO_RAM);
	CHECK(memcmp(PG(1), PG(0), PAGE_SZ) == 0);

	/* Sub-page offsets: the physical address keeps them. */
	CHECK_OK(edu_dma_in(s.d.fd, s.pa[0] + 0x100, 0x10, 0x80));
	CHECK_OK(edu_dma_out(s.d.fd, 0x10, s.pa[2] + 0x200, 0x80));
	CHECK(memcmp(PG(2) + 0x200, PG(0) + 0x100, 0x80) == 0);
	CHECK(all_bytes(PG(2), 0x200, 0));
	CHECK(all_bytes(PG(2) + 0x280, PAGE_SZ - 0x280, 0));
	teardown(&s);
}

/* What a DPDK-style driver does: walk the buffers with GET_PA and DMA piece by piece. */
TEST(scatter_gather_copy)
{
	struct setup s;
	__u64 src = (uintptr_t)PG(0), dst = (uintptr_t)PG(4), size = 4 * PAGE_SZ;
	__u64 off, len, spa = 0, dpa = 0, chunk;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s));
	fill_pattern(PG(0), size, 41);
	for (off = 0; off < size; off += chunk) {
		len = size - off;
		REQUIRE_OK(get_pa(s.fd, s.ioas, src + off, &len, &spa));
		chunk = len;
		len = size - off;
		REQUIRE_OK(get_pa(s.fd, s.ioas, dst + off, &len, &dpa));
		if (len < chunk)
			chunk = len;
		if (chunk > EDU_BUF_SIZE)
			chunk = EDU_BUF_SIZE;
		REQUIRE_OK(edu_dma_in(s.d.fd, spa, 0, chunk));
		REQUIRE_OK(edu_dma_out(s.d.fd, 0, dpa, chunk));
	}
	CHECK(memcmp(PG(4), PG(0), size) == 0);
	teardown(&s);
}

TEST(no_bus_master_no_dma)
{
	struct setup s;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s));
	fill_pattern(PG(0), PAGE_SZ, 42);
	CHECK_OK(edu_dma_in(s.d.fd, s.pa[0], 0, EDU_BUF_SIZE));
	REQUIRE_OK(edu_set_bus_master(s.d.fd, 0));
	memset(PG(1), 0x66, PAGE_SZ);
	CHECK_OK(edu_dma_out(s.d.fd, 0, s.pa[1], EDU_BUF_SIZE));
	CHECK(all_bytes(PG(1), PAGE_SZ, 0x66));
	REQUIRE_OK(edu_set_bus_master(s.d.fd, 1));
	CHECK_OK(edu_dma_out(s.d.fd, 0, s.pa[1], EDU_BUF_SIZE));
	CHECK(memcmp(PG(1), PG(0), PAGE_SZ) == 0);
	teardown(&s);
}

/*
 * The IOVA is only a lookup key: a DMA programmed with it goes to that PHYSICAL address, not to
 * the page (IOVA = VA is far above the machine's RAM here). On real hardware this is exactly the
 * memory corruption the mode's name warns about; the emulator reports it as an unsafe DMA.
 */
TEST(iova_is_not_a_bus_address)
{
	static unsigned char before[NPAGES * PAGE_SZ];
	struct setup s;
	__u64 target = 0;
	int i, k;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s));
	fill_pattern(PG(0), PAGE_SZ, 43);
	CHECK_OK(edu_dma_in(s.d.fd, s.pa[0], 0, EDU_BUF_SIZE));
	memset(PG(3), 0x77, PAGE_SZ);
	/* The IOVA of a page that is, as a physical address, none of our pages, not even once a
	 * platform's 28-bit edu dma_mask clamped it. */
	for (k = 3; k < NPAGES && !target; k++) {
		__u64 t = (uintptr_t)PG(k);

		target = t;
		for (i = 0; i < NPAGES; i++)
			if ((s.pa[i] & ~(PAGE_SZ - 1)) == (t & ~(PAGE_SZ - 1)) ||
			    (s.pa[i] & ~(PAGE_SZ - 1)) == (t & 0x0fffffffULL & ~(PAGE_SZ - 1)))
				target = 0;
	}
	if (!target) {
		teardown(&s);
		SKIP("every IOVA of the buffer is also one of its physical addresses");
	}
	memcpy(before, g_mem, sizeof(before));
	CHECK_OK(edu_dma_out(s.d.fd, 0, target, EDU_BUF_SIZE));
	CHECK(memcmp(before, g_mem, sizeof(before)) == 0);
	teardown(&s);
}

/* Interrupts work as for any edu device: an MSI on DMA completion. */
TEST(msi_on_completion)
{
	struct setup s;
	int efd = efd_new();

	REQUIRE(efd >= 0);
	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s));
	REQUIRE_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, 0xffffffff));
	REQUIRE_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX, efd));
	CHECK_OK(edu_dma(s.d.fd, s.pa[0], EDU_BUF, 64, EDU_CMD_RUN | EDU_CMD_IRQ, NULL));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), EDU_IRQ_DMA);
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, EDU_IRQ_DMA));
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), 0);
	teardown(&s);
	close(efd);
}

int main(void)
{
	h_init();
	g_mem = h_mmap(NPAGES * PAGE_SZ);
	madvise(g_mem, NPAGES * PAGE_SZ, MADV_NOHUGEPAGE);
	RUN(dma_between_two_pinned_pages);
	RUN(scatter_gather_copy);
	RUN(no_bus_master_no_dma);
	RUN(iova_is_not_a_bus_address);
	RUN(msi_on_completion);
	return h_done();
}
