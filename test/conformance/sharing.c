/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One iommufd context shared through fork, dup and exec (uapi.md §3.2,
 * §3.5): every copy of the fd reaches the same objects and ID space; the
 * objects live until the last copy is closed; a second open() of /dev/iommu
 * is a separate context with its own IDs.
 */
#include "harness.h"

static const char *self_exe;

TEST(child_sees_parent_objects)
{
	void *mem = h_mmap(4 * PAGE_SZ);
	int fd = iommufd_open();
	__u64 unmapped;
	__u32 id;
	pid_t pid;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);
	REQUIRE_OK(ioas_map_fixed(fd, id, mem, 2 * PAGE_SZ, 0x100000));

	pid = h_fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		__u32 cid;

		CHECK(ioas_exists(fd, 1));
		/* the parent's area is there: it can be copied from */
		{
			__u64 dst = 0x200000;

			CHECK_OK(ioas_copy(fd, IOMMU_IOAS_MAP_FIXED_IOVA |
					   MAP_RW, 1, 1, 2 * PAGE_SZ, &dst,
					   0x100000));
		}
		/* same ID space: the next ID is 2 */
		CHECK_OK(ioas_alloc(fd, &cid));
		CHECK_EQ(cid, 2);
		CHECK_OK(ioas_map_fixed(fd, cid, mem, PAGE_SZ, 0x300000));
		CHILD_EXIT();
	}
	CHECK_EQ(h_wait(pid), 0);
	/* what the child did is visible here */
	CHECK(ioas_exists(fd, 2));
	CHECK_OK(ioas_unmap(fd, 2, 0, U64_MAX_, &unmapped));
	CHECK_EQ(unmapped, PAGE_SZ);
	CHECK_OK(ioas_unmap(fd, 1, 0x200000, 2 * PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, 2 * PAGE_SZ);
	CHECK_OK(ioas_unmap(fd, 1, 0x100000, 2 * PAGE_SZ, &unmapped));
	CHECK_EQ(unmapped, 2 * PAGE_SZ);
	CHECK_OK(iommu_destroy(fd, 2));
	close(fd);
	munmap(mem, 4 * PAGE_SZ);
}

/* The parent closes its copy first; the child's copy keeps everything. */
TEST(objects_live_until_last_copy_closes)
{
	int fd = iommufd_open();
	int go[2];
	pid_t pid;
	__u32 id;
	char c = 0;

	REQUIRE(fd >= 0);
	REQUIRE(pipe(go) == 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	REQUIRE_OK(ioas_alloc(fd, &id));

	pid = h_fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(go[1]);
		CHECK(read(go[0], &c, 1) == 1);
		CHECK(ioas_exists(fd, 1));
		CHECK(ioas_exists(fd, 2));
		CHECK_OK(iommu_destroy(fd, 1));
		CHECK_OK(ioas_alloc(fd, &id));
		CHECK_EQ(id, 1);
		CHILD_EXIT();
	}
	close(go[0]);
	close(fd);
	CHECK(write(go[1], &c, 1) == 1);
	close(go[1]);
	CHECK_EQ(h_wait(pid), 0);
	/* and a new open is a fresh context */
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	CHECK(!ioas_exists(fd, 1));
	close(fd);
}

TEST(dup_copies_share_the_context)
{
	int fd = iommufd_open();
	int fd2, fd3, fd4;
	__u32 id;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	fd2 = dup(fd);
	REQUIRE(fd2 >= 0);
	fd3 = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	REQUIRE(fd3 >= 100);
	fd4 = dup3(fd, 200, O_CLOEXEC);
	REQUIRE(fd4 == 200);

	CHECK(ioas_exists(fd2, 1));
	REQUIRE_OK(ioas_alloc(fd2, &id));
	CHECK_EQ(id, 2);
	CHECK(ioas_exists(fd3, 2));
	CHECK(ioas_exists(fd4, 2));
	close(fd);
	CHECK(ioas_exists(fd2, 1));
	CHECK_OK(iommu_destroy(fd3, 1));
	CHECK(!ioas_exists(fd4, 1));
	close(fd2);
	close(fd3);
	REQUIRE_OK(ioas_alloc(fd4, &id));
	CHECK_EQ(id, 1);
	close(fd4);

	/* with every copy closed, the context is gone */
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	CHECK(!ioas_exists(fd, 1));
	CHECK(!ioas_exists(fd, 2));
	close(fd);
}

