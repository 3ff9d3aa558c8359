/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The access objects of IOMMU_TEST_CMD failing part way (issue 15: "a pin never outlives what
 * holds it; fail-nth sweeps of these programs are clean"), through the kernel's fail-nth
 * protocol: CREATE_ACCESS, ACCESS_PAGES with and without a domain, ACCESS_RW on its fast and
 * slow paths, an unmap the access must let go of, and ACCESS_REPLACE_IOAS, each with the Nth
 * injection point armed for N = 1, 2, ... until the call no longer reaches an Nth point. A call
 * that fails does so with a plausible errno and leaves the pin counts (MD_CHECK_REFS) and the
 * objects as they were; a following un-injected call works; after everything is closed a new
 * context reads no pin.
 */
#include "harness.h"
#include "edu_helpers.h"
#include "selftest_helpers.h"

#define MAX_N 400
#define NPAGES 8
#define BUF_SIZE (NPAGES * PAGE_SZ)
#define IOVA MOCK_APERTURE_START

static unsigned char *g_buf;
static int g_fnfd = -1;

/* ENOMEM (allocations, pins, charges), EFAULT (user copies), ENOENT (object lookups and the test
 * driver's own points), EINVAL (the single-page copy's own point). */
static int plausible(int e)
{
	return e == ENOMEM || e == EFAULT || e == ENOENT || e == EINVAL;
}

static int create_access(int fd, __u32 ioas, __u32 flags, int *afd)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_CREATE_ACCESS,
		.id = ioas,
		.create_access = { .flags = flags },
	};
	int rc = test_cmd(fd, &cmd);

	*afd = rc ? -1 : (int)cmd.create_access.out_access_fd;
	return rc;
}

static int access_pages(int fd, int afd, __u64 iova, __u64 length, __u32 *id)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_ACCESS_PAGES,
		.id = (__u32)afd,
		.access_pages = { .iova = iova, .length = length,
				  .uptr = (uintptr_t)(g_buf + (iova - IOVA)) },
	};
	int rc = test_cmd(fd, &cmd);

	if (!rc)
		*id = cmd.access_pages.out_access_pages_id;
	return rc;
}

static int destroy_access_pages(int fd, int afd, __u32 id)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
		.id = (__u32)afd,
		.destroy_access_pages = { .access_pages_id = id },
	};

	return test_cmd(fd, &cmd);
}

static int access_rw(int fd, int afd, __u64 iova, void *buf, __u64 length, __u32 flags)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_ACCESS_RW,
		.id = (__u32)afd,
		.access_rw = { .iova = iova, .length = length, .uptr = (uintptr_t)buf, .flags = flags },
	};

	return test_cmd(fd, &cmd);
}

static int access_replace_ioas(int fd, int afd, __u32 ioas)
{
	struct iommu_test_cmd cmd = {
		.op = IOMMU_TEST_OP_ACCESS_REPLACE_IOAS,
		.id = (__u32)afd,
		.access_replace_ioas = { .ioas_id = ioas },
	};

	return test_cmd(fd, &cmd);
}

/* An iommufd and an IOAS with g_buf mapped at IOVA; SKIP without the test interface. */
#define SETUP(fd, ioas) OPEN_MOCK_IOAS(fd, ioas, g_buf, BUF_SIZE)

#define REFS(fd, off, pages) check_refs_of(fd, g_buf + (off) * PAGE_SZ, (pages) * PAGE_SZ, 0)
#define REFS_ARE(fd, off, pages, n) \
	check_refs_of(fd, g_buf + (off) * PAGE_SZ, (pages) * PAGE_SZ, n)

/* A new context sees no pin left. */
static int no_pins_left(void)
{
	int fd = iommufd_open();
	int rc = fd < 0 ? -1 : check_refs_of(fd, g_buf, BUF_SIZE, 0);

	if (fd >= 0)
		close(fd);
	return rc;
}

/* The sweep's end: it ended, and some point failed the call. */
#define SWEEP_DONE(what, n, failures, survived)                                    \
	do {                                                                       \
		CHECK((n) <= MAX_N);                                               \
		CHECK((failures) >= 1);                                            \
		h_note("%s failed cleanly at %d injection points and survived %d", \
		       what, failures, survived);                                  \
	} while (0)

#define COUNT_FAILURE(what, n, rc, err, failures)                                   \
	do {                                                                        \
		(failures)++;                                                       \
		CHECK_EQ(rc, -1);                                                   \
		CHECK(plausible(err));                                              \
		if ((rc) != -1 || !plausible(err))                                  \
			h_note("%s: point %d: returned %d, errno %s", what, n, rc,  \
			       h_errname(err));                                     \
	} while (0)

