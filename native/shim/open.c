/*
 * open, close, dup and fcntl(F_DUPFD*), close_range and recvmsg: where fd numbers change, the fd
 * table follows. Every emulated open() returns a real fd: a fresh AF_UNIX connection to the
 * server (the object connection) whose only message is OPEN, so dup, fork, exec, close and
 * SIGKILL behave natively and the server releases the file when it sees EOF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>

#include "fd_table.h"
#include "open.h"
#include "paths.h"
#include "real.h"
#include "transport.h"

/* libc opened fd: the program's own file, whatever the table said of that number before. */
static int opened_foreign(int fd)
{
	if (fd >= 0)
		fd_remember_foreign(fd);
	return fd;
}

/* The OPEN exchange on the new object connection s: the object's id, or -errno. */
static long open_object(int s, const char *abs, int flags, struct fdent *e)
{
	struct stat st;
	struct call c;
	long r;

	if (REAL(fstat)(s, &st) < 0)
		return -ENXIO;
	call_begin(&c, EMU_OP_OPEN);
	c.req.seq = 1;
	c.req.obj = (uint32_t)s;
	c.req.a0 = (uint32_t)flags;
	c.req.a1 = (uint64_t)st.st_ino;
	c.part[0] = abs;
	c.part_len[0] = strlen(abs) + 1;
	r = call_send_on(&c, s);
	if (r != 0) {
		r = -ENXIO;
	} else if (c.rep.ret <= 0) {
		r = c.rep.ret < 0 ? c.rep.ret : -EIO;
	} else {
		r = c.rep.ret;
		e->obj = (uint32_t)c.rep.ret;
		e->mode = (uint32_t)c.rep.v0;
		e->rdev = c.rep.v1;
	}
	call_end(&c);
	return r;
}

int emu_open(const char *abs, int flags, mode_t mode)
{
	struct fdent e;
	char tb[PATH_MAX];
	long r;
	int s;

	/* Say HELLO for this address space before the object exists (the server's memory view). */
	transport_hello();
	s = server_connect((flags & O_CLOEXEC) != 0);
	if (s < 0)
		return (int)finish(-ENXIO);
	r = open_object(s, abs, flags, &e);
	if (r > 0) {
		fd_remember(s, &e);
		if (flags & O_NONBLOCK)
			REAL(fcntl)(s, F_SETFL, O_NONBLOCK);
		return s;
	}
	REAL(close)(s);
	/* A directory: a real one in the testbed (readdir, fchdir, openat relative to it). */
	if (r == -EISDIR && testbed_join(abs, tb)) {
		return opened_foreign(REAL(open)(tb, flags, mode));
	}
	return (int)finish(r);
}

int emu_reserve_fd(int flags, uint32_t *obj)
{
	struct stat st;
	struct call c;
	long r;
	int s = server_connect((flags & O_CLOEXEC) != 0);

	if (s < 0)
		return -ENXIO;
	if (REAL(fstat)(s, &st) < 0) {
		REAL(close)(s);
		return -ENXIO;
	}
	call_begin(&c, EMU_OP_RESERVE);
	c.req.seq = 1;
	c.req.obj = (uint32_t)s;
	c.req.a1 = (uint64_t)st.st_ino;
	r = call_send_on(&c, s);
	if (r == 0 && c.rep.ret > 0)
		*obj = (uint32_t)c.rep.ret;
	else
		r = r == 0 && c.rep.ret < 0 ? c.rep.ret : -ENXIO;
	call_end(&c);
	if (r != 0) {
		REAL(close)(s);
		return (int)r;
	}
	if (flags & O_NONBLOCK)
		REAL(fcntl)(s, F_SETFL, O_NONBLOCK);
	return s;
}

#define NEEDS_MODE(flags) (((flags) & O_CREAT) != 0 || ((flags) & O_TMPFILE) == O_TMPFILE)

