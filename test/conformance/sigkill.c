/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A process killed with SIGKILL in the middle of a MAP/UNMAP loop on a
 * shared iommufd (and on one of its own) must leave the parent's context
 * intact and consistent, and the emulator serving: each ioctl is atomic
 * with respect to the death of its caller, objects in the shared context
 * outlive the child (the parent still holds the fd), the child's private
 * context is torn down.
 */
#include "harness.h"

#include <time.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Child body: never returns. Reports its IOAS id, then loops forever. */
static void churn_child(int fd, int report)
{
	unsigned char *mem = h_mmap_exact_align(16 * PAGE_SZ, PAGE_SZ);
	int own = iommufd_open();
	__u32 cid = 0, own_id = 0;
	unsigned long n = 0;

	if (ioas_alloc(fd, &cid) || own < 0 || ioas_alloc(own, &own_id))
		_exit(3);
	if (write(report, &cid, sizeof(cid)) != (ssize_t)sizeof(cid))
		_exit(4);
	for (;;) {
		__u64 iova = 0, len = (1 + n % 8) * PAGE_SZ;

		if (ioas_map_auto(fd, cid, mem, len, &iova))
			_exit(5);
		if (ioas_map_fixed(own, own_id, mem, len, 0x100000))
			_exit(6);
		if (ioas_unmap(fd, cid, iova, len, NULL))
			_exit(7);
		if (ioas_unmap(own, own_id, 0, U64_MAX_, NULL))
			_exit(8);
		if (++n == 50) {
			char c = 1;

			/* tell the parent the loop is running */
			if (write(report, &c, 1) != 1)
				_exit(9);
		}
	}
}

TEST(sigkill_mid_loop_leaves_parent_intact)
{
	unsigned char *mem = h_mmap_exact_align(8 * PAGE_SZ, PAGE_SZ);
	int fd = iommufd_open();
	int round;
	__u32 pid_ioas;

	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &pid_ioas));
	CHECK_EQ(pid_ioas, 1);
	REQUIRE_OK(ioas_map_fixed(fd, pid_ioas, mem, 4 * PAGE_SZ, 0x100000));

	for (round = 0; round < 4; round++) {
		int pp[2], status = 0;
		__u32 cid = 0, again = 0;
		__u64 unmapped = 0, iova = 0;
		char c;
		pid_t pid;

		REQUIRE(pipe(pp) == 0);
		pid = h_fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			close(pp[0]);
			churn_child(fd, pp[1]);
		}
		close(pp[1]);
		REQUIRE(read(pp[0], &cid, sizeof(cid)) == (ssize_t)sizeof(cid));
		CHECK_EQ(cid, 2);
		/* wait until the child is well into its loop, then a little
		 * more so the kill lands at a different point each round */
		CHECK(read(pp[0], &c, 1) == 1);
		sleep_ms(5 + 7 * round);
		CHECK_OK(kill(pid, SIGKILL));
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		close(pp[0]);

		/* the parent's IOAS and area are untouched */
		CHECK(ioas_exists(fd, pid_ioas));
		CHECK_ERRNO(EEXIST, ioas_map_fixed(fd, pid_ioas, mem, PAGE_SZ,
						   0x101000));
		/* the child's IOAS lives on in the shared context, in a
		 * consistent state: at most one area of the loop is left */
		CHECK(ioas_exists(fd, cid));
		CHECK_OK(ioas_unmap(fd, cid, 0, U64_MAX_, &unmapped));
		CHECK(unmapped <= 8 * PAGE_SZ && unmapped % PAGE_SZ == 0);
		CHECK_OK(iommu_destroy(fd, cid));
		/* the shared ID space is still coherent */
		CHECK_OK(ioas_alloc(fd, &again));
		CHECK_EQ(again, cid);
		CHECK_OK(ioas_map_auto(fd, again, mem, PAGE_SZ, &iova));
		CHECK_EQ(iova, 0x1000);
		CHECK_OK(iommu_destroy(fd, again));
	}

	/* the parent's area is exactly as mapped */
	{
		__u64 unmapped = 0;

		CHECK_OK(ioas_unmap(fd, pid_ioas, 0x100000, 4 * PAGE_SZ,
				    &unmapped));
		CHECK_EQ(unmapped, 4 * PAGE_SZ);
		CHECK_ERRNO(ENOENT, ioas_unmap(fd, pid_ioas, 0, U64_MAX_ - 1,
					       NULL));
	}
	close(fd);
}

/* After all that the emulator still serves new and old clients. */
TEST(server_still_serves)
{
	int fd = iommufd_open();
	__u32 id;

	REQUIRE(fd >= 0);
	CHECK_OK(ioas_alloc(fd, &id));
	CHECK_EQ(id, 1);
	CHECK_RET(0, ioctl(fd, VFIO_GET_API_VERSION));
	close(fd);
}

/* A child killed while it holds the only copy of a context: the context
 * goes away with it, nothing leaks into others. */
TEST(sigkill_sole_owner)
{
	int pp[2], status = 0;
	char c;
	pid_t pid;

	REQUIRE(pipe(pp) == 0);
	pid = h_fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		unsigned char *mem = h_mmap(PAGE_SZ);
		int fd = iommufd_open();
		__u32 id;
		__u64 iova;
		int i;

		close(pp[0]);
		if (fd < 0)
			_exit(2);
		for (i = 0; i < 16; i++)
			if (ioas_alloc(fd, &id) ||
			    ioas_map_auto(fd, id, mem, PAGE_SZ, &iova))
				_exit(3);
		c = 1;
		if (write(pp[1], &c, 1) != 1)
			_exit(4);
		for (;;)
			pause();
	}
	close(pp[1]);
	CHECK(read(pp[0], &c, 1) == 1);
	close(pp[0]);
	CHECK_OK(kill(pid, SIGKILL));
	CHECK(waitpid(pid, &status, 0) == pid);
	{
		int fd = iommufd_open();
		__u32 id;

		REQUIRE(fd >= 0);
		CHECK(!ioas_exists(fd, 1));
		CHECK_OK(ioas_alloc(fd, &id));
		CHECK_EQ(id, 1);
		close(fd);
	}
}

int main(void)
{
	h_init();
	RUN(sigkill_mid_loop_leaves_parent_intact);
	RUN(server_still_serves);
	RUN(sigkill_sole_owner);
	return h_done();
}