TEST(create_access_fails_cleanly)
{
	int n, fired = 0, rc = 0, err = 0, failures = 0, survived = 0;

	for (n = 1; n <= MAX_N; n++) {
		__u32 ioas, next;
		int fd, afd;

		SETUP(fd, ioas);
		FAILNTH_INJECT(g_fnfd, (unsigned int)n, fired, rc, err,
			create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
		if (!fired || rc == 0) {
			CHECK_EQ(rc, 0);
			CHECK_ERRNO(EBUSY, iommu_destroy(fd, ioas));
			CHECK_OK(close(afd));
			CHECK_OK(iommu_destroy(fd, ioas));
			close(fd);
			if (!fired)
				break;
			survived++;
			continue;
		}
		COUNT_FAILURE("CREATE_ACCESS", n, rc, err, failures);
		/* No access is left: its id is free, the IOAS is not held. */
		CHECK_OK(ioas_alloc(fd, &next));
		CHECK_EQ(next, ioas + 1);
		CHECK_OK(iommu_destroy(fd, ioas));
		/* And the next one works. */
		REQUIRE_OK(ioas_alloc(fd, &ioas));
		CHECK_OK(create_access(fd, ioas, 0, &afd));
		CHECK_OK(close(afd));
		close(fd);
	}
	SWEEP_DONE("CREATE_ACCESS", n, failures, survived);
	CHECK_OK(no_pins_left());
}

static void access_pages_sweep(int with_domain)
{
	int n, fired = 0, rc = 0, err = 0, failures = 0, survived = 0;
	const char *what = with_domain ? "ACCESS_PAGES (domain)" : "ACCESS_PAGES";

	for (n = 1; n <= MAX_N; n++) {
		__u32 ioas, stdev = 0, id = 0;
		int fd, afd;

		SETUP(fd, ioas);
		REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
		if (with_domain)
			REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, NULL));
		FAILNTH_INJECT(g_fnfd, (unsigned int)n, fired, rc, err,
			access_pages(fd, afd, IOVA + PAGE_SZ, 2 * PAGE_SZ, &id));
		if (!fired || rc == 0) {
			CHECK_EQ(rc, 0);
			CHECK_OK(REFS_ARE(fd, 1, 2, 1));
			if (with_domain)
				CHECK_OK(iommu_destroy(fd, stdev));
			CHECK_OK(REFS_ARE(fd, 1, 2, 1));
			CHECK_OK(destroy_access_pages(fd, afd, id));
			CHECK_OK(REFS(fd, 0, NPAGES));
			close(afd);
			close(fd);
			if (!fired)
				break;
			survived++;
			continue;
		}
		COUNT_FAILURE(what, n, rc, err, failures);
		/* Only the domain pins; without it nothing does. */
		CHECK_OK(REFS_ARE(fd, 0, NPAGES, with_domain ? 1 : 0));
		if (with_domain)
			CHECK_OK(iommu_destroy(fd, stdev));
		CHECK_OK(REFS(fd, 0, NPAGES));
		CHECK_ERRNO(ENOENT, destroy_access_pages(fd, afd, 0));
		CHECK_OK(access_pages(fd, afd, IOVA + PAGE_SZ, 2 * PAGE_SZ, &id));
		CHECK_OK(REFS_ARE(fd, 1, 2, 1));
		close(afd);
		CHECK_OK(REFS(fd, 0, NPAGES));
		close(fd);
	}
	SWEEP_DONE(what, n, failures, survived);
	CHECK_OK(no_pins_left());
}

TEST(access_pages_fails_cleanly)
{
	access_pages_sweep(0);
}

TEST(access_pages_with_a_domain_fails_cleanly)
{
	access_pages_sweep(1);
}

static void access_rw_sweep(__u32 flags, __u64 offset, __u64 length)
{
	int n, fired = 0, rc = 0, err = 0, failures = 0, survived = 0;
	unsigned char *tmp = h_mmap(length);
	char what[64];
	__u64 i;

	snprintf(what, sizeof(what), "ACCESS_RW flags %#x length %llu", flags,
		 (unsigned long long)length);
	for (n = 1; n <= MAX_N; n++) {
		__u32 ioas;
		int fd, afd;

		SETUP(fd, ioas);
		REQUIRE_OK(create_access(fd, ioas, 0, &afd));
		memset(g_buf, 0x11, BUF_SIZE);
		memset(tmp, 0x22, length);
		FAILNTH_INJECT(g_fnfd, (unsigned int)n, fired, rc, err,
			access_rw(fd, afd, IOVA + offset, tmp, length, flags));
		if (!fired || rc == 0) {
			CHECK_EQ(rc, 0);
			/* Both sides hold the copied bytes. */
			for (i = 0; i < length; i++)
				if (g_buf[offset + i] != tmp[i])
					break;
			CHECK_EQ(i, length);
			close(afd);
			close(fd);
			if (!fired)
				break;
			survived++;
			continue;
		}
		COUNT_FAILURE(what, n, rc, err, failures);
		CHECK_OK(REFS(fd, 0, NPAGES));
		CHECK_OK(access_rw(fd, afd, IOVA + offset, tmp, length, flags));
		close(afd);
		close(fd);
	}
	SWEEP_DONE(what, n, failures, survived);
	CHECK_OK(no_pins_left());
	munmap(tmp, length);
}

