/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_TEST_CMD's access objects (issue 15): CREATE_ACCESS returns a new fd for an in-kernel
 * access to an IOAS, and the other access ops name that fd. ACCESS_RW reads and writes the
 * memory an IOAS maps, with no domain and no pin, at any alignment, on the fast path and the slow
 * one; ACCESS_PAGES pins a page range until DESTROY_ACCESS_PAGES, an unmap of it (which the
 * access is told of, and lets go) or the fd's close; ACCESS_REPLACE_IOAS moves the access. The
 * pin count of the buffer is checked with MD_CHECK_REFS after every step, and reads 0 from a new
 * context once everything is closed.
 */
#include "harness.h"
#include "selftest_helpers.h"

#include <sys/mman.h>

#define NPAGES 8
#define BUF_SIZE (NPAGES * PAGE_SZ)
#define IOVA MOCK_APERTURE_START

static unsigned char *g_buf;

#define CHECK_REFS(fd, refs) CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, refs))

static int create_access(int fd, __u32 ioas, __u32 flags, int *access_fd)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_CREATE_ACCESS,
		.id = ioas,
		.create_access = { .flags = flags },
	};
	int rc = test_cmd(fd, &cmd);

	if (!rc)
		*access_fd = (int)cmd.create_access.out_access_fd;
	return rc;
}

static int access_rw(int fd, int access_fd, __u64 iova, void *buf, __u64 length, __u32 flags)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_ACCESS_RW,
		.id = (__u32)access_fd,
		.access_rw = { .iova = iova, .length = length, .uptr = (uintptr_t)buf, .flags = flags },
	};

	return test_cmd(fd, &cmd);
}

static int access_pages(int fd, int access_fd, __u64 iova, __u64 length, const void *uptr,
			__u32 flags, __u32 *id)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_ACCESS_PAGES,
		.id = (__u32)access_fd,
		.access_pages = { .flags = flags, .iova = iova, .length = length,
				  .uptr = (uintptr_t)uptr },
	};
	int rc = test_cmd(fd, &cmd);

	if (!rc && id)
		*id = cmd.access_pages.out_access_pages_id;
	return rc;
}

static int destroy_access_pages(int fd, int access_fd, __u32 id)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
		.id = (__u32)access_fd,
		.destroy_access_pages = { .access_pages_id = id },
	};

	return test_cmd(fd, &cmd);
}

static int access_replace_ioas(int fd, int access_fd, __u32 ioas)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_ACCESS_REPLACE_IOAS,
		.id = (__u32)access_fd,
		.access_replace_ioas = { .ioas_id = ioas },
	};

	return test_cmd(fd, &cmd);
}

/* A fresh iommufd and IOAS with g_buf (all 0x5a) mapped at IOVA; SKIP without the test cmd. */
#define OPEN_IOAS(fd, ioas)                                        \
	do {                                                       \
		memset(g_buf, 0x5a, BUF_SIZE);                     \
		OPEN_MOCK_IOAS(fd, ioas, g_buf, BUF_SIZE);         \
	} while (0)

/* After everything is closed no pin is left, as a new context sees it. */
#define CHECK_NO_PINS_LEFT()                                               \
	do {                                                               \
		int _fd = iommufd_open();                                  \
		REQUIRE(_fd >= 0);                                         \
		CHECK_REFS(_fd, 0);                                        \
		close(_fd);                                                \
	} while (0)

TEST(create_access_errors)
{
	__u32 ioas, next;
	int fd, afd = -1;

	OPEN_IOAS(fd, ioas);
	CHECK_ERRNO(EOPNOTSUPP, create_access(fd, ioas, 2, &afd));
	CHECK_ERRNO(ENOENT, create_access(fd, 9999, 0, &afd));
	CHECK_ERRNO(ENOENT, create_access(fd, 0, 0, &afd));
	REQUIRE_OK(create_access(fd, ioas, 0, &afd));
	CHECK(afd > fd);
	/* A new fd, close-on-exec, not the iommufd. */
	CHECK_EQ(fcntl(afd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	/* The access is an object of the context (id 2), held by its driver: DESTROY is EBUSY,
	 * and the IOAS it is attached to is in use. */
	REQUIRE_OK(ioas_alloc(fd, &next));
	CHECK_EQ(next, ioas + 2);
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, ioas + 1));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, ioas));
	CHECK_REFS(fd, 0);
	CHECK_OK(close(afd));
	/* Closing the fd destroyed the access: its id and the IOAS are free again. */
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, ioas + 1));
	CHECK_OK(iommu_destroy(fd, ioas));
	close(fd);
	CHECK_NO_PINS_LEFT();
}

