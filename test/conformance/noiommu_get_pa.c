// exec-args: --enable-unsafe-noiommu-mode
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_NOIOMMU_GET_PA (0x3b95, 40 bytes; noiommu.md §2): every row of the check table of
 * §2.1 in the kernel's order (the generic size checks, then EPERM, EOPNOTSUPP for flags and
 * reserved, EINVAL for length 0, EOVERFLOW, ENOENT for a bad IOAS or an unmapped start,
 * EOPNOTSUPP without a no-IOMMU domain), the appendix's test vectors, and the algorithm of §2.2:
 * the sub-page offset is kept, the result is capped by the input length, runs follow physical
 * contiguity page by page (one page on ordinary 4 KiB memory, whole huge pages on hugetlb memory)
 * and never cross into the next area (one MAP or COPY), even when physically contiguous.
 */
#include "harness.h"
#include "edu_helpers.h"

#define SZ_2M (2ULL << 20)

/* A bound and attached no-IOMMU device with a fresh IOAS. */
struct setup {
	int fd;
	__u32 ioas;
	struct edu_dev d;
};

static int setup(struct setup *s, int attach)
{
	s->d.fd = -1;
	s->fd = iommufd_open();
	if (s->fd < 0 || ioas_alloc(s->fd, &s->ioas))
		return -1;
	return edu_open(NOIOMMU_CDEV, s->fd, attach ? s->ioas : 0, &s->d);
}

static void teardown(struct setup *s)
{
	edu_close(&s->d);
	if (s->fd >= 0)
		close(s->fd);
}

/* 4 KiB anonymous memory (THP off), every page touched. */
static unsigned char *small_pages(size_t npages)
{
	unsigned char *p = h_mmap(npages * PAGE_SZ);

	madvise(p, npages * PAGE_SZ, MADV_NOHUGEPAGE);
	memset(p, 0x5c, npages * PAGE_SZ);
	return p;
}

/* A raw call with a chosen struct size (for the framing rows). */
static int get_pa_sized(int fd, __u32 size, __u32 ioas, __u64 iova, __u64 length,
			unsigned char tail_byte)
{
	union {
		struct iommu_ioas_noiommu_get_pa g;
		unsigned char raw[64];
	} u;

	memset(&u, 0, sizeof(u));
	u.g.size = size;
	u.g.ioas_id = ioas;
	u.g.iova = iova;
	u.g.length = length;
	u.raw[sizeof(u.g)] = tail_byte;
	return ioctl(fd, IOMMU_IOAS_NOIOMMU_GET_PA, &u);
}

TEST(ioctl_number_and_size)
{
	CHECK_EQ(IOMMU_IOAS_NOIOMMU_GET_PA, 0x3b95);
	CHECK_EQ(sizeof(struct iommu_ioas_noiommu_get_pa), 40);
}

