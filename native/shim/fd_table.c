/*
 * The fd table and its negative cache (fd_table.h).
 *
 * fd_kind[] says what each fd number is; fd_table[] holds an emulated file's entry, written
 * before its kind is published. An fd the table has no word on (FD_UNKNOWN: inherited across
 * exec, received by SCM_RIGHTS, or not looked at yet) goes through the slow path once:
 * getpeername() names the server's socket, then LOOKUP of its inode names the object. Either
 * answer is remembered, so a read/write/fstat/ioctl on the program's own fds costs one array
 * load. fds at or above FD_TABLE_SIZE are never remembered (the slow path every time).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "fd_table.h"
#include "real.h"
#include "transport.h"

static struct fdent fd_table[FD_TABLE_SIZE];
static unsigned char fd_kind[FD_TABLE_SIZE]; /* atomic */
static unsigned long slow_lookups;	     /* atomic; for the tests, see below */

static int in_table(int fd)
{
	return fd >= 0 && fd < FD_TABLE_SIZE;
}

enum fd_kind fd_kind_of(int fd)
{
	if (!in_table(fd))
		return FD_UNKNOWN;
	return (enum fd_kind)__atomic_load_n(&fd_kind[fd], __ATOMIC_ACQUIRE);
}

int fd_table_get(int fd, struct fdent *e)
{
	if (fd_kind_of(fd) != FD_OBJECT)
		return 0;
	*e = fd_table[fd];
	return 1;
}

void fd_remember(int fd, const struct fdent *e)
{
	if (!in_table(fd) || !shim_owns_memory())
		return;
	fd_table[fd] = *e;
	__atomic_store_n(&fd_kind[fd], FD_OBJECT, __ATOMIC_RELEASE);
}

/* The program's own file. Only over "unknown": a thread that has just opened an emulated file
 * at this number meanwhile keeps its entry. */
static void remember_foreign(int fd)
{
	unsigned char expected = FD_UNKNOWN;
	if (!in_table(fd) || !shim_owns_memory())
		return;
	__atomic_compare_exchange_n(&fd_kind[fd], &expected, FD_FOREIGN, 0, __ATOMIC_ACQ_REL,
				    __ATOMIC_RELAXED);
}

void fd_remember_foreign(int fd)
{
	if (!in_table(fd) || fd_is_shims(fd))
		return;
	if (shim_owns_memory())
		__atomic_store_n(&fd_kind[fd], FD_FOREIGN, __ATOMIC_RELEASE);
	else
		fd_forget(fd); /* a vfork child: the parent's fd of that number may be ours */
}

void fd_forget(int fd)
{
	enum fd_kind kind = fd_kind_of(fd);
	if (kind == FD_OBJECT || kind == FD_FOREIGN)
		__atomic_store_n(&fd_kind[fd], FD_UNKNOWN, __ATOMIC_RELEASE);
}

void fd_mark_shim(int fd, enum fd_kind kind)
{
	if (in_table(fd))
		__atomic_store_n(&fd_kind[fd], kind, __ATOMIC_RELEASE);
}

void fd_unmark_shim(int fd)
{
	if (fd_is_shims(fd))
		__atomic_store_n(&fd_kind[fd], FD_UNKNOWN, __ATOMIC_RELEASE);
}

int fd_is_shims(int fd)
{
	enum fd_kind kind = fd_kind_of(fd);
	return kind == FD_TRANSPORT || kind == FD_INTERNAL;
}

/* Whether fd is a socket connected to our server (or unknowable: -1, remember nothing). */
static int peer_is_server(int fd)
{
	struct sockaddr_un a;
	socklen_t alen = sizeof a;
	const char *path = server_socket_path();

	memset(&a, 0, sizeof a);
	if (getpeername(fd, (struct sockaddr *)&a, &alen) < 0)
		return errno == ENOBUFS || errno == EINTR ? -1 : 0;
	return a.sun_family == AF_UNIX && alen > offsetof(struct sockaddr_un, sun_path) &&
	       strncmp(a.sun_path, path, sizeof a.sun_path) == 0;
}

/* Is fd a connection to our server, and which object does its socket inode name? */
static int slow_lookup(int fd, struct fdent *e)
{
	struct stat st;
	struct call c;
	int saved = errno;
	int peer, found = 0;
	long r;

	if (fd_is_shims(fd))
		return 0;
	__atomic_add_fetch(&slow_lookups, 1, __ATOMIC_RELAXED);
	peer = peer_is_server(fd);
	if (peer == 0)
		remember_foreign(fd);
	if (peer <= 0 || REAL(fstat)(fd, &st) < 0) {
		errno = saved;
		return 0;
	}
	call_begin(&c, EMU_OP_LOOKUP);
	c.req.a0 = (uint64_t)st.st_ino;
	r = call_send(&c);
	if (r == 0 && c.rep.ret > 0) {
		e->obj = (uint32_t)c.rep.ret;
		e->mode = (uint32_t)c.rep.v0;
		e->rdev = c.rep.v1;
		fd_remember(fd, e);
		found = 1;
	} else if (r == 0 && c.rep.ret == -ENOENT) {
		remember_foreign(fd); /* a connection to the server, but no object's */
	}
	call_end(&c);
	errno = saved;
	return found;
}

int fd_lookup(int fd, struct fdent *e)
{
	if (!shim_active() || fd < 0)
		return 0;
	switch (fd_kind_of(fd)) {
	case FD_OBJECT:
		return fd_table_get(fd, e);
	case FD_UNKNOWN:
		return slow_lookup(fd, e);
	default:
		return 0; /* the program's own file, or the shim's */
	}
}

void fd_close_barrier(uint32_t obj, int closed_fd)
{
	struct call c;
	if (!transport_ready())
		return;
	call_begin(&c, EMU_OP_CLOSE);
	c.req.obj = obj;
	c.req.a0 = EMU_FD_BITS(closed_fd >= 0 ? (uint32_t)closed_fd : EMU_FD_UNKNOWN);
	(void)call_send(&c);
	call_end(&c);
}

/* Test hook: how many times the slow path ran (getpeername and maybe LOOKUP), so a test can
 * show that calls on the program's own fds cost no extra system call. */
EXPORT unsigned long iommufd_emu_shim_slow_lookups(void)
{
	return __atomic_load_n(&slow_lookups, __ATOMIC_RELAXED);
}
