/*
 * stat, lstat, fstat, fstatat, statx (and glibc's old __xstat entry points), access and
 * faccessat, and extended attributes.
 *
 * fstat of an emulated fd is the socket's own stat with the node's type, mode and rdev. stat of
 * an emulated path asks the server (STAT) for type, mode and rdev; the testbed's own stat of the
 * same path only supplies st_dev, st_ino, st_nlink and times when the types agree, so a directory
 * keeps one inode whichever way it is reached. Owner and group come from the testbed's
 * placeholder of a file or device node, which holds just "uid gid\n"; directories and links are
 * root's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "paths.h"
#include "real.h"
#include "transport.h"

/* An emulated path as STAT answered for it. */
struct node {
	char abs[PATH_MAX]; /* the emulated path */
	uint32_t mode;
	uint64_t rdev;
	int err; /* errno for the path, 0 if it exists */
};

enum node_lookup { NODE_NOT_OURS, NODE_CLIMBS_OUT, NODE_EMULATED };

/* NODE_NOT_OURS: pass path through; NODE_CLIMBS_OUT: pass n->abs through instead (climbs_out);
 * NODE_EMULATED: n holds the server's answer. */
static enum node_lookup node_lookup(int dirfd, const char *path, int nofollow, struct node *n)
{
	struct call c;
	size_t len;
	long r;

	if (!path_emulated(dirfd, path, n->abs))
		return climbs_out(dirfd, path) ? NODE_CLIMBS_OUT : NODE_NOT_OURS;
	/* "link/" names what the link points to, even for lstat. */
	len = strlen(path);
	if (nofollow && len > 0 && path[len - 1] == '/')
		nofollow = 0;
	call_begin(&c, EMU_OP_STAT);
	c.req.flags = nofollow ? EMU_REQ_NOFOLLOW : 0;
	c.part[0] = n->abs;
	c.part_len[0] = strlen(n->abs) + 1;
	r = call_send(&c);
	if (r == 0)
		r = c.rep.ret;
	n->err = (int)-r;
	n->mode = r == 0 ? (uint32_t)c.rep.v0 : 0;
	n->rdev = r == 0 ? c.rep.v1 : 0;
	call_end(&c);
	return NODE_EMULATED;
}

/* The part every path-based wrapper shares: libc serves a path that is not emulated (the
 * normalised path when it climbs out of an emulated directory). Declares n_ for the rest. */
#define PASS_THROUGH_UNLESS_EMULATED(dirfd, path, nofollow, real_call)  \
	struct node n_;                                                 \
	switch (node_lookup(dirfd, path, nofollow, &n_)) {              \
	case NODE_NOT_OURS:                                             \
		return real_call;                                       \
	case NODE_CLIMBS_OUT: {                                         \
		const char *path = n_.abs; /* for real_call */          \
		return real_call;                                       \
	}                                                               \
	default:                                                        \
		break;                                                  \
	}

/* On every 64-bit glibc target struct stat64 is struct stat. */
_Static_assert(sizeof(struct stat) == sizeof(struct stat64) &&
		       offsetof(struct stat, st_rdev) == offsetof(struct stat64, st_rdev) &&
		       offsetof(struct stat, st_ctim) == offsetof(struct stat64, st_ctim),
	       "struct stat64 is struct stat");

/* The testbed's own stat of an emulated path when it has the same file type as the server says:
 * directories, links and attributes then keep one inode number whichever way they are reached
 * (fstat of a directory fd from the testbed, stat of its path), as fts and `ls -R` expect. */
static int testbed_stat(const char *abs, int nofollow, uint32_t mode, struct stat *out)
{
	char tb[PATH_MAX];
	int saved = errno, r;
	if (!testbed_join(abs, tb))
		return 0;
	r = REAL(fstatat)(AT_FDCWD, tb, out, nofollow ? AT_SYMLINK_NOFOLLOW : 0);
	errno = saved;
	return r == 0 && (out->st_mode & S_IFMT) == (mode & S_IFMT);
}

