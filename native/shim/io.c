/*
 * ioctl, read, write, pread, pwrite and lseek on emulated fds (the fortified __read_chk and
 * __pread*_chk too: glibc's call its internal read). Buffers are copied fault-safely, so a bad
 * pointer is EFAULT as in the kernel.
 *
 * ioctl: the shim knows no iommufd or VFIO struct. It sends the raw arg plus, when arg points at
 * readable memory that starts with a plausible u32 size (both families start their structs with
 * `size` or `argsz`), that many bytes: the prefetch window. The server returns the runs of the
 * window it wrote, stored back here; everything else it reaches through /proc/<pid>/mem.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "open.h"
#include "real.h"
#include "transport.h"

static __thread unsigned char t_window[EMU_WINDOW_MAX];

/* The stack pointer the process started with (ld.so's): every frame of the main thread lies
 * below it. */
extern void *__libc_stack_end;
/* How far below __libc_stack_end the main thread's frames are taken as its stack. Within the
 * stack guard gap (256 pages), which the kernel always leaves between the lowest stack address
 * randomisation allows and the mappings: nothing else can lie there, whatever RLIMIT_STACK. */
#define MAIN_STACK_SPAN (1u << 20)
#define PAGE 4096u

/* Whether [p, p+n) lies in the live part of the main thread's stack, between the caller's frame
 * and the stack's start: mapped and writable as long as those frames are, so it is copied
 * without a probe. A thread's own stack, a signal or coroutine stack, the heap: never. */
static int on_live_stack(const void *p, size_t n)
{
	uintptr_t top = (uintptr_t)__libc_stack_end;
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	uintptr_t a = (uintptr_t)p;
	return top > MAIN_STACK_SPAN && sp > top - MAIN_STACK_SPAN && sp < top && a >= sp &&
	       a < top && n <= top - a;
}

/* Copies n bytes within our own memory through process_vm_readv/writev, which fail with EFAULT
 * instead of faulting (and, writing, respect page protections like copy_to_user): 0, -EFAULT,
 * or -ENOSYS when the system call is not usable here. */
static int vm_copy(pid_t pid, void *dst, const void *src, size_t n, int to_user)
{
	struct iovec local = {to_user ? (void *)src : dst, n};
	struct iovec remote = {to_user ? dst : (void *)src, n};
	ssize_t k;
	if (n == 0)
		return 0;
	if (to_user)
		k = process_vm_writev(pid, &local, 1, &remote, 1, 0);
	else
		k = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	if (k == (ssize_t)n)
		return 0;
	return k < 0 && (errno == ENOSYS || errno == EPERM) ? -ENOSYS : -EFAULT;
}

/* Fault-safe copy from the program's memory: 0, -EFAULT, or -ENOSYS. */
static int safe_read(pid_t pid, void *dst, const void *src, size_t n)
{
	if (on_live_stack(src, n)) {
		memcpy(dst, src, n);
		return 0;
	}
	return vm_copy(pid, dst, src, n, 0);
}

/* Fault-safe copy into the program's memory: 0 or -EFAULT (a plain copy without the syscall). */
static int safe_write(pid_t pid, void *dst, const void *src, size_t n)
{
	int r;
	if (on_live_stack(dst, n)) {
		memcpy(dst, src, n);
		return 0;
	}
	r = vm_copy(pid, dst, src, n, 1);
	if (r == -ENOSYS) {
		memcpy(dst, src, n);
		r = 0;
	}
	return r;
}

/* Reads up to n bytes from src in one system call, stopping at the first page that cannot be
 * read (the remote side is split at page boundaries, which process_vm_readv transfers whole or
 * not at all): how many bytes were read, 0 on any failure. */
static size_t read_upto(pid_t pid, void *dst, const void *src, size_t n)
{
	struct iovec local = {dst, n};
	struct iovec remote[2];
	size_t first = PAGE - ((uintptr_t)src & (PAGE - 1));
	int cnt = 1;
	ssize_t k;
	if (on_live_stack(src, n)) {
		memcpy(dst, src, n);
		return n;
	}
	remote[0].iov_base = (void *)src;
	remote[0].iov_len = first < n ? first : n;
	if (first < n) {
		remote[1].iov_base = (char *)src + first;
		remote[1].iov_len = n - first;
		cnt = 2;
	}
	k = process_vm_readv(pid, &local, 1, remote, (unsigned long)cnt, 0);
	return k > 0 ? (size_t)k : 0;
}

/* How much of the arg a first read takes: every iommufd struct and most VFIO ones fit. */
#define WINDOW_FIRST 256u

/* Prefetches the struct arg may point to (a u32 size first, then that many bytes) into
 * t_window: its length, 0 for none (no struct, or unreadable: the server then reads through
 * /proc/<pid>/mem and faults where the kernel would). */
