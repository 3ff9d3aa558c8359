// exec-args: --enable-unsafe-noiommu-mode
/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A bind that fails part way (issue 4: "destroy copes with a device object that was only partly
 * built: prove it by injecting a failure at each step of bind"), through the kernel's fail-nth
 * protocol (Documentation/fault-injection/fault-injection.rst): write N to
 * /proc/self/task/<tid>/fail-nth, make the call, read the file back; "0\n" means the Nth
 * injection point this thread reached failed. N = 1, 2, ... until the call no longer reaches
 * an Nth point. A fired point need not fail the call: the kernel survives some (a GFP_NOWAIT
 * allocation it retries with a blocking one, like the xarray node of a new object id), and then
 * the call must have done its whole job. A call that does fail must fail cleanly (-1, a
 * plausible errno, nothing left in the iommufd, the fd still unbound), and a following
 * un-injected call must work. Every sweep must see at least one failure. The same sweep
 * runs over ATTACH (the auto domain's creation, pinning and filling), over MAP and GET_PA with
 * the no-IOMMU domain in place, and over the IOMMU device's bind. exec exits 3 if the emulator leaked anything, so this program's normal exit also proves
 * no leak.
 */
#include "harness.h"
#include "edu_helpers.h"

#define MAX_N 400

static int g_fnfd = -1;

/*
 * An errno an injected failure can surface as: ENOMEM for allocations, pinning and accounting,
 * EFAULT for user copies, ENOENT for object lookups (iommufd_should_fail() sites answer ENOENT;
 * test-interface.md §4.3), ENOSPC for an exhausted ID space.
 */
static int plausible(int e)
{
	return e == ENOMEM || e == EFAULT || e == ENOENT || e == ENOSPC;
}

static void bind_sweep(const char *path)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	int n, fired = 0, rc = 0, err = 0, failures = 0, survived = 0;

	for (n = 1; n <= MAX_N; n++) {
		int iommufd = iommufd_open();
		int dev = cdev_open(path);
		__u32 devid = 0, ioas = 0, pt;

		REQUIRE(iommufd >= 0);
		REQUIRE(dev >= 0);
		FAILNTH_INJECT(g_fnfd, (unsigned int)n, fired, rc, err,
			vfio_bind(dev, iommufd, &devid));
		if (!fired || rc == 0) {
			/* Un-injected (fewer than n points), or a survived point: a whole bind. */
			CHECK_EQ(rc, 0);
			CHECK_EQ(devid, 1);
			CHECK_OK(ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
			close(dev);
			close(iommufd);
			if (!fired)
				break;
			survived++;
			continue;
		}
		failures++;
		CHECK_EQ(rc, -1);
		CHECK(plausible(err));
		if (rc != -1 || !plausible(err))
			h_note("%s: injection point %d: BIND returned %d, errno %s", path, n, rc,
			       h_errname(err));
		/* Nothing of the half-built device is left: ID 1 is free, the fd is not bound. */
		CHECK_OK(ioas_alloc(iommufd, &ioas));
		CHECK_EQ(ioas, 1);
		CHECK_OK(iommu_destroy(iommufd, ioas));
		CHECK_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_GET_INFO, &info));
		close(dev);

		/* A fresh open binds, attaches and detaches. */
		dev = cdev_open(path);
		REQUIRE(dev >= 0);
		CHECK_OK(vfio_bind(dev, iommufd, &devid));
		CHECK_EQ(devid, 1);
		CHECK_OK(ioas_alloc(iommufd, &ioas));
		pt = ioas;
		CHECK_OK(vfio_attach(dev, &pt));
		CHECK_OK(vfio_detach(dev));
		close(dev);
		close(iommufd);
	}
	CHECK(n <= MAX_N);
	CHECK(failures >= 1);
	h_note("%s: BIND failed cleanly at %d injection points and survived %d", path, failures,
	       survived);
}

TEST(noiommu_bind_fails_cleanly_at_every_point)
{
	bind_sweep(NOIOMMU_CDEV);
}

TEST(iommu_bind_fails_cleanly_at_every_point)
{
	bind_sweep(EDU0_CDEV);
}

/*
 * ATTACH of the no-IOMMU device to an IOAS holding a mapping: the auto domain is allocated, the
 * pages pinned and recorded. Failing at any point leaves the device detached and nothing
 * pinned or allocated: no domain (GET_PA EOPNOTSUPP, alignment 1), the next attach works.
 */