/* The owner and group of an emulated file or device node, as its testbed placeholder holds them
 * ("uid gid\n"); root's for a directory, a link, or a node the testbed does not have. */
static void node_owner(const struct node *n, uid_t *uid, gid_t *gid)
{
	char tb[PATH_MAX], buf[32];
	unsigned long u, g;
	int fd, saved = errno;
	ssize_t len;

	*uid = 0;
	*gid = 0;
	if (!(S_ISREG(n->mode) || S_ISCHR(n->mode)) || !testbed_join(n->abs, tb))
		return;
	fd = REAL(open)(tb, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		len = REAL(read)(fd, buf, sizeof(buf) - 1);
		REAL(close)(fd);
		if (len > 0) {
			buf[len] = 0;
			if (sscanf(buf, "%lu %lu", &u, &g) == 2) {
				*uid = (uid_t)u;
				*gid = (gid_t)g;
			}
		}
	}
	errno = saved;
}

/* A stat for an emulated node (no file exists on the host); 0, or -1 with errno. */
static int node_stat(const struct node *n, int nofollow, struct stat *st)
{
	struct stat tb;
	if (n->err != 0) {
		errno = n->err;
		return -1;
	}
	memset(st, 0, sizeof *st);
	st->st_dev = makedev(0, 6);
	st->st_ino = 0x10000000u + (EMU_RDEV_MAJOR(n->rdev) << 20) + EMU_RDEV_MINOR(n->rdev) +
		     (S_ISDIR(n->mode) ? 0x8000000u : 0);
	st->st_mode = n->mode;
	node_owner(n, &st->st_uid, &st->st_gid);
	st->st_nlink = S_ISDIR(n->mode) ? 2 : 1;
	st->st_rdev = makedev(EMU_RDEV_MAJOR(n->rdev), EMU_RDEV_MINOR(n->rdev));
	st->st_blksize = 4096;
	clock_gettime(CLOCK_REALTIME, &st->st_atim);
	st->st_mtim = st->st_atim;
	st->st_ctim = st->st_atim;
	if (testbed_stat(n->abs, nofollow, n->mode, &tb)) {
		st->st_dev = tb.st_dev;
		st->st_ino = tb.st_ino;
		st->st_nlink = tb.st_nlink;
		st->st_atim = tb.st_atim;
		st->st_mtim = tb.st_mtim;
		st->st_ctim = tb.st_ctim;
	}
	return 0;
}

/* An emulated fd: the socket's own stat, reporting the node's type, mode and rdev. */
static void patch_fd_stat(struct stat *st, const struct fdent *e)
{
	st->st_mode = e->mode;
	st->st_rdev = makedev(EMU_RDEV_MAJOR(e->rdev), EMU_RDEV_MINOR(e->rdev));
	st->st_size = 0;
	st->st_blocks = 0;
	st->st_blksize = 4096;
}

#define FD_STAT(fd, st, real_call)                                      \
	do {                                                            \
		struct fdent e_;                                        \
		int r_;                                                 \
		if (!fd_lookup(fd, &e_))                                \
			return real_call;                               \
		r_ = real_call;                                         \
		if (r_ == 0)                                            \
			patch_fd_stat((struct stat *)(st), &e_);        \
		return r_;                                              \
	} while (0)

#define PATH_STAT(dirfd, path, nofollow, st, real_call)                          \
	do {                                                                     \
		PASS_THROUGH_UNLESS_EMULATED(dirfd, path, nofollow, real_call);  \
		return node_stat(&n_, nofollow, (struct stat *)(st));            \
	} while (0)

static int empty_path(const char *path)
{
	return path != NULL && path[0] == '\0';
}

#define AT_STAT(dirfd, path, st, flags, real_call)                                           \
	do {                                                                                 \
		if (empty_path(path) && ((flags) & AT_EMPTY_PATH))                           \
			FD_STAT(dirfd, st, real_call);                                       \
		PATH_STAT(dirfd, path, ((flags) & AT_SYMLINK_NOFOLLOW) != 0, st, real_call); \
	} while (0)

