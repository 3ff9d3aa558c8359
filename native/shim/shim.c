/*
 * iommufd-emu LD_PRELOAD shim: makes the emulated device nodes (/dev/iommu, /dev/vfio/...) of an
 * iommufd-emu server appear to an unmodified, dynamically linked program.
 *
 * - Every emulated open() returns a real fd: a fresh AF_UNIX connection to the server (the "object
 *   connection"). dup, fork, exec, close and SIGKILL therefore behave natively, and the server
 *   releases the file when it sees EOF, i.e. when the last copy is closed in every process.
 * - Calls on emulated fds (ioctl, read, write, mmap, poll, fstat) travel on a per-thread
 *   "transport connection" (re-made after fork) with all signals blocked, one request at a time.
 * - The shim knows no iommufd/VFIO struct. For ioctl it sends the raw arg plus, when arg points at
 *   readable memory that starts with a plausible u32 size (4..4096), that many bytes; the server
 *   returns the bytes of that window it wrote and the shim stores them back. Everything else
 *   (embedded pointers) the server reaches through /proc/<pid>/mem.
 * - Paths outside the server's emulated prefixes, and fds that are not ours, go to libc untouched.
 * - Directory listings, symlinks, realpath and chdir are served by the testbed: a real tree the
 *   server mirrors the emulated files into (SYNC before each use). The shim makes the real call
 *   there; a testbed path maps back to the emulated path it mirrors, so contents stay live.
 * - glibc's own internal opens (fopen, opendir, scandir, glob, realpath, the __*_chk wrappers)
 *   bypass LD_PRELOAD, so those entry points are wrapped too; emulated stdio streams are
 *   fopencookie() streams over the shim's read/write/lseek/close.
 *
 * Wire format: protocol.h. Design notes: docs/shim.md.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/ucontext.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"

#define EXPORT __attribute__((visibility("default")))

/* ---------------------------------------------------------------------------------------------
 * The real libc functions.
 */

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

static void *resolve(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (p == NULL) {
		dprintf(2, "iommufd-emu shim: libc has no %s\n", name);
		abort();
	}
	return p;
}

