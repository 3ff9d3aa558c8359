/*
 * The real libc functions behind the shim's wrappers: REAL(open) is the next definition of open
 * after the shim's (libc's), looked up with dlsym(RTLD_NEXT) on first use and cached.
 *
 * Every unit includes this header; each keeps its own cache of the functions it calls. Code a
 * signal handler can reach must not be the first to use a REAL() (dlsym is not
 * async-signal-safe): see trap_prepare() and transport_prepare().
 */
#ifndef IOMMUFD_EMU_SHIM_REAL_H
#define IOMMUFD_EMU_SHIM_REAL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* Only the wrappers are the shim's interface; everything else is hidden (-fvisibility=hidden). */
#define EXPORT __attribute__((visibility("default")))

/* Entry points the headers do not (or no longer) declare. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
int __fxstat(int ver, int fd, struct stat *st);
int __fxstat64(int ver, int fd, struct stat64 *st);
int __xstat(int ver, const char *path, struct stat *st);
int __xstat64(int ver, const char *path, struct stat64 *st);
int __lxstat(int ver, const char *path, struct stat *st);
int __lxstat64(int ver, const char *path, struct stat64 *st);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);
int newfstatat(int dirfd, const char *path, struct stat *st, int flags);
/* Fortified entry points (_FORTIFY_SOURCE): glibc's versions call its internal read/poll/...,
 * which LD_PRELOAD cannot see, so they are wrapped too. */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t n, off_t pos, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t pos, size_t buflen);
ssize_t __readlink_chk(const char *path, char *buf, size_t n, size_t buflen);
ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t n, size_t buflen);
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);
char *__getcwd_chk(char *buf, size_t size, size_t buflen);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask,
		size_t fdslen);
void __chk_fail(void) __attribute__((noreturn));
/* Declared by glibc >= 2.34 only. */
int close_range(unsigned int first, unsigned int last, int flags);
void closefrom(int lowfd);
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* dlsym(RTLD_NEXT, name); aborts with a message if libc has no such function. */
void *real_resolve(const char *name);

#define REAL_DECL(name)                                                                 \
	static __typeof__(name) *real_##name;                                           \
	static inline __typeof__(name) *get_real_##name(void)                           \
	{                                                                               \
		__typeof__(name) *p = __atomic_load_n(&real_##name, __ATOMIC_RELAXED); \
		if (p == NULL) {                                                        \
			p = (__typeof__(name) *)real_resolve(#name);                    \
			__atomic_store_n(&real_##name, p, __ATOMIC_RELAXED);            \
		}                                                                       \
		return p;                                                               \
	}                                                                               \
	struct real_##name##_unused
#define REAL(name) (get_real_##name())

REAL_DECL(open);
REAL_DECL(execve);
REAL_DECL(execv);
REAL_DECL(open64);
REAL_DECL(openat);
REAL_DECL(openat64);
REAL_DECL(__open_2);
REAL_DECL(__open64_2);
REAL_DECL(__openat_2);
REAL_DECL(__openat64_2);
REAL_DECL(ioctl);
REAL_DECL(close);
REAL_DECL(dup);
REAL_DECL(dup2);
REAL_DECL(dup3);
REAL_DECL(fcntl);
REAL_DECL(fcntl64);
REAL_DECL(read);
REAL_DECL(write);
REAL_DECL(pread);
REAL_DECL(pread64);
REAL_DECL(pwrite);
REAL_DECL(pwrite64);
REAL_DECL(recvmsg);
REAL_DECL(recvmmsg);
REAL_DECL(poll);
REAL_DECL(mmap);
REAL_DECL(mmap64);
REAL_DECL(munmap);
REAL_DECL(fstat);
REAL_DECL(fstat64);
REAL_DECL(__fxstat);
REAL_DECL(__fxstat64);
REAL_DECL(stat);
REAL_DECL(stat64);
REAL_DECL(lstat);
REAL_DECL(lstat64);
REAL_DECL(__xstat);
REAL_DECL(__xstat64);
REAL_DECL(__lxstat);
REAL_DECL(__lxstat64);
REAL_DECL(fstatat);
REAL_DECL(fstatat64);
REAL_DECL(__fxstatat);
REAL_DECL(__fxstatat64);
REAL_DECL(access);
REAL_DECL(faccessat);
REAL_DECL(statx);
REAL_DECL(opendir);
REAL_DECL(readdir);
REAL_DECL(readdir64);
REAL_DECL(closedir);
REAL_DECL(scandir);
REAL_DECL(scandir64);
REAL_DECL(scandirat);
REAL_DECL(scandirat64);
REAL_DECL(readlink);
REAL_DECL(readlinkat);
REAL_DECL(realpath);
REAL_DECL(chdir);
REAL_DECL(getcwd);
REAL_DECL(fopen);
REAL_DECL(fopen64);
REAL_DECL(fdopen);
REAL_DECL(glob);
REAL_DECL(glob64);
REAL_DECL(lseek);
REAL_DECL(lseek64);
REAL_DECL(ppoll);
REAL_DECL(select);
REAL_DECL(pselect);
REAL_DECL(close_range);
REAL_DECL(closefrom);
REAL_DECL(sigaction);
REAL_DECL(signal);
REAL_DECL(getxattr);
REAL_DECL(lgetxattr);
REAL_DECL(listxattr);
REAL_DECL(llistxattr);

/* A wrapper's return: r >= 0 as it is, -errno as -1 with errno set. */
static inline long finish(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

#endif
