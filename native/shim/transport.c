/*
 * The transport (transport.h): process state, the per-thread transport connection and the one
 * request helper. Everything here may run inside the SIGSEGV handler of a trapped mapping
 * (call_* with in_signal set): only system calls, the thread's own buffers and atomics; no
 * malloc, no stdio, no locks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "creds.h"
#include "paths.h"
#include "real.h"
#include "say.h"
#include "transport.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int active; /* IOMMUFD_EMU_SOCKET is set: forward emulated paths and fds */
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static uint64_t mm_base;       /* random; new in every exec'd image and every fork child */
static pid_t owner_pid;        /* the process whose memory this is (not a vfork child) */
static pthread_key_t exit_key; /* its destructor closes the thread's transport */
static int lost_warned;
static int server_notes; /* atomic: HELLO said the server traces (EMU_HELLO_NOTES) */

/* Per-thread transport connection. */
static __thread int t_sock = -1;
static __thread pid_t t_pid;
static __thread uint32_t t_seq;
static __thread int t_exit_hooked; /* exit_key is set for this thread */
/* gettid() of this thread, valid while t_tid_pid is getpid(): a fork child's thread (new pid)
 * asks again, and so does a vfork child, which shares these variables with its parent. */
static __thread pid_t t_tid, t_tid_pid;
static __thread unsigned char t_reply[16384];

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
static uint64_t mm_cookie(pid_t pid)
{
	return mix64(__atomic_load_n(&mm_base, __ATOMIC_RELAXED) ^ ((uint64_t)pid << 20));
}

static pid_t thread_tid(pid_t pid)
{
	if (t_tid_pid != pid) {
		t_tid = (pid_t)syscall(SYS_gettid);
		t_tid_pid = pid;
	}
	return t_tid;
}

static void drop_transport(void)
{
	if (t_sock >= 0) {
		fd_unmark_shim(t_sock);
		REAL(close)(t_sock);
	}
	t_sock = -1;
}

static void thread_exit(void *unused)
{
	(void)unused;
	if (t_sock >= 0 && t_pid == getpid())
		drop_transport();
	t_sock = -1;
}

/* fork() runs this in the child: a copy of the memory, so the tables are the child's own. A
 * vfork child never runs it, and so never owns them. */
static void atfork_child(void)
{
	__atomic_store_n(&mm_base, random64(), __ATOMIC_RELAXED);
	__atomic_store_n(&owner_pid, getpid(), __ATOMIC_RELEASE);
	paths_after_fork();
	creds_changed();
}

/* getenv() before libc has set environ (a program's .preinit_array runs first): the variable
 * from /proc/self/environ, the same initial environment, read with plain system calls into buf.
 * NULL when absent. */
static const char *early_getenv(const char *name, char *buf, size_t len)
{
	static char env[32768];
	size_t n = 0, name_len = strlen(name);
	ssize_t k;
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/environ", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	while (n < sizeof env - 1 && (k = syscall(SYS_read, fd, env + n, sizeof env - 1 - n)) > 0)
		n += (size_t)k;
	syscall(SYS_close, fd);
	env[n] = '\0';
	for (size_t at = 0; at < n; at += strlen(env + at) + 1) {
		const char *e = env + at;
		if (strncmp(e, name, name_len) == 0 && e[name_len] == '=' &&
		    strlen(e + name_len + 1) < len) {
			strcpy(buf, e + name_len + 1);
			return buf;
		}
	}
	return NULL;
}

static void init_fn(void)
{
	extern char **environ;
	char early[sizeof sock_path];
	const char *p = environ != NULL ? getenv("IOMMUFD_EMU_SOCKET")
					: early_getenv("IOMMUFD_EMU_SOCKET", early, sizeof early);
	if (p != NULL && p[0] != '\0' && strlen(p) < sizeof sock_path) {
		strcpy(sock_path, p);
		active = 1;
	}
	creds_prepare();
	mm_base = random64();
	owner_pid = getpid();
	pthread_key_create(&exit_key, thread_exit);
	pthread_atfork(NULL, NULL, atfork_child);
}