/* REAL(name): the next definition of name (libc's), looked up once. */
#define REAL_DECL(name)                                                           \
	static __typeof__(name) *real_##name;                                     \
	static inline __typeof__(name) *get_real_##name(void)                     \
	{                                                                         \
		__typeof__(name) *p = __atomic_load_n(&real_##name, __ATOMIC_RELAXED); \
		if (p == NULL) {                                                  \
			p = (__typeof__(name) *)resolve(#name);                   \
			__atomic_store_n(&real_##name, p, __ATOMIC_RELAXED);      \
		}                                                                 \
		return p;                                                         \
	}                                                                         \
	struct real_##name##_unused
#define REAL(name) (get_real_##name())

REAL_DECL(open);
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

/* ---------------------------------------------------------------------------------------------
 * Process state.
 */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int active; /* IOMMUFD_EMU_SOCKET is set: forward emulated paths and fds */
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static uint64_t mm_base;       /* random; new in every exec'd image and every fork child */
static pthread_key_t exit_key; /* its destructor closes the thread's transport */
static int lost_warned;

/* Emulated path prefixes from the server's HELLO reply. */
#define MAX_PREFIXES 32
static char prefix_buf[2048];
static const char *prefixes[MAX_PREFIXES];
static int prefix_count;
static int prefixes_loaded; /* atomic */
static pthread_mutex_t prefix_lock = PTHREAD_MUTEX_INITIALIZER;
/* The testbed (from HELLO): a real directory tree mirroring the emulated one, where directory
 * listings, symlinks, realpath and chdir are served. Its paths map back to emulated paths. */
static char tb_root[PATH_MAX];
static size_t tb_root_len;
/* Used only while the server cannot be reached, so that opening these fails with ENXIO. */
static const char *const fallback_prefixes[] = {"/dev/iommu", "/dev/vfio"};

/* fd table: what each emulated fd refers to. Copied on dup*, cleared on close. */
#define FD_TABLE_SIZE 65536
/* FD_TRANSPORT and FD_INTERNAL (the shim's own copy of an object fd, held by a trapped
 * mapping) are the shim's: the program cannot close them. */
enum { FD_NONE = 0, FD_OBJECT = 1, FD_TRANSPORT = 2, FD_INTERNAL = 3 };
struct fdent {
	uint32_t obj;
	uint32_t mode;
	uint64_t rdev;
};
static struct fdent fd_table[FD_TABLE_SIZE];
static unsigned char fd_kind[FD_TABLE_SIZE]; /* atomic */

/* Per-thread transport connection. */
static __thread int t_sock = -1;
static __thread pid_t t_pid;
static __thread uint32_t t_seq;
static __thread unsigned char t_window[EMU_WINDOW_MAX];
static __thread unsigned char t_reply[16384];

/* Internal result: the fd table entry was stale; dispatch again. Outside both the range of
 * results (>= 0) and of errnos (-4095..-1). */
#define EMU_RETRY (-100000L)

static uint64_t random64(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 16) ^
		    (uint64_t)(uintptr_t)&v;
	}
	return v;
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Identifies this address space: changes on exec (constructor) and in a fork child (atfork, and
 * the pid mixed in covers clone() without atfork handlers). */
static uint64_t mm_cookie(void)
{
	return mix64(__atomic_load_n(&mm_base, __ATOMIC_RELAXED) ^ ((uint64_t)getpid() << 20));
}

static void thread_exit(void *unused)
{
	(void)unused;
	if (t_sock >= 0 && t_pid == getpid()) {
		if (t_sock < FD_TABLE_SIZE)
			__atomic_store_n(&fd_kind[t_sock], FD_NONE, __ATOMIC_RELEASE);
		REAL(close)(t_sock);
	}
	t_sock = -1;
}

static void atfork_child(void)
{
	__atomic_store_n(&mm_base, random64(), __ATOMIC_RELAXED);
}

static void init_fn(void)
{
	const char *p = getenv("IOMMUFD_EMU_SOCKET");
	if (p != NULL && p[0] != '\0' && strlen(p) < sizeof sock_path) {
		strcpy(sock_path, p);
		active = 1;
	}
	mm_base = random64();
	pthread_key_create(&exit_key, thread_exit);
	pthread_atfork(NULL, NULL, atfork_child);
}

static inline int ensure_active(void)
{
	pthread_once(&init_once, init_fn);
	return active;
}

__attribute__((constructor)) static void shim_constructor(void)
{
	if (ensure_active()) {
		/* A new image: a new address space identity. */
		mm_base = random64();
		/* Under Yama ptrace_scope=1 the server needs this to use /proc/<pid>/mem. */
		prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
	}
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers.
 */

static void block_signals(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, old);
}

static void restore_signals(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Fault-safe copy from our own memory: 0, -EFAULT, or -ENOSYS when process_vm_readv is unusable. */
static int safe_read(void *dst, const void *src, size_t n)
{
	struct iovec local = {dst, n};
	struct iovec remote = {(void *)src, n};
	ssize_t k;
	if (n == 0)
		return 0;
	k = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	if (k == (ssize_t)n)
		return 0;
	if (k < 0 && (errno == ENOSYS || errno == EPERM))
		return -ENOSYS;
	return -EFAULT;
}

/* Fault-safe copy into our own memory (respects page protections, like copy_to_user). */
static int safe_write(void *dst, const void *src, size_t n)
{
	struct iovec local = {(void *)src, n};
	struct iovec remote = {dst, n};
	ssize_t k;
	if (n == 0)
		return 0;
	k = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
	if (k == (ssize_t)n)
		return 0;
	if (k < 0 && (errno == ENOSYS || errno == EPERM)) {
		memcpy(dst, src, n);
		return 0;
	}
	return -EFAULT;
}

static int send_all(int s, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		struct msghdr m;
		ssize_t n;
		memset(&m, 0, sizeof m);
		m.msg_iov = iov;
		m.msg_iovlen = (size_t)cnt;
		n = sendmsg(s, &m, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = {s, POLLOUT, 0};
				REAL(poll)(&p, 1, -1);
				continue;
			}
			return -errno;
		}
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int recv_all(int s, void *buf, size_t n)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = recv(s, p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pf = {s, POLLIN, 0};
				REAL(poll)(&pf, 1, -1);
				continue;
			}
			return -errno;
		}
		if (r == 0)
			return -ECONNRESET;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void fill_creds(struct emu_creds *c)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	struct rlimit rl;

	memset(c, 0, sizeof *c);
	c->pid = (uint32_t)getpid();
	c->tid = (uint32_t)syscall(SYS_gettid);
	c->uid = getuid();
	c->euid = geteuid();
	c->gid = getgid();
	c->egid = getegid();
	memset(data, 0, sizeof data);
	if (syscall(SYS_capget, &hdr, data) == 0) {
		c->cap_eff_lo = data[0].effective;
		c->cap_eff_hi = data[1].effective;
	}
	c->memlock = getrlimit(RLIMIT_MEMLOCK, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
	c->mm_cookie = mm_cookie();
}

/* ---------------------------------------------------------------------------------------------
 * One request/reply exchange.
 */

struct call {
	struct emu_req req;
	struct emu_creds creds;
	const void *part[2];
	size_t part_len[2];
	struct emu_rep rep;
	unsigned char *data; /* reply payload */
	size_t data_len;
	int data_on_heap;
};

static void call_done(struct call *c)
{
	if (c->data_on_heap)
		free(c->data);
	c->data = NULL;
	c->data_on_heap = 0;
}

/* Sends c->req (+creds +parts) on s and receives the reply. 0 or -errno (connection unusable). */
static int exchange(int s, struct call *c)
{
	struct iovec iov[4];
	int e;

	fill_creds(&c->creds);
	c->req.len = (uint32_t)(sizeof c->req + sizeof c->creds + c->part_len[0] + c->part_len[1]);
	iov[0].iov_base = &c->req;
	iov[0].iov_len = sizeof c->req;
	iov[1].iov_base = &c->creds;
	iov[1].iov_len = sizeof c->creds;
	iov[2].iov_base = (void *)c->part[0];
	iov[2].iov_len = c->part_len[0];
	iov[3].iov_base = (void *)c->part[1];
	iov[3].iov_len = c->part_len[1];
	e = send_all(s, iov, 4);
	if (e)
		return e;
	e = recv_all(s, &c->rep, sizeof c->rep);
	if (e)
		return e;
	if (c->rep.len < sizeof c->rep || c->rep.len > EMU_MSG_MAX || c->rep.seq != c->req.seq ||
	    c->rep.op != c->req.op)
		return -EPROTO;
	c->data_len = c->rep.len - sizeof c->rep;
	if (c->data_len <= sizeof t_reply) {
		c->data = t_reply;
	} else {
		c->data = malloc(c->data_len);
		if (c->data == NULL)
			return -ENOMEM;
		c->data_on_heap = 1;
	}
	e = recv_all(s, c->data, c->data_len);
	if (e)
		call_done(c);
	return e;
}

static void drop_transport(void)
{
	if (t_sock >= 0) {
		if (t_sock < FD_TABLE_SIZE)
			__atomic_store_n(&fd_kind[t_sock], FD_NONE, __ATOMIC_RELEASE);
		REAL(close)(t_sock);
	}
	t_sock = -1;
}

static int connect_server(int cloexec)
{
	struct sockaddr_un a;
	int s = socket(AF_UNIX, SOCK_STREAM | (cloexec ? SOCK_CLOEXEC : 0), 0);
	if (s < 0)
		return -errno;
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path, sock_path, strlen(sock_path) + 1);
	while (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		REAL(close)(s);
		return -e;
	}
	return s;
}

/* HELLO's payload: the testbed root, then the prefixes. */
static void store_prefixes(const unsigned char *p, size_t n)
{
	size_t i = 0, used = 0;
	int count = 0;
	pthread_mutex_lock(&prefix_lock);
	if (!__atomic_load_n(&prefixes_loaded, __ATOMIC_ACQUIRE)) {
		size_t rlen = strnlen((const char *)p, n);
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
			/* "/dev/vfio/" and "/dev/vfio" mean the same prefix. */
			while (len > 1 && prefix_buf[used + len - 1] == '/')
				prefix_buf[used + --len] = '\0';
			if (len > 0)
				prefixes[count++] = prefix_buf + used;
			used += len + 1;
			i += strnlen((const char *)p + i, n - i) + 1;
		}
		prefix_count = count;
		__atomic_store_n(&prefixes_loaded, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&prefix_lock);
}

static void warn_lost(int err)
{
	if (!__atomic_exchange_n(&lost_warned, 1, __ATOMIC_RELAXED))
		dprintf(2, "iommufd-emu shim: lost the connection to the emulator at %s (%s)\n",
			sock_path, strerror(-err));
}

/* The calling thread's transport connection, made (with HELLO) on first use and after fork.
 * Call with signals blocked. Returns the fd or -errno. */
static int transport(void)
{
	pid_t pid = getpid();
	struct call c;
	int s, hi, e;
	struct rlimit rl;
	int base = 512;

	if (t_sock >= 0) {
		if (t_pid == pid)
			return t_sock;
		/* A fork child: the fd is the parent thread's connection; close only our copy. */
		drop_transport();
	}
	s = connect_server(1);
	if (s < 0)
		return s;
	/* Keep low fd numbers for the program (open() must return the lowest free fd). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur <= 1024)
		base = (int)(rl.rlim_cur / 2);
	hi = REAL(fcntl)(s, F_DUPFD_CLOEXEC, base);
	if (hi >= 0) {
		REAL(close)(s);
		s = hi;
	}
	t_sock = s;
	t_pid = pid;
	t_seq = 0;
	if (s < FD_TABLE_SIZE)
		__atomic_store_n(&fd_kind[s], FD_TRANSPORT, __ATOMIC_RELEASE);
	pthread_setspecific(exit_key, (void *)1);

	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_HELLO;
	c.req.seq = ++t_seq;
	c.req.a0 = EMU_PROTO_VERSION;
	e = exchange(s, &c);
	if (e == 0 && c.rep.ret < 0)
		e = c.rep.ret;
	if (e) {
		call_done(&c);
		drop_transport();
		return e;
	}
	store_prefixes(c.data, c.data_len);
	call_done(&c);
	return s;
}

/* A request on the thread's transport. Call with signals blocked. 0, or -ENXIO when there is
 * no server, or -EIO when the connection broke (the caller reports the errno it finds fitting). */
static int rpc(struct call *c)
{
	int s = transport();
	int e;
	if (s < 0)
		return -ENXIO;
	c->req.seq = ++t_seq;
	e = exchange(s, c);
	if (e) {
		warn_lost(e);
		drop_transport();
		return -EIO;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Paths.
 */

/* A path inside the testbed names the emulated file it mirrors: strip the root in place. */
static int strip_root(char *p)
{
	size_t len = __atomic_load_n(&prefixes_loaded, __ATOMIC_ACQUIRE) ? tb_root_len : 0;
	if (len == 0 || strncmp(p, tb_root, len) != 0 || (p[len] != '/' && p[len] != '\0'))
		return 0;
	if (p[len] == '\0')
		strcpy(p, "/");
	else
		memmove(p, p + len, strlen(p + len) + 1);
	return 1;
}

/* Lexically normalises path (relative to dirfd) into an absolute path (a testbed path becomes
 * the emulated path it mirrors). 0 if impossible. */
static int absolute_path(int dirfd, const char *path, char *out, size_t outsz)
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

/* Fetches the prefix list once per process (any transport's HELLO stores it). */
static void load_prefixes(void)
{
	sigset_t old;
	if (__atomic_load_n(&prefixes_loaded, __ATOMIC_ACQUIRE))
		return;
	block_signals(&old);
	(void)transport();
	restore_signals(&old);
}

/* Whether path (relative to dirfd) is one the emulator answers for; fills abs if so. */
static int path_emulated(int dirfd, const char *path, char abs[PATH_MAX])
{
	int saved = errno;
	int i, hit = 0;

	if (!ensure_active() || path == NULL || path[0] == '\0')
		return 0;
	load_prefixes();
	if (!absolute_path(dirfd, path, abs, PATH_MAX)) {
		errno = saved;
		return 0;
	}
	if (__atomic_load_n(&prefixes_loaded, __ATOMIC_ACQUIRE)) {
		for (i = 0; i < prefix_count && !hit; i++)
			hit = under_prefix(abs, prefixes[i]);
	} else {
		for (i = 0; i < (int)(sizeof fallback_prefixes / sizeof fallback_prefixes[0]) && !hit; i++)
			hit = under_prefix(abs, fallback_prefixes[i]);
	}
	errno = saved;
	return hit;
}

/* tb = where the emulated path abs lives in the testbed. 0 if there is no testbed (no server). */
static int testbed_join(const char *abs, char tb[PATH_MAX])
{
	size_t len = __atomic_load_n(&prefixes_loaded, __ATOMIC_ACQUIRE) ? tb_root_len : 0;
	size_t alen = strlen(abs);
	if (len == 0 || len + alen + 1 > PATH_MAX)
		return 0;
	memcpy(tb, tb_root, len);
	memcpy(tb + len, abs, alen + 1);
	return 1;
}

/* For a path the emulator answers for: 1, with abs = the emulated path and tb = its place in the
 * testbed, which the server has just brought up to date (SYNC; call, an EMU_SYNC_* code, names
 * the caller in the trace). -1 with errno set when there is no usable testbed (no server: ENXIO,
 * like open). 0 for any other path (use it as it is). */
static int testbed_path(int dirfd, const char *path, char abs[PATH_MAX], char tb[PATH_MAX],
			int call)
{
	sigset_t old;
	struct call c;
	int r;

	if (!path_emulated(dirfd, path, abs))
		return 0;
	block_signals(&old);
	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_SYNC;
	c.req.a0 = (uint64_t)call;
	c.part[0] = abs;
	c.part_len[0] = strlen(abs) + 1;
	r = rpc(&c);
	if (r == 0) {
		r = c.rep.ret;
		call_done(&c);
	}
	restore_signals(&old);
	if (r == 0 && !testbed_join(abs, tb))
		r = tb_root_len == 0 ? -ENXIO : -ENAMETOOLONG;
	if (r != 0) {
		errno = -r;
		return -1;
	}
	return 1;
}

/* ---------------------------------------------------------------------------------------------
 * The fd table.
 */

static int table_get(int fd, struct fdent *e)
{
	if (fd < 0 || fd >= FD_TABLE_SIZE)
		return 0;
	if (__atomic_load_n(&fd_kind[fd], __ATOMIC_ACQUIRE) != FD_OBJECT)
		return 0;
	*e = fd_table[fd];
	return 1;
}

static void table_set(int fd, const struct fdent *e)
{
	if (fd < 0 || fd >= FD_TABLE_SIZE)
		return;
	fd_table[fd] = *e;
	__atomic_store_n(&fd_kind[fd], FD_OBJECT, __ATOMIC_RELEASE);
}

static void table_clear(int fd)
{
	if (fd < 0 || fd >= FD_TABLE_SIZE)
		return;
	if (__atomic_load_n(&fd_kind[fd], __ATOMIC_ACQUIRE) == FD_OBJECT)
		__atomic_store_n(&fd_kind[fd], FD_NONE, __ATOMIC_RELEASE);
}

/* The shim's own fds: transports and the fds trapped mappings hold. */
static int is_transport_fd(int fd)
{
	unsigned char kind;
	if (fd < 0 || fd >= FD_TABLE_SIZE)
		return 0;
	kind = __atomic_load_n(&fd_kind[fd], __ATOMIC_ACQUIRE);
	return kind == FD_TRANSPORT || kind == FD_INTERNAL;
}

/* Slow path for an fd the table does not know (inherited across exec, received by SCM_RIGHTS):
 * is it a socket connected to our server, and which object does its inode name? */
static int slow_lookup(int fd, struct fdent *e)
{
	struct sockaddr_un a;
	socklen_t alen = sizeof a;
	struct stat st;
	struct call c;
	sigset_t old;
	int saved = errno;
	int found = 0;

	if (is_transport_fd(fd))
		return 0;
	memset(&a, 0, sizeof a);
	if (getpeername(fd, (struct sockaddr *)&a, &alen) < 0 || a.sun_family != AF_UNIX ||
	    alen <= offsetof(struct sockaddr_un, sun_path) ||
	    strncmp(a.sun_path, sock_path, sizeof a.sun_path) != 0) {
		errno = saved;
		return 0;
	}
	if (REAL(fstat)(fd, &st) < 0) {
		errno = saved;
		return 0;
	}
	block_signals(&old);
	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_LOOKUP;
	c.req.a0 = (uint64_t)st.st_ino;
	if (rpc(&c) == 0) {
		if (c.rep.ret > 0) {
			e->obj = (uint32_t)c.rep.ret;
			e->mode = (uint32_t)c.rep.v0;
			e->rdev = c.rep.v1;
			table_set(fd, e);
			found = 1;
		}
		call_done(&c);
	}
	restore_signals(&old);
	errno = saved;
	return found;
}

/* Whether fd is one of ours, filling e. */
static int emu_fd(int fd, struct fdent *e)
{
	if (!ensure_active() || fd < 0)
		return 0;
	if (table_get(fd, e))
		return 1;
	return slow_lookup(fd, e);
}

/* After a close of an emulated fd: wait until the server has seen any EOF that close caused,
 * so release is synchronous with close() as in the kernel. Only on an existing transport of this
 * process (never creates one: a vfork child must not touch the parent's thread state). */
static void close_barrier(uint32_t obj)
{
	sigset_t old;
	struct call c;
	if (t_sock < 0 || t_pid != getpid())
		return;
	block_signals(&old);
	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_CLOSE;
	c.req.obj = obj;
	if (rpc(&c) == 0)
		call_done(&c);
	restore_signals(&old);
}

static long finish(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* ---------------------------------------------------------------------------------------------
 * open
 */

static int emu_open(const char *abs, int flags, mode_t mode)
{
	sigset_t old;
	struct call c;
	struct stat st;
	struct fdent e;
	int s, ret, err;

	block_signals(&old);
	/* Say HELLO for this address space before the object exists (the server's memory view). */
	(void)transport();
	s = connect_server((flags & O_CLOEXEC) != 0);
	if (s < 0) {
		ret = -ENXIO;
		goto out;
	}
	if (REAL(fstat)(s, &st) < 0) {
		REAL(close)(s);
		ret = -ENXIO;
		goto out;
	}
	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_OPEN;
	c.req.seq = 1;
	c.req.obj = (uint32_t)s;
	c.req.a0 = (uint32_t)flags;
	c.req.a1 = (uint64_t)st.st_ino;
	c.part[0] = abs;
	c.part_len[0] = strlen(abs) + 1;
	err = exchange(s, &c);
	if (err) {
		REAL(close)(s);
		ret = -ENXIO;
		goto out;
	}
	if (c.rep.ret <= 0) {
		char tb[PATH_MAX];
		REAL(close)(s);
		ret = c.rep.ret < 0 ? c.rep.ret : -EIO;
		call_done(&c);
		/* A directory: a real one in the testbed (readdir, fchdir, openat relative to it). */
		if (ret == -EISDIR && testbed_join(abs, tb)) {
			ret = REAL(open)(tb, flags, mode);
			if (ret < 0)
				ret = -errno;
		}
		goto out;
	}
	e.obj = (uint32_t)c.rep.ret;
	e.mode = (uint32_t)c.rep.v0;
	e.rdev = c.rep.v1;
	call_done(&c);
	table_set(s, &e);
	if (flags & O_NONBLOCK)
		REAL(fcntl)(s, F_SETFL, O_NONBLOCK);
	ret = s;
out:
	restore_signals(&old);
	return (int)finish(ret);
}

#define NEEDS_MODE(flags) (((flags) & O_CREAT) != 0 || ((flags) & O_TMPFILE) == O_TMPFILE)

#define GET_MODE(flags, last)                            \
	mode_t mode = 0;                                 \
	if (NEEDS_MODE(flags)) {                         \
		va_list ap;                              \
		va_start(ap, last);                      \
		mode = (mode_t)va_arg(ap, unsigned int); \
		va_end(ap);                              \
	}

EXPORT int open(const char *path, int flags, ...)
{
	char abs[PATH_MAX];
	GET_MODE(flags, flags);
	if (path_emulated(AT_FDCWD, path, abs))
		return emu_open(abs, flags, mode);
	return REAL(open)(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	char abs[PATH_MAX];
	GET_MODE(flags, flags);
	if (path_emulated(AT_FDCWD, path, abs))
		return emu_open(abs, flags, mode);
	return REAL(open64)(path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	char abs[PATH_MAX];
	GET_MODE(flags, flags);
	if (path_emulated(dirfd, path, abs))
		return emu_open(abs, flags, mode);
	return REAL(openat)(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	char abs[PATH_MAX];
	GET_MODE(flags, flags);
	if (path_emulated(dirfd, path, abs))
		return emu_open(abs, flags, mode);
	return REAL(openat64)(dirfd, path, flags, mode);
}

EXPORT int __open_2(const char *path, int flags)
{
	char abs[PATH_MAX];
	if (path_emulated(AT_FDCWD, path, abs))
		return emu_open(abs, flags, 0);
	return REAL(__open_2)(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	char abs[PATH_MAX];
	if (path_emulated(AT_FDCWD, path, abs))
		return emu_open(abs, flags, 0);
	return REAL(__open64_2)(path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	char abs[PATH_MAX];
	if (path_emulated(dirfd, path, abs))
		return emu_open(abs, flags, 0);
	return REAL(__openat_2)(dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	char abs[PATH_MAX];
	if (path_emulated(dirfd, path, abs))
		return emu_open(abs, flags, 0);
	return REAL(__openat64_2)(dirfd, path, flags);
}

/* ---------------------------------------------------------------------------------------------
 * close and dup
 */

EXPORT int close(int fd)
{
	struct fdent e = {0, 0, 0};
	int known, r, err;
	if (!ensure_active())
		return REAL(close)(fd);
	/* Our transport connections are not the program's to close (e.g. close-all-fds loops). */
	if (is_transport_fd(fd))
		return 0;
	known = table_get(fd, &e);
	table_clear(fd);
	r = REAL(close)(fd);
	err = errno;
	if (known && r == 0)
		close_barrier(e.obj);
	errno = err;
	return r;
}

/* After newfd was made a copy of oldfd: update the table, and wait for a release newfd's old
 * file may have gone through. */
static void after_dup_to(int oldfd, int newfd, int had_new, const struct fdent *old_new)
{
	struct fdent e;
	int err = errno;
	int known = emu_fd(oldfd, &e);
	table_clear(newfd);
	if (known)
		table_set(newfd, &e);
	if (had_new)
		close_barrier(old_new->obj);
	errno = err;
}

EXPORT int dup(int fd)
{
	int r = REAL(dup)(fd);
	struct fdent e;
	if (r >= 0 && active) {
		int err = errno;
		if (emu_fd(fd, &e))
			table_set(r, &e);
		errno = err;
	}
	return r;
}

EXPORT int dup2(int oldfd, int newfd)
{
	struct fdent prev = {0, 0, 0};
	int had, r;
	if (!ensure_active())
		return REAL(dup2)(oldfd, newfd);
	had = table_get(newfd, &prev);
	r = REAL(dup2)(oldfd, newfd);
	if (r >= 0 && oldfd != newfd)
		after_dup_to(oldfd, newfd, had, &prev);
	return r;
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	struct fdent prev = {0, 0, 0};
	int had, r;
	if (!ensure_active())
		return REAL(dup3)(oldfd, newfd, flags);
	had = table_get(newfd, &prev);
	r = REAL(dup3)(oldfd, newfd, flags);
	if (r >= 0)
		after_dup_to(oldfd, newfd, had, &prev);
	return r;
}

static void after_fcntl(int fd, int cmd, int r)
{
	struct fdent e;
	if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && active) {
		int err = errno;
		if (emu_fd(fd, &e))
			table_set(r, &e);
		errno = err;
	}
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;
	int r;
	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	r = REAL(fcntl)(fd, cmd, arg);
	after_fcntl(fd, cmd, r);
	return r;
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;
	int r;
	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	r = REAL(fcntl64)(fd, cmd, arg);
	after_fcntl(fd, cmd, r);
	return r;
}

/* ---------------------------------------------------------------------------------------------
 * ioctl
 */

static int write_back(char *arg, size_t wlen, const unsigned char *p, size_t n)
{
	while (n >= sizeof(struct emu_seg)) {
		struct emu_seg seg;
		memcpy(&seg, p, sizeof seg);
		p += sizeof seg;
		n -= sizeof seg;
		if (seg.len > n || seg.off > wlen || seg.len > wlen - seg.off)
			return -EIO;
		if (safe_write(arg + seg.off, p, seg.len) != 0)
			return -EFAULT;
		p += seg.len;
		n -= seg.len;
	}
	return n == 0 ? 0 : -EIO;
}

static long emu_ioctl(int fd, const struct fdent *e, unsigned long cmd, void *arg)
{
	sigset_t old;
	struct call c;
	uint32_t size = 0;
	size_t wlen = 0;
	long r;

	block_signals(&old);
	/* Prefetch the struct arg may point to: a u32 size first, then that many bytes. */
	if (safe_read(&size, arg, sizeof size) == 0 && size >= EMU_WINDOW_MIN &&
	    size <= EMU_WINDOW_MAX && safe_read(t_window, arg, size) == 0)
		wlen = size;
	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_IOCTL;
	c.req.obj = e->obj;
	c.req.a0 = (cmd & 0xffffffffu) | EMU_FD_BITS(fd);
	c.req.a1 = (uint64_t)(uintptr_t)arg;
	if (wlen > 0) {
		/* Can the call write its results there? Store back one byte we just read: read-only
		 * memory faults now rather than after the handler has committed. */
		c.req.flags = EMU_REQ_WINDOW;
		if (safe_write(arg, t_window, 1) != 0)
			c.req.flags |= EMU_REQ_WINDOW_RO;
		c.part[0] = t_window;
		c.part_len[0] = wlen;
	}
	r = rpc(&c);
	if (r == 0) {
		if (c.rep.flags & EMU_REP_STALE) {
			table_clear(fd);
			r = EMU_RETRY;
		} else {
			int wb = 0;
			r = c.rep.ret;
			if (wlen > 0)
				wb = write_back(arg, wlen, c.data, c.data_len);
			else if (c.data_len != 0)
				wb = -EIO;
			if (wb != 0)
				r = wb;
		}
		call_done(&c);
	} else {
		r = -EIO;
	}
	restore_signals(&old);
	return r;
}

EXPORT int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	void *arg;
	int tries;
	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	for (tries = 0; tries < 3; tries++) {
		struct fdent e;
		long r;
		if (!emu_fd(fd, &e))
			break;
		r = emu_ioctl(fd, &e, cmd, arg);
		if (r != EMU_RETRY)
			return (int)finish(r);
	}
	return REAL(ioctl)(fd, cmd, arg);
}

/* ---------------------------------------------------------------------------------------------
 * read / write
 */

static long emu_read(int fd, const struct fdent *e, void *buf, size_t n, off_t pos, int positional)
{
	sigset_t old;
	struct call c;
	long r;

	if (positional && pos < 0)
		return -EINVAL;
	if (n > EMU_RW_MAX)
		n = EMU_RW_MAX;
	block_signals(&old);
	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_READ;
	c.req.obj = e->obj;
	c.req.a0 = n | EMU_FD_BITS(fd);
	c.req.a1 = (uint64_t)pos;
	c.req.flags = positional ? EMU_REQ_POSITIONAL : 0;
	r = rpc(&c);
	if (r == 0) {
		if (c.rep.flags & EMU_REP_STALE) {
			table_clear(fd);
			r = EMU_RETRY;
		} else {
			r = c.rep.ret;
			if (r >= 0) {
				if ((size_t)r > n || (size_t)r != c.data_len)
					r = -EIO;
				else if (safe_write(buf, c.data, (size_t)r) != 0)
					r = -EFAULT;
			}
		}
		call_done(&c);
	} else {
		r = -EIO;
	}
	restore_signals(&old);
	return r;
}

static long emu_write(int fd, const struct fdent *e, const void *buf, size_t n, off_t pos,
		      int positional)
{
	sigset_t old;
	struct call c;
	void *copy;
	long r;

	if (positional && pos < 0)
		return -EINVAL;
	if (n > EMU_RW_MAX)
		n = EMU_RW_MAX;
	copy = malloc(n > 0 ? n : 1);
	if (copy == NULL)
		return -ENOMEM;
	r = safe_read(copy, buf, n);
	if (r == -ENOSYS) {
		memcpy(copy, buf, n);
		r = 0;
	}
	if (r != 0) {
		free(copy);
		return -EFAULT;
	}
	block_signals(&old);
	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_WRITE;
	c.req.obj = e->obj;
	c.req.a0 = n | EMU_FD_BITS(fd);
	c.req.a1 = (uint64_t)pos;
	c.req.flags = positional ? EMU_REQ_POSITIONAL : 0;
	c.part[0] = copy;
	c.part_len[0] = n;
	r = rpc(&c);
	if (r == 0) {
		if (c.rep.flags & EMU_REP_STALE) {
			table_clear(fd);
			r = EMU_RETRY;
		} else {
			r = c.rep.ret;
		}
		call_done(&c);
	} else {
		r = -EIO;
	}
	restore_signals(&old);
	free(copy);
	return r;
}

#define RW_DISPATCH(emu_call, real_call)                  \
	do {                                              \
		int tries_;                               \
		for (tries_ = 0; tries_ < 3; tries_++) {  \
			struct fdent e_;                  \
			long r_;                          \
			if (!emu_fd(fd, &e_))             \
				break;                    \
			r_ = emu_call;                    \
			if (r_ != EMU_RETRY)              \
				return (ssize_t)finish(r_); \
		}                                         \
		return real_call;                         \
	} while (0)

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	RW_DISPATCH(emu_read(fd, &e_, buf, n, 0, 0), REAL(read)(fd, buf, n));
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	RW_DISPATCH(emu_write(fd, &e_, buf, n, 0, 0), REAL(write)(fd, buf, n));
}

EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t pos)
{
	RW_DISPATCH(emu_read(fd, &e_, buf, n, pos, 1), REAL(pread)(fd, buf, n, pos));
}

EXPORT ssize_t pread64(int fd, void *buf, size_t n, off64_t pos)
{
	RW_DISPATCH(emu_read(fd, &e_, buf, n, (off_t)pos, 1), REAL(pread64)(fd, buf, n, pos));
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t pos)
{
	RW_DISPATCH(emu_write(fd, &e_, buf, n, pos, 1), REAL(pwrite)(fd, buf, n, pos));
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t pos)
{
	RW_DISPATCH(emu_write(fd, &e_, buf, n, (off_t)pos, 1), REAL(pwrite64)(fd, buf, n, pos));
}

/* ---------------------------------------------------------------------------------------------
 * poll
 */

#define POLL_MAX_EMULATED 64
#define POLL_SLICE_MS 10

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll() with emulated fds among fds: 1 and *ret = the result (errno set when -1), or 0 when none
 * is emulated (the caller uses the real call). The real fds are polled with the real ppoll (with
 * mask, if given) in slices of POLL_SLICE_MS while the server reports nothing ready. timeout in
 * ms, negative = forever. */
static int emu_poll(struct pollfd *fds, nfds_t n, int timeout, const sigset_t *mask, int *ret)
{
	struct emu_poll_ent ents[POLL_MAX_EMULATED];
	uint32_t revents[POLL_MAX_EMULATED];
	nfds_t where[POLL_MAX_EMULATED];
	int k = 0, j;
	nfds_t i;
	int64_t deadline;

	if (!ensure_active() || n == 0)
		return 0;
	for (i = 0; i < n && k < POLL_MAX_EMULATED; i++) {
		struct fdent e;
		if (fds[i].fd >= 0 && emu_fd(fds[i].fd, &e)) {
			ents[k].obj = e.obj;
			ents[k].events = (uint16_t)fds[i].events;
			where[k++] = i;
		}
	}
	if (k == 0)
		return 0;

	deadline = timeout > 0 ? now_ms() + timeout : 0;
	for (;;) {
		sigset_t old;
		struct call c;
		struct timespec slice;
		int ready = 0, wait, r, err;

		block_signals(&old);
		memset(&c, 0, sizeof c);
		c.req.op = EMU_OP_POLL;
		c.part[0] = ents;
		c.part_len[0] = (size_t)k * sizeof ents[0];
		if (rpc(&c) == 0 && c.rep.ret >= 0 && c.data_len == (size_t)k * sizeof(uint32_t)) {
			memcpy(revents, c.data, c.data_len);
		} else {
			for (j = 0; j < k; j++)
				revents[j] = POLLERR;
		}
		call_done(&c);
		restore_signals(&old);

		for (j = 0; j < k; j++) {
			revents[j] &= ents[j].events | POLLERR | POLLHUP | POLLNVAL;
			if (revents[j] != 0)
				ready++;
		}
		if (ready > 0 || timeout == 0) {
			wait = 0;
		} else if (timeout < 0) {
			wait = POLL_SLICE_MS;
		} else {
			int64_t left = deadline - now_ms();
			wait = left <= 0 ? 0 : (left < POLL_SLICE_MS ? (int)left : POLL_SLICE_MS);
		}
		/* Let the kernel poll the other fds; hide ours (a negative fd is ignored). */
		for (j = 0; j < k; j++)
			fds[where[j]].fd = ~fds[where[j]].fd;
		slice.tv_sec = wait / 1000;
		slice.tv_nsec = (long)(wait % 1000) * 1000000L;
		r = mask != NULL ? REAL(ppoll)(fds, n, &slice, mask) : REAL(poll)(fds, n, wait);
		err = errno;
		for (j = 0; j < k; j++) {
			fds[where[j]].fd = ~fds[where[j]].fd;
			fds[where[j]].revents = (short)revents[j];
		}
		if (r < 0) {
			errno = err;
			*ret = r;
			return 1;
		}
		if (ready > 0 || r > 0) {
			*ret = r + ready;
			return 1;
		}
		if (timeout == 0 || (timeout > 0 && now_ms() >= deadline)) {
			*ret = 0;
			return 1;
		}
	}
}

/* A ppoll/pselect timeout in ms (rounded up), -1 for none. */
static int timeout_ms(const struct timespec *ts)
{
	int64_t ms;
	if (ts == NULL)
		return -1;
	if (ts->tv_sec < 0 || ts->tv_nsec < 0)
		return 0;
	ms = (int64_t)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	int r;
	if (emu_poll(fds, n, timeout, NULL, &r))
		return r;
	return REAL(poll)(fds, n, timeout);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof *fds < n)
		__chk_fail();
	return poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
	int r;
	if (emu_poll(fds, n, timeout_ms(timeout), mask, &r))
		return r;
	return REAL(ppoll)(fds, n, timeout, mask);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
		       const sigset_t *mask, size_t fdslen)
{
	if (fdslen / sizeof *fds < n)
		__chk_fail();
	return ppoll(fds, n, timeout, mask);
}

/* select/pselect with emulated fds in the sets: the same through emu_poll. 0 when none is. */
static int emu_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int timeout,
		      const sigset_t *mask, int *ret)
{
	struct pollfd pf[FD_SETSIZE];
	int fd, k = 0, any = 0, r, count = 0, j;

	if (!ensure_active() || nfds <= 0)
		return 0;
	if (nfds > FD_SETSIZE)
		nfds = FD_SETSIZE;
	for (fd = 0; fd < nfds; fd++) {
		struct fdent e;
		short ev = 0;
		if (rd != NULL && FD_ISSET(fd, rd))
			ev |= POLLIN;
		if (wr != NULL && FD_ISSET(fd, wr))
			ev |= POLLOUT;
		if (ex != NULL && FD_ISSET(fd, ex))
			ev |= POLLPRI;
		if (ev == 0)
			continue;
		if (!any && emu_fd(fd, &e))
			any = 1;
		pf[k].fd = fd;
		pf[k].events = ev;
		pf[k].revents = 0;
		k++;
	}
	if (!any || !emu_poll(pf, (nfds_t)k, timeout, mask, &r))
		return 0;
	if (r < 0) {
		*ret = -1;
		return 1;
	}
	for (j = 0; j < k; j++) {
		if (pf[j].revents & POLLNVAL) {
			errno = EBADF;
			*ret = -1;
			return 1;
		}
	}
	if (rd != NULL)
		FD_ZERO(rd);
	if (wr != NULL)
		FD_ZERO(wr);
	if (ex != NULL)
		FD_ZERO(ex);
	for (j = 0; j < k; j++) {
		short re = pf[j].revents;
		if ((pf[j].events & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) {
			FD_SET(pf[j].fd, rd);
			count++;
		}
		if ((pf[j].events & POLLOUT) && (re & (POLLOUT | POLLERR))) {
			FD_SET(pf[j].fd, wr);
			count++;
		}
		if ((pf[j].events & POLLPRI) && (re & POLLPRI)) {
			FD_SET(pf[j].fd, ex);
			count++;
		}
	}
	*ret = count;
	return 1;
}

EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	int r, ms = -1;
	if (tv != NULL) {
		int64_t v = (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000;
		ms = v < 0 ? 0 : v > INT_MAX ? INT_MAX : (int)v;
	}
	if (emu_select(nfds, rd, wr, ex, ms, NULL, &r)) {
		if (tv != NULL && r == 0)
			tv->tv_sec = tv->tv_usec = 0;
		return r;
	}
	return REAL(select)(nfds, rd, wr, ex, tv);
}

EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
		   const sigset_t *mask)
{
	int r;
	if (emu_select(nfds, rd, wr, ex, timeout_ms(ts), mask, &r))
		return r;
	return REAL(pselect)(nfds, rd, wr, ex, ts, mask);
}

/* ---------------------------------------------------------------------------------------------
 * mmap
 */

/* ---------------------------------------------------------------------------------------------
 * Trapped mappings: device memory whose every access must reach the device in order (a BAR with
 * register side effects). The range is reserved PROT_NONE; each access faults, the SIGSEGV
 * handler decodes the instruction, forwards it as a positional READ/WRITE of the region at
 * region_offset + (address - start), puts a load's result in the destination register and steps
 * over the instruction. x86-64 only: mov (88 89 8a 8b c6 c7) and movzx/movsx (0f b6 b7 be bf),
 * with 66/REX/segment prefixes. Anything else (SSE copies, read-modify-write ops) is reported and
 * the program dies of the SIGSEGV, as with an unemulated MMIO access.
 */

#define MAX_TRAPS 64

struct trap {
	int used; /* atomic; the rest is written before used is set */
	uintptr_t start;
	size_t len;
	uint64_t region_offset;
	uint32_t obj;
	int fd; /* the shim's copy of the object fd: keeps the file alive like vm_file */
};

static struct trap traps[MAX_TRAPS];
static pthread_mutex_t trap_lock = PTHREAD_MUTEX_INITIALIZER;
/* The program's own SIGSEGV disposition once the shim's handler is installed: sigaction() and
 * signal() for SIGSEGV then read and set this instead, and faults outside trapped ranges go to
 * it, so the program's handler and the trap handler chain. */
static struct sigaction old_segv;
static int segv_installed; /* atomic */

/* The default disposition back, for a fault that must now kill the program. */
static void segv_default(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	REAL(sigaction)(SIGSEGV, &sa, NULL);
}

#if defined(__x86_64__)

struct mmio_insn {
	int len;
	int store;
	int size;	   /* bytes accessed */
	int dest_size;	   /* register bytes a load writes (movzx/movsx widen) */
	int sign_extend;
	int reg;	   /* register operand (x86 numbering), -1 for an immediate */
	int high8;	   /* AH/CH/DH/BH */
	uint64_t imm;
};

static int decode_mmio(const uint8_t *ip, struct mmio_insn *d)
{
	const uint8_t *p = ip;
	int op16 = 0, rex = 0, two = 0, w, mod, rm;
	uint8_t op, modrm;

	memset(d, 0, sizeof *d);
	for (;; p++) {
		if (*p == 0x66)
			op16 = 1;
		else if (*p == 0x2e || *p == 0x3e || *p == 0x26 || *p == 0x36 || *p == 0x64 || *p == 0x65)
			continue; /* segment: si_addr is already the linear address */
		else
			break;
	}
	if ((*p & 0xf0) == 0x40)
		rex = *p++;
	w = (rex & 8) != 0;
	op = *p++;
	if (op == 0x0f) {
		two = 1;
		op = *p++;
	}
	d->dest_size = w ? 8 : op16 ? 2 : 4;
	if (!two) {
		switch (op) {
		case 0x88: d->store = 1; d->size = 1; break;
		case 0x89: d->store = 1; d->size = d->dest_size; break;
		case 0x8a: d->size = 1; d->dest_size = 1; break;
		case 0x8b: d->size = d->dest_size; break;
		case 0xc6: d->store = 1; d->size = 1; break;
		case 0xc7: d->store = 1; d->size = d->dest_size; break;
		default: return -1;
		}
	} else {
		switch (op) {
		case 0xb6: d->size = 1; break;
		case 0xb7: d->size = 2; break;
		case 0xbe: d->size = 1; d->sign_extend = 1; break;
		case 0xbf: d->size = 2; d->sign_extend = 1; break;
		default: return -1;
		}
	}
	modrm = *p++;
	mod = modrm >> 6;
	rm = modrm & 7;
	d->reg = ((modrm >> 3) & 7) | ((rex & 4) ? 8 : 0);
	if (mod == 3)
		return -1; /* not a memory operand */
	if (rm == 4) {
		uint8_t sib = *p++;
		if (mod == 0 && (sib & 7) == 5)
			p += 4;
	} else if (mod == 0 && rm == 5) {
		p += 4; /* RIP-relative */
	}
	if (mod == 1)
		p += 1;
	else if (mod == 2)
		p += 4;
	if (!two && (op == 0xc6 || op == 0xc7)) {
		if (((modrm >> 3) & 7) != 0)
			return -1;
		d->reg = -1;
		if (op == 0xc6) {
			d->imm = *p;
			p += 1;
		} else if (op16) {
			uint16_t v;
			memcpy(&v, p, 2);
			d->imm = v;
			p += 2;
		} else {
			int32_t v;
			memcpy(&v, p, 4);
			d->imm = (uint64_t)(int64_t)v; /* sign-extended for REX.W */
			p += 4;
		}
	}
	/* Byte registers 4-7 without REX are AH, CH, DH, BH. */
	if (d->reg >= 4 && d->reg < 8 && !rex && ((d->store && d->size == 1 && d->reg >= 0) ||
						   (!d->store && d->dest_size == 1)))
		d->high8 = 1;
	d->len = (int)(p - ip);
	return 0;
}

static const int greg_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
				REG_RSI, REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11,
				REG_R12, REG_R13, REG_R14, REG_R15};

static uint64_t reg_value(const ucontext_t *uc, const struct mmio_insn *d)
{
	if (d->reg < 0)
		return d->imm;
	if (d->high8)
		return ((uint64_t)uc->uc_mcontext.gregs[greg_of[d->reg - 4]] >> 8) & 0xff;
	return (uint64_t)uc->uc_mcontext.gregs[greg_of[d->reg]];
}

static void set_reg(ucontext_t *uc, const struct mmio_insn *d, uint64_t v)
{
	greg_t *g;
	uint64_t old;
	if (d->sign_extend)
		v = d->size == 1 ? (uint64_t)(int64_t)(int8_t)v : (uint64_t)(int64_t)(int16_t)v;
	if (d->high8) {
		g = &uc->uc_mcontext.gregs[greg_of[d->reg - 4]];
		*g = (greg_t)(((uint64_t)*g & ~0xff00ull) | ((v & 0xff) << 8));
		return;
	}
	g = &uc->uc_mcontext.gregs[greg_of[d->reg]];
	old = (uint64_t)*g;
	switch (d->dest_size) {
	case 1: *g = (greg_t)((old & ~0xffull) | (v & 0xff)); break;
	case 2: *g = (greg_t)((old & ~0xffffull) | (v & 0xffff)); break;
	case 4: *g = (greg_t)(v & 0xffffffffull); break; /* 32-bit writes zero the top */
	default: *g = (greg_t)v; break;
	}
}

/* One register access: a positional READ/WRITE of `size` bytes. Signal-safe (no malloc). */
static int trap_access(const struct trap *t, uint64_t pos, int store, uint64_t *value, int size)
{
	sigset_t old;
	struct call c;
	int r;
	block_signals(&old);
	memset(&c, 0, sizeof c);
	c.req.op = store ? EMU_OP_WRITE : EMU_OP_READ;
	c.req.flags = EMU_REQ_POSITIONAL;
	c.req.obj = t->obj;
	c.req.a0 = (uint64_t)size | EMU_FD_BITS(EMU_FD_UNKNOWN);
	c.req.a1 = pos;
	if (store) {
		c.part[0] = value;
		c.part_len[0] = (size_t)size;
	}
	r = rpc(&c);
	if (r == 0) {
		r = c.rep.ret;
		if (r == size && !store) {
			*value = 0;
			memcpy(value, c.data, (size_t)size);
		} else if (r >= 0 && r != size) {
			r = -EIO;
		}
		call_done(&c);
	}
	restore_signals(&old);
	return r < 0 ? r : 0;
}

static void segv_handler(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	uintptr_t addr = (uintptr_t)si->si_addr;
	const struct trap *t = NULL;
	struct mmio_insn d;
	uint64_t value;
	int saved = errno, i;

	for (i = 0; i < MAX_TRAPS && t == NULL; i++) {
		if (__atomic_load_n(&traps[i].used, __ATOMIC_ACQUIRE) && addr >= traps[i].start &&
		    addr - traps[i].start < traps[i].len)
			t = &traps[i];
	}
	if (t == NULL) {
		/* Not ours: what would have happened without us. */
		struct sigaction prog = old_segv;
		if (prog.sa_flags & SA_RESETHAND) {
			memset(&old_segv, 0, sizeof old_segv);
			old_segv.sa_handler = SIG_DFL;
		}
		if ((prog.sa_flags & SA_SIGINFO) && prog.sa_sigaction != NULL) {
			errno = saved;
			prog.sa_sigaction(sig, si, ctx);
		} else if (!(prog.sa_flags & SA_SIGINFO) && prog.sa_handler != SIG_DFL &&
			   prog.sa_handler != SIG_IGN) {
			errno = saved;
			prog.sa_handler(sig);
		} else {
			segv_default(); /* the access faults again, fatally */
		}
		errno = saved;
		return;
	}
	if (decode_mmio((const uint8_t *)uc->uc_mcontext.gregs[REG_RIP], &d) != 0 ||
	    addr + (uintptr_t)d.size > t->start + t->len) {
		const uint8_t *ip = (const uint8_t *)uc->uc_mcontext.gregs[REG_RIP];
		dprintf(2,
			"iommufd-emu shim: cannot emulate the instruction at %p (%02x %02x %02x %02x) "
			"accessing trapped device memory at %p\n",
			(const void *)ip, ip[0], ip[1], ip[2], ip[3], si->si_addr);
		segv_default();
		errno = saved;
		return;
	}
	value = d.store ? reg_value(uc, &d) : 0;
	if (trap_access(t, t->region_offset + (addr - t->start), d.store, &value, d.size) != 0 &&
	    !d.store)
		value = ~0ull; /* a read the device did not answer: all ones, like a PCI abort */
	if (!d.store)
		set_reg(uc, &d, value);
	uc->uc_mcontext.gregs[REG_RIP] += d.len;
	errno = saved;
}

static int trapping_supported(void)
{
	return 1;
}

#else

static void segv_handler(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	(void)ctx;
}

static int trapping_supported(void)
{
	return 0;
}

#endif

/* Reserves [addr, len) PROT_NONE and registers it as trapped. 0 or -errno; *out = the range. */
static long map_trapped(int fd, const struct fdent *e, void *addr, size_t len, int flags,
			uint64_t region_offset, void **out)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t span = (len + (size_t)page - 1) & ~((size_t)page - 1);
	int keep = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);
	void *p;
	int copy, i, slot = -1;

	if (!trapping_supported())
		return -ENODEV;
	pthread_mutex_lock(&trap_lock);
	for (i = 0; i < MAX_TRAPS && slot < 0; i++) {
		if (!traps[i].used)
			slot = i;
	}
	if (slot < 0) {
		pthread_mutex_unlock(&trap_lock);
		return -ENOMEM;
	}
	if (!__atomic_load_n(&segv_installed, __ATOMIC_ACQUIRE)) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = segv_handler;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
		sigfillset(&sa.sa_mask);
		if (REAL(sigaction)(SIGSEGV, &sa, &old_segv) != 0) {
			pthread_mutex_unlock(&trap_lock);
			return -errno;
		}
		__atomic_store_n(&segv_installed, 1, __ATOMIC_RELEASE);
	}
	copy = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 256);
	if (copy < 0) {
		pthread_mutex_unlock(&trap_lock);
		return -errno;
	}
	p = REAL(mmap)(addr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | keep, -1,
		       0);
	if (p == MAP_FAILED) {
		int err = errno;
		REAL(close)(copy);
		pthread_mutex_unlock(&trap_lock);
		return -err;
	}
	if (copy < FD_TABLE_SIZE)
		__atomic_store_n(&fd_kind[copy], FD_INTERNAL, __ATOMIC_RELEASE);
	traps[slot].start = (uintptr_t)p;
	traps[slot].len = span;
	traps[slot].region_offset = region_offset;
	traps[slot].obj = e->obj;
	traps[slot].fd = copy;
	__atomic_store_n(&traps[slot].used, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&trap_lock);
	*out = p;
	return 0;
}