TEST(access_rw_no_domain)
{
	unsigned char tmp[3 * PAGE_SZ];
	__u32 ioas;
	int fd, afd, i;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(create_access(fd, ioas, 0, &afd));
	/* Read across a page boundary at an odd offset: g_buf's bytes, nothing pinned. */
	for (i = 0; i < NPAGES; i++)
		memset(g_buf + i * PAGE_SZ, 0x10 + i, PAGE_SZ);
	memset(tmp, 0, sizeof(tmp));
	CHECK_OK(access_rw(fd, afd, IOVA + PAGE_SZ - 3, tmp, 7, 0));
	CHECK_EQ(tmp[0], 0x10);
	CHECK_EQ(tmp[2], 0x10);
	CHECK_EQ(tmp[3], 0x11);
	CHECK_EQ(tmp[6], 0x11);
	CHECK_EQ(tmp[7], 0);
	CHECK_REFS(fd, 0);
	/* Write through the IOAS: it lands in g_buf. */
	memset(tmp, 0xa1, sizeof(tmp));
	CHECK_OK(access_rw(fd, afd, IOVA + 2 * PAGE_SZ + 100, tmp, 2 * PAGE_SZ, MOCK_ACCESS_RW_WRITE));
	CHECK_EQ(g_buf[2 * PAGE_SZ + 99], 0x12);
	CHECK_EQ(g_buf[2 * PAGE_SZ + 100], 0xa1);
	CHECK_EQ(g_buf[4 * PAGE_SZ + 99], 0xa1);
	CHECK_EQ(g_buf[4 * PAGE_SZ + 100], 0x14);
	/* The slow path (as from another process) reads and writes the same memory. */
	memset(tmp, 0xb2, sizeof(tmp));
	CHECK_OK(access_rw(fd, afd, IOVA + 5 * PAGE_SZ, tmp, 3 * PAGE_SZ,
			   MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH));
	CHECK_EQ(g_buf[5 * PAGE_SZ], 0xb2);
	CHECK_EQ(g_buf[BUF_SIZE - 1], 0xb2);
	g_buf[6 * PAGE_SZ + 1] = 0x77;
	memset(tmp, 0, sizeof(tmp));
	CHECK_OK(access_rw(fd, afd, IOVA + 6 * PAGE_SZ + 1, tmp, 1, MOCK_ACCESS_RW_SLOW_PATH));
	CHECK_EQ(tmp[0], 0x77);
	CHECK_OK(access_rw(fd, afd, IOVA + 4 * PAGE_SZ, tmp, 2 * PAGE_SZ, MOCK_ACCESS_RW_SLOW_PATH));
	CHECK_EQ(tmp[0], 0xa1);
	CHECK_EQ(tmp[100], 0x14);
	CHECK_EQ(tmp[PAGE_SZ], 0xb2);
	CHECK_REFS(fd, 0);
	CHECK_OK(close(afd));
	close(fd);
	CHECK_NO_PINS_LEFT();
}

