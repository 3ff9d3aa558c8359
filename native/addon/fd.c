/*
 * iommufd-emu fd helper: what Node cannot do itself with a file descriptor.
 *
 *   getfd(pid, fd)  -> a duplicate of another process's fd in the server (pidfd_getfd, O_CLOEXEC),
 *                      or -errno. The server holds a client's eventfd this way, as a driver holds
 *                      an eventfd_ctx (VFIO_DEVICE_SET_IRQS). Needs PTRACE_MODE_ATTACH.
 *   peercred(fd)    -> [pid, uid, gid] of the process at the other end of an AF_UNIX socket, as
 *                      the kernel recorded them at connect() (SO_PEERCRED), or -errno. The
 *                      server's only source of a client's identity: what a client claims is
 *                      checked against it.
 *   signal(fd)      -> adds 1 to an eventfd without ever blocking: 0, or -EAGAIN when the counter
 *                      is at its maximum (the signal is lost, the counter stays full, as
 *                      eventfd_signal() saturates), or -errno. The file description is the
 *                      client's (pidfd_getfd shares it), so its O_NONBLOCK is the client's to
 *                      change: the counter is polled first, and the write is bounded by a timer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static int int_args(napi_env env, napi_callback_info info, size_t want, int32_t *out)
{
	size_t argc = want;
	napi_value argv[2];
	size_t i;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want)
		return -1;
	for (i = 0; i < want; i++)
		if (napi_get_value_int32(env, argv[i], &out[i]) != napi_ok)
			return -1;
	return 0;
}

static napi_value int_result(napi_env env, long r)
{
	napi_value result;
	napi_create_int32(env, (int32_t)r, &result);
	return result;
}

static napi_value getfd(napi_env env, napi_callback_info info)
{
	int32_t a[2];
	long pidfd, r;

	if (int_args(env, info, 2, a)) {
		napi_throw_type_error(env, NULL, "getfd(pid, fd) takes two integers");
		return NULL;
	}
	pidfd = syscall(SYS_pidfd_open, a[0], 0);
	if (pidfd < 0)
		return int_result(env, -errno);
	r = syscall(SYS_pidfd_getfd, (int)pidfd, a[1], 0);
	if (r < 0)
		r = -errno;
	close((int)pidfd);
	return int_result(env, r);
}

static napi_value peercred(napi_env env, napi_callback_info info)
{
	int32_t fd;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	napi_value result, v;

	if (int_args(env, info, 1, &fd)) {
		napi_throw_type_error(env, NULL, "peercred(fd) takes an integer");
		return NULL;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return int_result(env, -errno);
	napi_create_array_with_length(env, 3, &result);
	napi_create_int32(env, cred.pid, &v);
	napi_set_element(env, result, 0, v);
	napi_create_uint32(env, cred.uid, &v);
	napi_set_element(env, result, 1, v);
	napi_create_uint32(env, cred.gid, &v);
	napi_set_element(env, result, 2, v);
	return result;
}

/*
 * A write that could block is cut short by a one-shot timer signal to this thread (no
 * SA_RESTART, a handler that does nothing): the write returns EINTR after at most
 * WRITE_BOUND_NS. Poll alone is not enough: the client shares the file description and can
 * fill the counter, or clear O_NONBLOCK, between our poll and our write.
 */
#define INTERRUPT_SIGNAL (SIGRTMAX - 1)
#define WRITE_BOUND_NS 2000000L /* 2 ms */

static void on_interrupt(int sig)
{
	(void)sig;
}

static timer_t interrupt_timer;
static pid_t interrupt_tid; /* the thread the timer signals; 0 before the first use */

/* The timer of the calling thread, made at first use; -1 if it cannot be had. */
static int interrupt_ready(void)
{
	struct sigaction sa;
	struct sigevent sev;
	pid_t tid = (pid_t)syscall(SYS_gettid);

	if (interrupt_tid != 0)
		return interrupt_tid == tid ? 0 : -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	if (sigaction(INTERRUPT_SIGNAL, &sa, NULL) != 0)
		return -1;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = INTERRUPT_SIGNAL;
	sev._sigev_un._tid = tid;
	if (timer_create(CLOCK_MONOTONIC, &sev, &interrupt_timer) != 0)
		return -1;
	interrupt_tid = tid;
	return 0;
}

static void set_interrupt(long ns)
{
	struct itimerspec t;

	memset(&t, 0, sizeof(t));
	t.it_value.tv_nsec = ns;
	timer_settime(interrupt_timer, 0, &t, NULL);
}

static napi_value signal_eventfd(napi_env env, napi_callback_info info)
{
	int32_t fd;
	uint64_t one = 1;
	struct pollfd p;
	ssize_t n;
	int err;

	if (int_args(env, info, 1, &fd)) {
		napi_throw_type_error(env, NULL, "signal(fd) takes an integer");
		return NULL;
	}
	/* POLLOUT: the counter is below its maximum, so adding 1 does not block now. */
	p.fd = fd;
	p.events = POLLOUT;
	p.revents = 0;
	if (poll(&p, 1, 0) < 0)
		return int_result(env, -errno);
	if (p.revents & (POLLNVAL | POLLERR))
		return int_result(env, p.revents & POLLNVAL ? -EBADF : -EAGAIN);
	if (!(p.revents & POLLOUT))
		return int_result(env, -EAGAIN);
	if (interrupt_ready() != 0)
		return int_result(env, -EAGAIN); /* cannot bound the write: the signal is lost */
	set_interrupt(WRITE_BOUND_NS);
	n = write(fd, &one, sizeof(one));
	err = errno;
	set_interrupt(0);
	if (n == (ssize_t)sizeof(one))
		return int_result(env, 0);
	return int_result(env, err == EINTR ? -EAGAIN : -err);
}

static int export_fn(napi_env env, napi_value exports, const char *name, napi_callback fn)
{
	napi_value f;
	return napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f) != napi_ok ||
	       napi_set_named_property(env, exports, name, f) != napi_ok;
}

NAPI_MODULE_INIT()
{
	if (export_fn(env, exports, "getfd", getfd) || export_fn(env, exports, "peercred", peercred) ||
	    export_fn(env, exports, "signal", signal_eventfd))
		return NULL;
	return exports;
}
