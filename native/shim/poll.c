/*
 * poll, ppoll, select and pselect with emulated fds: the server gives their masks (POLL), the
 * real call polls the other fds with ours hidden, and the shim asks again every POLL_SLICE_MS
 * while nothing is ready (there is no wake-up channel yet).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "real.h"
#include "transport.h"

#define POLL_MAX_EMULATED 64
#define POLL_SLICE_MS 10

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll() with emulated fds among fds: 1 and *ret = the result (errno set when -1), or 0 when none
 * is emulated (the caller uses the real call). The real fds are polled with the real ppoll (with
 * mask, if given) in slices of POLL_SLICE_MS while the server reports nothing ready. timeout in
 * ms, negative = forever. */
static int emu_poll(struct pollfd *fds, nfds_t n, int timeout, const sigset_t *mask, int *ret)
{
	struct emu_poll_ent ents[POLL_MAX_EMULATED];
	uint32_t revents[POLL_MAX_EMULATED];
	nfds_t where[POLL_MAX_EMULATED];
	int k = 0, j;
	nfds_t i;
	int64_t deadline;

	if (!shim_active() || n == 0)
		return 0;
	for (i = 0; i < n && k < POLL_MAX_EMULATED; i++) {
		struct fdent e;
		if (fds[i].fd >= 0 && fd_lookup(fds[i].fd, &e)) {
			ents[k].obj = e.obj;
			ents[k].events = (uint16_t)fds[i].events;
			where[k++] = i;
		}
	}
	if (k == 0)
		return 0;

	deadline = timeout > 0 ? now_ms() + timeout : 0;
	for (;;) {
		struct call c;
		struct timespec slice;
		int ready = 0, wait, r, err;

		call_begin(&c, EMU_OP_POLL);
		c.part[0] = ents;
		c.part_len[0] = (size_t)k * sizeof ents[0];
		if (call_send(&c) == 0 && c.rep.ret >= 0 &&
		    c.data_len == (size_t)k * sizeof(uint32_t)) {
			memcpy(revents, c.data, c.data_len);
		} else {
			for (j = 0; j < k; j++)
				revents[j] = POLLERR;
		}
		call_end(&c);

		for (j = 0; j < k; j++) {
			revents[j] &= ents[j].events | POLLERR | POLLHUP | POLLNVAL;
			if (revents[j] != 0)
				ready++;
		}
		if (ready > 0 || timeout == 0) {
			wait = 0;
		} else if (timeout < 0) {
			wait = POLL_SLICE_MS;
		} else {
			int64_t left = deadline - now_ms();
			wait = left <= 0 ? 0 : (left < POLL_SLICE_MS ? (int)left : POLL_SLICE_MS);
		}
		/* Let the kernel poll the other fds; hide ours (a negative fd is ignored). */
		for (j = 0; j < k; j++)
			fds[where[j]].fd = ~fds[where[j]].fd;
		slice.tv_sec = wait / 1000;
		slice.tv_nsec = (long)(wait % 1000) * 1000000L;
		r = mask != NULL ? REAL(ppoll)(fds, n, &slice, mask) : REAL(poll)(fds, n, wait);
		err = errno;
		for (j = 0; j < k; j++) {
			fds[where[j]].fd = ~fds[where[j]].fd;
			fds[where[j]].revents = (short)revents[j];
		}
		if (r < 0) {
			errno = err;
			*ret = r;
			return 1;
		}
		if (ready > 0 || r > 0) {
			*ret = r + ready;
			return 1;
		}
		if (timeout == 0 || (timeout > 0 && now_ms() >= deadline)) {
			*ret = 0;
			return 1;
		}
	}
}

/* A ppoll/pselect timeout in ms (rounded up), -1 for none. */
static int timeout_ms(const struct timespec *ts)
{
	int64_t ms;
	if (ts == NULL)
		return -1;
	if (ts->tv_sec < 0 || ts->tv_nsec < 0)
		return 0;
	ms = (int64_t)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	int r;
	if (emu_poll(fds, n, timeout, NULL, &r))
		return r;
	return REAL(poll)(fds, n, timeout);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof *fds < n)
		__chk_fail();
	return poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
	int r;
	if (emu_poll(fds, n, timeout_ms(timeout), mask, &r))
		return r;
	return REAL(ppoll)(fds, n, timeout, mask);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
		       const sigset_t *mask, size_t fdslen)
{
	if (fdslen / sizeof *fds < n)
		__chk_fail();
	return ppoll(fds, n, timeout, mask);
}

/* select/pselect with emulated fds in the sets: the same through emu_poll. 0 when none is. */
static int emu_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int timeout,
		      const sigset_t *mask, int *ret)
{
	struct pollfd pf[FD_SETSIZE];
	int fd, k = 0, any = 0, r, count = 0, j;

	if (!shim_active() || nfds <= 0)
		return 0;
	if (nfds > FD_SETSIZE)
		nfds = FD_SETSIZE;
	for (fd = 0; fd < nfds; fd++) {
		struct fdent e;
		short ev = 0;
		if (rd != NULL && FD_ISSET(fd, rd))
			ev |= POLLIN;
		if (wr != NULL && FD_ISSET(fd, wr))
			ev |= POLLOUT;
		if (ex != NULL && FD_ISSET(fd, ex))
			ev |= POLLPRI;
		if (ev == 0)
			continue;
		if (!any && fd_lookup(fd, &e))
			any = 1;
		pf[k].fd = fd;
		pf[k].events = ev;
		pf[k].revents = 0;
		k++;
	}
	if (!any || !emu_poll(pf, (nfds_t)k, timeout, mask, &r))
		return 0;
	if (r < 0) {
		*ret = -1;
		return 1;
	}
	for (j = 0; j < k; j++) {
		if (pf[j].revents & POLLNVAL) {
			errno = EBADF;
			*ret = -1;
			return 1;
		}
	}
	if (rd != NULL)
		FD_ZERO(rd);
	if (wr != NULL)
		FD_ZERO(wr);
	if (ex != NULL)
		FD_ZERO(ex);
	for (j = 0; j < k; j++) {
		short re = pf[j].revents;
		if ((pf[j].events & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) {
			FD_SET(pf[j].fd, rd);
			count++;
		}
		if ((pf[j].events & POLLOUT) && (re & (POLLOUT | POLLERR))) {
			FD_SET(pf[j].fd, wr);
			count++;
		}
		if ((pf[j].events & POLLPRI) && (re & POLLPRI)) {
			FD_SET(pf[j].fd, ex);
			count++;
		}
	}
	*ret = count;
	return 1;
}

EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	int r, ms = -1;
	if (tv != NULL) {
		int64_t v = (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000;
		ms = v < 0 ? 0 : v > INT_MAX ? INT_MAX : (int)v;
	}
	if (emu_select(nfds, rd, wr, ex, ms, NULL, &r)) {
		if (tv != NULL && r == 0)
			tv->tv_sec = tv->tv_usec = 0;
		return r;
	}
	return REAL(select)(nfds, rd, wr, ex, tv);
}

EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
		   const sigset_t *mask)
{
	int r;
	if (emu_select(nfds, rd, wr, ex, timeout_ms(ts), mask, &r))
		return r;
	return REAL(pselect)(nfds, rd, wr, ex, ts, mask);
}