TEST(access_rw_errors)
{
	unsigned char tmp[PAGE_SZ];
	__u32 ioas, ioas2;
	__u64 iova;
	int fd, afd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(create_access(fd, ioas, 0, &afd));
	CHECK_ERRNO(EOPNOTSUPP, access_rw(fd, afd, IOVA, tmp, 8, 2));
	CHECK_ERRNO(EOPNOTSUPP, access_rw(fd, afd, IOVA, tmp, 8, 1U << 3));
	CHECK_ERRNO(ENOMEM, access_rw(fd, afd, IOVA, tmp, (16ULL << 20) + 1, 0));
	/* id must be an access fd: not the iommufd, not a closed fd. */
	CHECK_ERRNO(EBADFD, access_rw(fd, fd, IOVA, tmp, 8, 0));
	CHECK_ERRNO(EBADFD, access_rw(fd, 1000, IOVA, tmp, 8, 0));
	CHECK_ERRNO(EINVAL, access_rw(fd, afd, IOVA, tmp, 0, 0));
	CHECK_ERRNO(EOVERFLOW, access_rw(fd, afd, U64_MAX_ - 3, tmp, 8, 0));
	/* Nothing mapped there, or the range runs past the end of the mapping. */
	CHECK_ERRNO(ENOENT, access_rw(fd, afd, IOVA - PAGE_SZ, tmp, 8, 0));
	CHECK_ERRNO(ENOENT, access_rw(fd, afd, IOVA + BUF_SIZE - 4, tmp, 8, 0));
	/* The user buffer is bad: EFAULT, and nothing is written to the IOAS. */
	g_buf[0] = 0x33;
	CHECK_ERRNO(EFAULT, access_rw(fd, afd, IOVA, h_unmapped_addr(), 8, MOCK_ACCESS_RW_WRITE));
	CHECK_EQ(g_buf[0], 0x33);
	CHECK_ERRNO(EFAULT, access_rw(fd, afd, IOVA, h_readonly_page(), 8, 0));
	/* A read-only mapping refuses writes; a write-only one refuses reads. */
	REQUIRE_OK(ioas_alloc(fd, &ioas2));
	iova = IOVA;
	REQUIRE_OK(ioas_map(fd, ioas2, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE, g_buf,
			    PAGE_SZ, &iova));
	iova = IOVA + PAGE_SZ;
	REQUIRE_OK(ioas_map(fd, ioas2, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE,
			    g_buf + PAGE_SZ, PAGE_SZ, &iova));
	REQUIRE_OK(access_replace_ioas(fd, afd, ioas2));
	CHECK_OK(access_rw(fd, afd, IOVA, tmp, 8, 0));
	CHECK_ERRNO(EPERM, access_rw(fd, afd, IOVA, tmp, 8, MOCK_ACCESS_RW_WRITE));
	CHECK_ERRNO(EPERM, access_rw(fd, afd, IOVA + PAGE_SZ, tmp, 8, 0));
	CHECK_OK(access_rw(fd, afd, IOVA + PAGE_SZ, tmp, 8, MOCK_ACCESS_RW_WRITE));
	/* Across the two areas, one of which refuses. */
	CHECK_ERRNO(EPERM, access_rw(fd, afd, IOVA + PAGE_SZ - 4, tmp, 8, 0));
	CHECK_ERRNO(ENOENT, access_replace_ioas(fd, afd, 9999));
	CHECK_ERRNO(EBADFD, access_replace_ioas(fd, fd, ioas));
	CHECK_REFS(fd, 0);
	CHECK_OK(close(afd));
	close(fd);
	CHECK_NO_PINS_LEFT();
}