TEST(noiommu_attach_fails_cleanly_at_every_point)
{
	unsigned char *mem = h_mmap(4 * PAGE_SZ);
	int n, fired = 0, rc = 0, err = 0, failures = 0, survived = 0;
	struct iommu_iova_range r[8];
	__u64 align;
	__u32 num;

	memset(mem, 0x42, 4 * PAGE_SZ);
	for (n = 1; n <= MAX_N; n++) {
		int iommufd = iommufd_open();
		struct edu_dev d;
		__u32 ioas = 0, pt;

		REQUIRE(iommufd >= 0);
		REQUIRE_OK(ioas_alloc(iommufd, &ioas));
		REQUIRE_OK(edu_open(NOIOMMU_CDEV, iommufd, 0, &d));
		REQUIRE_OK(ioas_map_fixed(iommufd, ioas, mem, 4 * PAGE_SZ, 0x100000));
		pt = ioas;
		FAILNTH_INJECT(g_fnfd, (unsigned int)n, fired, rc, err, vfio_attach(d.fd, &pt));
		if (!fired || rc == 0) {
			CHECK_EQ(rc, 0);
			CHECK_EQ(pt, 3);
			CHECK_OK(get_pa_try(iommufd, ioas, 0x100000, 1));
			edu_close(&d);
			close(iommufd);
			if (!fired)
				break;
			survived++;
			continue;
		}
		failures++;
		CHECK_EQ(rc, -1);
		CHECK(plausible(err));
		if (rc != -1 || !plausible(err))
			h_note("injection point %d: ATTACH returned %d, errno %s", n, rc,
			       h_errname(err));
		/* No domain left behind. */
		CHECK_ERRNO(EOPNOTSUPP, get_pa_try(iommufd, ioas, 0x100000, 1));
		CHECK_OK(iova_ranges8(iommufd, ioas, r, &num, &align));
		CHECK_EQ(align, 1);
		CHECK_ERRNO(ENOENT, iommu_destroy(iommufd, 3));	/* the would-be auto domain */
		/* The device is not attached: detach is a no-op; attach works now. */
		CHECK_OK(vfio_detach(d.fd));
		pt = ioas;
		CHECK_OK(vfio_attach(d.fd, &pt));
		CHECK_EQ(pt, 3);
		CHECK_OK(get_pa_try(iommufd, ioas, 0x100000, 1));
		edu_close(&d);
		close(iommufd);
	}
	CHECK(n <= MAX_N);
	CHECK(failures >= 1);
	h_note("ATTACH failed cleanly at %d injection points and survived %d", failures, survived);
	munmap(mem, 4 * PAGE_SZ);
}

/*
 * MAP into an IOAS that holds the no-IOMMU domain (pinning, accounting, filling the software page
 * table) and GET_PA, each failed at every injection point: a failed MAP leaves no area (the range
 * maps fine afterwards, GET_PA there is ENOENT); a failed GET_PA changes nothing.
 */