/* munmap of (part of) trapped ranges: forget what is gone, and let go of the file with the last
 * piece of a mapping (trimming only at either end; a hole in the middle is left registered). */
static void unmap_trapped(uintptr_t start, size_t len)
{
	uintptr_t end = start + len;
	int i;
	pthread_mutex_lock(&trap_lock);
	for (i = 0; i < MAX_TRAPS; i++) {
		struct trap *t = &traps[i];
		uintptr_t ts, te;
		if (!t->used)
			continue;
		ts = t->start;
		te = t->start + t->len;
		if (end <= ts || start >= te)
			continue;
		if (start <= ts && end >= te) {
			uint32_t obj = t->obj;
			__atomic_store_n(&t->used, 0, __ATOMIC_RELEASE);
			if (t->fd < FD_TABLE_SIZE)
				__atomic_store_n(&fd_kind[t->fd], FD_NONE, __ATOMIC_RELEASE);
			REAL(close)(t->fd);
			pthread_mutex_unlock(&trap_lock);
			close_barrier(obj);
			pthread_mutex_lock(&trap_lock);
		} else if (start <= ts) {
			t->region_offset += end - ts;
			t->len = te - end;
			t->start = end;
		} else if (end >= te) {
			t->len = start - ts;
		}
	}
	pthread_mutex_unlock(&trap_lock);
}

