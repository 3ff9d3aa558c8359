/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * BAR0 through mmap(), as DPDK-style drivers and the kernel selftests' libvfio reach registers:
 * loads and stores of 4 and 8 bytes reach edu in program order (the liveness register reads back
 * the NOT of a store at once), the mapping needs a bound fd, and a DMA programmed through the
 * mapping runs through the IOMMU.
 */
#include "harness.h"
#include "edu_helpers.h"

#define BAR0_SIZE 0x100000

TEST(mmap_needs_a_bound_fd)
{
	int dev = cdev_open(EDU0_CDEV);

	REQUIRE(dev >= 0);
	CHECK(mmap(NULL, BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, dev, 0) == MAP_FAILED);
	CHECK_EQ(errno, EINVAL);
	close(dev);
}

TEST(registers_through_the_mapping)
{
	int fd = iommufd_open();
	struct edu_dev d;
	volatile uint32_t *r32;
	volatile uint64_t *r64;
	void *bar;

	REQUIRE(fd >= 0);
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, 0, &d));
	bar = mmap(NULL, BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d.fd, 0);
	REQUIRE(bar != MAP_FAILED);
	r32 = bar;
	r64 = bar;
	CHECK_EQ(r32[0x00 / 4], 0x010000ed);
	r32[0x04 / 4] = 0x5a5aa5a5;
	CHECK_EQ(r32[0x04 / 4], (uint32_t)~0x5a5aa5a5u);
	CHECK_EQ(r32[0x0c / 4], 0xffffffffu); /* unimplemented */
	r64[0x80 / 8] = 0x123456789abcdef0ull;
	CHECK_EQ(r64[0x80 / 8], 0x123456789abcdef0ull);
	/* The same register through pread sees what the mapping stored. */
	CHECK_EQ(edu_reg(d.fd, 0x80), 0x9abcdef0u);
	/* A region offset past BAR0 cannot be mapped. */
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, d.fd, 7ull << 40) == MAP_FAILED);
	munmap(bar, BAR0_SIZE);
	edu_close(&d);
	close(fd);
}

TEST(dma_programmed_through_the_mapping)
{
	int fd = iommufd_open();
	struct edu_dev d;
	volatile uint64_t *r64;
	volatile uint32_t *r32;
	__u32 ioas;
	char *buf = h_mmap(2 * 4096);

	REQUIRE(fd >= 0 && buf);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &d));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, buf, 2 * 4096, 0x100000));
	REQUIRE_OK(edu_set_bus_master(d.fd, 1));
	fill_pattern(buf, 64, 9);
	r64 = mmap(NULL, BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d.fd, 0);
	REQUIRE((void *)r64 != MAP_FAILED);
	r32 = (volatile uint32_t *)r64;
	r64[0x80 / 8] = 0x100000;
	r64[0x88 / 8] = 0x40000;
	r64[0x90 / 8] = 64;
	r64[0x98 / 8] = 1;
	for (long long end = h_now_ms() + EDU_TIMEOUT_MS; (r32[0x98 / 4] & 1) && h_now_ms() < end;)
		;
	CHECK_EQ(r32[0x98 / 4] & 1, 0);
	r64[0x80 / 8] = 0x40000;
	r64[0x88 / 8] = 0x101000;
	r64[0x90 / 8] = 64;
	r64[0x98 / 8] = 3;
	for (long long end = h_now_ms() + EDU_TIMEOUT_MS; (r32[0x98 / 4] & 1) && h_now_ms() < end;)
		;
	CHECK(memcmp(buf, buf + 4096, 64) == 0);
	munmap((void *)r64, BAR0_SIZE);
	edu_close(&d);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(mmap_needs_a_bound_fd);
	RUN(registers_through_the_mapping);
	RUN(dma_programmed_through_the_mapping);
	return h_done();
}