/* open's optional third argument. */
#define GET_MODE(flags, last)                            \
	mode_t mode = 0;                                 \
	if (NEEDS_MODE(flags)) {                         \
		va_list ap;                              \
		va_start(ap, last);                      \
		mode = (mode_t)va_arg(ap, unsigned int); \
		va_end(ap);                              \
	}

/* emu_open of path if the emulator answers for it, else EMU_NOT_OURS. */
static long open_emulated(int dirfd, const char *path, int flags, mode_t mode)
{
	char abs[PATH_MAX];
	if (!path_emulated(dirfd, path, abs))
		return EMU_NOT_OURS;
	return emu_open(abs, flags, mode);
}

EXPORT int open(const char *path, int flags, ...)
{
	GET_MODE(flags, flags);
	long r = open_emulated(AT_FDCWD, path, flags, mode);
	return r != EMU_NOT_OURS ? (int)r : opened_foreign(REAL(open)(path, flags, mode));
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	GET_MODE(flags, flags);
	long r = open_emulated(dirfd, path, flags, mode);
	return r != EMU_NOT_OURS ? (int)r : opened_foreign(REAL(openat)(dirfd, path, flags, mode));
}

/* Fortified open(): glibc's checks the flags, then calls its internal open. */
EXPORT int __open_2(const char *path, int flags)
{
	long r = open_emulated(AT_FDCWD, path, flags, 0);
	return r != EMU_NOT_OURS ? (int)r : opened_foreign(REAL(__open_2)(path, flags));
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	long r = open_emulated(dirfd, path, flags, 0);
	return r != EMU_NOT_OURS ? (int)r : opened_foreign(REAL(__openat_2)(dirfd, path, flags));
}

/* The *64 variants are the same functions on every 64-bit glibc target. */
EXPORT int open64(const char *path, int flags, ...) __attribute__((alias("open")));
EXPORT int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));
EXPORT int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));
EXPORT int __openat64_2(int dirfd, const char *path, int flags) __attribute__((alias("__openat_2")));

EXPORT int close(int fd)
{
	struct fdent e = {0, 0, 0};
	int known, r, err;
	if (!shim_active())
		return REAL(close)(fd);
	/* Our transport connections are not the program's to close (e.g. close-all-fds loops). */
	if (fd_is_shims(fd))
		return 0;
	known = fd_table_get(fd, &e);
	fd_forget(fd);
	r = REAL(close)(fd);
	err = errno;
	if (known && r == 0)
		fd_close_barrier(e.obj, fd);
	errno = err;
	return r;
}

/* newfd is now a copy of oldfd (dup, dup2, dup3, F_DUPFD): the table follows, and a release
 * newfd's previous file may have gone through completes first (had_new, prev). */
static void after_dup_to(int oldfd, int newfd, int had_new, const struct fdent *prev)
{
	struct fdent e;
	int err = errno;
	fd_forget(newfd);
	if (fd_lookup(oldfd, &e))
		fd_remember(newfd, &e);
	else if (fd_kind_of(oldfd) == FD_FOREIGN)
		fd_remember_foreign(newfd);
	if (had_new)
		fd_close_barrier(prev->obj, -1);
	errno = err;
}

/* For the trace: a dup of an emulated fd (the server sees nothing of it otherwise). */
static void note_dup(enum emu_dup_call call, int oldfd, int asked, int flags, int r)
{
	struct fdent e;
	if (!transport_notes() || !fd_lookup(oldfd, &e))
		return;
	call_note(EMU_NOTE_DUP, oldfd, e.obj, r < 0 ? -errno : r, call, (uint64_t)(int64_t)asked,
		  (uint64_t)(uint32_t)flags, 0);
}

EXPORT int dup(int fd)
{
	int r = REAL(dup)(fd);
	if (r >= 0 && shim_active())
		after_dup_to(fd, r, 0, NULL);
	if (shim_active())
		note_dup(EMU_DUP_DUP, fd, -1, 0, r);
	return r;
}