static long emu_mmap(int fd, const struct fdent *e, void *addr, size_t len, int prot, int flags,
		     off_t off, void **out)
{
	sigset_t old;
	struct call c;
	struct emu_mmap_req mr;
	long r;
	long page = sysconf(_SC_PAGESIZE);

	if (len == 0 || off < 0 || (off & (page - 1)) != 0)
		return -EINVAL;
	block_signals(&old);
	memset(&c, 0, sizeof c);
	mr.prot = (uint32_t)prot;
	mr.flags = (uint32_t)flags;
	c.req.op = EMU_OP_MMAP;
	c.req.obj = e->obj;
	c.req.a0 = len;
	c.req.a1 = (uint64_t)off;
	c.part[0] = &mr;
	c.part_len[0] = sizeof mr;
	r = rpc(&c);
	if (r == 0) {
		if (c.rep.flags & EMU_REP_STALE) {
			table_clear(fd);
			r = EMU_RETRY;
		} else if (c.rep.ret < 0) {
			r = c.rep.ret;
		} else if (c.rep.v1 == EMU_MMAP_TRAPPED) {
			r = map_trapped(fd, e, addr, len, flags, c.rep.v0, out);
		} else if (c.rep.v1 != EMU_MMAP_FILE) {
			r = -ENODEV;
		} else if (c.data_len == 0 || c.data[c.data_len - 1] != '\0') {
			r = -EIO;
		} else {
			/* Map the backing file the server named, at the offset it chose. */
			int shared = (flags & MAP_TYPE) != MAP_PRIVATE;
			int oflags = ((prot & PROT_WRITE) && shared ? O_RDWR : O_RDONLY) | O_CLOEXEC;
			int bfd = REAL(open)((const char *)c.data, oflags, 0);
			if (bfd < 0) {
				r = -errno;
			} else {
				void *p = REAL(mmap)(addr, len, prot, flags, bfd, (off_t)c.rep.v0);
				r = p == MAP_FAILED ? -errno : 0;
				REAL(close)(bfd);
				*out = p;
			}
		}
		call_done(&c);
	} else {
		r = -EIO;
	}
	restore_signals(&old);
	return r;
}

