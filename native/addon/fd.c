/*
 * iommufd-emu fd helper: the one thing Node cannot do itself, taking a duplicate of another
 * process's fd (pidfd_getfd). The server uses it to hold a client's eventfd the way a driver
 * holds an eventfd_ctx (VFIO_DEVICE_SET_IRQS), so interrupts can be signalled later with a plain
 * write from Node. Needs the same permission as /proc/<pid>/mem (PTRACE_MODE_ATTACH).
 *
 *   getfd(pid, fd) -> a new fd in the server (O_CLOEXEC), or -errno
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static napi_value getfd(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], result;
	int32_t pid = 0, fd = -1;
	long pidfd, r;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
	    napi_get_value_int32(env, argv[0], &pid) != napi_ok ||
	    napi_get_value_int32(env, argv[1], &fd) != napi_ok) {
		napi_throw_type_error(env, NULL, "getfd(pid, fd) takes two integers");
		return NULL;
	}
	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		r = -errno;
	} else {
		r = syscall(SYS_pidfd_getfd, (int)pidfd, fd, 0);
		if (r < 0)
			r = -errno;
		close((int)pidfd);
	}
	napi_create_int32(env, (int32_t)r, &result);
	return result;
}

NAPI_MODULE_INIT()
{
	napi_value fn;
	if (napi_create_function(env, "getfd", NAPI_AUTO_LENGTH, getfd, NULL, &fn) != napi_ok ||
	    napi_set_named_property(env, exports, "getfd", fn) != napi_ok)
		return NULL;
	return exports;
}