/* The rows of noiommu.md §2.1, each also proving it is checked before the later ones. */
TEST(check_table_in_order)
{
	unsigned char *mem = small_pages(1);
	struct setup s;
	__u64 len, pa;

	REQUIRE_OK(setup(&s, 1));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, mem, PAGE_SZ, 0x10000));

	/* Generic layer first: size < 40 is EINVAL, a non-zero tail E2BIG; even without the
	 * capability, which the handler checks only after. */
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 0));
	CHECK_ERRNO(EINVAL, get_pa_sized(s.fd, 32, s.ioas, 0x10000, 1, 0));
	CHECK_ERRNO(E2BIG, get_pa_sized(s.fd, 48, s.ioas, 0x10000, 1, 1));
	/* 1. No CAP_SYS_RAWIO: EPERM, before flags, reserved, length, iova and the IOAS. */
	len = 0;
	CHECK_ERRNO(EPERM, get_pa_ex(s.fd, 999, 1, 1, U64_MAX_, &len, &pa));
	len = 1;
	CHECK_ERRNO(EPERM, get_pa(s.fd, s.ioas, 0x10000, &len, &pa));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 1));

	/* 2. flags or __reserved: EOPNOTSUPP, before length 0, EOVERFLOW and a bad IOAS. */
	len = 0;
	CHECK_ERRNO(EOPNOTSUPP, get_pa_ex(s.fd, 999, 1, 0, U64_MAX_, &len, &pa));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_ex(s.fd, 999, 0x80000000U, 0, U64_MAX_, &len, &pa));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_ex(s.fd, 999, 0, 1, U64_MAX_, &len, &pa));
	len = 1;
	CHECK_ERRNO(EOPNOTSUPP, get_pa_ex(s.fd, s.ioas, 1, 0, 0x10000, &len, &pa));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_ex(s.fd, s.ioas, 0, 1, 0x10000, &len, &pa));

	/* 3. length 0: EINVAL, before EOVERFLOW and a bad IOAS. */
	CHECK_ERRNO(EINVAL, get_pa_try(s.fd, 999, U64_MAX_, 0));
	CHECK_ERRNO(EINVAL, get_pa_try(s.fd, s.ioas, 0x10000, 0));

	/* 4. iova 2^64-1: EOVERFLOW, before a bad IOAS. 2^64-2 is just unmapped. */
	CHECK_ERRNO(EOVERFLOW, get_pa_try(s.fd, 999, U64_MAX_, 1));
	CHECK_ERRNO(EOVERFLOW, get_pa_try(s.fd, s.ioas, U64_MAX_, 1));
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.ioas, U64_MAX_ - 1, 1));

	/* 5. ioas_id not an IOAS: ENOENT, whatever it is. */
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, 999, 0x10000, 1));
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, 0, 0x10000, 1));
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.d.hwpt, 0x10000, 1));	/* the auto HWPT */
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.d.devid, 0x10000, 1));	/* the device */

	/* 6. No area at iova: ENOENT, even right next to one. */
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.ioas, 0x11000, 1));
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.ioas, 0xffff, 1));
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.ioas, 0, 1));

	/* 9. Success; the struct may be larger with a zero tail. */
	CHECK_OK(get_pa_try(s.fd, s.ioas, 0x10000, 1));
	CHECK_OK(get_pa_sized(s.fd, 48, s.ioas, 0x10000, 1, 0));
	CHECK_OK(get_pa_sized(s.fd, 40, s.ioas, 0x10000, 1, 0));
	teardown(&s);
	munmap(mem, PAGE_SZ);
}

/* 8. The area is not held by a no-IOMMU domain: EOPNOTSUPP. ENOENT (6) still comes first. */
TEST(no_noiommu_domain_is_eopnotsupp)
{
	unsigned char *mem = small_pages(2);
	struct setup s;
	__u32 pt;

	/* Bound but not attached: the IOAS has no domain at all, nothing is pinned. */
	REQUIRE_OK(setup(&s, 0));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, mem, 2 * PAGE_SZ, 0x10000));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(s.fd, s.ioas, 0x10000, 1));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(s.fd, s.ioas, 0x11fff, 1));
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.ioas, 0x12000, 1));

	/* Attached: it works, for maps made before and after the attach. */
	pt = s.ioas;
	REQUIRE_OK(vfio_attach(s.d.fd, &pt));
	CHECK_OK(get_pa_try(s.fd, s.ioas, 0x10000, 1));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, mem, PAGE_SZ, 0x20000));
	CHECK_OK(get_pa_try(s.fd, s.ioas, 0x20000, 1));

	/* Detached: the auto domain is gone, and with it the answer. */
	CHECK_OK(vfio_detach(s.d.fd));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(s.fd, s.ioas, 0x10000, 1));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(s.fd, s.ioas, 0x20000, 1));
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.ioas, 0x30000, 1));
	teardown(&s);
	munmap(mem, 2 * PAGE_SZ);
}

/* Replace moves the device (and its domain) to another IOAS: GET_PA follows. */
TEST(replace_moves_the_domain)
{
	unsigned char *mem = small_pages(1);
	struct setup s;
	__u32 b, pt;

	REQUIRE_OK(setup(&s, 1));
	REQUIRE_OK(ioas_alloc(s.fd, &b));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, mem, PAGE_SZ, 0x10000));
	REQUIRE_OK(ioas_map_fixed(s.fd, b, mem, PAGE_SZ, 0x10000));
	CHECK_OK(get_pa_try(s.fd, s.ioas, 0x10000, 1));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(s.fd, b, 0x10000, 1));
	pt = b;
	REQUIRE_OK(vfio_attach(s.d.fd, &pt));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(s.fd, s.ioas, 0x10000, 1));
	CHECK_OK(get_pa_try(s.fd, b, 0x10000, 1));
	teardown(&s);
	munmap(mem, PAGE_SZ);
}

