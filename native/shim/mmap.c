/*
 * mmap and munmap of emulated fds. MMAP asks the driver's mmap, which names one of two backings:
 * a file the shim maps itself (memory-like regions: the program and the device model share the
 * pages), or a trapped range (trap.c: registers, every access reaches the device).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>

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

/* For the trace only (when the server wants NOTEs): which ranges map which emulated fd, so that
 * a munmap of one can be told to the server. A full table only loses munmap lines. */
#define MAX_MAPPED 64
struct mapped {
	uintptr_t start;
	size_t len;
	uint32_t obj;
	int fd;
};
static struct mapped mapped[MAX_MAPPED];
static pthread_mutex_t mapped_lock = PTHREAD_MUTEX_INITIALIZER;

static void remember_mapping(int fd, uint32_t obj, void *p, size_t len)
{
	int i;
	pthread_mutex_lock(&mapped_lock);
	for (i = 0; i < MAX_MAPPED; i++) {
		if (mapped[i].len == 0) {
			mapped[i] = (struct mapped){(uintptr_t)p, len, obj, fd};
			break;
		}
	}
	pthread_mutex_unlock(&mapped_lock);
}

/* The first remembered mapping munmap(start, len) touches; what is gone is forgotten. */
static int forget_mapping(uintptr_t start, size_t len, struct mapped *hit)
{
	uintptr_t end = start + len;
	int i, found = 0;
	pthread_mutex_lock(&mapped_lock);
	for (i = 0; i < MAX_MAPPED; i++) {
		struct mapped *m = &mapped[i];
		if (m->len == 0 || end <= m->start || start >= m->start + m->len)
			continue;
		if (!found)
			*hit = *m;
		found = 1;
		if (start <= m->start && end >= m->start + m->len)
			m->len = 0;
	}
	pthread_mutex_unlock(&mapped_lock);
	return found;
}

static long emu_mmap(int fd, void *addr, size_t len, int prot, int flags, off_t off, void **out)
{
	long page = sysconf(_SC_PAGESIZE);
	struct emu_mmap_req mr = {(uint32_t)prot, (uint32_t)flags};
	struct call c;
	int unmade = 0;
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
	else if (r == 0 && c.rep.v1 == EMU_MMAP_TRAPPED) {
		r = trap_map(fd, &c.ent, addr, len, flags, c.rep.v0, out);
		unmade = r < 0 && trap_notes_close(&c.ent);
	}
	else if (r == 0 && c.rep.v1 == EMU_MMAP_FILE)
		r = map_file(&c, addr, len, prot, flags, out);
	else if (r == 0)
		r = -ENODEV;
	call_end(&c);
	/* The server's mapping holds its region's owner: there is no mapping after all. */
	if (unmade)
		call_note_always(EMU_NOTE_VMA_CLOSE, fd, c.ent.obj, 0, c.rep.v0, len, 0, 0);
	if (transport_notes()) {
		if (r == 0)
			remember_mapping(fd, c.ent.obj, *out, len);
		call_note(EMU_NOTE_MMAP, fd, c.ent.obj, r == 0 ? (int64_t)(uintptr_t)*out : r,
			  (uint64_t)(uintptr_t)addr, len,
			  (uint32_t)prot | ((uint64_t)(uint32_t)flags << 32), (uint64_t)off);
	}
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
	struct mapped hit;
	int r = REAL(munmap)(addr, len);
	int err = errno;
	/* Noted before the trap lets go of the file, which may be its last reference. */
	if (transport_notes() && forget_mapping((uintptr_t)addr, len, &hit))
		call_note(EMU_NOTE_MUNMAP, hit.fd, hit.obj, r < 0 ? -err : 0,
			  (uint64_t)(uintptr_t)addr, len, 0, 0);
	if (r == 0)
		trap_unmap((uintptr_t)addr, len);
	errno = err;
	return r;
}
