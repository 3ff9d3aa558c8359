/*
 * Paths (paths.h): the emulated prefixes and the testbed root from HELLO, lexical normalisation
 * and prefix matching. HELLO may be answered inside the SIGSEGV handler (a thread's first call
 * is a trapped access), so storing the prefixes takes no lock: the first to store wins.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "paths.h"
#include "real.h"
#include "transport.h"

/* Emulated path prefixes and the testbed root from the server's HELLO reply. */
#define MAX_PREFIXES 32
enum { PREFIXES_NONE, PREFIXES_STORING, PREFIXES_LOADED };
static char prefix_buf[2048];
static const char *prefixes[MAX_PREFIXES];
static int prefix_count;
static int prefix_state; /* atomic */
/* The testbed: a real directory tree mirroring the emulated one, where directory listings,
 * symlinks, realpath and chdir are served. Its paths map back to emulated paths. */
static char tb_root[PATH_MAX];
static size_t tb_root_len;
/* Used only while the server cannot be reached, so that opening these fails with ENXIO. */
static const char *const fallback_prefixes[] = {"/dev/iommu", "/dev/vfio"};

static int prefixes_loaded(void)
{
	return __atomic_load_n(&prefix_state, __ATOMIC_ACQUIRE) == PREFIXES_LOADED;
}

/* Another thread is storing the prefixes: a few copies, with all its signals blocked. */
static void wait_stored(void)
{
	while (__atomic_load_n(&prefix_state, __ATOMIC_ACQUIRE) == PREFIXES_STORING)
		sched_yield();
}