TEST(access_pages_pin_and_unpin)
{
	__u32 ioas, id1, id2, id3;
	int fd, afd, nopin;
	unsigned char *other = h_mmap(2 * PAGE_SZ);

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(create_access(fd, ioas, 0, &nopin));
	CHECK_ERRNO(EOPNOTSUPP, access_pages(fd, nopin, IOVA, PAGE_SZ, g_buf, 0, &id1));
	CHECK_OK(close(nopin));
	REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
	CHECK_ERRNO(EOPNOTSUPP, access_pages(fd, afd, IOVA, PAGE_SZ, g_buf, 2, &id1));
	CHECK_ERRNO(ENOMEM, access_pages(fd, afd, IOVA, (16ULL << 20) + PAGE_SZ, g_buf, 0, &id1));
	CHECK_ERRNO(EBADFD, access_pages(fd, fd, IOVA, PAGE_SZ, g_buf, 0, &id1));
	CHECK_ERRNO(EINVAL, access_pages(fd, afd, IOVA, 0, g_buf, 0, &id1));
	CHECK_ERRNO(EINVAL, access_pages(fd, afd, IOVA + 8, PAGE_SZ, g_buf + 8, 0, &id1));
	CHECK_ERRNO(ENOENT, access_pages(fd, afd, IOVA - PAGE_SZ, PAGE_SZ, g_buf, 0, &id1));
	CHECK_ERRNO(ENOENT, access_pages(fd, afd, IOVA, BUF_SIZE + PAGE_SZ, g_buf, 0, &id1));
	/* uptr must be where the pinned pages are: other memory is EBADE, a hole EFAULT. */
	CHECK_ERRNO(EBADE, access_pages(fd, afd, IOVA, 2 * PAGE_SZ, other, 0, &id1));
	CHECK_ERRNO(EFAULT, access_pages(fd, afd, IOVA, PAGE_SZ, h_unmapped_addr(), 0, &id1));
	CHECK_REFS(fd, 0);

	/* Two pages pinned: one pin each, the rest of the buffer untouched. */
	REQUIRE_OK(access_pages(fd, afd, IOVA + PAGE_SZ, 2 * PAGE_SZ, g_buf + PAGE_SZ,
				MOCK_FLAGS_ACCESS_WRITE, &id1));
	CHECK_OK(check_refs_of(fd, g_buf + PAGE_SZ, 2 * PAGE_SZ, 1));
	CHECK_OK(check_refs_of(fd, g_buf, PAGE_SZ, 0));
	CHECK_OK(check_refs_of(fd, g_buf + 3 * PAGE_SZ, 5 * PAGE_SZ, 0));
	/* The same range again, and an overlapping one: still one pin a page. */
	REQUIRE_OK(access_pages(fd, afd, IOVA + PAGE_SZ, 2 * PAGE_SZ, NULL, 0, &id2));
	REQUIRE_OK(access_pages(fd, afd, IOVA + 2 * PAGE_SZ, 2 * PAGE_SZ, g_buf + 2 * PAGE_SZ, 0,
				&id3));
	CHECK(id1 != id2 && id2 != id3 && id1 != id3);
	CHECK_OK(check_refs_of(fd, g_buf + PAGE_SZ, 3 * PAGE_SZ, 1));
	CHECK_OK(destroy_access_pages(fd, afd, id1));
	CHECK_ERRNO(ENOENT, destroy_access_pages(fd, afd, id1));
	CHECK_OK(check_refs_of(fd, g_buf + PAGE_SZ, 3 * PAGE_SZ, 1));
	CHECK_OK(destroy_access_pages(fd, afd, id2));
	CHECK_OK(check_refs_of(fd, g_buf + PAGE_SZ, PAGE_SZ, 0));
	CHECK_OK(check_refs_of(fd, g_buf + 2 * PAGE_SZ, 2 * PAGE_SZ, 1));
	CHECK_ERRNO(EBADFD, destroy_access_pages(fd, fd, id3));
	/* The fd's close drops what it still pins. */
	CHECK_OK(close(afd));
	CHECK_REFS(fd, 0);
	close(fd);
	CHECK_NO_PINS_LEFT();
}

