/*
 * stdio on emulated files. glibc's stdio reads and writes with its internal syscalls, which
 * would go to the object connection itself, so fopen/fopen64 of an emulated path and fdopen of
 * an emulated fd return a fopencookie() stream whose callbacks are the shim's read, write,
 * lseek and close.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>

#include "open.h"
#include "paths.h"
#include "real.h"
#include "transport.h"

/* glibc's stdio reads and writes with its internal syscalls, which would bypass the shim, so a
 * stream on an emulated fd is a fopencookie() stream whose callbacks are the wrappers here. */
static ssize_t cookie_read(void *cookie, char *buf, size_t n)
{
	return read((int)(intptr_t)cookie, buf, n);
}

static ssize_t cookie_write(void *cookie, const char *buf, size_t n)
{
	ssize_t r = write((int)(intptr_t)cookie, buf, n);
	return r < 0 ? 0 : r; /* 0 = error (errno set), as fopencookie wants */
}

static int cookie_seek(void *cookie, off64_t *pos, int whence)
{
	off64_t r = lseek64((int)(intptr_t)cookie, *pos, whence);
	if (r < 0)
		return -1;
	*pos = r;
	return 0;
}

static int cookie_close(void *cookie)
{
	return close((int)(intptr_t)cookie);
}

static FILE *cookie_stream(int fd, const char *mode)
{
	cookie_io_functions_t io = {cookie_read, cookie_write, cookie_seek, cookie_close};
	return fopencookie((void *)(intptr_t)fd, mode, io);
}

/* open(2) flags of an fopen mode, -1 if invalid. */
static int fopen_flags(const char *mode)
{
	int acc, extra = 0;
	const char *p;
	switch (mode[0]) {
	case 'r': acc = O_RDONLY; break;
	case 'w': acc = O_WRONLY; extra = O_CREAT | O_TRUNC; break;
	case 'a': acc = O_WRONLY; extra = O_CREAT | O_APPEND; break;
	default: return -1;
	}
	for (p = mode + 1; *p != '\0' && *p != ','; p++) {
		if (*p == '+')
			acc = O_RDWR;
		else if (*p == 'e')
			extra |= O_CLOEXEC;
		else if (*p == 'x')
			extra |= O_EXCL;
	}
	return acc | extra;
}

static FILE *emu_fopen(const char *abs, const char *mode)
{
	struct fdent e;
	FILE *f;
	int flags = fopen_flags(mode), fd;
	if (flags < 0) {
		errno = EINVAL;
		return NULL;
	}
	fd = emu_open(abs, flags, 0666);
	if (fd < 0)
		return NULL;
	if (!fd_table_get(fd, &e))
		return REAL(fdopen)(fd, mode); /* a directory, opened in the testbed */
	f = cookie_stream(fd, mode);
	if (f == NULL) {
		int err = errno;
		close(fd);
		errno = err;
	}
	return f;
}

/* A stream libc opened: its fd is the program's own file. */
static FILE *opened_foreign(FILE *f)
{
	if (f != NULL && shim_active())
		fd_remember_foreign(fileno(f));
	return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	char abs[PATH_MAX];
	if (mode != NULL && path_emulated(AT_FDCWD, path, abs))
		return emu_fopen(abs, mode);
	return opened_foreign(REAL(fopen)(path, mode));
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	char abs[PATH_MAX];
	if (mode != NULL && path_emulated(AT_FDCWD, path, abs))
		return emu_fopen(abs, mode);
	return opened_foreign(REAL(fopen64)(path, mode));
}

EXPORT FILE *fdopen(int fd, const char *mode)
{
	struct fdent e;
	if (mode != NULL && fd_lookup(fd, &e))
		return cookie_stream(fd, mode);
	return REAL(fdopen)(fd, mode);
}