EXPORT int fstat(int fd, struct stat *st)
{
	FD_STAT(fd, st, REAL(fstat)(fd, st));
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
	FD_STAT(fd, st, REAL(fstat64)(fd, st));
}

EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	FD_STAT(fd, st, REAL(__fxstat)(ver, fd, st));
}

EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
	FD_STAT(fd, st, REAL(__fxstat64)(ver, fd, st));
}

EXPORT int stat(const char *path, struct stat *st)
{
	PATH_STAT(AT_FDCWD, path, 0, st, REAL(stat)(path, st));
}

EXPORT int stat64(const char *path, struct stat64 *st)
{
	PATH_STAT(AT_FDCWD, path, 0, st, REAL(stat64)(path, st));
}

EXPORT int lstat(const char *path, struct stat *st)
{
	PATH_STAT(AT_FDCWD, path, 1, st, REAL(lstat)(path, st));
}

EXPORT int lstat64(const char *path, struct stat64 *st)
{
	PATH_STAT(AT_FDCWD, path, 1, st, REAL(lstat64)(path, st));
}

EXPORT int __xstat(int ver, const char *path, struct stat *st)
{
	PATH_STAT(AT_FDCWD, path, 0, st, REAL(__xstat)(ver, path, st));
}

EXPORT int __xstat64(int ver, const char *path, struct stat64 *st)
{
	PATH_STAT(AT_FDCWD, path, 0, st, REAL(__xstat64)(ver, path, st));
}

EXPORT int __lxstat(int ver, const char *path, struct stat *st)
{
	PATH_STAT(AT_FDCWD, path, 1, st, REAL(__lxstat)(ver, path, st));
}

EXPORT int __lxstat64(int ver, const char *path, struct stat64 *st)
{
	PATH_STAT(AT_FDCWD, path, 1, st, REAL(__lxstat64)(ver, path, st));
}

EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	AT_STAT(dirfd, path, st, flags, REAL(fstatat)(dirfd, path, st, flags));
}

EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	AT_STAT(dirfd, path, st, flags, REAL(fstatat64)(dirfd, path, st, flags));
}

/* Not a glibc symbol (the syscall's name); exported for programs that declare it themselves. */
EXPORT int newfstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	AT_STAT(dirfd, path, st, flags, REAL(fstatat)(dirfd, path, st, flags));
}

EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	AT_STAT(dirfd, path, st, flags, REAL(__fxstatat)(ver, dirfd, path, st, flags));
}

EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
	AT_STAT(dirfd, path, st, flags, REAL(__fxstatat64)(ver, dirfd, path, st, flags));
}

/* Whether gid is one of the caller's supplementary groups. */
static int in_groups(gid_t gid)
{
	gid_t list[256];
	int n = getgroups(256, list);

	for (int i = 0; i < n; i++)
		if (list[i] == gid)
			return 1;
	return 0;
}

/* access(2) on an emulated node: the owner's, group's or others' bits for the real (or, with
 * AT_EACCESS, effective) ids, as the kernel's check; root may do all but execute a file no one
 * may execute. */