TEST(second_open_is_a_separate_id_space)
{
	void *mem = h_mmap(PAGE_SZ);
	int a = iommufd_open();
	int b = iommufd_open();
	__u32 ida, idb;

	REQUIRE(a >= 0 && b >= 0);
	REQUIRE_OK(ioas_alloc(a, &ida));
	REQUIRE_OK(ioas_alloc(b, &idb));
	CHECK_EQ(ida, 1);
	CHECK_EQ(idb, 1);
	REQUIRE_OK(ioas_alloc(a, &ida));
	CHECK_EQ(ida, 2);
	CHECK(!ioas_exists(b, 2));
	REQUIRE_OK(ioas_map_fixed(a, 1, mem, PAGE_SZ, 0x100000));
	/* b's IOAS 1 is a different, empty IOAS */
	CHECK_ERRNO(ENOENT, ioas_unmap(b, 1, 0x100000, PAGE_SZ, NULL));
	CHECK_OK(iommu_destroy(b, 1));
	CHECK(ioas_exists(a, 1));
	CHECK_ERRNO(ENOENT, iommu_destroy(b, 2));
	REQUIRE_OK(ioas_alloc(b, &idb));
	CHECK_EQ(idb, 1);
	CHECK_OK(ioas_unmap(a, 1, 0x100000, PAGE_SZ, NULL));
	close(a);
	/* closing one context leaves the other alone */
	CHECK(ioas_exists(b, 1));
	close(b);
	munmap(mem, PAGE_SZ);
}

/* Two processes allocating in one context at the same time never get the
 * same ID. */
TEST(concurrent_allocation_in_shared_context)
{
	enum { N = 40 };
	int fd = iommufd_open();
	int pp[2], i, bad = 0;
	__u32 mine[N], theirs[N];
	char seen[2 * N + 2];
	pid_t pid;

	REQUIRE(fd >= 0);
	REQUIRE(pipe(pp) == 0);
	pid = h_fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(pp[0]);
		for (i = 0; i < N; i++)
			CHECK_OK(ioas_alloc(fd, &theirs[i]));
		CHECK(write(pp[1], theirs, sizeof(theirs)) ==
		      (ssize_t)sizeof(theirs));
		CHILD_EXIT();
	}
	close(pp[1]);
	for (i = 0; i < N; i++)
		CHECK_OK(ioas_alloc(fd, &mine[i]));
	CHECK(read(pp[0], theirs, sizeof(theirs)) == (ssize_t)sizeof(theirs));
	close(pp[0]);
	CHECK_EQ(h_wait(pid), 0);

	memset(seen, 0, sizeof(seen));
	for (i = 0; i < N; i++) {
		if (mine[i] < 1 || mine[i] > 2 * N || seen[mine[i]]++)
			bad++;
		if (theirs[i] < 1 || theirs[i] > 2 * N || seen[theirs[i]]++)
			bad++;
	}
	CHECK_EQ(bad, 0);
	for (i = 1; i <= 2 * N; i++)
		CHECK_OK(iommu_destroy(fd, i));
	close(fd);
}

/* An fd without O_CLOEXEC survives execve() and still names the context. */
TEST(fd_survives_exec)
{
	int fd = open("/dev/iommu", O_RDWR);
	char arg[32];
	__u32 id;
	pid_t pid;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &id));
	REQUIRE_OK(ioas_alloc(fd, &id));
	snprintf(arg, sizeof(arg), "%d", fd);
	pid = h_fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		execl(self_exe, self_exe, "--exec-child", arg, (char *)NULL);
		_exit(99);
	}
	CHECK_EQ(h_wait(pid), 0);
	/* the exec'd child allocated ID 3 in this context */
	CHECK(ioas_exists(fd, 3));
	close(fd);
}

static int exec_child(int fd)
{
	__u32 id = 0;

	if (!ioas_exists(fd, 1) || !ioas_exists(fd, 2))
		return 1;
	if (ioas_alloc(fd, &id) || id != 3)
		return 2;
	return 0;
}

int main(int argc, char **argv)
{
	static char exe[4096];
	ssize_t n;

	if (argc == 3 && !strcmp(argv[1], "--exec-child"))
		return exec_child(atoi(argv[2]));

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		self_exe = exe;
	} else {
		self_exe = argv[0];
	}

	h_init();
	RUN(child_sees_parent_objects);
	RUN(objects_live_until_last_copy_closes);
	RUN(dup_copies_share_the_context);
	RUN(second_open_is_a_separate_id_space);
	RUN(concurrent_allocation_in_shared_context);
	RUN(fd_survives_exec);
	return h_done();
}