/* HWPT_ALLOC with flags 0 for the no-IOMMU device: a domain without any attach. */
TEST(hwpt_alloc_gives_a_domain)
{
	unsigned char *mem = small_pages(1);
	struct setup s;
	__u32 hwpt;

	REQUIRE_OK(setup(&s, 0));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, mem, PAGE_SZ, 0x10000));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(s.fd, s.ioas, 0x10000, 1));
	CHECK_ERRNO(EOPNOTSUPP,
		    hwpt_alloc(s.fd, s.d.devid, s.ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt));
	CHECK_ERRNO(EOPNOTSUPP,
		    hwpt_alloc(s.fd, s.d.devid, s.ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &hwpt));
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc(s.fd, s.d.devid, s.ioas, IOMMU_HWPT_ALLOC_PASID, &hwpt));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(s.fd, s.ioas, 0x10000, 1));
	REQUIRE_OK(hwpt_alloc(s.fd, s.d.devid, s.ioas, 0, &hwpt));
	CHECK_OK(get_pa_try(s.fd, s.ioas, 0x10000, 1));
	CHECK_OK(iommu_destroy(s.fd, hwpt));
	CHECK_ERRNO(EOPNOTSUPP, get_pa_try(s.fd, s.ioas, 0x10000, 1));
	teardown(&s);
	munmap(mem, PAGE_SZ);
}

/* CAP_SYS_RAWIO is the caller's at the call, not the opener's: the fds were opened with it. */
TEST(cap_of_the_caller)
{
	unsigned char *mem = small_pages(1);
	struct setup s;
	pid_t pid;

	REQUIRE_OK(setup(&s, 1));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, mem, PAGE_SZ, 0x10000));
	CHECK_OK(get_pa_try(s.fd, s.ioas, 0x10000, 1));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 0));
	CHECK_ERRNO(EPERM, get_pa_try(s.fd, s.ioas, 0x10000, 1));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 1));
	CHECK_OK(get_pa_try(s.fd, s.ioas, 0x10000, 1));

	/* A child sharing the iommufd: EPERM once it drops the capability, fine before. */
	pid = h_fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		CHECK_OK(get_pa_try(s.fd, s.ioas, 0x10000, 1));
		CHECK_OK(cap_set_effective(CAP_SYS_RAWIO, 0));
		CHECK_ERRNO(EPERM, get_pa_try(s.fd, s.ioas, 0x10000, 1));
		CHILD_EXIT();
	}
	CHECK_EQ(h_wait(pid), 0);
	CHECK_OK(get_pa_try(s.fd, s.ioas, 0x10000, 1));
	teardown(&s);
	munmap(mem, PAGE_SZ);
}

/* GET_PA ignores protection: a read-only map answers like a writable one. */
TEST(read_only_map)
{
	unsigned char *mem = small_pages(1);
	struct setup s;
	__u64 iova = 0x10000, len = 0x100000, pa = 0;

	REQUIRE_OK(setup(&s, 1));
	REQUIRE_OK(ioas_map(s.fd, s.ioas, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE, mem,
			    PAGE_SZ, &iova));
	CHECK_OK(get_pa(s.fd, s.ioas, 0x10000, &len, &pa));
	CHECK_EQ(len, PAGE_SZ);
	CHECK_EQ(pa % PAGE_SZ, 0);
	teardown(&s);
	munmap(mem, PAGE_SZ);
}

/*
 * Ordinary 4 KiB memory: one page per call (docs/decisions.md 8: the emulator hands out frames
 * that are never adjacent; the kernel usually gives one-page runs too). Offsets, caps, the area
 * end, and the driver's walk of noiommu.md.
 */