/* dup2/dup3: newfd's entry before the call, which may close the file it was. */
static int dup_to(int oldfd, int newfd, int flags, int is_dup3)
{
	struct fdent prev = {0, 0, 0};
	int had, r;
	if (!shim_active())
		return is_dup3 ? REAL(dup3)(oldfd, newfd, flags) : REAL(dup2)(oldfd, newfd);
	had = fd_table_get(newfd, &prev);
	r = is_dup3 ? REAL(dup3)(oldfd, newfd, flags) : REAL(dup2)(oldfd, newfd);
	if (r >= 0 && oldfd != newfd)
		after_dup_to(oldfd, newfd, had, &prev);
	note_dup(is_dup3 ? EMU_DUP_DUP3 : EMU_DUP_DUP2, oldfd, newfd, flags, r);
	return r;
}

EXPORT int dup2(int oldfd, int newfd)
{
	return dup_to(oldfd, newfd, 0, 0);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	return dup_to(oldfd, newfd, flags, 1);
}

static int after_fcntl(int fd, int cmd, int asked, int r)
{
	if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && shim_active()) {
		if (r >= 0)
			after_dup_to(fd, r, 0, NULL);
		note_dup(cmd == F_DUPFD ? EMU_DUP_F_DUPFD : EMU_DUP_F_DUPFD_CLOEXEC, fd, asked, 0, r);
	}
	return r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;
	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return after_fcntl(fd, cmd, (int)(intptr_t)arg, REAL(fcntl)(fd, cmd, arg));
}

/* glibc's fcntl64 is fcntl on every 64-bit target. */
EXPORT int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

/* close_range / closefrom: the shim's own fds (transports, the fds trapped mappings hold) stay
 * open, as with close(); emulated fds in the range leave the fd table. */
EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	unsigned int lo = first, fd;
	int r = 0, objects = 0;
	if (!shim_active() || (flags & CLOSE_RANGE_CLOEXEC) || first > last)
		return REAL(close_range)(first, last, flags);
	for (fd = first; fd <= last && fd < FD_TABLE_SIZE; fd++) {
		enum fd_kind kind = fd_kind_of((int)fd);
		if (kind == FD_TRANSPORT || kind == FD_INTERNAL) {
			if (fd > lo && REAL(close_range)(lo, fd - 1, flags) != 0)
				r = -1;
			lo = fd + 1;
		} else {
			objects |= kind == FD_OBJECT;
			fd_forget((int)fd);
		}
	}
	if (lo <= last && REAL(close_range)(lo, last, flags) != 0)
		r = -1;
	if (objects) {
		int err = errno;
		fd_close_barrier(0, -1);
		errno = err;
	}
	return r;
}

EXPORT void closefrom(int lowfd)
{
	if (!shim_active() || lowfd < 0) {
		REAL(closefrom)(lowfd);
		return;
	}
	close_range((unsigned int)lowfd, ~0U, 0);
}

/* fds received with SCM_RIGHTS take numbers the table may remember as something else (a number
 * freed by a close the shim did not see, e.g. inside fclose): ask the slow path again. */
static void forget_received(const struct msghdr *m)
{
	struct cmsghdr *h;
	for (h = CMSG_FIRSTHDR(m); h != NULL; h = CMSG_NXTHDR((struct msghdr *)m, h)) {
		size_t i, n;
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(h) + i * sizeof fd, sizeof fd);
			fd_forget(fd);
		}
	}
}

EXPORT ssize_t recvmsg(int s, struct msghdr *m, int flags)
{
	ssize_t r = REAL(recvmsg)(s, m, flags);
	if (r >= 0 && m->msg_controllen > 0)
		forget_received(m);
	return r;
}

EXPORT int recvmmsg(int s, struct mmsghdr *v, unsigned int n, int flags, struct timespec *timeout)
{
	int r = REAL(recvmmsg)(s, v, n, flags, timeout);
	int i;
	for (i = 0; i < r; i++) {
		if (v[i].msg_hdr.msg_controllen > 0)
			forget_received(&v[i].msg_hdr);
	}
	return r;
}
