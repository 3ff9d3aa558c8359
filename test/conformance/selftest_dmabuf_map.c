/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IOMMU_IOAS_MAP_FILE of a test dma-buf (7.3): the area is the dma-buf's own memory, mapped into
 * every domain without pinning anything; a range past the dma-buf is EINVAL, a revoked dma-buf
 * ENODEV. DMABUF_REVOKE unmaps it from the domains (an edu's DMA then faults) and the area stays
 * revoked even after the dma-buf is restored; a new MAP_FILE maps it again. Such an area cannot
 * be read, written or pinned by an access (EINVAL) or moved by CHANGE_PROCESS (EINVAL); the
 * dma-buf lives while an area holds it, its fd closed or not.
 */
#include "harness.h"
#include "edu_helpers.h"
#include "selftest_helpers.h"

#include <fcntl.h>

#define NPAGES 4
#define BUF_SIZE (NPAGES * PAGE_SZ)

static unsigned char *g_buf;

static int dmabuf_get(int fd, __u32 length)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_DMABUF_GET,
		.dmabuf_get = { .length = length, .open_flags = O_CLOEXEC },
	};
	int next = open("/dev/null", O_RDONLY);

	/* 7.3 returns 0: the dma-buf is the fd the next open would have got. */
	if (next < 0)
		return -1;
	close(next);
	if (test_cmd(fd, &cmd))
		return -1;
	return next;
}

static int dmabuf_revoke(int fd, int dmabuf_fd, __u32 revoked)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_DMABUF_REVOKE,
		.dmabuf_revoke = { .dmabuf_fd = dmabuf_fd, .revoked = revoked },
	};

	return test_cmd(fd, &cmd);
}

static int map_file(int fd, __u32 ioas, int dfd, __u64 start, __u64 length, __u64 iova)
{
	struct iommu_ioas_map_file cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW,
		.ioas_id = ioas,
		.fd = dfd,
		.start = start,
		.length = length,
		.iova = iova,
	};

	return ioctl(fd, IOMMU_IOAS_MAP_FILE, &cmd);
}

static int unmap_len(int fd, __u32 ioas, __u64 iova, __u64 length, __u64 *unmapped)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .iova = iova, .length = length,
	};
	int rc = ioctl(fd, IOMMU_IOAS_UNMAP, &cmd);

	*unmapped = cmd.length;
	return rc;
}

/* An iommufd with the test interface and an IOAS; SKIP without the test interface. */
#define OPEN_IOAS(fd, ioas) OPEN_MOCK_IOAS(fd, ioas, NULL, 0)

#define IOVA MOCK_APERTURE_START

TEST(map_file_ranges)
{
	__u64 unmapped;
	__u32 ioas, hwpt;
	int fd, dfd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, NULL, &hwpt, NULL));
	dfd = dmabuf_get(fd, BUF_SIZE);
	REQUIRE(dfd >= 0);
	CHECK_ERRNO(EINVAL, map_file(fd, ioas, dfd, 0, 0, IOVA));
	CHECK_ERRNO(EINVAL, map_file(fd, ioas, dfd, 0, BUF_SIZE + PAGE_SZ, IOVA));
	CHECK_ERRNO(EINVAL, map_file(fd, ioas, dfd, BUF_SIZE, PAGE_SZ, IOVA));
	CHECK_ERRNO(EINVAL, map_file(fd, ioas, dfd, PAGE_SZ, BUF_SIZE, IOVA));
	CHECK_ERRNO(EBADF, map_file(fd, ioas, dfd + 50, 0, PAGE_SZ, IOVA));
	/* All of it, then its last page again elsewhere, into the attached mock domain. */
	CHECK_OK(map_file(fd, ioas, dfd, 0, BUF_SIZE, IOVA));
	CHECK_OK(map_file(fd, ioas, dfd, BUF_SIZE - PAGE_SZ, PAGE_SZ, IOVA + 2 * BUF_SIZE));
	/* Not user memory: nothing of g_buf is pinned. */
	CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, 0));
	/* An area of a dma-buf cannot be split, nor moved to another process. */
	CHECK_ERRNO(EINVAL, ({
			    struct iommu_ioas_change_process c = { .size = sizeof(c) };
			    ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &c);
		    }));
	/* The dma-buf lives on with its fd closed. */
	close(dfd);
	CHECK_OK(unmap_len(fd, ioas, IOVA, BUF_SIZE, &unmapped));
	CHECK_EQ(unmapped, BUF_SIZE);
	CHECK_OK(unmap_len(fd, ioas, IOVA + 2 * BUF_SIZE, PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, PAGE_SZ);
	close(fd);
}