TEST(unmap_notifies_the_access)
{
	__u64 unmapped = 0;
	__u32 ioas, id;
	int fd, afd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
	REQUIRE_OK(access_pages(fd, afd, IOVA, 4 * PAGE_SZ, g_buf, 0, &id));
	CHECK_OK(check_refs_of(fd, g_buf, 4 * PAGE_SZ, 1));
	/* An unmap of part of the area is refused before any access is asked. */
	CHECK_ERRNO(ENOENT, ioas_unmap(fd, ioas, IOVA, PAGE_SZ, &unmapped));
	CHECK_OK(check_refs_of(fd, g_buf, 4 * PAGE_SZ, 1));
	/* The access pins the area: the unmap asks it to let go, and then succeeds. */
	CHECK_OK(ioas_unmap(fd, ioas, IOVA, BUF_SIZE, &unmapped));
	CHECK_EQ(unmapped, BUF_SIZE);
	CHECK_REFS(fd, 0);
	/* Its item went with the pins. */
	CHECK_ERRNO(ENOENT, destroy_access_pages(fd, afd, id));
	CHECK_ERRNO(ENOENT, access_pages(fd, afd, IOVA, PAGE_SZ, g_buf, 0, &id));
	/* Map again: the access sees the new mapping. */
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, BUF_SIZE, IOVA));
	REQUIRE_OK(access_pages(fd, afd, IOVA, PAGE_SZ, g_buf, 0, &id));
	CHECK_OK(check_refs_of(fd, g_buf, PAGE_SZ, 1));
	CHECK_OK(close(afd));
	CHECK_REFS(fd, 0);
	close(fd);
	CHECK_NO_PINS_LEFT();
}

TEST(access_alignment)
{
	__u64 iova;
	__u32 ioas, ioas2;
	int fd, afd;

	OPEN_IOAS(fd, ioas);
	/* An area starting mid-page cannot serve an access that pins pages. */
	REQUIRE_OK(ioas_alloc(fd, &ioas2));
	iova = IOVA + 8;
	REQUIRE_OK(ioas_map(fd, ioas2, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, g_buf + 8, PAGE_SZ - 8,
			    &iova));
	CHECK_ERRNO(EADDRINUSE, create_access(fd, ioas2, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
					      &afd));
	/* One that only copies needs no alignment. */
	REQUIRE_OK(create_access(fd, ioas2, 0, &afd));
	CHECK_OK(close(afd));
	/* While a pinning access is attached, new mappings must be page aligned. */
	REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
	iova = IOVA + BUF_SIZE + 8;
	CHECK_ERRNO(EINVAL, ioas_map(fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, g_buf + 8, PAGE_SZ,
				     &iova));
	/* Nor can the pinning access move onto the misaligned IOAS. */
	CHECK_ERRNO(EADDRINUSE, access_replace_ioas(fd, afd, ioas2));
	CHECK_OK(close(afd));
	/* Without it the same map is fine. */
	iova = IOVA + BUF_SIZE + 8;
	CHECK_OK(ioas_map(fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, g_buf + 8, PAGE_SZ, &iova));
	CHECK_REFS(fd, 0);
	close(fd);
	CHECK_NO_PINS_LEFT();
}

TEST(access_with_a_mock_domain)
{
	__u32 ioas, stdev, hwpt, id;
	unsigned char tmp[16];
	int fd, afd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
	REQUIRE_OK(access_pages(fd, afd, IOVA, 2 * PAGE_SZ, g_buf, 0, &id));
	CHECK_OK(check_refs_of(fd, g_buf, 2 * PAGE_SZ, 1));
	/* The domain pins the whole area; the access's pages are not pinned twice. */
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, &hwpt, NULL));
	CHECK_REFS(fd, 1);
	CHECK_OK(check_map(fd, hwpt, IOVA, BUF_SIZE, g_buf));
	/* The access's copies reach what the domain maps. */
	memset(tmp, 0xc3, sizeof(tmp));
	CHECK_OK(access_rw(fd, afd, IOVA + 3 * PAGE_SZ, tmp, sizeof(tmp), MOCK_ACCESS_RW_WRITE));
	CHECK_EQ(g_buf[3 * PAGE_SZ + 15], 0xc3);
	/* The domain goes: the access keeps its two pages pinned. */
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_OK(check_refs_of(fd, g_buf, 2 * PAGE_SZ, 1));
	CHECK_OK(check_refs_of(fd, g_buf + 2 * PAGE_SZ, BUF_SIZE - 2 * PAGE_SZ, 0));
	CHECK_OK(destroy_access_pages(fd, afd, id));
	CHECK_REFS(fd, 0);
	CHECK_OK(close(afd));
	close(fd);
	CHECK_NO_PINS_LEFT();
}