TEST(access_rw_fails_cleanly)
{
	access_rw_sweep(0, 100, 200);
	access_rw_sweep(MOCK_ACCESS_RW_WRITE, PAGE_SZ - 8, 16);
	access_rw_sweep(MOCK_ACCESS_RW_SLOW_PATH, 2 * PAGE_SZ + 5, 50);
	access_rw_sweep(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH, 0, 5 * PAGE_SZ);
}

TEST(unmap_of_a_pinned_area_fails_cleanly)
{
	int n, fired = 0, rc = 0, err = 0, failures = 0, survived = 0;

	for (n = 1; n <= MAX_N; n++) {
		__u64 unmapped = 0;
		__u32 ioas, id;
		int fd, afd;

		SETUP(fd, ioas);
		REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
		REQUIRE_OK(access_pages(fd, afd, IOVA, 3 * PAGE_SZ, &id));
		FAILNTH_INJECT(g_fnfd, (unsigned int)n, fired, rc, err,
			ioas_unmap(fd, ioas, IOVA, BUF_SIZE, &unmapped));
		if (!fired || rc == 0) {
			CHECK_EQ(rc, 0);
			CHECK_EQ(unmapped, BUF_SIZE);
			CHECK_OK(REFS(fd, 0, NPAGES));
			CHECK_ERRNO(ENOENT, destroy_access_pages(fd, afd, id));
			close(afd);
			close(fd);
			if (!fired)
				break;
			survived++;
			continue;
		}
		COUNT_FAILURE("IOAS_UNMAP", n, rc, err, failures);
		/* The access was told first, or not at all, or only the answer was lost (EFAULT
		 * after the unmap): either way a plain unmap finishes, or finds nothing left. */
		errno = 0;
		if (ioas_unmap(fd, ioas, IOVA, BUF_SIZE, &unmapped))
			CHECK_EQ(errno, ENOENT);
		CHECK_OK(REFS(fd, 0, NPAGES));
		close(afd);
		close(fd);
	}
	SWEEP_DONE("IOAS_UNMAP", n, failures, survived);
	CHECK_OK(no_pins_left());
}

TEST(replace_ioas_fails_cleanly)
{
	int n, fired = 0, rc = 0, err = 0, failures = 0, survived = 0;

	for (n = 1; n <= MAX_N; n++) {
		__u32 ioas, ioas2, id;
		int fd, afd;

		SETUP(fd, ioas);
		REQUIRE_OK(ioas_alloc(fd, &ioas2));
		REQUIRE_OK(create_access(fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, &afd));
		REQUIRE_OK(access_pages(fd, afd, IOVA, 2 * PAGE_SZ, &id));
		FAILNTH_INJECT(g_fnfd, (unsigned int)n, fired, rc, err,
			access_replace_ioas(fd, afd, ioas2));
		if (!fired || rc == 0) {
			CHECK_EQ(rc, 0);
			CHECK_OK(REFS(fd, 0, NPAGES));
			CHECK_ERRNO(ENOENT, destroy_access_pages(fd, afd, id));
			CHECK_OK(iommu_destroy(fd, ioas));
			close(afd);
			close(fd);
			if (!fired)
				break;
			survived++;
			continue;
		}
		COUNT_FAILURE("ACCESS_REPLACE_IOAS", n, rc, err, failures);
		/* Still on the first IOAS, still pinning. */
		CHECK_OK(REFS_ARE(fd, 0, 2, 1));
		CHECK_ERRNO(EBUSY, iommu_destroy(fd, ioas));
		CHECK_OK(iommu_destroy(fd, ioas2));
		CHECK_OK(destroy_access_pages(fd, afd, id));
		CHECK_OK(REFS(fd, 0, NPAGES));
		close(afd);
		close(fd);
	}
	SWEEP_DONE("ACCESS_REPLACE_IOAS", n, failures, survived);
	CHECK_OK(no_pins_left());
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0x11, BUF_SIZE);
	g_fnfd = failnth_open();
	if (g_fnfd < 0 || failnth_arm(g_fnfd, 0)) {
		printf("Bail out! /proc/self/task/<tid>/fail-nth: %s\n", strerror(errno));
		return 1;
	}
	RUN(create_access_fails_cleanly);
	RUN(access_pages_fails_cleanly);
	RUN(access_pages_with_a_domain_fails_cleanly);
	RUN(access_rw_fails_cleanly);
	RUN(unmap_of_a_pinned_area_fails_cleanly);
	RUN(replace_ioas_fails_cleanly);
	return h_done();
}
