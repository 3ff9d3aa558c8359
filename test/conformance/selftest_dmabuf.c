/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_TEST_CMD's dma-buf exporter (7.3): DMABUF_GET makes a dma-buf of zeroed kernel memory,
 * its length rounded up to pages (EINVAL for 0 and for more than 512 pages), and installs it as
 * the lowest free fd, with O_CLOEXEC only if open_flags asks; 7.3 returns 0, not the fd.
 * DMABUF_REVOKE is EBADF for no open fd and EINVAL for a file that is no dma-buf (dma_buf_get).
 */
#include "harness.h"
#include "selftest_helpers.h"

#include <fcntl.h>

#define DMABUF_MAX (512 * PAGE_SZ)

static int dmabuf_get(int fd, __u32 length, __u32 open_flags)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_DMABUF_GET,
		.dmabuf_get = { .length = length, .open_flags = open_flags },
	};

	return test_cmd(fd, &cmd);
}

static int dmabuf_revoke(int fd, int dmabuf_fd, __u32 revoked)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_DMABUF_REVOKE,
		.dmabuf_revoke = { .dmabuf_fd = dmabuf_fd, .revoked = revoked },
	};

	return test_cmd(fd, &cmd);
}

/* The fd the next open gets. */
static int lowest_free_fd(void)
{
	int fd = open("/dev/null", O_RDONLY);

	if (fd >= 0)
		close(fd);
	return fd;
}

/* An iommufd; SKIP without the test interface. */
static int open_test_iommufd(void)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
				      .memory_limit = { .limit = 65536 } };
	int fd = iommufd_open();

	if (fd < 0)
		return -1;
	if (test_cmd(fd, &cmd) && errno == ENOTTY) {
		close(fd);
		return -2;
	}
	return fd;
}

#define OPEN_TEST(fd)                                                      \
	do {                                                               \
		(fd) = open_test_iommufd();                                \
		if ((fd) == -2)                                            \
			SKIP("no IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST)");   \
		REQUIRE((fd) >= 0);                                        \
	} while (0)

TEST(dmabuf_get_lengths)
{
	int fd, before;

	OPEN_TEST(fd);
	before = lowest_free_fd();
	REQUIRE(before >= 0);
	CHECK_ERRNO(EINVAL, dmabuf_get(fd, 0, O_CLOEXEC));
	CHECK_ERRNO(EINVAL, dmabuf_get(fd, DMABUF_MAX + 1, O_CLOEXEC));
	/* A failed call installs nothing. */
	CHECK_EQ(lowest_free_fd(), before);
	/* The largest one; 7.3 returns 0 and the fd is the lowest free one. */
	CHECK_RET(0, dmabuf_get(fd, DMABUF_MAX, O_CLOEXEC));
	CHECK(fcntl(before, F_GETFD) == FD_CLOEXEC);
	CHECK(lowest_free_fd() != before);
	close(before);
	close(fd);
}

TEST(dmabuf_get_open_flags)
{
	int fd, buf;

	OPEN_TEST(fd);
	buf = lowest_free_fd();
	REQUIRE(buf >= 0);
	CHECK_RET(0, dmabuf_get(fd, 1, 0));
	CHECK_EQ(fcntl(buf, F_GETFD), 0);
	/* No mmap in the test exporter. */
	CHECK(mmap(NULL, PAGE_SZ, PROT_READ, MAP_SHARED, buf, 0) == MAP_FAILED && errno == EINVAL);
	/* The dma-buf outlives the iommufd that made it. */
	close(fd);
	CHECK(fcntl(buf, F_GETFD) == 0);
	close(buf);
}

TEST(dmabuf_revoke_errnos)
{
	int fd, buf, pipefd[2];

	OPEN_TEST(fd);
	buf = lowest_free_fd();
	REQUIRE(buf >= 0);
	REQUIRE_OK(dmabuf_get(fd, 3 * PAGE_SZ, O_CLOEXEC));
	CHECK_ERRNO(EBADF, dmabuf_revoke(fd, -1, 1));
	CHECK_ERRNO(EBADF, dmabuf_revoke(fd, buf + 100, 1));
	/* dma_buf_get() of a file that is no dma-buf: the iommufd itself, a pipe. */
	CHECK_ERRNO(EINVAL, dmabuf_revoke(fd, fd, 1));
	REQUIRE_OK(pipe(pipefd));
	CHECK_ERRNO(EINVAL, dmabuf_revoke(fd, pipefd[0], 1));
	close(pipefd[0]);
	close(pipefd[1]);
	/* Revoke, revoke again, restore: each succeeds. */
	CHECK_OK(dmabuf_revoke(fd, buf, 1));
	CHECK_OK(dmabuf_revoke(fd, buf, 1));
	CHECK_OK(dmabuf_revoke(fd, buf, 0));
	close(buf);
	CHECK_ERRNO(EBADF, dmabuf_revoke(fd, buf, 1));
	close(fd);
}

int main(void)
{
	h_init();
	RUN(dmabuf_get_lengths);
	RUN(dmabuf_get_open_flags);
	RUN(dmabuf_revoke_errnos);
	return h_done();
}
