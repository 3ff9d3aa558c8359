/*
 * Directories, symlinks, realpath and the working directory: served by the testbed (a real tree
 * the server keeps in step with the emulated devfs and sysfs), after a SYNC. The emulated files'
 * contents still come from the server: opening a testbed path is opening the emulated one.
 * scandir, glob and realpath open directories inside glibc, out of LD_PRELOAD's reach, so their
 * paths are redirected here (glob through GLOB_ALTDIRFUNC).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "paths.h"
#include "real.h"
#include "transport.h"


/* Directories under /dev opened by opendir: their placeholder files are char devices. */
#define MAX_DEVDIRS 16
static DIR *devdirs[MAX_DEVDIRS]; /* atomic slots */
static int devdir_count;	  /* atomic */

/* Moves one slot holding from to holding to. */
static int devdir_swap(DIR *from, DIR *to)
{
	int i;
	for (i = 0; i < MAX_DEVDIRS; i++) {
		DIR *expected = from;
		if (__atomic_compare_exchange_n(&devdirs[i], &expected, to, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return 1;
	}
	return 0;
}

static void devdir_add(DIR *d)
{
	if (devdir_swap(NULL, d))
		__atomic_add_fetch(&devdir_count, 1, __ATOMIC_RELEASE);
}

static int devdir_has(DIR *d)
{
	int i;
	if (__atomic_load_n(&devdir_count, __ATOMIC_ACQUIRE) == 0)
		return 0;
	for (i = 0; i < MAX_DEVDIRS; i++) {
		if (__atomic_load_n(&devdirs[i], __ATOMIC_ACQUIRE) == d)
			return 1;
	}
	return 0;
}

static void devdir_forget(DIR *d)
{
	if (__atomic_load_n(&devdir_count, __ATOMIC_ACQUIRE) != 0 && devdir_swap(d, NULL))
		__atomic_sub_fetch(&devdir_count, 1, __ATOMIC_RELEASE);
}

static int is_dev_path(const char *abs)
{
	return strncmp(abs, "/dev/", 5) == 0;
}

EXPORT DIR *opendir(const char *path)
{
	char abs[PATH_MAX], tb[PATH_MAX];
	int k = testbed_path(AT_FDCWD, path, abs, tb, EMU_SYNC_OPENDIR);
	DIR *d;
	if (k == 0)
		return REAL(opendir)(path);
	if (k < 0)
		return NULL;
	d = REAL(opendir)(tb);
	if (d != NULL && is_dev_path(abs))
		devdir_add(d);
	return d;
}

EXPORT struct dirent *readdir(DIR *d)
{
	struct dirent *e = REAL(readdir)(d);
	if (e != NULL && e->d_type == DT_REG && devdir_has(d))
		e->d_type = DT_CHR;
	return e;
}

EXPORT struct dirent64 *readdir64(DIR *d)
{
	struct dirent64 *e = REAL(readdir64)(d);
	if (e != NULL && e->d_type == DT_REG && devdir_has(d))
		e->d_type = DT_CHR;
	return e;
}

EXPORT int closedir(DIR *d)
{
	devdir_forget(d);
	return REAL(closedir)(d);
}

/* scandir and friends open the directory inside glibc: redirect the path. */
#define SCANDIR_REDIRECT(dirfd, dir, real_call, redirected_call) \
	do {                                                      \
		char abs_[PATH_MAX], tb_[PATH_MAX];               \
		int k_ = testbed_path(dirfd, dir, abs_, tb_, EMU_SYNC_SCANDIR); \
		if (k_ == 0)                                      \
			return real_call;                         \
		if (k_ < 0)                                       \
			return -1;                                \
		return redirected_call;                           \
	} while (0)

EXPORT int scandir(const char *dir, struct dirent ***list, int (*sel)(const struct dirent *),
		   int (*cmp)(const struct dirent **, const struct dirent **))
{
	SCANDIR_REDIRECT(AT_FDCWD, dir, REAL(scandir)(dir, list, sel, cmp),
			 REAL(scandir)(tb_, list, sel, cmp));
}

EXPORT int scandir64(const char *dir, struct dirent64 ***list, int (*sel)(const struct dirent64 *),
		     int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
	SCANDIR_REDIRECT(AT_FDCWD, dir, REAL(scandir64)(dir, list, sel, cmp),
			 REAL(scandir64)(tb_, list, sel, cmp));
}

EXPORT int scandirat(int dirfd, const char *dir, struct dirent ***list,
		     int (*sel)(const struct dirent *),
		     int (*cmp)(const struct dirent **, const struct dirent **))
{
	SCANDIR_REDIRECT(dirfd, dir, REAL(scandirat)(dirfd, dir, list, sel, cmp),
			 REAL(scandir)(tb_, list, sel, cmp));
}

EXPORT int scandirat64(int dirfd, const char *dir, struct dirent64 ***list,
		       int (*sel)(const struct dirent64 *),
		       int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
	SCANDIR_REDIRECT(dirfd, dir, REAL(scandirat64)(dirfd, dir, list, sel, cmp),
			 REAL(scandir64)(tb_, list, sel, cmp));
}

/* glob walks directories inside glibc too; GLOB_ALTDIRFUNC makes it use the wrappers here. */
static void glob_closedir(void *d)
{
	closedir(d);
}

static void *glob_opendir(const char *path)
{
	return opendir(path);
}

static struct dirent *glob_readdir(void *d)
{
	return readdir(d);
}

/* glob and glob64 take the same glob_t on every 64-bit glibc target. */
_Static_assert(sizeof(glob_t) == sizeof(glob64_t), "glob64_t is glob_t");

/* Points g's directory functions at the wrappers here. */
static void glob_alt_dir_funcs(glob_t *g)
{
	g->gl_closedir = glob_closedir;
	g->gl_readdir = glob_readdir;
	g->gl_opendir = glob_opendir;
	g->gl_lstat = lstat;
	g->gl_stat = stat;
}

EXPORT int glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *g)
{
	if (!shim_active() || (flags & GLOB_ALTDIRFUNC))
		return REAL(glob)(pattern, flags, errfunc, g);
	glob_alt_dir_funcs(g);
	return REAL(glob)(pattern, flags | GLOB_ALTDIRFUNC, errfunc, g);
}

EXPORT int glob64(const char *pattern, int flags, int (*errfunc)(const char *, int), glob64_t *g)
{
	if (!shim_active() || (flags & GLOB_ALTDIRFUNC))
		return REAL(glob64)(pattern, flags, errfunc, g);
	glob_alt_dir_funcs((glob_t *)g);
	return REAL(glob64)(pattern, flags | GLOB_ALTDIRFUNC, errfunc, g);
}

EXPORT ssize_t readlink(const char *path, char *buf, size_t n)
{
	char abs[PATH_MAX], tb[PATH_MAX];
	int k = testbed_path(AT_FDCWD, path, abs, tb, EMU_SYNC_READLINK);
	if (k == 0)
		return REAL(readlink)(path, buf, n);
	return k < 0 ? -1 : REAL(readlink)(tb, buf, n);
}

EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
	char abs[PATH_MAX], tb[PATH_MAX];
	int k = testbed_path(dirfd, path, abs, tb, EMU_SYNC_READLINK);
	if (k == 0)
		return REAL(readlinkat)(dirfd, path, buf, n);
	return k < 0 ? -1 : REAL(readlink)(tb, buf, n);
}

