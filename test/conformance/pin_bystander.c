/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One thread's huge pin does not hold another's (issue 13, item 2): while a
 * thread maps 256 MiB into an IOAS with an edu device's domain attached (every
 * page pinned and mapped: iopt_area_fill_domains() over a pfn_reader, batch by
 * batch), a second thread's IOMMU_IOAS_UNMAP of the same range comes back.
 * The order is read from the answer itself, not from a clock: the area is in
 * the IOAS from before the pin starts until after it ends, without its pages
 * while it is filled, and an unmap of it then is EBUSY. Before the area is
 * inserted the unmap is ENOENT; after the map it would succeed. So an EBUSY
 * is a call that completed while the pin was in progress.
 *
 * With two CPUs that is what a kernel does every time. With one, the second
 * thread runs only when the pin reschedules (it does, between pages), so a
 * map that ends first is noted and the case skips rather than fails.
 */
#include <pthread.h>

#include "harness.h"
#include "edu_helpers.h"

#define LEN (256ULL * 1024 * 1024)
#define IOVA 0x40000000ULL

struct map_call {
	int fd;
	__u32 ioas;
	void *buf;
	int ret;
	int err;
};

static void *map_run(void *p)
{
	struct map_call *c = p;

	c->ret = ioas_map_fixed(c->fd, c->ioas, c->buf, LEN, IOVA);
	c->err = errno;
	return NULL;
}

/* An unmap of the range while it is being pinned is EBUSY, and the map is intact after. */
TEST(unmap_during_pin_is_ebusy)
{
	struct map_call c;
	struct edu_dev d;
	pthread_t t;
	__u64 unmapped = 0;
	__u32 id;
	long tries = 0;
	int r, err;

	if (!may_pin(LEN))
		SKIP("RLIMIT_MEMLOCK below 256 MiB and no CAP_IPC_LOCK");
	c.fd = iommufd_open();
	REQUIRE(c.fd >= 0);
	REQUIRE_OK(ioas_alloc(c.fd, &c.ioas));
	REQUIRE_OK(edu_open(EDU0_CDEV, c.fd, c.ioas, &d));
	c.buf = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(c.buf != MAP_FAILED);

	REQUIRE(pthread_create(&t, NULL, map_run, &c) == 0);
	/* ENOENT until the map has inserted its area; then EBUSY while it fills it. */
	do {
		r = ioas_unmap(c.fd, c.ioas, IOVA, LEN, &unmapped);
		err = errno;
		tries++;
	} while (r == -1 && err == ENOENT);
	/* An ordinary call meanwhile comes back too. */
	CHECK_OK(ioas_alloc(c.fd, &id));
	CHECK_OK(iommu_destroy(c.fd, id));
	REQUIRE(pthread_join(t, NULL) == 0);
	CHECK_EQ(c.ret, 0);
	if (c.ret == -1)
		h_note("MAP failed: %s", h_errname(c.err));

	if (r == 0 && sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		/* The pin ended before the other thread ran: nothing to see on one CPU. */
		h_note("the map ended before the unmap after %ld tries", tries);
	} else {
		if (r != -1 || err != EBUSY)
			h_fail(__FILE__, __LINE__,
			       "unmap during the map: expected -1/EBUSY, got ret=%d errno=%s",
			       r, h_ret_errno(r, err));
		/* The map is whole: the unmap that met it half-built changed nothing. */
		unmapped = 0;
		CHECK_OK(ioas_unmap(c.fd, c.ioas, IOVA, LEN, &unmapped));
		CHECK_EQ(unmapped, LEN);
	}
	edu_close(&d);
	munmap(c.buf, LEN);
	close(c.fd);
	if (r == 0 && sysconf(_SC_NPROCESSORS_ONLN) < 2)
		SKIP("a single CPU, and the pin ended before the bystander ran");
}

int main(void)
{
	h_init();
	RUN(unmap_during_pin_is_ebusy);
	return h_done();
}