int shim_active(void)
{
	pthread_once(&init_once, init_fn);
	return active;
}

const char *server_socket_path(void)
{
	return sock_path;
}

int shim_owns_memory(void)
{
	return getpid() == __atomic_load_n(&owner_pid, __ATOMIC_ACQUIRE);
}

__attribute__((constructor)) static void shim_constructor(void)
{
	/* init_fn() gave this image its address space identity, whenever the shim was first used:
	 * an initializer that runs before this one (a library's constructor, the program's
	 * .preinit_array) may already have said HELLO with it, so it must not change here. */
	if (shim_active()) {
		/* Under Yama ptrace_scope=1 the server needs this to use /proc/<pid>/mem. */
		prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
	}
}

void block_signals(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, old);
}

void restore_signals(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

void transport_prepare(void)
{
	creds_prepare();
	(void)REAL(close);
	(void)REAL(fcntl);
	(void)REAL(poll);
}

/* A non-blocking connection (O_NONBLOCK set by the program on an object fd it shares with us)
 * that would block: wait until it is ready. */
static void wait_ready(int s, short events)
{
	struct pollfd p = {s, events, 0};
	REAL(poll)(&p, 1, -1);
}

/* After a failed send or receive on s: whether to try again (EINTR; EAGAIN once s is ready). */
static int transient(int s, short events)
{
	if (errno == EINTR)
		return 1;
	if (errno != EAGAIN)
		return 0;
	wait_ready(s, events);
	return 1;
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
			if (transient(s, POLLOUT))
				continue;
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
			if (transient(s, POLLIN))
				continue;
			return -errno;
		}
		if (r == 0)
			return -ECONNRESET;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* The caller's credentials at this moment (creds.c; pid is getpid()). */
static void fill_creds(struct emu_creds *c, pid_t pid)
{
	memset(c, 0, sizeof *c);
	c->pid = (uint32_t)pid;
	c->tid = (uint32_t)thread_tid(pid);
	creds_fill(c);
	c->mm_cookie = mm_cookie(pid);
}

static void free_reply(struct call *c)
{
	if (c->data_on_heap)
		free(c->data);
	c->data = NULL;
	c->data_len = 0;
	c->data_on_heap = 0;
}

/* Sends c->req (+creds +parts) on s and receives the reply. 0 or -errno (connection unusable). */
static int exchange(int s, struct call *c)
{
	struct iovec iov[4];
	int e;

	free_reply(c);
	fill_creds(&c->creds, c->pid);
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
	} else if (c->in_signal) {
		return -EPROTO; /* no reply to a trapped access is that long */
	} else {
		c->data = malloc(c->data_len);
		if (c->data == NULL)
			return -ENOMEM;
		c->data_on_heap = 1;
	}
	e = recv_all(s, c->data, c->data_len);
	if (e)
		free_reply(c);
	return e;
}

int server_connect(int cloexec)
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

static void warn_lost(int err)
{
	struct say s;
	if (__atomic_exchange_n(&lost_warned, 1, __ATOMIC_RELAXED))
		return;
	say_start(&s);
	say_str(&s, "lost the connection to the emulator at ");
	say_str(&s, sock_path);
	say_str(&s, " (errno ");
	say_dec(&s, (uint64_t)-err);
	say_str(&s, ")");
	say_end(&s);
}

int transport_ready(void)
{
	return t_sock >= 0 && t_pid == getpid();
}

/* The thread's transport closes when the thread exits. pthread_setspecific may allocate: never
 * from a signal handler (the thread's next ordinary call hooks its exit instead). */
static void hook_thread_exit(int in_signal)
{
	if (!in_signal && !t_exit_hooked) {
		pthread_setspecific(exit_key, (void *)1);
		t_exit_hooked = 1;
	}
}

/* The calling thread's transport connection, made (with HELLO) on first use and after fork.
 * Call with signals blocked. Returns the fd or -errno; -ENXIO in a vfork child, whose thread
 * state is its parent's. */
