/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Memory a program serves itself through userfaultfd (issue 13, item 2). The
 * kernel's copy_to_user()/copy_from_user() and its pins (IOAS_MAP into a
 * domain, the attach that gives mapped areas their first domain) fault a
 * page of a registered range to the program's handler and wait until it is
 * supplied: a handler thread doing UFFDIO_COPY (QEMU's postcopy) sees the
 * fault, and the call completes with the bytes it supplied. A userfaultfd made
 * UFFD_USER_MODE_ONLY does not take the kernel's own faults: EFAULT at once.
 * A handler that never serves holds only its own caller: a bystander process
 * is served meanwhile (order: after the handler has seen the fault, before it
 * is killed), and killing the process releases everything it held (exec's
 * leak check at the end).
 *
 * Needs userfaultfd for kernel faults: CAP_SYS_PTRACE, or
 * vm.unprivileged_userfaultfd=1, or access to /dev/userfaultfd; skipped
 * otherwise.
 */
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>

#include "harness.h"
#include "selftest_helpers.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

/* A userfaultfd with the API handshake done, or -1 (errno set). */
static int uffd_open(int flags)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | flags);

	if (fd < 0 && errno == EPERM) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | flags);
			close(dev);
		}
		if (fd < 0)
			errno = EPERM;
	}
	if (fd < 0)
		return -1;
	if (ioctl(fd, UFFDIO_API, &api)) {
		close(fd);
		return -1;
	}
	return fd;
}

#define UFFD_OPEN_OR_SKIP(fd, flags)                                                      \
	do {                                                                              \
		(fd) = uffd_open(flags);                                                  \
		if ((fd) < 0 && (errno == EPERM || errno == ENOSYS || errno == EINVAL))   \
			SKIP("no userfaultfd for kernel faults here (%s)", h_errname(errno)); \
		REQUIRE((fd) >= 0);                                                       \
	} while (0)

/* Fresh anonymous memory registered for missing-page faults. */
static void *uffd_region(int uffd, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)p, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	if (p == MAP_FAILED)
		return NULL;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		munmap(p, len);
		return NULL;
	}
	return p;
}

/*
 * The fault handler thread: reads each fault, counts it, and (when `serve`)
 * supplies the page: `fill` in every byte, or a copy of `source` if set. Stops
 * when `stop` is written to.
 */
struct handler {
	int uffd;
	int serve;
	unsigned char fill;
	const void *source;
	int stop[2];
	int seen[2]; /* one byte written per fault seen */
	int faults;
	int write_faults;
	pthread_t thread;
};

