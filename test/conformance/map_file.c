/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_MAP_FILE of a memfd (issue 15): its pages are pinned by file offset, so the pages a
 * domain maps are the ones every mapping of the file shows (MD_CHECK_MAP and MD_CHECK_REFS agree
 * through two mappings), and an edu DMA into them is seen through both mappings and by read().
 * A file whose pages cannot be pinned maps, but fails with EINVAL once a domain needs it. The
 * pages outlive the memfd's fd but not the iommufd. IOMMU_IOAS_CHANGE_PROCESS moves file areas
 * to another process, all or nothing.
 */
#include "harness.h"
#include "edu_helpers.h"
#include "selftest_helpers.h"

#define NPAGES 16
#define LEN (NPAGES * PAGE_SZ)
#define IOVA MOCK_APERTURE_START

static int mock_domain(int fd, __u32 ioas, __u32 *hwpt)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas };
	int rc = test_cmd(fd, &cmd);

	if (hwpt)
		*hwpt = cmd.mock_domain.out_hwpt_id;
	return rc;
}

static int map_file_prot(int fd, __u32 ioas, int mfd, __u64 start, __u64 length, __u64 iova,
			 __u32 prot)
{
	struct iommu_ioas_map_file cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | prot,
		.ioas_id = ioas,
		.fd = mfd,
		.start = start,
		.length = length,
		.iova = iova,
	};

	return ioctl(fd, IOMMU_IOAS_MAP_FILE, &cmd);
}

static int map_file(int fd, __u32 ioas, int mfd, __u64 start, __u64 length, __u64 iova)
{
	return map_file_prot(fd, ioas, mfd, start, length, iova, MAP_RW);
}

/* Read-only, for files not open for writing. */
static int map_file_ro(int fd, __u32 ioas, int mfd, __u64 iova)
{
	return map_file_prot(fd, ioas, mfd, 0, PAGE_SZ, iova, IOMMU_IOAS_MAP_READABLE);
}

static int change_process(int fd)
{
	struct iommu_ioas_change_process cmd = { .size = sizeof(cmd) };

	return ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &cmd);
}

/* A memfd of LEN bytes mapped shared twice. */
struct memfd {
	int fd;
	unsigned char *a, *b;
};

static int memfd_open(struct memfd *m)
{
	m->fd = memfd_create("map_file", MFD_CLOEXEC);
	if (m->fd < 0 || ftruncate(m->fd, LEN))
		return -1;
	m->a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	m->b = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	return m->a == MAP_FAILED || m->b == MAP_FAILED ? -1 : 0;
}

static void memfd_close(struct memfd *m)
{
	munmap(m->a, LEN);
	munmap(m->b, LEN);
	if (m->fd >= 0)
		close(m->fd);
}

/* An iommufd with an IOAS; SKIP without the test interface. */
#define OPEN_IOAS(fd, ioas)                                                        \
	do {                                                                       \
		struct iommu_test_cmd _p = { .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, \
					     .memory_limit = { .limit = 65536 } };    \
		(fd) = iommufd_open();                                             \
		REQUIRE((fd) >= 0);                                                \
		REQUIRE_OK(ioas_alloc((fd), &(ioas)));                             \
		if (test_cmd((fd), &_p) && errno == ENOTTY)                        \
			SKIP("no IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST)");           \
	} while (0)

TEST(one_pin_seen_through_two_mappings)
{
	struct memfd m;
	__u32 ioas, hwpt;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(memfd_open(&m));
	memset(m.a, 0x11, LEN);
	REQUIRE_OK(mock_domain(fd, ioas, &hwpt));
	CHECK_OK(check_refs_of(fd, m.a, LEN, 0));
	REQUIRE_OK(map_file(fd, ioas, m.fd, 0, LEN, IOVA));
	CHECK_OK(check_refs_of(fd, m.a, LEN, 1));
	CHECK_OK(check_refs_of(fd, m.b, LEN, 1));
	CHECK_OK(check_map(fd, hwpt, IOVA, LEN, m.a));
	CHECK_OK(check_map(fd, hwpt, IOVA, LEN, m.b));
	CHECK_ERRNO(EINVAL, check_map(fd, hwpt, IOVA, PAGE_SZ, m.a + PAGE_SZ));

	/* A part of the file, from an offset: the IOVA maps the file's pages 4..7. */
	REQUIRE_OK(map_file(fd, ioas, m.fd, 4 * PAGE_SZ, 4 * PAGE_SZ, IOVA + LEN));
	CHECK_OK(check_map(fd, hwpt, IOVA + LEN, 4 * PAGE_SZ, m.b + 4 * PAGE_SZ));
	CHECK_OK(check_refs_of(fd, m.a + 4 * PAGE_SZ, 4 * PAGE_SZ, 2));
	CHECK_OK(check_refs_of(fd, m.a, 4 * PAGE_SZ, 1));
	CHECK_OK(ioas_unmap(fd, ioas, IOVA + LEN, 4 * PAGE_SZ, NULL));
	CHECK_OK(check_refs_of(fd, m.a, LEN, 1));

	/* The pages hold the file: closing its fd changes nothing. */
	close(m.fd);
	m.fd = -1;
	CHECK_OK(check_refs_of(fd, m.b, LEN, 1));
	CHECK_OK(ioas_unmap(fd, ioas, IOVA, LEN, NULL));
	CHECK_OK(check_refs_of(fd, m.a, LEN, 0));
	memfd_close(&m);
	close(fd);
}

