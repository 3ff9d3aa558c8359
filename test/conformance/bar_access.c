/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * BAR0 through mmap() at every width: glibc's memcpy, memset, memcmp and fwrite (whatever
 * variant glibc picks for this CPU at run time: AVX-512, EVEX, AVX2 or SSE), what gcc inlines
 * for them (built with -O2 -march=native: vector moves, rep stos), and rep movs/stos, over BAR0
 * at every size 1-256. One alignment per size by default, to keep the run quick; built with
 * -DALIGN_RUNS=64 (scripts/bar-access-every-alignment.sh) it tries every alignment mod 64.
 *
 * What a read returns depends on how the access is split on the bus, which depends on the
 * instructions glibc picked; edu reads 1- and 2-byte or unaligned pieces as 0. So every byte a
 * load copies must be one of what edu can answer for that byte (0, the 4-byte register read, or
 * the 8-byte one, both taken beforehand with pread as the shadow), every byte outside the copy
 * must be untouched, and where the copy is 8-byte aligned at both ends every piece is a whole
 * aligned qword, so the result must equal the 8-byte shadow exactly. Stores go to the DMA
 * registers, whose value afterwards must be the old one or what an aligned 4- or 8-byte piece
 * of the store carried, and for aligned stores one of the two pieces (never the old value).
 */
#include "harness.h"
#include "edu_helpers.h"

#define BAR0_SIZE 0x100000
#define LOAD_BASE 0x40 /* loads cover 0x40-0x17f: write-only, unimplemented and DMA registers */
#define CANARY 0x5a    /* no register byte below has this value */
#ifndef ALIGN_RUNS
#define ALIGN_RUNS 1
#endif

static int dev = -1, iommufd = -1;
static struct edu_dev d;
static uint8_t *bar, *bar2;
static uint8_t s4[0x200], s8[0x200]; /* BAR0 bytes as 4- and 8-byte reads return them */

/* Distinct, recognisable bytes for the 64-bit DMA registers: 0xa0 + offset from 0x80. */
static uint64_t reg_pattern(unsigned r)
{
	uint64_t v = 0;
	for (int k = 7; k >= 0; k--)
		v = v << 8 | (uint64_t)(0xa0 + (r - 0x80) + (unsigned)k);
	return v;
}

static int set_registers(void)
{
	for (unsigned r = EDU_DMA_SRC; r <= EDU_DMA_COUNT; r += 8) {
		if (edu_wr64(d.fd, r, reg_pattern(r)))
			return -1;
	}
	return 0;
}

static int take_shadow(void)
{
	for (unsigned o = 0; o < sizeof s4; o += 8) {
		__u64 v8;
		__u32 lo, hi;
		if (edu_rd64(d.fd, o, &v8) || edu_rd32(d.fd, o, &lo) || edu_rd32(d.fd, o + 4, &hi))
			return -1;
		memcpy(s8 + o, &v8, 8);
		memcpy(s4 + o, &lo, 4);
		memcpy(s4 + o + 4, &hi, 4);
	}
	return 0;
}

static unsigned alignment(unsigned n, unsigned run)
{
	return ALIGN_RUNS == 1 ? (n * 7) % 64 : run;
}

/* got[0..n) read from BAR0 offset off: each byte one of edu's answers; exact when aligned. */
static int loaded_ok(const uint8_t *got, unsigned off, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t b = got[i];
		if (b != 0 && b != s4[off + i] && b != s8[off + i])
			return 0;
	}
	return off % 8 != 0 || n % 8 != 0 || memcmp(got, s8 + off, n) == 0;
}

TEST(memcpy_from_bar)
{
	uint8_t dst[256 + 64];
	for (unsigned n = 1; n <= 256; n++) {
		for (unsigned run = 0; run < ALIGN_RUNS; run++) {
			unsigned off = LOAD_BASE + alignment(n, run);
			memset(dst, CANARY, sizeof dst);
			memcpy(dst + 32, bar + off, n);
			if (!loaded_ok(dst + 32, off, n)) {
				CHECK(!"memcpy from BAR0 read a byte edu cannot answer");
				h_note("n=%u offset 0x%x", n, off);
				return;
			}
			for (unsigned i = 0; i < sizeof dst; i++) {
				if ((i < 32 || i >= 32 + n) && dst[i] != CANARY) {
					CHECK(!"memcpy from BAR0 wrote outside its destination");
					h_note("n=%u offset 0x%x byte %u", n, off, i);
					return;
				}
			}
		}
	}
}

TEST(fwrite_from_bar)
{
	FILE *f = tmpfile();
	uint8_t got[256];
	long pos = 0;
	REQUIRE(f != NULL);
	for (unsigned n = 1; n <= 256; n++) {
		for (unsigned run = 0; run < ALIGN_RUNS; run++) {
			unsigned off = LOAD_BASE + alignment(n, run);
			CHECK_EQ(fwrite(bar + off, 1, n, f), n);
			REQUIRE(fflush(f) == 0);
			REQUIRE(pread(fileno(f), got, n, pos) == (ssize_t)n);
			pos += n;
			if (!loaded_ok(got, off, n)) {
				CHECK(!"fwrite from BAR0 wrote a byte edu cannot answer");
				h_note("n=%u offset 0x%x", n, off);
				fclose(f);
				return;
			}
		}
	}
	fclose(f);
}

