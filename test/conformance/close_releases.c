/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * close() of a device returns after its release (____fput() runs before the closing task goes
 * back to userspace). Here the release has work to do: the device's auto domain is the last
 * domain of an IOAS holding 64 MiB, so its detach unmaps and unpins all of it
 * (iopt_table_remove_domain() unfilling the last domain). A second device of the same iommufd,
 * closed right after, must be released as well by the time its close() returns: its cdev can
 * then be bound to another iommufd at once. Read from the answers, not from a clock.
 */
#include "harness.h"
#include "edu_helpers.h"

#define LEN (64ULL * 1024 * 1024)
#define IOVA 0x40000000ULL

TEST(a_device_is_released_when_close_returns)
{
	struct edu_dev a, b;
	__u32 ioas, devid;
	void *buf;
	int fd, fd2, again;

	if (!may_pin(LEN))
		SKIP("RLIMIT_MEMLOCK below 64 MiB and no CAP_IPC_LOCK");
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, fd, ioas, &a));
	REQUIRE_OK(edu_open(EDU1_CDEV, fd, 0, &b));
	buf = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(buf != MAP_FAILED);
	REQUIRE_OK(ioas_map_fixed(fd, ioas, buf, LEN, IOVA));

	/* The last domain of the IOAS goes with a's release: 64 MiB unmapped and unpinned. */
	edu_close(&a);
	/* b is bound and attached to nothing: its release has nothing to tear down. */
	edu_close(&b);
	fd2 = iommufd_open();
	REQUIRE(fd2 >= 0);
	again = cdev_open(EDU1_CDEV);
	REQUIRE(again >= 0);
	/* Unbound by its release, b's device binds to another iommufd. */
	CHECK_OK(vfio_bind(again, fd2, &devid));
	close(again);
	close(fd2);

	/* And the area is still there, unpinned: its unmap succeeds. */
	{
		__u64 unmapped = 0;

		CHECK_OK(ioas_unmap(fd, ioas, IOVA, LEN, &unmapped));
		CHECK_EQ(unmapped, LEN);
	}
	munmap(buf, LEN);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(a_device_is_released_when_close_returns);
	return h_done();
}