static size_t prefetch(pid_t pid, const void *arg)
{
	uint32_t size;
	size_t got = read_upto(pid, t_window, arg, WINDOW_FIRST);
	if (got < sizeof size)
		return 0;
	memcpy(&size, t_window, sizeof size);
	if (size < EMU_WINDOW_MIN || size > EMU_WINDOW_MAX)
		return 0;
	if (size > got && (got < WINDOW_FIRST ||
			   safe_read(pid, t_window + got, (const char *)arg + got, size - got) != 0))
		return 0;
	return size;
}

/* Stores back the runs of the window the call wrote ({u32 off, u32 len, bytes} records). */
static int write_back(pid_t pid, char *arg, size_t wlen, const unsigned char *p, size_t n)
{
	while (n >= sizeof(struct emu_seg)) {
		struct emu_seg seg;
		memcpy(&seg, p, sizeof seg);
		p += sizeof seg;
		n -= sizeof seg;
		if (seg.len > n || seg.off > wlen || seg.len > wlen - seg.off)
			return -EIO;
		if (safe_write(pid, arg + seg.off, p, seg.len) != 0)
			return -EFAULT;
		p += seg.len;
		n -= seg.len;
	}
	return n == 0 ? 0 : -EIO;
}

/* After an ioctl that may have created a file on the reserved fd: keep it as that file, or give
 * the number back (put_unused_fd). */
static void settle_reserved(int reserved, const struct emu_newfd *nf, const struct call *c,
			    int installed)
{
	if (reserved < 0)
		return;
	if (installed) {
		struct fdent e = {nf->obj, (uint32_t)c->rep.v0, c->rep.v1};
		fd_remember(reserved, &e);
	} else {
		REAL(close)(reserved);
	}
}

static long emu_ioctl(int fd, unsigned long cmd, void *arg)
{
	struct call c;
	struct emu_newfd nf = {0, 0};
	size_t wlen = 0;
	int wro = 0, reserved = -1, installed = 0;
	long r = call_begin_fd(&c, EMU_OP_IOCTL, fd);

	if (r == EMU_NOT_OURS)
		return r;
	wlen = prefetch(c.pid, arg);
	/* Can the call write its results there? Store back one byte we just read: read-only memory
	 * faults now rather than after the handler has committed. */
	if (wlen > 0)
		wro = safe_write(c.pid, arg, t_window, 1) != 0;
	for (;;) {
		c.req.a0 = (cmd & 0xffffffffu) | EMU_FD_BITS(fd);
		c.req.a1 = (uint64_t)(uintptr_t)arg;
		c.req.flags = 0;
		if (wlen > 0) {
			c.req.flags = EMU_REQ_WINDOW | (wro ? EMU_REQ_WINDOW_RO : 0);
			c.part[0] = t_window;
			c.part_len[0] = wlen;
		}
		if (reserved >= 0) {
			/* The reserved fd leads the payload, the window follows. */
			c.req.flags |= EMU_REQ_NEWFD;
			c.part[1] = c.part[0];
			c.part_len[1] = c.part_len[0];
			c.part[0] = &nf;
			c.part_len[0] = sizeof nf;
		}
		r = call_send(&c);
		if (r != 0 || !(c.rep.flags & EMU_REP_NEED_FD))
			break;
		/* The command may create a file: reserve its fd and ask again (nothing ran). */
		if (reserved >= 0) {
			r = -EIO;
			break;
		}
		{
			int flags = (int)c.rep.v0;
			call_end(&c);
			reserved = emu_reserve_fd(flags, &nf.obj);
			if (reserved < 0)
				return reserved;
			nf.fd = (uint32_t)reserved;
			r = call_begin_fd(&c, EMU_OP_IOCTL, fd);
			if (r == EMU_NOT_OURS) {
				REAL(close)(reserved);
				return -EBADF;
			}
		}
	}
	if (r == 0) {
		int wb = 0;
		r = c.rep.ret;
		installed = (c.rep.flags & EMU_REP_NEWFD) != 0;
		if (wlen > 0)
			wb = write_back(c.pid, arg, wlen, c.data, c.data_len);
		else if (c.data_len != 0)
			wb = -EIO;
		if (wb != 0 && !installed)
			r = wb;
	}
	settle_reserved(reserved, &nf, &c, installed);
	call_end(&c);
	return r;
}

EXPORT int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	void *arg;
	long r;
	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	r = emu_ioctl(fd, cmd, arg);
	return r == EMU_NOT_OURS ? REAL(ioctl)(fd, cmd, arg) : (int)finish(r);
}