TEST(memcmp_on_bar)
{
	uint8_t canary[256];
	memset(canary, CANARY, sizeof canary);
	for (unsigned n = 1; n <= 256; n++) {
		for (unsigned run = 0; run < ALIGN_RUNS; run++) {
			unsigned off = LOAD_BASE + alignment(n, run);
			/* Two mappings of one BAR: both sides read with the same instructions. */
			int same = memcmp(bar + off, bar2 + off, n);
			int differs = memcmp(bar + off, canary, n);
			int exact = off % 8 == 0 && n % 8 == 0 ? memcmp(bar + off, s8 + off, n) : 0;
			if (same != 0 || differs == 0 || exact != 0) {
				CHECK(!"memcmp over BAR0 disagrees");
				h_note("n=%u offset 0x%x: %d %d %d", n, off, same, differs, exact);
				return;
			}
		}
	}
}

/* After a store of src[0..n) at BAR0 0x80 + a: each DMA register holds its old value or what
 * an aligned 4-byte (zero-extended) or 8-byte piece of the store carried. */
static int stored_ok(const uint8_t *src, unsigned a, unsigned n)
{
	for (unsigned r = EDU_DMA_SRC; r <= EDU_DMA_COUNT; r += 8) {
		unsigned start = 0x80 + a, end = start + n;
		__u64 v, low = 0, full = 0;
		int has_low = start <= r && r + 4 <= end, has_full = start <= r && r + 8 <= end;
		if (edu_rd64(d.fd, r, &v))
			return 0;
		if (has_low)
			memcpy(&low, src + (r - start), 4);
		if (has_full)
			memcpy(&full, src + (r - start), 8);
		if (a % 8 == 0 && n % 8 == 0 && has_full) {
			/* Written whole, or by 4-byte pieces (gcc's inline memset: rep stosl). */
			if (v != full && v != low)
				return 0;
		} else if (v != reg_pattern(r) && !(has_low && v == low) && !(has_full && v == full)) {
			return 0;
		}
	}
	return 1;
}

TEST(memset_and_memcpy_to_bar)
{
	uint8_t src[24], fill[24];
	for (unsigned i = 0; i < sizeof src; i++)
		src[i] = (uint8_t)(0x31 + 3 * i);
	memset(fill, 0x6b, sizeof fill);
	for (unsigned a = 0; a < 8; a++) {
		for (unsigned n = 1; a + n <= 24; n++) {
			REQUIRE_OK(set_registers());
			memset(bar + 0x80 + a, 0x6b, n);
			if (!stored_ok(fill, a, n)) {
				CHECK(!"memset to the DMA registers");
				h_note("n=%u at 0x%x", n, 0x80 + a);
				return;
			}
			REQUIRE_OK(set_registers());
			memcpy(bar + 0x80 + a, src, n);
			if (!stored_ok(src, a, n)) {
				CHECK(!"memcpy to the DMA registers");
				h_note("n=%u at 0x%x", n, 0x80 + a);
				return;
			}
		}
	}
	/* Every size and alignment on unimplemented registers: ignored, nothing else changes. */
	REQUIRE_OK(set_registers());
	for (unsigned n = 1; n <= 256; n++) {
		memset(bar + 0x200 + alignment(n, 0), 0x6b, n);
		memcpy(bar + 0x400 + alignment(n, 0), s8 + 0x80, n > 0x180 ? 0x180 : n);
	}
	CHECK(stored_ok(src, 0x100, 0)); /* all three registers kept their values */
}

TEST(rep_movs_and_stos)
{
	uint64_t q[3] = {0}, *dst = q;
	const uint8_t *srcp = bar + 0x80;
	uint64_t count = 3, *dsttop;
	uint32_t pattern = 0x13579bdf;
	uint8_t *bdst;

	REQUIRE_OK(set_registers());
	__asm__ volatile("rep movsq" : "+D"(dst), "+S"(srcp), "+c"(count) : : "memory");
	CHECK_EQ(count, 0);
	CHECK_EQ(q[0], reg_pattern(0x80));
	CHECK_EQ(q[2], reg_pattern(0x90));
	/* Backwards (DF set), from the last element down. */
	memset(q, 0, sizeof q);
	dsttop = &q[2];
	srcp = bar + 0x90;
	count = 3;
	__asm__ volatile("std\n rep movsq\n cld" : "+D"(dsttop), "+S"(srcp), "+c"(count) : : "memory");
	CHECK_EQ(q[0], reg_pattern(0x80));
	CHECK_EQ(q[1], reg_pattern(0x88));
	/* 4-byte elements: the low halves zero-extend, the stores to 0x84 and 0x8c are ignored. */
	bdst = bar + 0x80;
	count = 4;
	__asm__ volatile("rep stosl" : "+D"(bdst), "+c"(count) : "a"(pattern) : "memory");
	CHECK_EQ(edu_reg(d.fd, 0x80), pattern);
	{
		__u64 v;
		REQUIRE_OK(edu_rd64(d.fd, 0x88, &v));
		CHECK_EQ(v, pattern);
	}
}

int main(void)
{
	h_init();
	iommufd = iommufd_open();
	if (iommufd < 0 || edu_open(EDU0_CDEV, iommufd, 0, &d)) {
		printf("Bail out! cannot open %s\n", EDU0_CDEV);
		return 2;
	}
	dev = d.fd;
	bar = mmap(NULL, BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, dev, 0);
	bar2 = mmap(NULL, BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, dev, 0);
	if (bar == MAP_FAILED || bar2 == MAP_FAILED || set_registers() || take_shadow()) {
		printf("Bail out! cannot map BAR0 or read its registers\n");
		return 2;
	}
	RUN(memcpy_from_bar);
	RUN(fwrite_from_bar);
	RUN(memcmp_on_bar);
	RUN(memset_and_memcpy_to_bar);
	RUN(rep_movs_and_stos);
	munmap(bar, BAR0_SIZE);
	munmap(bar2, BAR0_SIZE);
	edu_close(&d);
	close(iommufd);
	return h_done();
}
