/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A credential change between two calls on the same open file is seen by the very next call,
 * however it is made: libc's capset(), syscall(SYS_capset), a raw syscall(SYS_setresuid) of one
 * thread, and glibc's seteuid(), which changes every thread of the process (its setxid
 * broadcast). The kernel checks capable() against the caller's credentials of that moment.
 * The probe is IOMMU_IOAS_NOIOMMU_GET_PA with a flag set, which checks CAP_SYS_RAWIO before
 * anything else (EPERM without it, EOPNOTSUPP for the flag with it) and needs no device;
 * capabilities are per thread, so a thread's own change is not another's.
 * (RLIMIT_MEMLOCK lowered after calls is pin_accounting.c's.)
 */
#include <pthread.h>

#include "harness.h"

/* libc's capset(), which glibc exports without declaring it. */
int capset(cap_user_header_t header, const cap_user_data_t data);

/* The probe: 0 with CAP_SYS_RAWIO (its EOPNOTSUPP for the flag), -1 with EPERM without. */
static int probe_call(int fd)
{
	struct iommu_ioas_noiommu_get_pa cmd = {
		.size = sizeof(cmd),
		.flags = 1,
		.ioas_id = 1,
		.iova = 0,
		.length = 4096,
	};

	if (ioctl(fd, IOMMU_IOAS_NOIOMMU_GET_PA, &cmd) == 0)
		return -2; /* no kernel succeeds with a flag set */
	return errno == EOPNOTSUPP ? 0 : -1;
}

/* CAP_SYS_RAWIO on or off in this thread's effective set, through libc's capset(). */
static int libc_cap_resource(int on)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
		.pid = 0,
	};
	struct __user_cap_data_struct d[2];

	if (cap_get(d))
		return -1;
	if (on)
		d[CAP_SYS_RAWIO / 32].effective |= 1U << (CAP_SYS_RAWIO % 32);
	else
		d[CAP_SYS_RAWIO / 32].effective &= ~(1U << (CAP_SYS_RAWIO % 32));
	return capset(&hdr, d);
}

TEST(capset_between_calls)
{
	int fd, i;

	if (!cap_effective(CAP_SYS_RAWIO))
		SKIP("process lacks CAP_SYS_RAWIO");
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	for (i = 0; i < 3; i++)
		CHECK_OK(probe_call(fd));

	REQUIRE_OK(libc_cap_resource(0));
	CHECK_ERRNO(EPERM, probe_call(fd));
	CHECK_ERRNO(EPERM, probe_call(fd));
	REQUIRE_OK(libc_cap_resource(1));
	CHECK_OK(probe_call(fd));

	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 0)); /* syscall(SYS_capset) */
	CHECK_ERRNO(EPERM, probe_call(fd));
	REQUIRE_OK(cap_set_effective(CAP_SYS_RAWIO, 1));
	CHECK_OK(probe_call(fd));
	close(fd);
}

struct other_thread {
	int fd;
	int before, dropped, after; /* its calls' results: 0 or errno */
	int dropped_ok;
};

static int result(int r)
{
	return r == 0 ? 0 : errno;
}

static void *drop_own_cap(void *arg)
{
	struct other_thread *t = arg;

	t->before = result(probe_call(t->fd));
	t->dropped_ok = libc_cap_resource(0) == 0;
	t->dropped = result(probe_call(t->fd));
	t->after = result(libc_cap_resource(1) == 0 ? probe_call(t->fd) : -1);
	return NULL;
}

TEST(capset_is_per_thread)
{
	struct other_thread t = {0};
	pthread_t th;

	if (!cap_effective(CAP_SYS_RAWIO))
		SKIP("process lacks CAP_SYS_RAWIO");
	t.fd = iommufd_open();
	REQUIRE(t.fd >= 0);
	CHECK_OK(probe_call(t.fd));
	REQUIRE(pthread_create(&th, NULL, drop_own_cap, &t) == 0);
	REQUIRE(pthread_join(th, NULL) == 0);
	REQUIRE(t.dropped_ok);
	CHECK_EQ(t.before, 0);
	CHECK_EQ(t.dropped, EPERM);
	CHECK_EQ(t.after, 0);
	/* The other thread's drop was its own. */
	CHECK_OK(probe_call(t.fd));
	close(t.fd);
}

/* A thread that makes the probe call whenever the main thread asks, and reports its result. */
struct prober {
	int fd;
	int ask[2], answer[2];
};

static void *probe_on_demand(void *arg)
{
	struct prober *p = arg;
	char c;

	while (read(p->ask[0], &c, 1) == 1) {
		int r = result(probe_call(p->fd));
		if (write(p->answer[1], &r, sizeof(r)) != sizeof(r))
			break;
	}
	return NULL;
}

/* The prober thread's result of one probe call. */
static int probe(struct prober *p)
{
	int r = -1;

	if (write(p->ask[1], "p", 1) != 1 || read(p->answer[0], &r, sizeof(r)) != sizeof(r))
		return -1;
	return r;
}

TEST(setxid_broadcast_and_raw_setresuid)
{
	struct prober p;
	pthread_t th;

	if (geteuid() != 0 || !cap_effective(CAP_SYS_RAWIO))
		SKIP("needs euid 0 with CAP_SYS_RAWIO");
	p.fd = iommufd_open();
	REQUIRE(p.fd >= 0);
	REQUIRE(pipe(p.ask) == 0 && pipe(p.answer) == 0);
	REQUIRE(pthread_create(&th, NULL, probe_on_demand, &p) == 0);
	CHECK_EQ(probe(&p), 0);
	CHECK_EQ(probe(&p), 0);

	/* glibc changes every thread: the prober loses its effective capabilities too. */
	REQUIRE_OK(seteuid(65534));
	CHECK_EQ(probe(&p), EPERM);
	CHECK_ERRNO(EPERM, probe_call(p.fd));
	REQUIRE_OK(seteuid(0));
	CHECK_EQ(probe(&p), 0);
	CHECK_OK(probe_call(p.fd));

	/* The raw system call changes the calling thread alone. */
	REQUIRE_OK(syscall(SYS_setresuid, -1, 65534, -1));
	CHECK_ERRNO(EPERM, probe_call(p.fd));
	CHECK_EQ(probe(&p), 0);
	REQUIRE_OK(syscall(SYS_setresuid, -1, 0, -1));
	CHECK_OK(probe_call(p.fd));

	close(p.ask[1]);
	REQUIRE(pthread_join(th, NULL) == 0);
	close(p.ask[0]);
	close(p.answer[0]);
	close(p.answer[1]);
	close(p.fd);
}

int main(void)
{
	h_init();
	RUN(capset_between_calls);
	RUN(capset_is_per_thread);
	RUN(setxid_broadcast_and_raw_setresuid);
	return h_done();
}