TEST(revoke_cycle)
{
	__u64 unmapped;
	__u32 ioas, hwpt;
	int fd, dfd;

	__u64 copy_iova = IOVA;
	__u32 ioas2;
	__u64 pa_len = PAGE_SZ, pa;
	int pa_rc, pa_errno;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(ioas_alloc(fd, &ioas2));
	REQUIRE_OK(mock_domain_flags(fd, ioas2, 0, NULL, NULL, NULL));
	dfd = dmabuf_get(fd, BUF_SIZE);
	REQUIRE(dfd >= 0);
	/* Mapped before any domain, filled when the mock domain attaches. */
	CHECK_OK(map_file(fd, ioas, dfd, 0, BUF_SIZE, IOVA));
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, NULL, &hwpt, NULL));
	/* A copy into another IOAS shares the import: the revoke reaches its domain too. */
	CHECK_OK(ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, ioas2, ioas, PAGE_SZ, &copy_iova,
			   IOVA + PAGE_SZ));
	/* Not a no-IOMMU domain; once revoked, GET_PA is EINVAL before that check. */
	pa_rc = get_pa(fd, ioas, IOVA, &pa_len, &pa);
	pa_errno = errno;
	CHECK_OK(dmabuf_revoke(fd, dfd, 1));
	if (pa_rc == -1 && pa_errno == EOPNOTSUPP)
		CHECK_ERRNO(EINVAL, get_pa(fd, ioas, IOVA, &pa_len, &pa));
	else
		h_note("NOIOMMU_GET_PA not usable here: %s", h_errname(pa_errno));
	/* Revoked: no new import. */
	CHECK_ERRNO(ENODEV, map_file(fd, ioas, dfd, 0, PAGE_SZ, IOVA + BUF_SIZE));
	/* A second domain attaches over the revoked area. */
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, NULL, NULL, NULL));
	CHECK_OK(dmabuf_revoke(fd, dfd, 0));
	/* Restored: a new MAP_FILE imports it again. */
	CHECK_OK(map_file(fd, ioas, dfd, 0, PAGE_SZ, IOVA + BUF_SIZE));
	/* A revoke with the dma-buf not revoked still revokes the imports. */
	CHECK_OK(dmabuf_revoke(fd, dfd, 0));
	CHECK_OK(map_file(fd, ioas, dfd, PAGE_SZ, PAGE_SZ, IOVA + 2 * BUF_SIZE));
	CHECK_OK(unmap_len(fd, ioas, IOVA, BUF_SIZE, &unmapped));
	CHECK_EQ(unmapped, BUF_SIZE);
	CHECK_OK(unmap_len(fd, ioas2, IOVA, PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, PAGE_SZ);
	close(dfd);
	/* The iommufd's release drops the rest. */
	close(fd);
}

TEST(no_access_to_a_dmabuf)
{
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_CREATE_ACCESS };
	unsigned char tmp[64];
	__u32 ioas;
	int fd, dfd, afd;

	OPEN_IOAS(fd, ioas);
	dfd = dmabuf_get(fd, BUF_SIZE);
	REQUIRE(dfd >= 0);
	REQUIRE_OK(map_file(fd, ioas, dfd, 0, BUF_SIZE, IOVA));
	cmd.id = ioas;
	cmd.create_access.flags = MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES;
	REQUIRE_OK(test_cmd(fd, &cmd));
	afd = (int)cmd.create_access.out_access_fd;
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_ACCESS_RW;
	cmd.id = (__u32)afd;
	cmd.access_rw.iova = IOVA;
	cmd.access_rw.length = sizeof(tmp);
	cmd.access_rw.uptr = (uintptr_t)tmp;
	CHECK_ERRNO(EINVAL, test_cmd(fd, &cmd));
	cmd.access_rw.flags = MOCK_ACCESS_RW_WRITE;
	CHECK_ERRNO(EINVAL, test_cmd(fd, &cmd));
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_ACCESS_PAGES;
	cmd.id = (__u32)afd;
	cmd.access_pages.iova = IOVA;
	cmd.access_pages.length = PAGE_SZ;
	cmd.access_pages.uptr = (uintptr_t)g_buf;
	CHECK_ERRNO(EINVAL, test_cmd(fd, &cmd));
	close(afd);
	close(dfd);
	close(fd);
}