static void *handler_run(void *p)
{
	struct handler *h = p;
	static unsigned char page[PAGE_SZ] __attribute__((aligned(4096)));

	for (;;) {
		struct pollfd fds[2] = { { h->uffd, POLLIN, 0 }, { h->stop[0], POLLIN, 0 } };
		struct uffd_msg msg;

		if (poll(fds, 2, -1) < 0)
			continue;
		if (fds[1].revents)
			return NULL;
		if (read(h->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		h->faults++;
		if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE)
			h->write_faults++;
		if (write(h->seen[1], "f", 1) != 1)
			return NULL;
		if (!h->serve)
			continue;
		unsigned long at = msg.arg.pagefault.address & ~(PAGE_SZ - 1);
		if (h->source)
			memcpy(page, h->source, PAGE_SZ);
		else
			memset(page, h->fill, PAGE_SZ);
		struct uffdio_copy copy = { .dst = at, .src = (uintptr_t)page, .len = PAGE_SZ };
		if (ioctl(h->uffd, UFFDIO_COPY, &copy) && errno != EEXIST)
			return NULL;
	}
}

static int handler_start(struct handler *h, int uffd, int serve, unsigned char fill)
{
	memset(h, 0, sizeof(*h));
	h->uffd = uffd;
	h->serve = serve;
	h->fill = fill;
	if (pipe(h->stop) || pipe(h->seen))
		return -1;
	return pthread_create(&h->thread, NULL, handler_run, h) ? -1 : 0;
}

static void handler_stop(struct handler *h)
{
	if (write(h->stop[1], "s", 1) == 1)
		pthread_join(h->thread, NULL);
	close(h->stop[0]);
	close(h->stop[1]);
	close(h->seen[0]);
	close(h->seen[1]);
}

/* IOVA_RANGES into a page the handler has not supplied yet: it waits, gets the page, writes. */
TEST(copy_to_user_waits_for_handler)
{
	struct iommu_iova_range want[4], *got;
	struct handler h;
	__u32 ioas, nwant = 4, ngot = 4;
	int fd, uffd;

	UFFD_OPEN_OR_SKIP(uffd, O_NONBLOCK);
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(ioas_iova_ranges(fd, ioas, want, &nwant, NULL));
	REQUIRE(nwant >= 1 && nwant < 4);
	got = uffd_region(uffd, PAGE_SZ);
	REQUIRE(got != NULL);
	REQUIRE_OK(handler_start(&h, uffd, 1, 0xee));

	CHECK_OK(ioas_iova_ranges(fd, ioas, got, &ngot, NULL));
	CHECK_EQ(ngot, nwant);
	CHECK(memcmp(got, want, nwant * sizeof(*got)) == 0);
	/* Past what the kernel wrote: the handler's bytes. */
	CHECK_EQ(((unsigned char *)got)[nwant * sizeof(*got)], 0xee);
	handler_stop(&h);
	CHECK_EQ(h.faults, 1);
	CHECK_EQ(h.write_faults, 1);
	munmap(got, PAGE_SZ);
	close(uffd);
	close(fd);
}

/*
 * IOAS_ALLOC whose size says 5 MiB more than the struct: copy_struct_from_user()
 * checks the tail for zeroes (a walk the emulator spreads over several turns),
 * reading pages the handler supplies as zeroes.
 */
TEST(zero_tail_walk_waits_for_handler)
{
	const size_t tail = 5ULL << 20;
	struct iommu_ioas_alloc *cmd;
	struct handler h;
	unsigned char *area, resident = 0;
	int fd, uffd;

	UFFD_OPEN_OR_SKIP(uffd, O_NONBLOCK);
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	/* One ordinary page holding the struct at its end, then the registered tail. */
	area = mmap(NULL, PAGE_SZ + tail, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(area != MAP_FAILED);
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)area + PAGE_SZ, .len = tail },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	REQUIRE_OK(ioctl(uffd, UFFDIO_REGISTER, &reg));
	cmd = (struct iommu_ioas_alloc *)(area + PAGE_SZ - sizeof(*cmd));
	memset(cmd, 0, sizeof(*cmd));
	cmd->size = sizeof(*cmd) + tail;
	REQUIRE_OK(handler_start(&h, uffd, 1, 0));

	CHECK_OK(ioctl(fd, IOMMU_IOAS_ALLOC, cmd));
	CHECK(cmd->out_ioas_id != 0);
	handler_stop(&h);
	/* Every page of the tail was read, through the handler, once. */
	CHECK_EQ(h.faults, (int)(tail / PAGE_SZ));
	CHECK_OK(mincore(area + PAGE_SZ + tail - PAGE_SZ, PAGE_SZ, &resident));
	CHECK_EQ(resident & 1, 1);
	munmap(area, PAGE_SZ + tail);
	close(uffd);
	close(fd);
}

/* Auto-maps one page and unmaps it again; the chosen IOVA, or ~0. */
static __u64 probe_auto_iova(int fd, __u32 ioas, void *page)
{
	__u64 iova = 0;

	if (ioas_map_auto(fd, ioas, page, PAGE_SZ, &iova))
		return ~0ULL;
	if (ioas_unmap(fd, ioas, iova, PAGE_SZ, NULL))
		return ~0ULL;
	return iova;
}