TEST(noiommu_map_and_get_pa_fail_cleanly_at_every_point)
{
	unsigned char *mem = h_mmap(4 * PAGE_SZ);
	int n, fired = 0, rc = 0, err = 0, map_failures = 0, get_pa_failures = 0, survived = 0;
	__u64 len, pa = 0, want_pa = 0, want_len = 0;

	memset(mem, 0x24, 4 * PAGE_SZ);
	for (n = 1; n <= MAX_N; n++) {
		int iommufd = iommufd_open();
		struct edu_dev d;
		__u32 ioas = 0;

		REQUIRE(iommufd >= 0);
		REQUIRE_OK(ioas_alloc(iommufd, &ioas));
		REQUIRE_OK(edu_open(NOIOMMU_CDEV, iommufd, ioas, &d));
		FAILNTH_INJECT(g_fnfd, (unsigned int)n, fired, rc, err,
			ioas_map_fixed(iommufd, ioas, mem, 4 * PAGE_SZ, (uintptr_t)mem));
		if (!fired || rc == 0) {
			CHECK_EQ(rc, 0);
			CHECK_OK(get_pa_try(iommufd, ioas, (uintptr_t)mem, 1));
			edu_close(&d);
			close(iommufd);
			if (!fired)
				break;
			survived++;
			continue;
		}
		map_failures++;
		CHECK_EQ(rc, -1);
		CHECK(plausible(err));
		/*
		 * Nothing mapped: GET_PA finds no area, and the same MAP works now. Except when the
		 * failure was writing the result back (EFAULT): like the kernel, the mapping is then
		 * already made and stays.
		 */
		if (err == EFAULT)
			CHECK_OK(ioas_unmap(iommufd, ioas, 0, U64_MAX_, NULL));
		CHECK_ERRNO(ENOENT, get_pa_try(iommufd, ioas, (uintptr_t)mem, 1));
		CHECK_OK(ioas_map_fixed(iommufd, ioas, mem, 4 * PAGE_SZ, (uintptr_t)mem));
		CHECK_OK(get_pa_try(iommufd, ioas, (uintptr_t)mem, 1));
		edu_close(&d);
		close(iommufd);
	}
	CHECK(n <= MAX_N);
	CHECK(map_failures >= 1);

	for (n = 1; n <= MAX_N; n++) {
		int iommufd = iommufd_open();
		struct edu_dev d;
		__u32 ioas = 0;

		REQUIRE(iommufd >= 0);
		REQUIRE_OK(ioas_alloc(iommufd, &ioas));
		REQUIRE_OK(edu_open(NOIOMMU_CDEV, iommufd, ioas, &d));
		REQUIRE_OK(ioas_map_fixed(iommufd, ioas, mem, 4 * PAGE_SZ, (uintptr_t)mem));
		len = 4 * PAGE_SZ;
		FAILNTH_INJECT(g_fnfd, (unsigned int)n, fired, rc, err,
			get_pa(iommufd, ioas, (uintptr_t)mem, &len, &pa));
		if (!fired || rc == 0) {
			CHECK_EQ(rc, 0);
			CHECK(len > 0 && len <= 4 * PAGE_SZ);
			edu_close(&d);
			close(iommufd);
			if (!fired)
				break;
			survived++;
			continue;
		}
		get_pa_failures++;
		CHECK_EQ(rc, -1);
		CHECK(plausible(err));
		/* Unchanged: the next GET_PA answers as an un-injected one, the same every time. */
		len = 4 * PAGE_SZ;
		CHECK_OK(get_pa(iommufd, ioas, (uintptr_t)mem, &len, &pa));
		if (want_len == 0) {
			want_pa = pa;
			want_len = len;
		}
		CHECK_EQ(len, want_len);
		CHECK_EQ(pa % PAGE_SZ, want_pa % PAGE_SZ);
		edu_close(&d);
		close(iommufd);
	}
	CHECK(n <= MAX_N);
	CHECK(get_pa_failures >= 1);
	h_note("MAP failed cleanly at %d injection points, GET_PA at %d; %d survived", map_failures,
	       get_pa_failures, survived);
	munmap(mem, 4 * PAGE_SZ);
}

/* After all that, the emulator still does the whole job. */
TEST(still_works_end_to_end)
{
	unsigned char *mem = h_mmap(2 * PAGE_SZ);
	int iommufd = iommufd_open();
	struct edu_dev d;
	__u64 pa0 = 0, pa1 = 0, len;
	__u32 ioas;

	REQUIRE(iommufd >= 0);
	madvise(mem, 2 * PAGE_SZ, MADV_NOHUGEPAGE);
	memset(mem, 0, 2 * PAGE_SZ);
	fill_pattern(mem, PAGE_SZ, 50);
	REQUIRE_OK(ioas_alloc(iommufd, &ioas));
	REQUIRE_OK(edu_open(NOIOMMU_CDEV, iommufd, ioas, &d));
	REQUIRE_OK(ioas_map_fixed(iommufd, ioas, mem, 2 * PAGE_SZ, (uintptr_t)mem));
	len = PAGE_SZ;
	REQUIRE_OK(get_pa(iommufd, ioas, (uintptr_t)mem, &len, &pa0));
	len = PAGE_SZ;
	REQUIRE_OK(get_pa(iommufd, ioas, (uintptr_t)mem + PAGE_SZ, &len, &pa1));
	REQUIRE_OK(edu_set_bus_master(d.fd, 1));
	CHECK_OK(edu_dma_in(d.fd, pa0, 0, EDU_BUF_SIZE));
	CHECK_OK(edu_dma_out(d.fd, 0, pa1, EDU_BUF_SIZE));
	CHECK(memcmp(mem + PAGE_SZ, mem, PAGE_SZ) == 0);
	edu_close(&d);
	close(iommufd);
	munmap(mem, 2 * PAGE_SZ);
}

int main(void)
{
	h_init();
	g_fnfd = failnth_open();
	if (g_fnfd < 0) {
		printf("Bail out! open /proc/self/task/<tid>/fail-nth: %s\n", strerror(errno));
		return 1;
	}
	/* Disarmed to start with. */
	if (failnth_arm(g_fnfd, 0)) {
		printf("Bail out! write fail-nth: %s\n", strerror(errno));
		return 1;
	}
	RUN(noiommu_bind_fails_cleanly_at_every_point);
	RUN(iommu_bind_fails_cleanly_at_every_point);
	RUN(noiommu_attach_fails_cleanly_at_every_point);
	RUN(noiommu_map_and_get_pa_fail_cleanly_at_every_point);
	RUN(still_works_end_to_end);
	close(g_fnfd);
	return h_done();
}