static int node_access(const struct node *n, int amode, int effective)
{
	uid_t uid = effective ? geteuid() : getuid();
	gid_t gid = effective ? getegid() : getgid();
	uid_t owner;
	gid_t group;
	unsigned int bits;
	int err = n->err;

	if (err == 0 && amode != F_OK) {
		node_owner(n, &owner, &group);
		if (uid == owner)
			bits = (n->mode >> 6) & 7;
		else if (gid == group || in_groups(group))
			bits = (n->mode >> 3) & 7;
		else
			bits = n->mode & 7;
		if (uid == 0)
			err = (amode & X_OK) && !(n->mode & 0111) ? EACCES : 0;
		else if (((amode & R_OK) && !(bits & 4)) || ((amode & W_OK) && !(bits & 2)) ||
			 ((amode & X_OK) && !(bits & 1)))
			err = EACCES;
	}
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

#define PATH_ACCESS(dirfd, path, amode, effective, real_call)           \
	do {                                                            \
		PASS_THROUGH_UNLESS_EMULATED(dirfd, path, 0, real_call); \
		return node_access(&n_, amode, effective);              \
	} while (0)

EXPORT int access(const char *path, int amode)
{
	PATH_ACCESS(AT_FDCWD, path, amode, 0, REAL(access)(path, amode));
}

EXPORT int faccessat(int dirfd, const char *path, int amode, int flags)
{
	PATH_ACCESS(dirfd, path, amode, (flags & AT_EACCESS) != 0,
		    REAL(faccessat)(dirfd, path, amode, flags));
}

/* ---------------------------------------------------------------------------------------------
 * statx
 */

EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	int nofollow = (flags & AT_SYMLINK_NOFOLLOW) != 0;
	struct fdent e;
	struct stat st;

	if (empty_path(path) && (flags & AT_EMPTY_PATH)) {
		int r;
		if (!fd_lookup(dirfd, &e))
			return REAL(statx)(dirfd, path, flags, mask, stx);
		r = REAL(statx)(dirfd, path, flags, mask, stx);
		if (r == 0) {
			stx->stx_mode = (uint16_t)e.mode;
			stx->stx_rdev_major = EMU_RDEV_MAJOR(e.rdev);
			stx->stx_rdev_minor = EMU_RDEV_MINOR(e.rdev);
			stx->stx_size = 0;
			stx->stx_blocks = 0;
			stx->stx_blksize = 4096;
		}
		return r;
	}
	{
		/* (an absolute path, as a path climbing out is made, ignores dirfd) */
		PASS_THROUGH_UNLESS_EMULATED(dirfd, path, nofollow,
					     REAL(statx)(dirfd, path, flags, mask, stx));
		if (node_stat(&n_, nofollow, &st) != 0)
			return -1;
	}
	/* The same answer as stat's, in statx's shape. */
	memset(stx, 0, sizeof *stx);
	stx->stx_mask = STATX_BASIC_STATS;
	stx->stx_blksize = 4096;
	stx->stx_mode = (uint16_t)st.st_mode;
	stx->stx_uid = st.st_uid;
	stx->stx_gid = st.st_gid;
	stx->stx_nlink = (uint32_t)st.st_nlink;
	stx->stx_ino = st.st_ino;
	stx->stx_rdev_major = major(st.st_rdev);
	stx->stx_rdev_minor = minor(st.st_rdev);
	stx->stx_dev_major = major(st.st_dev);
	stx->stx_dev_minor = minor(st.st_dev);
	stx->stx_atime.tv_sec = st.st_atim.tv_sec;
	stx->stx_atime.tv_nsec = (uint32_t)st.st_atim.tv_nsec;
	stx->stx_mtime.tv_sec = st.st_mtim.tv_sec;
	stx->stx_mtime.tv_nsec = (uint32_t)st.st_mtim.tv_nsec;
	stx->stx_ctime.tv_sec = st.st_ctim.tv_sec;
	stx->stx_ctime.tv_nsec = (uint32_t)st.st_ctim.tv_nsec;
	return 0;
}

/* Extended attributes: emulated files have none (ls -l asks for security.selinux and ACLs). */
#define XATTR_NONE(path, real_call, none)                      \
	do {                                                   \
		char abs_[PATH_MAX];                           \
		if (!path_emulated(AT_FDCWD, path, abs_)) {    \
			if (path != NULL && climbs_out(AT_FDCWD, path)) { \
				const char *path = abs_;       \
				return real_call;              \
			}                                      \
			return real_call;                      \
		}                                              \
		errno = ENODATA;                               \
		return none;                                   \
	} while (0)

EXPORT ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
{
	XATTR_NONE(path, REAL(getxattr)(path, name, value, size), -1);
}

EXPORT ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size)
{
	XATTR_NONE(path, REAL(lgetxattr)(path, name, value, size), -1);
}

EXPORT ssize_t listxattr(const char *path, char *list, size_t size)
{
	XATTR_NONE(path, REAL(listxattr)(path, list, size), 0);
}

EXPORT ssize_t llistxattr(const char *path, char *list, size_t size)
{
	XATTR_NONE(path, REAL(llistxattr)(path, list, size), 0);
}