/* ALLOW_IOVAS reading its list from a page the handler supplies: the list it supplied counts. */
TEST(copy_from_user_waits_for_handler)
{
	static struct iommu_iova_range source[PAGE_SZ / sizeof(struct iommu_iova_range)];
	struct iommu_iova_range *list;
	struct handler h;
	void *page = h_mmap(PAGE_SZ);
	__u32 ioas;
	int fd, uffd;

	UFFD_OPEN_OR_SKIP(uffd, O_NONBLOCK);
	REQUIRE(page != NULL);
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	list = uffd_region(uffd, PAGE_SZ);
	REQUIRE(list != NULL);
	source[0] = (struct iommu_iova_range){ .start = 0x300000, .last = 0x3fffff };
	REQUIRE_OK(handler_start(&h, uffd, 1, 0));
	h.source = source;

	CHECK_OK(ioas_allow_iovas(fd, ioas, list, 1));
	CHECK_EQ(probe_auto_iova(fd, ioas, page), 0x300000);
	handler_stop(&h);
	CHECK_EQ(h.faults, 1);
	CHECK_EQ(h.write_faults, 0);
	CHECK_EQ(list[0].start, 0x300000);
	munmap(list, PAGE_SZ);
	close(uffd);
	close(fd);
}

/* IOAS_MAP into a domain pins the range, faulting every page in through the handler first. */
TEST(map_pin_waits_for_handler)
{
	const size_t len = 4 * PAGE_SZ;
	static unsigned char backing[PAGE_SZ] __attribute__((aligned(4096)));
	unsigned char *buf, vec[4];
	struct handler h;
	__u32 ioas, hwpt;
	__u64 iova = MOCK_APERTURE_START + 0x100000;
	int fd, uffd;

	UFFD_OPEN_OR_SKIP(uffd, O_NONBLOCK);
	OPEN_MOCK_IOAS(fd, ioas, backing, PAGE_SZ);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, NULL, &hwpt, NULL));
	buf = uffd_region(uffd, len);
	REQUIRE(buf != NULL);
	REQUIRE_OK(handler_start(&h, uffd, 1, 0x5a));

	CHECK_OK(ioas_map_fixed(fd, ioas, buf, len, iova));
	/* Every page was supplied before MAP returned. */
	CHECK_EQ(h.faults, 4);
	CHECK_OK(mincore(buf, len, vec));
	CHECK_EQ(vec[0] & vec[1] & vec[2] & vec[3] & 1, 1);
	CHECK_EQ(buf[len - 1], 0x5a);
	CHECK_OK(check_map(fd, hwpt, iova, len, buf));
	CHECK_OK(check_refs_of(fd, buf, len, 1));
	CHECK_OK(ioas_unmap(fd, ioas, iova, len, NULL));
	handler_stop(&h);
	munmap(buf, len);
	close(uffd);
	mock_close_and_check(fd, backing, PAGE_SZ);
}

/*
 * A MAP with no domain pins nothing; the attach that gives the IOAS its first
 * domain pins the area, and that call waits for the handler.
 */
TEST(attach_pin_waits_for_handler)
{
	const size_t len = 4 * PAGE_SZ;
	static unsigned char backing[PAGE_SZ] __attribute__((aligned(4096)));
	unsigned char *buf;
	struct handler h;
	__u32 ioas, hwpt;
	__u64 iova = MOCK_APERTURE_START + 0x100000;
	int fd, uffd;

	UFFD_OPEN_OR_SKIP(uffd, O_NONBLOCK);
	OPEN_MOCK_IOAS(fd, ioas, backing, PAGE_SZ);
	buf = uffd_region(uffd, len);
	REQUIRE(buf != NULL);
	REQUIRE_OK(handler_start(&h, uffd, 1, 0x3c));

	CHECK_OK(ioas_map_fixed(fd, ioas, buf, len, iova));
	CHECK_EQ(h.faults, 0);
	CHECK_OK(mock_domain_flags(fd, ioas, 0, NULL, &hwpt, NULL));
	CHECK_EQ(h.faults, 4);
	CHECK_EQ(buf[0], 0x3c);
	CHECK_OK(check_map(fd, hwpt, iova, len, buf));
	CHECK_OK(ioas_unmap(fd, ioas, iova, len, NULL));
	handler_stop(&h);
	munmap(buf, len);
	close(uffd);
	mock_close_and_check(fd, backing, PAGE_SZ);
}

