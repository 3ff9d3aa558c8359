/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Real DMA by both edu devices through dmar0's page tables (issue 3; edu.md §4, §6): the driver
 * programs the DMA engine through pread/pwrite of BAR0 and turns bus mastering on in config
 * space; the device moves bytes between the client's pinned memory (by IOVA) and its 4 KiB buffer
 * at 0x40000. A write the IOMMU does not allow (unmapped IOVA, read-only target, outside the
 * aperture, detached device) or without bus mastering moves no byte; a read it does not allow
 * fills the buffer with zeros, as QEMU's edu does (the blocked read returns unassigned memory).
 * The command completes either way. Two devices on different IOASes see different memory at the
 * same IOVA.
 */
#include "harness.h"
#include "edu_helpers.h"

#define NPAGES 16
#define PG(i) (g_mem + (size_t)(i) * PAGE_SZ)

static unsigned char *g_mem;	/* NPAGES pages of the client's memory */

/* Fresh iommufd + IOAS + device attached to it, bus mastering on. */
struct setup {
	int fd;
	__u32 ioas;
	struct edu_dev d;
};

static int setup(struct setup *s, const char *path)
{
	s->fd = iommufd_open();
	s->d.fd = -1;
	if (s->fd < 0)
		return -1;
	if (ioas_alloc(s->fd, &s->ioas))
		return -1;
	if (edu_open(path, s->fd, s->ioas, &s->d))
		return -1;
	return edu_set_bus_master(s->d.fd, 1);
}

static void teardown(struct setup *s)
{
	edu_close(&s->d);
	if (s->fd >= 0)
		close(s->fd);
}

static int map_rw(struct setup *s, int page, __u64 iova, __u64 npages)
{
	return ioas_map_fixed(s->fd, s->ioas, PG(page), npages * PAGE_SZ, iova);
}

static int map_flags(struct setup *s, int page, __u64 iova, __u32 prot)
{
	__u64 v = iova;

	return ioas_map(s->fd, s->ioas, IOMMU_IOAS_MAP_FIXED_IOVA | prot, PG(page), PAGE_SZ, &v);
}

/* Buffer content known to be `page`'s bytes: RAM (IOVA of that page) -> buffer. */
static void round_trip(const char *path)
{
	struct setup s;
	__u64 cmd = 0;
	int i;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s, path));
	REQUIRE_OK(map_rw(&s, 0, 0x100000, 4));
	fill_pattern(PG(0), PAGE_SZ, 1);

	/* A whole buffer in and out again, to another page. */
	CHECK_OK(edu_dma_in(s.d.fd, 0x100000, 0, EDU_BUF_SIZE));
	CHECK_OK(edu_dma(s.d.fd, EDU_BUF, 0x102000, EDU_BUF_SIZE, EDU_CMD_RUN | EDU_CMD_TO_RAM,
			 &cmd));
	CHECK(memcmp(PG(2), PG(0), PAGE_SZ) == 0);
	/* Only the RUN bit clears at completion (edu.md §3). */
	CHECK_EQ(cmd, EDU_CMD_TO_RAM);

	/* The documentation's example: 100 bytes in, then out to addr + 100. */
	fill_pattern(PG(1), 100, 2);
	CHECK_OK(edu_dma(s.d.fd, 0x101000, EDU_BUF, 100, EDU_CMD_RUN, &cmd));
	CHECK_EQ(cmd, 0);
	CHECK_OK(edu_dma(s.d.fd, EDU_BUF, 0x101000 + 100, 100, EDU_CMD_RUN | EDU_CMD_TO_RAM, NULL));
	CHECK(memcmp(PG(1) + 100, PG(1), 100) == 0);
	CHECK(all_bytes(PG(1) + 200, PAGE_SZ - 200, 0));

	/* Odd offsets on both sides, across a page boundary of the mapping. */
	CHECK_OK(edu_dma_in(s.d.fd, 0x100000 + 0xf00, 0x800, 0x300));
	CHECK_OK(edu_dma_out(s.d.fd, 0x800, 0x102000 + 0xe33, 0x300));
	/* Pages 0-1 and 2-3 are adjacent in our memory as in the IOVA space. */
	CHECK(memcmp(PG(2) + 0xe33, PG(0) + 0xf00, 0x300) == 0);
	CHECK(memcmp(PG(2), PG(0), 0xe33) == 0);	/* untouched before */
	CHECK(all_bytes(PG(3) + 0x133, PAGE_SZ - 0x133, 0));	/* and after */

	/* Many small transfers in a row. */
	for (i = 0; i < 32; i++) {
		fill_pattern(PG(0), 64, (unsigned int)i + 10);
		CHECK_OK(edu_dma_in(s.d.fd, 0x100000, 0, 64));
		CHECK_OK(edu_dma_out(s.d.fd, 0, 0x103000 + (__u64)i * 64, 64));
		CHECK(memcmp(PG(3) + i * 64, PG(0), 64) == 0);
	}
	teardown(&s);
}