TEST(small_pages_offset_cap_and_walk)
{
	const size_t n = 8;
	unsigned char *mem = small_pages(n);
	__u64 base = (uintptr_t)mem;	/* IOVA = VA, as drivers do */
	__u64 pas[8], len = 0, pa = 0, off, covered;
	struct setup s;
	size_t i, j;

	REQUIRE_OK(setup(&s, 1));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, mem, n * PAGE_SZ, base));

	for (i = 0; i < n; i++) {
		len = U64_MAX_;	/* any non-zero cap */
		REQUIRE_OK(get_pa(s.fd, s.ioas, base + i * PAGE_SZ, &len, &pas[i]));
		CHECK_EQ(len, PAGE_SZ);
		CHECK_EQ(pas[i] % PAGE_SZ, 0);
		for (j = 0; j < i; j++)
			CHECK(pas[j] != pas[i]);
	}
	/* Stable while pinned. */
	len = 1;
	CHECK_OK(get_pa(s.fd, s.ioas, base, &len, &pa));
	CHECK_EQ(pa, pas[0]);

	/* Sub-page offset kept; an uncapped run ends on a page boundary. */
	len = 0x100000;
	CHECK_OK(get_pa(s.fd, s.ioas, base + 0x123, &len, &pa));
	CHECK_EQ(pa, pas[0] + 0x123);
	CHECK_EQ(len, PAGE_SZ - 0x123);
	CHECK_EQ((pa + len) % PAGE_SZ, 0);
	len = 0x100000;
	CHECK_OK(get_pa(s.fd, s.ioas, base + 3 * PAGE_SZ + 0xfff, &len, &pa));
	CHECK_EQ(pa, pas[3] + 0xfff);
	CHECK_EQ(len, 1);
	/* Capped: anywhere, even inside the first page. */
	len = 0x10;
	CHECK_OK(get_pa(s.fd, s.ioas, base + 0x80, &len, &pa));
	CHECK_EQ(pa, pas[0] + 0x80);
	CHECK_EQ(len, 0x10);
	len = 1;
	CHECK_OK(get_pa(s.fd, s.ioas, base + 5 * PAGE_SZ, &len, &pa));
	CHECK_EQ(len, 1);
	CHECK_EQ(pa, pas[5]);
	/* The last page of the area; the first byte after it is unmapped. */
	len = 0x100000;
	CHECK_OK(get_pa(s.fd, s.ioas, base + (n - 1) * PAGE_SZ, &len, &pa));
	CHECK_EQ(len, PAGE_SZ);
	CHECK_EQ(pa, pas[n - 1]);
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.ioas, base + n * PAGE_SZ, 1));

	/* The scatter-gather walk of noiommu.md, from an odd offset: it covers the buffer. */
	covered = 0;
	for (off = 0x40; off < n * PAGE_SZ; off += len) {
		len = n * PAGE_SZ - off;
		REQUIRE_OK(get_pa(s.fd, s.ioas, base + off, &len, &pa));
		CHECK(len >= 1 && len <= n * PAGE_SZ - off);
		CHECK_EQ(pa, pas[off / PAGE_SZ] + off % PAGE_SZ);
		covered += len;
	}
	CHECK_EQ(covered, n * PAGE_SZ - 0x40);
	teardown(&s);
	munmap(mem, n * PAGE_SZ);
}

/* Two maps (two areas) back to back, and a COPY (areas of its own over the same pages). */
TEST(never_across_areas_small_pages)
{
	unsigned char *mem = small_pages(2);
	struct setup s;
	__u64 len, pa0 = 0, pa1 = 0, pa = 0, dst;

	REQUIRE_OK(setup(&s, 1));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, mem, PAGE_SZ, 0x100000));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, mem + PAGE_SZ, PAGE_SZ, 0x101000));
	len = 0x2000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x100000, &len, &pa0));
	CHECK_EQ(len, PAGE_SZ);
	len = 0x2000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x100800, &len, &pa));
	CHECK_EQ(len, 0x800);
	len = 0x2000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x101000, &len, &pa1));
	CHECK_EQ(len, PAGE_SZ);

	/* COPY shares the pinned pages: the same physical addresses at the new IOVAs. */
	dst = 0x200000;
	REQUIRE_OK(ioas_copy(s.fd, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, s.ioas, s.ioas, 0x2000,
			     &dst, 0x100000));
	len = 0x2000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x200000, &len, &pa));
	CHECK_EQ(pa, pa0);
	CHECK_EQ(len, PAGE_SZ);
	len = 0x2000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x201000, &len, &pa));
	CHECK_EQ(pa, pa1);
	/* Unmapping the source keeps the copy's pages pinned and their addresses. */
	CHECK_OK(ioas_unmap(s.fd, s.ioas, 0x100000, 0x2000, NULL));
	len = 1;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x200000, &len, &pa));
	CHECK_EQ(pa, pa0);
	teardown(&s);
	munmap(mem, 2 * PAGE_SZ);
}