/* UFFD_USER_MODE_ONLY: the kernel's own access is not the handler's to serve: EFAULT. */
TEST(user_mode_only_is_efault)
{
	struct iommu_iova_range *got;
	struct pollfd pfd;
	__u32 ioas, n = 4;
	int fd, uffd;

	UFFD_OPEN_OR_SKIP(uffd, O_NONBLOCK | UFFD_USER_MODE_ONLY);
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	got = uffd_region(uffd, PAGE_SZ);
	REQUIRE(got != NULL);
	CHECK_ERRNO(EFAULT, ioas_iova_ranges(fd, ioas, got, &n, NULL));
	/* Nothing was queued for a handler. */
	pfd = (struct pollfd){ uffd, POLLIN, 0 };
	CHECK_EQ(poll(&pfd, 1, 0), 0);
	munmap(got, PAGE_SZ);
	close(uffd);
	close(fd);
}

/*
 * A process whose handler never serves waits in its own call; another process
 * is served meanwhile; SIGKILL ends the wait and releases what it held.
 */
TEST(unserved_fault_holds_only_its_caller)
{
	const size_t len = 4 * PAGE_SZ;
	int ready[2];
	pid_t child;
	char c;
	__u32 id, n = 4;
	struct iommu_iova_range mine[4];
	int fd, probe;

	probe = uffd_open(O_NONBLOCK);
	if (probe < 0)
		SKIP("no userfaultfd for kernel faults here (%s)", h_errname(errno));
	close(probe);
	REQUIRE_OK(pipe(ready));
	child = h_fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		struct handler h;
		void *buf;
		__u32 ioas, nr = 4;
		int cfd = iommufd_open();
		int uffd = uffd_open(O_NONBLOCK);
		static unsigned char pinned[4 * PAGE_SZ] __attribute__((aligned(4096)));
		__u64 iova;

		if (cfd < 0 || uffd < 0 || ioas_alloc(cfd, &ioas))
			_exit(2);
		/* Something to release: a mapping of ordinary memory. */
		if (ioas_map_auto(cfd, ioas, pinned, sizeof(pinned), &iova))
			_exit(3);
		buf = uffd_region(uffd, len);
		if (buf == NULL || handler_start(&h, uffd, 0, 0))
			_exit(4);
		/* The handler tells the parent it saw the fault, then never serves it. */
		h.seen[1] = dup(ready[1]);
		ioas_iova_ranges(cfd, ioas, buf, &nr, NULL);
		_exit(5);
	}
	close(ready[1]);
	/* The child's call has reached its fault. */
	CHECK_EQ(read(ready[0], &c, 1), 1);
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	CHECK_OK(ioas_alloc(fd, &id));
	CHECK_OK(ioas_iova_ranges(fd, id, mine, &n, NULL));
	CHECK_OK(iommu_destroy(fd, id));
	/* ... while the child still waits in it. */
	CHECK_EQ(waitpid(child, NULL, WNOHANG), 0);
	CHECK_OK(kill(child, SIGKILL));
	CHECK_EQ(h_wait(child), 128 + SIGKILL);
	close(ready[0]);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(copy_to_user_waits_for_handler);
	RUN(copy_from_user_waits_for_handler);
	RUN(zero_tail_walk_waits_for_handler);
	RUN(map_pin_waits_for_handler);
	RUN(attach_pin_waits_for_handler);
	RUN(user_mode_only_is_efault);
	RUN(unserved_fault_holds_only_its_caller);
	return h_done();
}