TEST(round_trip_edu0)
{
	round_trip(EDU0_CDEV);
}

TEST(round_trip_edu1)
{
	round_trip(EDU1_CDEV);
}

/* Fills the whole device buffer from IOVA `iova`. */
static void prime(struct setup *s, __u64 iova)
{
	CHECK_OK(edu_dma_in(s->d.fd, iova, 0, EDU_BUF_SIZE));
}

/* The buffer's bytes, fetched into page `page` (mapped at `iova`). */
static void fetch(struct setup *s, int page, __u64 iova)
{
	memset(PG(page), 0, PAGE_SZ);
	CHECK_OK(edu_dma_out(s->d.fd, 0, iova, EDU_BUF_SIZE));
}

TEST(unmapped_iova_moves_nothing)
{
	struct setup s;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s, EDU0_CDEV));
	REQUIRE_OK(map_rw(&s, 0, 0x100000, 1));
	REQUIRE_OK(map_rw(&s, 2, 0x102000, 1));
	fill_pattern(PG(0), PAGE_SZ, 3);
	prime(&s, 0x100000);

	/* Reading an unmapped IOVA: the buffer is filled with zeros. */
	CHECK_OK(edu_dma_in(s.d.fd, 0x900000, 0, EDU_BUF_SIZE));
	fetch(&s, 2, 0x102000);
	CHECK(all_bytes(PG(2), PAGE_SZ, 0));
	/* Outside dmar0's aperture: zeros as well. */
	prime(&s, 0x100000);
	CHECK_OK(edu_dma_in(s.d.fd, 1ULL << 50, 0, EDU_BUF_SIZE));
	fetch(&s, 2, 0x102000);
	CHECK(all_bytes(PG(2), PAGE_SZ, 0));
	prime(&s, 0x100000);

	/* Writing to an IOVA that was mapped and is unmapped now: the page stays as it is. */
	REQUIRE_OK(map_rw(&s, 5, 0x200000, 1));
	CHECK_OK(ioas_unmap(s.fd, s.ioas, 0x200000, PAGE_SZ, NULL));
	memset(PG(5), 0x5a, PAGE_SZ);
	CHECK_OK(edu_dma_out(s.d.fd, 0, 0x200000, EDU_BUF_SIZE));
	CHECK(all_bytes(PG(5), PAGE_SZ, 0x5a));
	/* The same IOVA mapped to another page: the bytes go there, not to the old page. */
	REQUIRE_OK(map_rw(&s, 6, 0x200000, 1));
	CHECK_OK(edu_dma_out(s.d.fd, 0, 0x200000, EDU_BUF_SIZE));
	CHECK(memcmp(PG(6), PG(0), PAGE_SZ) == 0);
	CHECK(all_bytes(PG(5), PAGE_SZ, 0x5a));
	teardown(&s);
}

TEST(read_only_and_write_only_mappings)
{
	struct setup s;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s, EDU0_CDEV));
	REQUIRE_OK(map_rw(&s, 0, 0x100000, 1));
	REQUIRE_OK(map_rw(&s, 2, 0x102000, 1));
	fill_pattern(PG(0), PAGE_SZ, 4);
	prime(&s, 0x100000);

	/* MAP without WRITEABLE: the device may read but not write. */
	fill_pattern(PG(7), PAGE_SZ, 5);
	REQUIRE_OK(map_flags(&s, 7, 0x400000, IOMMU_IOAS_MAP_READABLE));
	CHECK_OK(edu_dma_out(s.d.fd, 0, 0x400000, EDU_BUF_SIZE));
	fill_pattern(PG(8), PAGE_SZ, 5);
	CHECK(memcmp(PG(7), PG(8), PAGE_SZ) == 0);	/* not a byte changed */
	CHECK_OK(edu_dma_in(s.d.fd, 0x400000, 0, EDU_BUF_SIZE));
	fetch(&s, 2, 0x102000);
	CHECK(memcmp(PG(2), PG(7), PAGE_SZ) == 0);	/* the read went through */

	/* MAP without READABLE: the device may write but not read. */
	memset(PG(9), 0x77, PAGE_SZ);
	REQUIRE_OK(map_flags(&s, 9, 0x500000, IOMMU_IOAS_MAP_WRITEABLE));
	CHECK_OK(edu_dma_in(s.d.fd, 0x500000, 0, EDU_BUF_SIZE));
	fetch(&s, 2, 0x102000);
	CHECK(all_bytes(PG(2), PAGE_SZ, 0));	/* the blocked read gave zeros */
	prime(&s, 0x400000);
	CHECK_OK(edu_dma_out(s.d.fd, 0, 0x500000, EDU_BUF_SIZE));
	CHECK(memcmp(PG(9), PG(7), PAGE_SZ) == 0);	/* the write went through */
	teardown(&s);
}