/* edu 0 on an IOAS with g_buf at IOVA_U and the dma-buf at IOVA_D. */
#define IOVA_U 0x100000ULL
#define IOVA_D 0x200000ULL

TEST(edu_dma_reaches_the_dmabuf_until_revoked)
{
	struct edu_dev d;
	__u32 ioas;
	int fd, dfd;

	OPEN_IOAS(fd, ioas);
	if (edu_open(EDU0_CDEV, fd, ioas, &d)) {
		close(fd);
		SKIP("no edu at %s: %s", EDU0_CDEV, strerror(errno));
	}
	REQUIRE_OK(edu_set_bus_master(d.fd, 1));
	dfd = dmabuf_get(fd, BUF_SIZE);
	REQUIRE(dfd >= 0);
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, BUF_SIZE, IOVA_U));
	REQUIRE_OK(map_file(fd, ioas, dfd, 0, BUF_SIZE, IOVA_D));
	/* Page 0 of g_buf -> the dma-buf's page 1 -> g_buf's page 2. */
	fill_pattern(g_buf, PAGE_SZ, 3);
	memset(g_buf + PAGE_SZ, 0, 3 * PAGE_SZ);
	REQUIRE_OK(edu_dma_in(d.fd, IOVA_U, 0, PAGE_SZ));
	REQUIRE_OK(edu_dma_out(d.fd, 0, IOVA_D + PAGE_SZ, PAGE_SZ));
	REQUIRE_OK(edu_dma_in(d.fd, IOVA_U + PAGE_SZ, 0, PAGE_SZ));
	REQUIRE_OK(edu_dma_in(d.fd, IOVA_D + PAGE_SZ, 0, PAGE_SZ));
	REQUIRE_OK(edu_dma_out(d.fd, 0, IOVA_U + 2 * PAGE_SZ, PAGE_SZ));
	CHECK(memcmp(g_buf, g_buf + 2 * PAGE_SZ, PAGE_SZ) == 0);
	/* The dma-buf's page 0 is still zeroed kernel memory. */
	REQUIRE_OK(edu_dma_in(d.fd, IOVA_D, 0, PAGE_SZ));
	REQUIRE_OK(edu_dma_out(d.fd, 0, IOVA_U + 3 * PAGE_SZ, PAGE_SZ));
	CHECK(all_bytes(g_buf + 3 * PAGE_SZ, PAGE_SZ, 0));

	/* Revoked: the read from the dma-buf faults, the device's buffer keeps page 1's zeros. */
	CHECK_OK(dmabuf_revoke(fd, dfd, 1));
	memset(g_buf + 2 * PAGE_SZ, 0x5a, PAGE_SZ);
	REQUIRE_OK(edu_dma_in(d.fd, IOVA_U + PAGE_SZ, 0, PAGE_SZ));
	edu_dma_in(d.fd, IOVA_D + PAGE_SZ, 0, PAGE_SZ);
	REQUIRE_OK(edu_dma_out(d.fd, 0, IOVA_U + 2 * PAGE_SZ, PAGE_SZ));
	CHECK(all_bytes(g_buf + 2 * PAGE_SZ, PAGE_SZ, 0));
	edu_close(&d);
	close(dfd);
	close(fd);
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	RUN(map_file_ranges);
	RUN(revoke_cycle);
	RUN(no_access_to_a_dmabuf);
	RUN(edu_dma_reaches_the_dmabuf_until_revoked);
	return h_done();
}