TEST(replace_ioas_drops_pins)
{
	__u32 ioas, ioas2, id;
	unsigned char *buf2 = h_mmap(PAGE_SZ);
	unsigned char tmp[4];
	int fd, afd;

	OPEN_IOAS(fd, ioas);
	memset(buf2, 0x42, PAGE_SZ);
	REQUIRE_OK(ioas_alloc(fd, &ioas2));
	REQUIRE_OK(ioas_map_fixed(fd, ioas2, buf2, PAGE_SZ, IOVA));
	REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
	REQUIRE_OK(access_pages(fd, afd, IOVA, PAGE_SZ, g_buf, 0, &id));
	CHECK_OK(check_refs_of(fd, g_buf, PAGE_SZ, 1));
	/* Moving to another IOAS unpins everything pinned in the old one. */
	CHECK_OK(access_replace_ioas(fd, afd, ioas2));
	CHECK_REFS(fd, 0);
	CHECK_ERRNO(ENOENT, destroy_access_pages(fd, afd, id));
	/* The old IOAS is free to go, the new one is in use. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, ioas2));
	CHECK_OK(iommu_destroy(fd, ioas));
	CHECK_OK(access_rw(fd, afd, IOVA, tmp, sizeof(tmp), 0));
	CHECK_EQ(tmp[0], 0x42);
	REQUIRE_OK(access_pages(fd, afd, IOVA, PAGE_SZ, buf2, 0, &id));
	CHECK_OK(check_refs_of(fd, buf2, PAGE_SZ, 1));
	/* Replacing with the IOAS it is on changes nothing. */
	CHECK_OK(access_replace_ioas(fd, afd, ioas2));
	CHECK_OK(check_refs_of(fd, buf2, PAGE_SZ, 1));
	CHECK_OK(close(afd));
	CHECK_OK(check_refs_of(fd, buf2, PAGE_SZ, 0));
	close(fd);
	CHECK_NO_PINS_LEFT();
}

TEST(access_outlives_its_iommufd_fd)
{
	unsigned char tmp[8];
	__u32 ioas, id;
	int fd, fd2, afd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
	REQUIRE_OK(access_pages(fd, afd, IOVA, PAGE_SZ, g_buf, 0, &id));
	/* The access holds the context: closing the iommufd fd keeps the pin and the IOAS. */
	CHECK_OK(close(fd));
	fd2 = iommufd_open();
	REQUIRE(fd2 >= 0);
	CHECK_OK(check_refs_of(fd2, g_buf, PAGE_SZ, 1));
	/* Any context can send the access ops: they name the access by its fd. */
	g_buf[5] = 0x99;
	CHECK_OK(access_rw(fd2, afd, IOVA + 5, tmp, 1, 0));
	CHECK_EQ(tmp[0], 0x99);
	CHECK_OK(destroy_access_pages(fd2, afd, id));
	CHECK_OK(check_refs_of(fd2, g_buf, PAGE_SZ, 0));
	REQUIRE_OK(access_pages(fd2, afd, IOVA, PAGE_SZ, g_buf, 0, &id));
	/* The last close releases the access, then the context, then the pins. */
	CHECK_OK(close(afd));
	CHECK_REFS(fd2, 0);
	close(fd2);
	CHECK_NO_PINS_LEFT();
}

TEST(access_rw_from_a_child)
{
	unsigned char tmp[2 * PAGE_SZ];
	__u32 ioas;
	int fd, afd, status;
	pid_t pid;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(create_access(fd, ioas, 0, &afd));
	memset(g_buf, 0x01, BUF_SIZE);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* Another process: the copy goes to the mapping process's memory, not ours. */
		memset(tmp, 0xee, sizeof(tmp));
		CHECK_OK(access_rw(fd, afd, IOVA + PAGE_SZ - 10, tmp, 20, MOCK_ACCESS_RW_WRITE));
		CHECK_OK(access_rw(fd, afd, IOVA + 3 * PAGE_SZ, tmp, 1, MOCK_ACCESS_RW_WRITE));
		CHECK_EQ(g_buf[PAGE_SZ], 0x01);
		CHILD_EXIT();
	}
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ(g_buf[PAGE_SZ - 11], 0x01);
	CHECK_EQ(g_buf[PAGE_SZ - 10], 0xee);
	CHECK_EQ(g_buf[PAGE_SZ + 9], 0xee);
	CHECK_EQ(g_buf[PAGE_SZ + 10], 0x01);
	CHECK_EQ(g_buf[3 * PAGE_SZ], 0xee);
	CHECK_EQ(g_buf[3 * PAGE_SZ + 1], 0x01);
	CHECK_REFS(fd, 0);
	CHECK_OK(close(afd));
	close(fd);
	CHECK_NO_PINS_LEFT();
}