void paths_after_fork(void)
{
	int storing = PREFIXES_STORING;
	/* The thread that was storing them does not exist in the child: store them again. */
	__atomic_compare_exchange_n(&prefix_state, &storing, PREFIXES_NONE, 0, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
}

void paths_store_hello(const unsigned char *p, size_t n)
{
	int expected = PREFIXES_NONE;
	size_t i, used = 0, rlen;
	int count = 0;

	/* Every HELLO of the process says the same: only the first is stored. */
	if (!__atomic_compare_exchange_n(&prefix_state, &expected, PREFIXES_STORING, 0,
					 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
		wait_stored();
		return;
	}
	rlen = strnlen((const char *)p, n);
	if (rlen < n && rlen < sizeof tb_root && rlen > 1 && p[0] == '/') {
		memcpy(tb_root, p, rlen + 1);
		tb_root_len = rlen;
	}
	i = rlen < n ? rlen + 1 : n;
	while (i < n && count < MAX_PREFIXES) {
		size_t len = strnlen((const char *)p + i, n - i);
		if (len == n - i || used + len + 1 > sizeof prefix_buf)
			break;
		memcpy(prefix_buf + used, p + i, len + 1);
		i += len + 1;
		/* "/dev/vfio/" and "/dev/vfio" mean the same prefix. */
		while (len > 1 && prefix_buf[used + len - 1] == '/')
			prefix_buf[used + --len] = '\0';
		if (len > 0)
			prefixes[count++] = prefix_buf + used;
		used += len + 1;
	}
	prefix_count = count;
	__atomic_store_n(&prefix_state, PREFIXES_LOADED, __ATOMIC_RELEASE);
}

void paths_load(void)
{
	if (prefixes_loaded())
		return;
	transport_hello();
	wait_stored(); /* this thread's transport may be older than another thread's HELLO */
}

const char *testbed_root(size_t *len)
{
	*len = prefixes_loaded() ? tb_root_len : 0;
	return *len != 0 ? tb_root : "";
}

int strip_root(char *p)
{
	size_t len;
	const char *root = testbed_root(&len);
	if (len == 0 || strncmp(p, root, len) != 0 || (p[len] != '/' && p[len] != '\0'))
		return 0;
	if (p[len] == '\0')
		strcpy(p, "/");
	else
		memmove(p, p + len, strlen(p + len) + 1);
	return 1;
}

static int under_any_prefix(const char *abs, int fallback);

/* Lexically normalises path (relative to dirfd) into an absolute path (a testbed path becomes
 * the emulated path it mirrors). 0 if impossible. If written is not NULL, it receives the same
 * path normalised only up to the component that enters an emulated prefix and kept as written
 * from there on ("." , ".." and a trailing "/" included): the kernel model walks that part
 * itself, following its own symlinks, as namei would. Empty when the path never enters one. */
static int absolute_path(int dirfd, const char *path, char *out, size_t outsz, char *written)
{
	char tmp[PATH_MAX * 2];
	size_t n = 0, len;
	const char *p;

	if (path == NULL || path[0] == '\0')
		return 0;
	if (path[0] == '/') {
		len = strlen(path);
		if (len >= sizeof tmp)
			return 0;
		memcpy(tmp, path, len + 1);
	} else {
		if (dirfd == AT_FDCWD) {
			if (REAL(getcwd)(tmp, PATH_MAX) == NULL)
				return 0;
		} else {
			char link[64];
			ssize_t k;
			snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
			k = REAL(readlink)(link, tmp, PATH_MAX - 1);
			if (k <= 0 || tmp[0] != '/')
				return 0;
			tmp[k] = '\0';
		}
		len = strlen(tmp);
		if (len + 1 + strlen(path) >= sizeof tmp)
			return 0;
		tmp[len] = '/';
		strcpy(tmp + len + 1, path);
	}

	/* Collapse "//", "." and "..". */
	p = tmp;
	out[0] = '\0';
	if (written != NULL)
		written[0] = '\0';
	while (*p != '\0') {
		const char *end;
		size_t clen;
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		end = strchr(p, '/');
		clen = end != NULL ? (size_t)(end - p) : strlen(p);
		if (clen == 1 && p[0] == '.') {
			/* nothing */
		} else if (clen == 2 && p[0] == '.' && p[1] == '.') {
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--;
			out[n] = '\0';
		} else {
			if (n + 1 + clen + 1 > outsz)
				return 0;
			out[n++] = '/';
			memcpy(out + n, p, clen);
			n += clen;
			out[n] = '\0';
			if (written != NULL && written[0] == '\0' && under_any_prefix(out, 1)) {
				if (n + strlen(p + clen) + 1 > outsz)
					return 0;
				memcpy(written, out, n);
				strcpy(written + n, p + clen);
				strip_root(written);
			}
		}
		p += clen;
	}
	if (n == 0) {
		out[0] = '/';
		out[1] = '\0';
	}
	strip_root(out);
	return 1;
}

/* Whether the normalised absolute path is prefix or lies below it, comparing whole components;
 * a "*" component of prefix matches any one component ("/proc/ * /task/ * /fail-nth"). */
static int under_prefix(const char *path, const char *prefix)
{
	const char *p = path, *q = prefix;
	for (;;) {
		const char *pe, *qe;
		size_t pl, ql;
		while (*q == '/')
			q++;
		while (*p == '/')
			p++;
		if (*q == '\0')
			return 1;
		if (*p == '\0')
			return 0;
		pe = strchrnul(p, '/');
		qe = strchrnul(q, '/');
		pl = (size_t)(pe - p);
		ql = (size_t)(qe - q);
		if (!(ql == 1 && q[0] == '*') && (pl != ql || memcmp(p, q, pl) != 0))
			return 0;
		p = pe;
		q = qe;
	}
}

/* Whether abs lies under one of the server's prefixes (or the fallback ones without a server). */
static int under_any_prefix(const char *abs, int fallback)
{
	int i;
	if (prefixes_loaded()) {
		for (i = 0; i < prefix_count; i++) {
			if (under_prefix(abs, prefixes[i]))
				return 1;
		}
		return 0;
	}
	for (i = 0; fallback && i < (int)(sizeof fallback_prefixes / sizeof fallback_prefixes[0]);
	     i++) {
		if (under_prefix(abs, fallback_prefixes[i]))
			return 1;
	}
	return 0;
}

int path_emulated(int dirfd, const char *path, char abs[PATH_MAX])
{
	char written[PATH_MAX];
	int saved = errno;
	int hit;

	if (!shim_active() || path == NULL || path[0] == '\0')
		return 0;
	paths_load();
	hit = absolute_path(dirfd, path, abs, PATH_MAX, written) && under_any_prefix(abs, 1);
	/* Decided on the lexical path; the kernel model walks what was written past the prefix. */
	if (hit && written[0] != '\0')
		strcpy(abs, written);
	errno = saved;
	return hit;
}

int climbs_out(int dirfd, const char *path)
{
	char head[PATH_MAX], abs[PATH_MAX];
	const char *p = path;
	size_t n;
	int saved = errno, hit;

	if (path == NULL || !shim_active())
		return 0;
	for (;;) {
		p = strstr(p, "..");
		if (p == NULL)
			return 0;
		if ((p == path || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
			break;
		p += 2;
	}
	n = (size_t)(p - path);
	if (n == 0 || n >= sizeof head || !prefixes_loaded())
		return 0;
	memcpy(head, path, n);
	head[n] = '\0';
	hit = absolute_path(dirfd, head, abs, PATH_MAX, NULL) && under_any_prefix(abs, 0);
	errno = saved;
	return hit;
}

int testbed_join(const char *abs, char tb[PATH_MAX])
{
	size_t len;
	const char *root = testbed_root(&len);
	size_t alen = strlen(abs);
	if (len == 0 || len + alen + 1 > PATH_MAX)
		return 0;
	memcpy(tb, root, len);
	memcpy(tb + len, abs, alen + 1);
	return 1;
}

int testbed_path(int dirfd, const char *path, char abs[PATH_MAX], char tb[PATH_MAX], int call)
{
	struct call c;
	size_t root_len;
	long r;

	if (!path_emulated(dirfd, path, abs))
		return 0;
	call_begin(&c, EMU_OP_SYNC);
	c.req.a0 = (uint64_t)call;
	c.part[0] = abs;
	c.part_len[0] = strlen(abs) + 1;
	r = call_send(&c);
	if (r == 0)
		r = c.rep.ret;
	call_end(&c);
	if (r == 0 && !testbed_join(abs, tb))
		r = *testbed_root(&root_len) == '\0' ? -ENXIO : -ENAMETOOLONG;
	if (r != 0) {
		errno = (int)-r;
		return -1;
	}
	return 1;
}