#define MMAP_DISPATCH(real_call)                                                       \
	do {                                                                           \
		int tries_;                                                            \
		if (fd < 0 || (flags & MAP_ANONYMOUS))                                 \
			return real_call;                                              \
		for (tries_ = 0; tries_ < 3; tries_++) {                               \
			struct fdent e_;                                               \
			void *p_ = MAP_FAILED;                                         \
			long r_;                                                       \
			if (!emu_fd(fd, &e_))                                          \
				break;                                                 \
			r_ = emu_mmap(fd, &e_, addr, len, prot, flags, (off_t)off, &p_); \
			if (r_ == EMU_RETRY)                                           \
				continue;                                              \
			if (r_ < 0) {                                                  \
				errno = (int)-r_;                                      \
				return MAP_FAILED;                                     \
			}                                                              \
			return p_;                                                     \
		}                                                                      \
		return real_call;                                                      \
	} while (0)

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	MMAP_DISPATCH(REAL(mmap)(addr, len, prot, flags, fd, off));
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	MMAP_DISPATCH(REAL(mmap64)(addr, len, prot, flags, fd, off));
}

/* File-backed mappings of emulated fds are ordinary mappings; trapped ones are forgotten (and
 * their file let go) here. */
EXPORT int munmap(void *addr, size_t len)
{
	int r = REAL(munmap)(addr, len);
	if (r == 0 && segv_installed) {
		int err = errno;
		unmap_trapped((uintptr_t)addr, len);
		errno = err;
	}
	return r;
}