TEST(access_to_a_memfd)
{
	struct iommu_ioas_map_file map = { .size = sizeof(map) };
	unsigned char tmp[16], *a, *b;
	__u32 ioas, id;
	int fd, afd, mfd;

	OPEN_IOAS(fd, ioas);
	mfd = memfd_create("selftest_access", MFD_CLOEXEC);
	REQUIRE(mfd >= 0);
	REQUIRE_OK(ftruncate(mfd, 4 * PAGE_SZ));
	a = mmap(NULL, 4 * PAGE_SZ, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	b = mmap(NULL, 4 * PAGE_SZ, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	REQUIRE(a != MAP_FAILED && b != MAP_FAILED);
	map.flags = IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW;
	map.ioas_id = ioas;
	map.fd = mfd;
	map.start = PAGE_SZ;
	map.length = 3 * PAGE_SZ;
	map.iova = IOVA + BUF_SIZE;
	REQUIRE_OK(ioctl(fd, IOMMU_IOAS_MAP_FILE, &map));
	REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
	/* Copies reach the file's pages: both mappings see a write, either one's bytes read. */
	memset(tmp, 0xd4, sizeof(tmp));
	CHECK_OK(access_rw(fd, afd, IOVA + BUF_SIZE + PAGE_SZ - 8, tmp, sizeof(tmp),
			   MOCK_ACCESS_RW_WRITE));
	CHECK_EQ(a[2 * PAGE_SZ - 9], 0);
	CHECK_EQ(a[2 * PAGE_SZ - 8], 0xd4);
	CHECK_EQ(b[2 * PAGE_SZ + 7], 0xd4);
	b[3 * PAGE_SZ] = 0x3e;
	CHECK_OK(access_rw(fd, afd, IOVA + BUF_SIZE + 2 * PAGE_SZ, tmp, 1, 0));
	CHECK_EQ(tmp[0], 0x3e);
	/* Pins are the file's pages, seen through either mapping; uptr may be either. */
	REQUIRE_OK(access_pages(fd, afd, IOVA + BUF_SIZE, 2 * PAGE_SZ, a + PAGE_SZ, 0, &id));
	CHECK_OK(check_refs_of(fd, b + PAGE_SZ, 2 * PAGE_SZ, 1));
	CHECK_OK(check_refs_of(fd, a, PAGE_SZ, 0));
	CHECK_OK(access_pages(fd, afd, IOVA + BUF_SIZE, PAGE_SZ, b + PAGE_SZ, 0, NULL));
	CHECK_OK(close(afd));
	CHECK_OK(check_refs_of(fd, a, 4 * PAGE_SZ, 0));
	CHECK_REFS(fd, 0);
	close(fd);
	munmap(a, 4 * PAGE_SZ);
	munmap(b, 4 * PAGE_SZ);
	close(mfd);
	CHECK_NO_PINS_LEFT();
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	RUN(create_access_errors);
	RUN(access_rw_no_domain);
	RUN(access_rw_errors);
	RUN(access_pages_pin_and_unpin);
	RUN(unmap_notifies_the_access);
	RUN(access_alignment);
	RUN(access_with_a_mock_domain);
	RUN(replace_ioas_drops_pins);
	RUN(access_outlives_its_iommufd_fd);
	RUN(access_rw_from_a_child);
	RUN(access_to_a_memfd);
	return h_done();
}