static int transport(int in_signal, pid_t pid)
{
	struct call c;
	int s, hi, e;
	struct rlimit rl;
	int base = 512;

	if (pid != __atomic_load_n(&owner_pid, __ATOMIC_ACQUIRE))
		return -ENXIO;
	if (t_sock >= 0) {
		if (t_pid == pid) {
			hook_thread_exit(in_signal);
			return t_sock;
		}
		/* A fork child: the fd is the parent thread's connection; close only our copy. */
		drop_transport();
	}
	s = server_connect(1);
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
	fd_mark_shim(s, FD_TRANSPORT);
	hook_thread_exit(in_signal);

	memset(&c, 0, sizeof c);
	c.in_signal = in_signal;
	c.pid = pid;
	c.req.op = EMU_OP_HELLO;
	c.req.seq = ++t_seq;
	c.req.a0 = EMU_PROTO_VERSION;
	e = exchange(s, &c);
	if (e == 0 && c.rep.ret < 0)
		e = c.rep.ret;
	if (e) {
		free_reply(&c);
		drop_transport();
		return e;
	}
	paths_store_hello(c.data, c.data_len);
	__atomic_store_n(&server_notes, (c.rep.v1 & EMU_HELLO_NOTES) != 0, __ATOMIC_RELAXED);
	free_reply(&c);
	return s;
}

int transport_notes(void)
{
	return __atomic_load_n(&server_notes, __ATOMIC_RELAXED) && transport_ready();
}

void call_note(uint32_t kind, int fd, uint32_t obj, int64_t result, uint64_t arg0, uint64_t arg1,
	       uint64_t arg2, uint64_t arg3)
{
	if (transport_notes())
		call_note_always(kind, fd, obj, result, arg0, arg1, arg2, arg3);
}

void call_note_always(uint32_t kind, int fd, uint32_t obj, int64_t result, uint64_t arg0,
		      uint64_t arg1, uint64_t arg2, uint64_t arg3)
{
	struct emu_note note = {arg0, arg1, arg2, arg3};
	struct call c;
	int err = errno;
	call_begin(&c, EMU_OP_NOTE);
	c.req.obj = obj;
	c.req.a0 = kind | EMU_FD_BITS(fd);
	c.req.a1 = (uint64_t)result;
	c.part[0] = &note;
	c.part_len[0] = sizeof note;
	(void)call_send(&c);
	call_end(&c);
	errno = err;
}

void transport_hello(void)
{
	sigset_t old;
	block_signals(&old);
	(void)transport(0, getpid());
	restore_signals(&old);
}

void call_begin(struct call *c, uint16_t op)
{
	memset(c, 0, sizeof *c);
	c->req.op = op;
	c->fd = -1;
	c->pid = getpid();
	block_signals(&c->saved);
}

long call_begin_fd(struct call *c, uint16_t op, int fd)
{
	struct fdent e;
	if (!fd_lookup(fd, &e))
		return EMU_NOT_OURS;
	call_begin(c, op);
	c->fd = fd;
	c->ent = e;
	c->req.obj = e.obj;
	return 0;
}

/* One exchange on the thread's transport: 0, -ENXIO (no server) or -EIO (it broke). */
static long send_once(struct call *c)
{
	int s = transport(c->in_signal, c->pid);
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

long call_send(struct call *c)
{
	int tries;
	for (tries = 0; tries < 3; tries++) {
		long r = send_once(c);
		if (c->fd < 0)
			return r;
		if (r != 0)
			return -EIO;
		if (!(c->rep.flags & EMU_REP_STALE))
			return 0;
		/* The server no longer knows the object this fd's entry names. */
		fd_forget(c->fd);
		if (!fd_lookup(c->fd, &c->ent))
			return EMU_NOT_OURS;
		c->req.obj = c->ent.obj;
	}
	return EMU_NOT_OURS;
}

long call_send_on(struct call *c, int sock)
{
	return exchange(sock, c);
}

void call_end(struct call *c)
{
	free_reply(c);
	restore_signals(&c->saved);
}