TEST(edu_dma_lands_in_the_file)
{
	struct edu_dev d = { .fd = -1 };
	struct memfd m;
	unsigned char back[64];
	__u32 ioas;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(memfd_open(&m));
	REQUIRE_OK(map_file(fd, ioas, m.fd, 0, LEN, IOVA));
	if (edu_open("/dev/vfio/devices/vfio0", fd, ioas, &d))
		SKIP("no edu device");
	REQUIRE_OK(edu_set_bus_master(d.fd, 1));
	/* Attaching the device pinned the file's pages. */
	CHECK_OK(check_refs_of(fd, m.a, LEN, 1));
	fill_pattern(m.a, PAGE_SZ, 42);
	REQUIRE_OK(edu_dma_in(d.fd, IOVA, 0, PAGE_SZ));
	REQUIRE_OK(edu_dma_out(d.fd, 0, IOVA + 5 * PAGE_SZ, PAGE_SZ));
	CHECK(memcmp(m.b + 5 * PAGE_SZ, m.a, PAGE_SZ) == 0);
	CHECK(memcmp(m.a + 5 * PAGE_SZ, m.a, PAGE_SZ) == 0);
	REQUIRE(pread(m.fd, back, sizeof(back), 5 * PAGE_SZ) == (ssize_t)sizeof(back));
	CHECK(memcmp(back, m.a, sizeof(back)) == 0);
	edu_close(&d);
	CHECK_OK(check_refs_of(fd, m.a, LEN, 0));
	memfd_close(&m);
	close(fd);
}

TEST(files_that_cannot_be_pinned)
{
	__u32 ioas, hwpt;
	int fd, status_fd;

	OPEN_IOAS(fd, ioas);
	/* A procfs file is neither shmem nor hugetlbfs wherever the program runs (its own binary
	 * may be: the Linux lane's guest runs programs from a tmpfs initramfs). */
	status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	REQUIRE(status_fd >= 0);
	CHECK_ERRNO(EBADF, map_file_ro(fd, ioas, -1, IOVA));
	CHECK_ERRNO(EBADF, map_file_ro(fd, ioas, 999, IOVA));
	CHECK_ERRNO(EINVAL, map_file_prot(fd, ioas, status_fd, 0, 0, IOVA, IOMMU_IOAS_MAP_READABLE));
	/* With no domain nothing is pinned, so any file maps... */
	REQUIRE_OK(map_file_ro(fd, ioas, status_fd, IOVA));
	/* ...and a domain that needs its pages cannot have them. */
	CHECK_ERRNO(EINVAL, mock_domain(fd, ioas, &hwpt));
	CHECK_OK(ioas_unmap(fd, ioas, IOVA, PAGE_SZ, NULL));
	REQUIRE_OK(mock_domain(fd, ioas, &hwpt));
	/* With the domain there, the map itself fails. An iommufd is no file to pin either. */
	CHECK_ERRNO(EINVAL, map_file_ro(fd, ioas, status_fd, IOVA));
	CHECK_ERRNO(EINVAL, map_file_ro(fd, ioas, fd, IOVA));
	close(status_fd);
	close(fd);
}

TEST(change_process_moves_file_areas_only)
{
	struct memfd m;
	unsigned char *anon;
	__u32 ioas;
	pid_t pid;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(memfd_open(&m));
	REQUIRE_OK(mock_domain(fd, ioas, NULL));
	REQUIRE_OK(map_file(fd, ioas, m.fd, 0, LEN, IOVA));
	/* With only file areas, any process may take the accounting. */
	CHECK_OK(change_process(fd));
	pid = h_fork();
	if (pid == 0) {
		CHECK_OK(change_process(fd));
		CHILD_EXIT();
	}
	CHECK_EQ(h_wait(pid), 0);
	CHECK_OK(check_refs_of(fd, m.a, LEN, 1));

	/* One area of process memory, and nothing moves. */
	anon = h_mmap(PAGE_SZ);
	REQUIRE_OK(ioas_map_fixed(fd, ioas, anon, PAGE_SZ, IOVA + LEN));
	CHECK_ERRNO(EINVAL, change_process(fd));
	CHECK_OK(ioas_unmap(fd, ioas, IOVA + LEN, PAGE_SZ, NULL));
	CHECK_OK(change_process(fd));
	{
		struct iommu_ioas_change_process cmd = { .size = sizeof(cmd), .__reserved = 1 };

		CHECK_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &cmd));
	}
	munmap(anon, PAGE_SZ);
	memfd_close(&m);
	close(fd);
}

/* A pin never outlives the iommufd. */
TEST(close_drops_file_pins)
{
	struct memfd m;
	__u32 ioas;
	int fd, fd2;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(memfd_open(&m));
	REQUIRE_OK(mock_domain(fd, ioas, NULL));
	REQUIRE_OK(map_file(fd, ioas, m.fd, 0, LEN, IOVA));
	CHECK_OK(check_refs_of(fd, m.b, LEN, 1));
	CHECK_OK(close(fd));
	fd2 = iommufd_open();
	REQUIRE(fd2 >= 0);
	CHECK_OK(check_refs_of(fd2, m.a, LEN, 0));
	CHECK_OK(check_refs_of(fd2, m.b, LEN, 0));
	close(fd2);
	memfd_close(&m);
}

int main(void)
{
	h_init();
	RUN(one_pin_seen_through_two_mappings);
	RUN(edu_dma_lands_in_the_file);
	RUN(files_that_cannot_be_pinned);
	RUN(change_process_moves_file_areas_only);
	RUN(close_drops_file_pins);
	return h_done();
}