EXPORT ssize_t __readlink_chk(const char *path, char *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return readlink(path, buf, n);
}

EXPORT ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return readlinkat(dirfd, path, buf, n);
}

/* realpath of an emulated path (or one that climbs ".." out of one): resolved in the testbed,
 * physically (the path as given, so ".." after a link goes where the kernel's would), then
 * mapped back. A result outside the testbed, and paths under /proc that it does not hold
 * (fail-nth), are left to the real realpath. */
EXPORT char *realpath(const char *path, char *resolved)
{
	char abs[PATH_MAX], tb[PATH_MAX], raw[PATH_MAX], out[PATH_MAX];
	const char *root;
	size_t len;
	int k = testbed_path(AT_FDCWD, path, abs, tb, EMU_SYNC_REALPATH);
	if (k == 0 && climbs_out(AT_FDCWD, path))
		k = 2;
	if (k == 0)
		return REAL(realpath)(path, resolved);
	if (k < 0)
		return NULL;
	/* The testbed path of the path as given: root + absolute path, or cwd-relative if the
	 * working directory is in the testbed already. */
	root = testbed_root(&len);
	if (len == 0)
		return REAL(realpath)(path, resolved);
	if (path[0] == '/') {
		if (snprintf(raw, sizeof raw, "%s%s", root, path) >= (int)sizeof raw) {
			errno = ENAMETOOLONG;
			return NULL;
		}
	} else {
		int in_testbed;
		if (REAL(getcwd)(out, sizeof out) == NULL)
			return NULL;
		in_testbed = strncmp(out, root, len) == 0 && (out[len] == '/' || out[len] == '\0');
		if (snprintf(raw, sizeof raw, "%s%s/%s", in_testbed ? "" : root, out, path) >=
		    (int)sizeof raw) {
			errno = ENAMETOOLONG;
			return NULL;
		}
	}
	if (REAL(realpath)(raw, out) == NULL) {
		if (errno == ENOENT && k == 1 && strncmp(abs, "/proc/", 6) == 0)
			return REAL(realpath)(path, resolved);
		return NULL;
	}
	if (!strip_root(out))
		return REAL(realpath)(path, resolved);
	if (resolved == NULL) {
		resolved = strdup(out);
		if (resolved == NULL)
			errno = ENOMEM;
		return resolved;
	}
	memcpy(resolved, out, strlen(out) + 1);
	return resolved;
}

EXPORT char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
	if (resolved != NULL && resolvedlen < PATH_MAX)
		__chk_fail();
	return realpath(path, resolved);
}

EXPORT char *canonicalize_file_name(const char *path)
{
	return realpath(path, NULL);
}

EXPORT int chdir(const char *path)
{
	char abs[PATH_MAX], tb[PATH_MAX];
	int k = testbed_path(AT_FDCWD, path, abs, tb, EMU_SYNC_CHDIR);
	if (k == 0)
		return REAL(chdir)(path);
	return k < 0 ? -1 : REAL(chdir)(tb);
}

/* A working directory inside the testbed is reported as the emulated directory it mirrors. */
EXPORT char *getcwd(char *buf, size_t size)
{
	char *r = REAL(getcwd)(buf, size);
	if (r != NULL && shim_active()) {
		paths_load();
		strip_root(r);
	}
	return r;
}

EXPORT char *__getcwd_chk(char *buf, size_t size, size_t buflen)
{
	if (size > buflen)
		__chk_fail();
	return getcwd(buf, size);
}