/* 2 MiB of hugetlb memory, or NULL with a reason. */
static void *huge_2m(char *why, size_t whylen)
{
	void *p = mmap(NULL, SZ_2M, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	int e1, fd;

	if (p != MAP_FAILED)
		return p;
	e1 = errno;
	fd = memfd_create("get-pa-huge", MFD_CLOEXEC | MFD_HUGETLB);
	if (fd >= 0) {
		if (ftruncate(fd, SZ_2M) == 0) {
			p = mmap(NULL, SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			if (p != MAP_FAILED) {
				close(fd);
				return p;
			}
		}
		snprintf(why, whylen,
			 "no hugepages: mmap(MAP_HUGETLB): %s; memfd_create(MFD_HUGETLB) mapping: %s",
			 strerror(e1), strerror(errno));
		close(fd);
		return NULL;
	}
	snprintf(why, whylen, "no hugepages: mmap(MAP_HUGETLB): %s; memfd_create(MFD_HUGETLB): %s",
		 strerror(e1), strerror(errno));
	return NULL;
}

/*
 * The appendix's vectors: a 128 KiB map at IOVA 0x200000 backed by one physically contiguous
 * huge page (its physical address `base` depends on the machine), plus whole-huge-page runs and
 * two back-to-back maps of one huge page.
 */
TEST(hugepage_vectors)
{
	char why[256] = "";
	unsigned char *hp = huge_2m(why, sizeof(why));
	struct setup s;
	__u64 len, pa = 0, base = 0, first = 0;

	if (!hp)
		SKIP("%s", why);
	memset(hp, 0x3c, SZ_2M);
	REQUIRE_OK(setup(&s, 1));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, hp, 0x20000, 0x200000));

	len = 0x100000;
	REQUIRE_OK(get_pa(s.fd, s.ioas, 0x200000, &len, &base));
	CHECK_EQ(len, 0x20000);			/* truncated at the area end */
	CHECK_EQ(base % SZ_2M, 0);		/* a huge page is physically aligned */
	len = 0x100000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x200080, &len, &pa));
	CHECK_EQ(pa, base + 0x80);		/* sub-page offset; the end stays page aligned */
	CHECK_EQ(len, 0x1ff80);
	len = 0x1000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x200000, &len, &pa));
	CHECK_EQ(pa, base);			/* capped */
	CHECK_EQ(len, 0x1000);
	len = 0x10;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x200080, &len, &pa));
	CHECK_EQ(pa, base + 0x80);		/* cap inside the first page */
	CHECK_EQ(len, 0x10);
	len = 0x100000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x21f000, &len, &pa));
	CHECK_EQ(pa, base + 0x1f000);		/* last page */
	CHECK_EQ(len, 0x1000);
	CHECK_ERRNO(ENOENT, get_pa_try(s.fd, s.ioas, 0x220000, 0x100000));	/* adjacent */
	CHECK_ERRNO(EINVAL, get_pa_try(s.fd, s.ioas, 0x200000, 0));
	len = 0x100000;
	CHECK_ERRNO(EOPNOTSUPP, get_pa_ex(s.fd, s.ioas, 1, 0, 0x200000, &len, &pa));

	/* The whole huge page as one area: one run of 2 MiB, from anywhere inside it. */
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, hp, SZ_2M, 0x40000000));
	len = 2 * SZ_2M;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x40000000, &len, &pa));
	CHECK_EQ(pa, base);
	CHECK_EQ(len, SZ_2M);
	len = 2 * SZ_2M;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x40012345, &len, &pa));
	CHECK_EQ(pa, base + 0x12345);
	CHECK_EQ(len, SZ_2M - 0x12345);
	len = 0x3000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x40001000, &len, &pa));
	CHECK_EQ(len, 0x3000);

	/* Two maps back to back over contiguous memory: still two areas, two answers. */
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, hp, 0x10000, 0x400000));
	REQUIRE_OK(ioas_map_fixed(s.fd, s.ioas, hp + 0x10000, 0x10000, 0x410000));
	len = 0x100000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x400000, &len, &first));
	CHECK_EQ(len, 0x10000);
	len = 0x100000;
	CHECK_OK(get_pa(s.fd, s.ioas, 0x410000, &len, &pa));
	CHECK_EQ(len, 0x10000);
	CHECK_EQ(pa, first + 0x10000);		/* physically contiguous all the same */
	teardown(&s);
	munmap(hp, SZ_2M);
}

int main(void)
{
	h_init();
	if (!cap_effective(CAP_SYS_RAWIO)) {
		printf("Bail out! these checks need CAP_SYS_RAWIO (open and GET_PA)\n");
		return 2;
	}
	RUN(ioctl_number_and_size);
	RUN(check_table_in_order);
	RUN(no_noiommu_domain_is_eopnotsupp);
	RUN(replace_moves_the_domain);
	RUN(hwpt_alloc_gives_a_domain);
	RUN(cap_of_the_caller);
	RUN(read_only_map);
	RUN(small_pages_offset_cap_and_walk);
	RUN(never_across_areas_small_pages);
	RUN(hugepage_vectors);
	return h_done();
}