/* Starts a READ/WRITE of up to EMU_RW_MAX bytes (*n is cut to that) at the file position, or at
 * pos when positional: 0, EMU_NOT_OURS, or -EINVAL (nothing begun). */
static long rw_begin(struct call *c, uint16_t op, int fd, size_t *n, off_t pos, int positional)
{
	long r = call_begin_fd(c, op, fd);
	if (r == EMU_NOT_OURS)
		return r;
	if (positional && pos < 0) {
		call_end(c);
		return -EINVAL;
	}
	if (*n > EMU_RW_MAX)
		*n = EMU_RW_MAX;
	c->req.a0 = *n | EMU_FD_BITS(fd);
	c->req.a1 = (uint64_t)pos;
	c->req.flags = positional ? EMU_REQ_POSITIONAL : 0;
	return 0;
}

static long emu_read(int fd, void *buf, size_t n, off_t pos, int positional)
{
	struct call c;
	long r = rw_begin(&c, EMU_OP_READ, fd, &n, pos, positional);

	if (r != 0)
		return r;
	r = call_send(&c);
	if (r == 0) {
		r = c.rep.ret;
		if (r >= 0) {
			if ((size_t)r > n || (size_t)r != c.data_len)
				r = -EIO;
			else if (safe_write(c.pid, buf, c.data, (size_t)r) != 0)
				r = -EFAULT;
		}
	}
	call_end(&c);
	return r;
}

static long emu_write(int fd, const void *buf, size_t n, off_t pos, int positional)
{
	struct call c;
	void *copy;
	long r = rw_begin(&c, EMU_OP_WRITE, fd, &n, pos, positional);

	if (r != 0)
		return r;
	copy = malloc(n > 0 ? n : 1);
	if (copy == NULL) {
		call_end(&c);
		return -ENOMEM;
	}
	r = safe_read(c.pid, copy, buf, n);
	if (r == -ENOSYS) {
		memcpy(copy, buf, n);
		r = 0;
	}
	if (r == 0) {
		c.part[0] = copy;
		c.part_len[0] = n;
		r = call_send(&c);
		if (r == 0)
			r = c.rep.ret;
	} else {
		r = -EFAULT;
	}
	call_end(&c);
	free(copy);
	return r;
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	long r = emu_read(fd, buf, n, 0, 0);
	return r == EMU_NOT_OURS ? REAL(read)(fd, buf, n) : finish(r);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	long r = emu_write(fd, buf, n, 0, 0);
	return r == EMU_NOT_OURS ? REAL(write)(fd, buf, n) : finish(r);
}

EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t pos)
{
	long r = emu_read(fd, buf, n, pos, 1);
	return r == EMU_NOT_OURS ? REAL(pread)(fd, buf, n, pos) : finish(r);
}

EXPORT ssize_t pread64(int fd, void *buf, size_t n, off64_t pos)
{
	long r = emu_read(fd, buf, n, (off_t)pos, 1);
	return r == EMU_NOT_OURS ? REAL(pread64)(fd, buf, n, pos) : finish(r);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t pos)
{
	long r = emu_write(fd, buf, n, pos, 1);
	return r == EMU_NOT_OURS ? REAL(pwrite)(fd, buf, n, pos) : finish(r);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t pos)
{
	long r = emu_write(fd, buf, n, (off_t)pos, 1);
	return r == EMU_NOT_OURS ? REAL(pwrite64)(fd, buf, n, pos) : finish(r);
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return read(fd, buf, n);
}

EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t pos, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return pread(fd, buf, n, pos);
}

EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t pos, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return pread64(fd, buf, n, pos);
}

/* lseek moves the object's file position on the server (SEEK_SET/SEEK_CUR): the new position,
 * -errno or EMU_NOT_OURS. */
static int64_t emu_seek(int fd, int64_t off, int whence)
{
	struct call c;
	int64_t r = call_begin_fd(&c, EMU_OP_SEEK, fd);

	if (r == EMU_NOT_OURS)
		return r;
	c.req.a0 = (uint64_t)off;
	c.req.a1 = (uint64_t)(unsigned int)whence;
	r = call_send(&c);
	if (r == 0)
		r = c.rep.ret < 0 ? c.rep.ret : (int64_t)c.rep.v0;
	call_end(&c);
	return r;
}

EXPORT off_t lseek(int fd, off_t off, int whence)
{
	int64_t r = emu_seek(fd, off, whence);
	return r == EMU_NOT_OURS ? REAL(lseek)(fd, off, whence) : finish(r);
}

EXPORT off64_t lseek64(int fd, off64_t off, int whence)
{
	int64_t r = emu_seek(fd, off, whence);
	return r == EMU_NOT_OURS ? REAL(lseek64)(fd, off, whence) : finish(r);
}