TEST(detached_device_is_blocked)
{
	struct setup s;
	__u32 pt;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s, EDU0_CDEV));
	REQUIRE_OK(map_rw(&s, 0, 0x100000, 1));
	REQUIRE_OK(map_rw(&s, 2, 0x102000, 1));
	REQUIRE_OK(map_rw(&s, 9, 0x600000, 1));
	fill_pattern(PG(0), PAGE_SZ, 6);
	prime(&s, 0x100000);

	REQUIRE_OK(vfio_detach(s.d.fd));
	memset(PG(9), 0x11, PAGE_SZ);
	/* Blocked both ways; the command still completes. */
	CHECK_OK(edu_dma_out(s.d.fd, 0, 0x600000, EDU_BUF_SIZE));
	CHECK(all_bytes(PG(9), PAGE_SZ, 0x11));
	CHECK_OK(edu_dma_in(s.d.fd, 0x600000, 0, EDU_BUF_SIZE));

	/* Attached again (a new auto domain, filled with the IOAS's maps): DMA works again, and
	 * the buffer holds the zeros of the blocked read. */
	pt = s.ioas;
	REQUIRE_OK(vfio_attach(s.d.fd, &pt));
	fetch(&s, 2, 0x102000);
	CHECK(all_bytes(PG(2), PAGE_SZ, 0));
	prime(&s, 0x100000);
	CHECK_OK(edu_dma_out(s.d.fd, 0, 0x600000, EDU_BUF_SIZE));
	CHECK(memcmp(PG(9), PG(0), PAGE_SZ) == 0);
	teardown(&s);
}

TEST(no_bus_master_no_dma)
{
	struct setup s;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE_OK(setup(&s, EDU0_CDEV));
	REQUIRE_OK(map_rw(&s, 0, 0x100000, 1));
	REQUIRE_OK(map_rw(&s, 2, 0x102000, 1));
	REQUIRE_OK(map_rw(&s, 9, 0x600000, 1));
	fill_pattern(PG(0), PAGE_SZ, 7);
	prime(&s, 0x100000);

	REQUIRE_OK(edu_set_bus_master(s.d.fd, 0));
	CHECK_EQ(edu_bus_master(s.d.fd), 0);
	memset(PG(9), 0x22, PAGE_SZ);
	CHECK_OK(edu_dma_out(s.d.fd, 0, 0x600000, EDU_BUF_SIZE));
	CHECK(all_bytes(PG(9), PAGE_SZ, 0x22));
	fill_pattern(PG(1), PAGE_SZ, 8);
	REQUIRE_OK(map_rw(&s, 1, 0x101000, 1));
	CHECK_OK(edu_dma_in(s.d.fd, 0x101000, 0, EDU_BUF_SIZE));

	REQUIRE_OK(edu_set_bus_master(s.d.fd, 1));
	fetch(&s, 2, 0x102000);
	CHECK(all_bytes(PG(2), PAGE_SZ, 0));	/* the blocked read gave zeros, not page 1 */
	prime(&s, 0x100000);
	CHECK_OK(edu_dma_out(s.d.fd, 0, 0x600000, EDU_BUF_SIZE));
	CHECK(memcmp(PG(9), PG(0), PAGE_SZ) == 0);
	teardown(&s);
}

/* A freshly opened device has bus mastering off: its DMA does nothing until the driver sets it. */
TEST(bus_master_starts_off)
{
	struct setup s;
	__u32 pt;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	s.fd = iommufd_open();
	REQUIRE(s.fd >= 0);
	REQUIRE_OK(ioas_alloc(s.fd, &s.ioas));
	REQUIRE_OK(edu_open(EDU1_CDEV, s.fd, 0, &s.d));
	pt = s.ioas;
	REQUIRE_OK(vfio_attach(s.d.fd, &pt));
	REQUIRE_OK(map_rw(&s, 9, 0x600000, 1));
	CHECK_EQ(edu_bus_master(s.d.fd), 0);
	memset(PG(9), 0x33, PAGE_SZ);
	CHECK_OK(edu_dma_out(s.d.fd, 0, 0x600000, EDU_BUF_SIZE));
	CHECK(all_bytes(PG(9), PAGE_SZ, 0x33));
	teardown(&s);
}