/* ---------------------------------------------------------------------------------------------
 * stat and access
 */

/* Whether a path that is not emulated climbs ".." out of an emulated directory (/dev/vfio/..):
 * the host may not have the directory it climbs out of, so the real call gets the path as
 * normalised here. Other paths keep the kernel's own ".." semantics. */
static int climbs_out(int dirfd, const char *path)
{
	char head[PATH_MAX], abs[PATH_MAX];
	const char *p = path;
	size_t n;
	int i;
	for (;;) {
		p = strstr(p, "..");
		if (p == NULL)
			return 0;
		if ((p == path || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
			break;
		p += 2;
	}
	n = (size_t)(p - path);
	if (n == 0 || n >= sizeof head || !__atomic_load_n(&prefixes_loaded, __ATOMIC_ACQUIRE))
		return 0;
	memcpy(head, path, n);
	head[n] = '\0';
	if (!absolute_path(dirfd, head, abs, PATH_MAX))
		return 0;
	for (i = 0; i < prefix_count; i++) {
		if (under_prefix(abs, prefixes[i]))
			return 1;
	}
	return 0;
}

/* For a path: 0 = not emulated (pass through); 2 = not emulated, but pass abs through instead
 * (climbs_out); 1 = handled, *err = 0 or errno, abs = the emulated path. */
static int emu_path_stat(int dirfd, const char *path, int nofollow, uint32_t *mode, uint64_t *rdev,
			 int *err, char abs[PATH_MAX])
{
	sigset_t old;
	struct call c;
	size_t len;
	int r;

	if (!path_emulated(dirfd, path, abs)) {
		int saved = errno;
		r = path != NULL && ensure_active() && climbs_out(dirfd, path) ? 2 : 0;
		errno = saved;
		return r;
	}
	/* "link/" names what the link points to, even for lstat. */
	len = strlen(path);
	if (nofollow && len > 0 && path[len - 1] == '/')
		nofollow = 0;
	block_signals(&old);
	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_STAT;
	c.req.flags = nofollow ? EMU_REQ_NOFOLLOW : 0;
	c.part[0] = abs;
	c.part_len[0] = strlen(abs) + 1;
	r = rpc(&c);
	if (r != 0) {
		*err = -r;
	} else if (c.rep.ret < 0) {
		*err = -c.rep.ret;
	} else {
		*err = 0;
		*mode = (uint32_t)c.rep.v0;
		*rdev = c.rep.v1;
	}
	call_done(&c);
	restore_signals(&old);
	return 1;
}

static void now_timespec(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

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

#define OVERLAY_TESTBED(st, abs, nofollow, mode_)                       \
	do {                                                            \
		struct stat tbst_;                                      \
		if (testbed_stat(abs, nofollow, mode_, &tbst_)) {       \
			(st)->st_dev = tbst_.st_dev;                    \
			(st)->st_ino = tbst_.st_ino;                    \
			(st)->st_nlink = tbst_.st_nlink;                \
			(st)->st_atim = tbst_.st_atim;                  \
			(st)->st_mtim = tbst_.st_mtim;                  \
			(st)->st_ctim = tbst_.st_ctim;                  \
		}                                                       \
	} while (0)

/* A synthetic stat for an emulated node (no file exists on the host). */
#define FILL_NODE_STAT(st, mode_, rdev_)                                                       \
	do {                                                                                   \
		memset((st), 0, sizeof *(st));                                                 \
		(st)->st_dev = makedev(0, 6);                                                  \
		(st)->st_ino = 0x10000000u + (EMU_RDEV_MAJOR(rdev_) << 20) + EMU_RDEV_MINOR(rdev_) + \
			       (S_ISDIR(mode_) ? 0x8000000u : 0);                              \
		(st)->st_mode = (mode_);                                                       \
		(st)->st_nlink = S_ISDIR(mode_) ? 2 : 1;                                       \
		(st)->st_rdev = makedev(EMU_RDEV_MAJOR(rdev_), EMU_RDEV_MINOR(rdev_));         \
		(st)->st_blksize = 4096;                                                       \
		now_timespec(&(st)->st_atim);                                                  \
		(st)->st_mtim = (st)->st_atim;                                                 \
		(st)->st_ctim = (st)->st_atim;                                                 \
	} while (0)

/* An emulated fd: the socket's own stat, reporting the node's type, mode and rdev. */
#define PATCH_FD_STAT(st, e)                                                                \
	do {                                                                                \
		(st)->st_mode = (e).mode;                                                   \
		(st)->st_rdev = makedev(EMU_RDEV_MAJOR((e).rdev), EMU_RDEV_MINOR((e).rdev)); \
		(st)->st_size = 0;                                                          \
		(st)->st_blocks = 0;                                                        \
		(st)->st_blksize = 4096;                                                    \
	} while (0)

#define FD_STAT(fd, st, real_call)                \
	do {                                      \
		struct fdent e_;                  \
		int r_;                           \
		if (!emu_fd(fd, &e_))             \
			return real_call;         \
		r_ = real_call;                   \
		if (r_ == 0)                      \
			PATCH_FD_STAT(st, e_);    \
		return r_;                        \
	} while (0)

#define PATH_STAT(dirfd, path, nofollow, st, real_call)            \
	do {                                                       \
		char abs_[PATH_MAX];                               \
		uint32_t m_ = 0;                                   \
		uint64_t rd_ = 0;                                  \
		int e_ = 0;                                        \
		int k_ = emu_path_stat(dirfd, path, nofollow, &m_, &rd_, &e_, abs_); \
		if (k_ == 2) {                                     \
			const char *path = abs_; /* for real_call */ \
			return real_call;                          \
		}                                                  \
		if (k_ == 0)                                       \
			return real_call;                          \
		if (e_ != 0) {                                     \
			errno = e_;                                \
			return -1;                                 \
		}                                                  \
		FILL_NODE_STAT(st, m_, rd_);                       \
		OVERLAY_TESTBED(st, abs_, nofollow, m_);           \
		return 0;                                          \
	} while (0)

static int empty_path(const char *path)
{
	return path != NULL && path[0] == '\0';
}

#define AT_STAT(dirfd, path, st, flags, real_call)          \
	do {                                                \
		if (empty_path(path) && ((flags) & AT_EMPTY_PATH)) \
			FD_STAT(dirfd, st, real_call);      \
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

/* access(2) on an emulated node, owned by root:root like a devtmpfs node. */
static int node_access(uint32_t mode, int amode, int effective)
{
	uid_t uid = effective ? geteuid() : getuid();
	gid_t gid = effective ? getegid() : getgid();
	unsigned int bits;
	if (amode == F_OK)
		return 0;
	if (uid == 0) {
		if ((amode & X_OK) && !(mode & 0111))
			return -EACCES;
		return 0;
	}
	bits = gid == 0 ? (mode >> 3) & 7 : mode & 7;
	if (((amode & R_OK) && !(bits & 4)) || ((amode & W_OK) && !(bits & 2)) ||
	    ((amode & X_OK) && !(bits & 1)))
		return -EACCES;
	return 0;
}

#define PATH_ACCESS(dirfd, path, amode, effective, real_call)      \
	do {                                                       \
		char abs_[PATH_MAX];                               \
		uint32_t m_ = 0;                                   \
		uint64_t rd_ = 0;                                  \
		int e_ = 0;                                        \
		int k_ = emu_path_stat(dirfd, path, 0, &m_, &rd_, &e_, abs_); \
		if (k_ == 2) {                                     \
			const char *path = abs_; /* for real_call */ \
			return real_call;                          \
		}                                                  \
		if (k_ == 0)                                       \
			return real_call;                          \
		if (e_ == 0)                                       \
			e_ = -node_access(m_, amode, effective);   \
		if (e_ != 0) {                                     \
			errno = e_;                                \
			return -1;                                 \
		}                                                  \
		return 0;                                          \
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

static void fill_statx_times(struct statx *stx)
{
	struct timespec ts;
	now_timespec(&ts);
	stx->stx_atime.tv_sec = ts.tv_sec;
	stx->stx_atime.tv_nsec = (uint32_t)ts.tv_nsec;
	stx->stx_mtime = stx->stx_atime;
	stx->stx_ctime = stx->stx_atime;
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	char abs[PATH_MAX];
	uint32_t m = 0;
	uint64_t rd = 0;
	int err = 0, nofollow = (flags & AT_SYMLINK_NOFOLLOW) != 0;
	struct stat tb;

	if (empty_path(path) && (flags & AT_EMPTY_PATH)) {
		struct fdent e;
		int r;
		if (!emu_fd(dirfd, &e))
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
	switch (emu_path_stat(dirfd, path, nofollow, &m, &rd, &err, abs)) {
	case 0:
		return REAL(statx)(dirfd, path, flags, mask, stx);
	case 2:
		return REAL(statx)(AT_FDCWD, abs, flags, mask, stx);
	default:
		break;
	}
	if (err != 0) {
		errno = err;
		return -1;
	}
	memset(stx, 0, sizeof *stx);
	stx->stx_mask = STATX_BASIC_STATS;
	stx->stx_blksize = 4096;
	stx->stx_mode = (uint16_t)m;
	stx->stx_nlink = S_ISDIR(m) ? 2 : 1;
	stx->stx_ino = 0x10000000u + (EMU_RDEV_MAJOR(rd) << 20) + EMU_RDEV_MINOR(rd);
	stx->stx_rdev_major = EMU_RDEV_MAJOR(rd);
	stx->stx_rdev_minor = EMU_RDEV_MINOR(rd);
	stx->stx_dev_major = 0;
	stx->stx_dev_minor = 6;
	fill_statx_times(stx);
	if (testbed_stat(abs, nofollow, m, &tb)) {
		stx->stx_ino = tb.st_ino;
		stx->stx_nlink = (uint32_t)tb.st_nlink;
		stx->stx_dev_major = major(tb.st_dev);
		stx->stx_dev_minor = minor(tb.st_dev);
		stx->stx_mtime.tv_sec = tb.st_mtim.tv_sec;
		stx->stx_mtime.tv_nsec = (uint32_t)tb.st_mtim.tv_nsec;
		stx->stx_ctime.tv_sec = tb.st_ctim.tv_sec;
		stx->stx_ctime.tv_nsec = (uint32_t)tb.st_ctim.tv_nsec;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Directories, symlinks, realpath and the working directory: served by the testbed (a real tree
 * the server keeps in step with the emulated devfs and sysfs), after a SYNC. The emulated files'
 * contents still come from the server: opening a testbed path is opening the emulated one.
 */

/* Directories under /dev opened by opendir: their placeholder files are char devices. */
#define MAX_DEVDIRS 16
static DIR *devdirs[MAX_DEVDIRS]; /* atomic slots */
static int devdir_count;	  /* atomic */

static void devdir_add(DIR *d)
{
	int i;
	for (i = 0; i < MAX_DEVDIRS; i++) {
		DIR *expected = NULL;
		if (__atomic_compare_exchange_n(&devdirs[i], &expected, d, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			__atomic_add_fetch(&devdir_count, 1, __ATOMIC_RELEASE);
			return;
		}
	}
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
	int i;
	if (__atomic_load_n(&devdir_count, __ATOMIC_ACQUIRE) == 0)
		return;
	for (i = 0; i < MAX_DEVDIRS; i++) {
		DIR *expected = d;
		if (__atomic_compare_exchange_n(&devdirs[i], &expected, NULL, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			__atomic_sub_fetch(&devdir_count, 1, __ATOMIC_RELEASE);
			return;
		}
	}
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

static struct dirent64 *glob_readdir64(void *d)
{
	return readdir64(d);
}

EXPORT int glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *g)
{
	if (!ensure_active() || (flags & GLOB_ALTDIRFUNC))
		return REAL(glob)(pattern, flags, errfunc, g);
	g->gl_closedir = glob_closedir;
	g->gl_readdir = glob_readdir;
	g->gl_opendir = glob_opendir;
	g->gl_lstat = lstat;
	g->gl_stat = stat;
	return REAL(glob)(pattern, flags | GLOB_ALTDIRFUNC, errfunc, g);
}

EXPORT int glob64(const char *pattern, int flags, int (*errfunc)(const char *, int), glob64_t *g)
{
	if (!ensure_active() || (flags & GLOB_ALTDIRFUNC))
		return REAL(glob64)(pattern, flags, errfunc, g);
	g->gl_closedir = glob_closedir;
	g->gl_readdir = glob_readdir64;
	g->gl_opendir = glob_opendir;
	g->gl_lstat = lstat64;
	g->gl_stat = stat64;
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
	size_t len;
	int k = testbed_path(AT_FDCWD, path, abs, tb, EMU_SYNC_REALPATH);
	if (k == 0 && path != NULL && ensure_active() && climbs_out(AT_FDCWD, path))
		k = 2;
	if (k == 0)
		return REAL(realpath)(path, resolved);
	if (k < 0)
		return NULL;
	/* The testbed path of the path as given: root + absolute path, or cwd-relative if the
	 * working directory is in the testbed already. */
	len = __atomic_load_n(&prefixes_loaded, __ATOMIC_ACQUIRE) ? tb_root_len : 0;
	if (len == 0)
		return REAL(realpath)(path, resolved);
	if (path[0] == '/') {
		if (snprintf(raw, sizeof raw, "%s%s", tb_root, path) >= (int)sizeof raw) {
			errno = ENAMETOOLONG;
			return NULL;
		}
	} else {
		int in_testbed;
		if (REAL(getcwd)(out, sizeof out) == NULL)
			return NULL;
		in_testbed = strncmp(out, tb_root, len) == 0 && (out[len] == '/' || out[len] == '\0');
		if (snprintf(raw, sizeof raw, "%s%s/%s", in_testbed ? "" : tb_root, out, path) >=
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
	if (r != NULL && ensure_active()) {
		load_prefixes();
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

/* ---------------------------------------------------------------------------------------------
 * lseek, and stdio streams on emulated files
 */

static long emu_seek(int fd, const struct fdent *e, int64_t off, int whence, int64_t *pos)
{
	sigset_t old;
	struct call c;
	long r;
	block_signals(&old);
	memset(&c, 0, sizeof c);
	c.req.op = EMU_OP_SEEK;
	c.req.obj = e->obj;
	c.req.a0 = (uint64_t)off;
	c.req.a1 = (uint64_t)(unsigned int)whence;
	r = rpc(&c);
	if (r == 0) {
		if (c.rep.flags & EMU_REP_STALE) {
			table_clear(fd);
			r = EMU_RETRY;
		} else {
			r = c.rep.ret;
			*pos = (int64_t)c.rep.v0;
		}
		call_done(&c);
	} else {
		r = -EIO;
	}
	restore_signals(&old);
	return r;
}

#define SEEK_DISPATCH(real_call)                                           \
	do {                                                               \
		int tries_;                                                \
		for (tries_ = 0; tries_ < 3; tries_++) {                   \
			struct fdent e_;                                   \
			int64_t pos_ = 0;                                  \
			long r_;                                           \
			if (!emu_fd(fd, &e_))                              \
				break;                                     \
			r_ = emu_seek(fd, &e_, (int64_t)off, whence, &pos_); \
			if (r_ == EMU_RETRY)                               \
				continue;                                  \
			if (r_ < 0) {                                      \
				errno = (int)-r_;                          \
				return -1;                                 \
			}                                                  \
			return pos_;                                       \
		}                                                          \
		return real_call;                                          \
	} while (0)

EXPORT off_t lseek(int fd, off_t off, int whence)
{
	SEEK_DISPATCH(REAL(lseek)(fd, off, whence));
}

EXPORT off64_t lseek64(int fd, off64_t off, int whence)
{
	SEEK_DISPATCH(REAL(lseek64)(fd, off, whence));
}

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
	if (!table_get(fd, &e))
		return REAL(fdopen)(fd, mode); /* a directory, opened in the testbed */
	f = cookie_stream(fd, mode);
	if (f == NULL) {
		int err = errno;
		close(fd);
		errno = err;
	}
	return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	char abs[PATH_MAX];
	if (mode != NULL && path_emulated(AT_FDCWD, path, abs))
		return emu_fopen(abs, mode);
	return REAL(fopen)(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	char abs[PATH_MAX];
	if (mode != NULL && path_emulated(AT_FDCWD, path, abs))
		return emu_fopen(abs, mode);
	return REAL(fopen64)(path, mode);
}

EXPORT FILE *fdopen(int fd, const char *mode)
{
	struct fdent e;
	if (mode != NULL && emu_fd(fd, &e))
		return cookie_stream(fd, mode);
	return REAL(fdopen)(fd, mode);
}

/* ---------------------------------------------------------------------------------------------
 * Fortified read/pread: glibc's __read_chk calls its internal read.
 */

EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	RW_DISPATCH(emu_read(fd, &e_, buf, n, 0, 0), REAL(read)(fd, buf, n));
}

EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t pos, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	RW_DISPATCH(emu_read(fd, &e_, buf, n, pos, 1), REAL(pread)(fd, buf, n, pos));
}

EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t pos, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	RW_DISPATCH(emu_read(fd, &e_, buf, n, (off_t)pos, 1), REAL(pread64)(fd, buf, n, pos));
}

/* ---------------------------------------------------------------------------------------------
 * close_range / closefrom: the shim's own fds (transports, the fds trapped mappings hold) stay
 * open, as with close(); emulated fds in the range leave the fd table.
 */

EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	unsigned int lo = first, fd;
	int r = 0, objects = 0;
	if (!ensure_active() || (flags & CLOSE_RANGE_CLOEXEC) || first > last)
		return REAL(close_range)(first, last, flags);
	for (fd = first; fd <= last && fd < FD_TABLE_SIZE; fd++) {
		unsigned char kind = __atomic_load_n(&fd_kind[fd], __ATOMIC_ACQUIRE);
		if (kind == FD_TRANSPORT || kind == FD_INTERNAL) {
			if (fd > lo && REAL(close_range)(lo, fd - 1, flags) != 0)
				r = -1;
			lo = fd + 1;
		} else if (kind == FD_OBJECT) {
			table_clear((int)fd);
			objects = 1;
		}
	}
	if (lo <= last && REAL(close_range)(lo, last, flags) != 0)
		r = -1;
	if (objects) {
		int err = errno;
		close_barrier(0);
		errno = err;
	}
	return r;
}

EXPORT void closefrom(int lowfd)
{
	if (!ensure_active() || lowfd < 0) {
		REAL(closefrom)(lowfd);
		return;
	}
	close_range((unsigned int)lowfd, ~0U, 0);
}

/* ---------------------------------------------------------------------------------------------
 * SIGSEGV: once a trapped mapping installed the shim's handler, the program's sigaction() and
 * signal() for SIGSEGV change the handler the shim chains to instead of replacing it.
 */

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *oldact)
{
	if (sig != SIGSEGV || !__atomic_load_n(&segv_installed, __ATOMIC_ACQUIRE))
		return REAL(sigaction)(sig, act, oldact);
	{
		struct sigaction prev = old_segv;
		if (act != NULL)
			old_segv = *act;
		if (oldact != NULL)
			*oldact = prev;
	}
	return 0;
}

EXPORT __sighandler_t signal(int sig, __sighandler_t handler)
{
	struct sigaction prev = old_segv;
	if (sig != SIGSEGV || !__atomic_load_n(&segv_installed, __ATOMIC_ACQUIRE))
		return REAL(signal)(sig, handler);
	if (handler == SIG_ERR) {
		errno = EINVAL;
		return SIG_ERR;
	}
	memset(&old_segv, 0, sizeof old_segv);
	old_segv.sa_handler = handler;
	old_segv.sa_flags = SA_RESTART;
	return (prev.sa_flags & SA_SIGINFO) ? (__sighandler_t)(void *)prev.sa_sigaction
					    : prev.sa_handler;
}
