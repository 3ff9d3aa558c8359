/*
 * mmap and munmap of emulated fds. MMAP asks the driver's mmap, which names one of two backings:
 * a file the shim maps itself (memory-like regions: the program and the device model share the
 * pages), or a trapped range (trap.c: registers, every access reaches the device).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>

#include "real.h"
#include "transport.h"
#include "trap.h"

/* Maps the backing file the server named (c->data), at the offset it chose. */
static long map_file(const struct call *c, void *addr, size_t len, int prot, int flags, void **out)
{
	int shared = (flags & MAP_TYPE) != MAP_PRIVATE;
	int oflags = ((prot & PROT_WRITE) && shared ? O_RDWR : O_RDONLY) | O_CLOEXEC;
	int bfd;
	void *p;

	if (c->data_len == 0 || c->data[c->data_len - 1] != '\0')
		return -EIO;
	bfd = REAL(open)((const char *)c->data, oflags, 0);
	if (bfd < 0)
		return -errno;
	p = REAL(mmap)(addr, len, prot, flags, bfd, (off_t)c->rep.v0);
	REAL(close)(bfd);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

static long emu_mmap(int fd, void *addr, size_t len, int prot, int flags, off_t off, void **out)
{
	long page = sysconf(_SC_PAGESIZE);
	struct emu_mmap_req mr = {(uint32_t)prot, (uint32_t)flags};
	struct call c;
	long r;

	if (fd < 0 || (flags & MAP_ANONYMOUS))
		return EMU_NOT_OURS;
	r = call_begin_fd(&c, EMU_OP_MMAP, fd);
	if (r == EMU_NOT_OURS)
		return r;
	if (len == 0 || off < 0 || (off & (page - 1)) != 0) {
		call_end(&c);
		return -EINVAL;
	}
	c.req.a0 = len;
	c.req.a1 = (uint64_t)off;
	c.part[0] = &mr;
	c.part_len[0] = sizeof mr;
	r = call_send(&c);
	if (r == 0 && c.rep.ret < 0)
		r = c.rep.ret;
	else if (r == 0 && c.rep.v1 == EMU_MMAP_TRAPPED)
		r = trap_map(fd, &c.ent, addr, len, flags, c.rep.v0, out);
	else if (r == 0 && c.rep.v1 == EMU_MMAP_FILE)
		r = map_file(&c, addr, len, prot, flags, out);
	else if (r == 0)
		r = -ENODEV;
	call_end(&c);
	return r;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = MAP_FAILED;
	long r = emu_mmap(fd, addr, len, prot, flags, off, &p);
	if (r == EMU_NOT_OURS)
		return REAL(mmap)(addr, len, prot, flags, fd, off);
	return finish(r) < 0 ? MAP_FAILED : p;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	void *p = MAP_FAILED;
	long r = emu_mmap(fd, addr, len, prot, flags, (off_t)off, &p);
	if (r == EMU_NOT_OURS)
		return REAL(mmap64)(addr, len, prot, flags, fd, off);
	return finish(r) < 0 ? MAP_FAILED : p;
}

/* File-backed mappings of emulated fds are ordinary mappings; trapped ones are forgotten (and
 * their file let go) here. */
EXPORT int munmap(void *addr, size_t len)
{
	int r = REAL(munmap)(addr, len);
	if (r == 0) {
		int err = errno;
		trap_unmap((uintptr_t)addr, len);
		errno = err;
	}
	return r;
}