/* Each device sees its own IOAS: the same IOVA is different memory for the two. */
TEST(devices_on_different_ioas_are_isolated)
{
	int fd = iommufd_open();
	__u32 a, b;
	struct edu_dev d0, d1;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &a));
	REQUIRE_OK(ioas_alloc(fd, &b));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, a, &d0));
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, b, &d1));
	REQUIRE_OK(edu_set_bus_master(d0.fd, 1));
	REQUIRE_OK(edu_set_bus_master(d1.fd, 1));
	/* IOVA 0x100000 is page 0 in a, page 10 in b; 0x200000 exists only in a. */
	REQUIRE_OK(ioas_map_fixed(fd, a, PG(0), PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(fd, a, PG(4), PAGE_SZ, 0x200000));
	REQUIRE_OK(ioas_map_fixed(fd, b, PG(10), PAGE_SZ, 0x100000));
	fill_pattern(PG(0), PAGE_SZ, 20);
	fill_pattern(PG(10), PAGE_SZ, 21);

	CHECK_OK(edu_dma_in(d0.fd, 0x100000, 0, EDU_BUF_SIZE));
	CHECK_OK(edu_dma_in(d1.fd, 0x100000, 0, EDU_BUF_SIZE));
	/* Device 1 cannot reach IOAS a's 0x200000. */
	memset(PG(4), 0x44, PAGE_SZ);
	CHECK_OK(edu_dma_out(d1.fd, 0, 0x200000, EDU_BUF_SIZE));
	CHECK(all_bytes(PG(4), PAGE_SZ, 0x44));
	/* Device 0 can, and its buffer holds page 0's bytes, device 1's page 10's. */
	CHECK_OK(edu_dma_out(d0.fd, 0, 0x200000, EDU_BUF_SIZE));
	CHECK(memcmp(PG(4), PG(0), PAGE_SZ) == 0);
	CHECK_OK(ioas_map_fixed(fd, b, PG(11), PAGE_SZ, 0x300000));
	CHECK_OK(edu_dma_out(d1.fd, 0, 0x300000, EDU_BUF_SIZE));
	CHECK(memcmp(PG(11), PG(10), PAGE_SZ) == 0);
	edu_close(&d0);
	edu_close(&d1);
	close(fd);
}

/* Two devices sharing one IOAS (and one auto domain) reach the same memory. */
TEST(devices_sharing_an_ioas)
{
	int fd = iommufd_open();
	__u32 ioas;
	struct edu_dev d0, d1;

	memset(g_mem, 0, NPAGES * PAGE_SZ);
	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &d0));
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, ioas, &d1));
	CHECK_EQ(d0.hwpt, d1.hwpt);
	REQUIRE_OK(edu_set_bus_master(d0.fd, 1));
	REQUIRE_OK(edu_set_bus_master(d1.fd, 1));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, PG(0), 4 * PAGE_SZ, 0x100000));
	fill_pattern(PG(0), PAGE_SZ, 30);
	/* Device 0 copies page 0 to page 1, device 1 page 1 to page 2. */
	CHECK_OK(edu_dma_in(d0.fd, 0x100000, 0, EDU_BUF_SIZE));
	CHECK_OK(edu_dma_out(d0.fd, 0, 0x101000, EDU_BUF_SIZE));
	CHECK_OK(edu_dma_in(d1.fd, 0x101000, 0, EDU_BUF_SIZE));
	CHECK_OK(edu_dma_out(d1.fd, 0, 0x102000, EDU_BUF_SIZE));
	CHECK(memcmp(PG(2), PG(0), PAGE_SZ) == 0);
	edu_close(&d0);
	edu_close(&d1);
	close(fd);
}

int main(void)
{
	h_init();
	g_mem = h_mmap(NPAGES * PAGE_SZ);
	madvise(g_mem, NPAGES * PAGE_SZ, MADV_NOHUGEPAGE);
	RUN(round_trip_edu0);
	RUN(round_trip_edu1);
	RUN(unmapped_iova_moves_nothing);
	RUN(read_only_and_write_only_mappings);
	RUN(detached_device_is_blocked);
	RUN(no_bus_master_no_dma);
	RUN(bus_master_starts_off);
	RUN(devices_on_different_ioas_are_isolated);
	RUN(devices_sharing_an_ioas);
	/* Not a check: whether completion was ever observed pending depends on timing. */
	h_note("DMA completion observed pending on the first poll %d time(s)", edu_dma_seen_running);
	return h_done();
}
