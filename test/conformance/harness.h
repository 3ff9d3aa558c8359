/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A tiny TAP-style harness for the iommufd-emu conformance programs.
 *
 * Every program is an ordinary C program built against the headers in
 * include/linux and run unmodified under `iommufd-emu exec`. It prints one
 * line per test case:
 *
 *     ok 3 - map_fixed_overlap
 *     not ok 4 - unmap_cut_area # got ioctl(...): expected -1/ENOENT, got ret=0
 *     ok 5 - attach_reserved # SKIP no VFIO device
 *
 * followed by a "1..N" plan, and exits 0 only if no test case failed.
 *
 * Checks do not stop a test case; REQUIRE*() ones return from it. A test case
 * that forks runs checks in the child and ends the child with CHILD_EXIT(),
 * whose status tells the parent whether the child's checks held.
 *
 * Include this header first: it sets _GNU_SOURCE.
 */
#ifndef IOMMUFD_EMU_CONFORMANCE_HARNESS_H
#define IOMMUFD_EMU_CONFORMANCE_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>

/* ------------------------------------------------------------------------ */
/* Constants                                                                */
/* ------------------------------------------------------------------------ */

#define U64_MAX_ 0xffffffffffffffffULL
#define U32_MAX_ 0xffffffffU
#define PAGE_SZ 4096ULL

/* ------------------------------------------------------------------------ */
/* Harness state and reporting                                              */
/* ------------------------------------------------------------------------ */

static int h_num;		/* test cases run so far */
static int h_failures;		/* test cases that failed */
static int h_cur_failed;	/* failed checks in the current test case */
static int h_cur_skipped;
static char h_first_msg[768];	/* first failure of the current test case */
static char h_skip_msg[256];

static inline const char *h_errname(int e)
{
	static char buf[32];

	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case ECHILD: return "ECHILD";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EINVAL: return "EINVAL";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case ENOTTY: return "ENOTTY";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case ERANGE: return "ERANGE";
	case EDEADLK: return "EDEADLK(EDEADLOCK)";
	case ENOSYS: return "ENOSYS";
	case EOVERFLOW: return "EOVERFLOW";
	case EBADFD: return "EBADFD";
	case EMSGSIZE: return "EMSGSIZE";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EADDRINUSE: return "EADDRINUSE";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ETIMEDOUT: return "ETIMEDOUT";
	default:
		snprintf(buf, sizeof(buf), "errno %d", e);
		return buf;
	}
}

__attribute__((format(printf, 3, 4)))
static inline void h_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("#   %s:%d: %s\n", file, line, msg);
	fflush(stdout);
	if (!h_cur_failed)
		snprintf(h_first_msg, sizeof(h_first_msg), "%s:%d: %s", file,
			 line, msg);
	h_cur_failed++;
}

__attribute__((format(printf, 1, 2)))
static inline void h_note(const char *fmt, ...)
{
	va_list ap;

	printf("#   ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static inline void h_run(const char *name, void (*fn)(void))
{
	h_cur_failed = 0;
	h_cur_skipped = 0;
	h_first_msg[0] = 0;
	h_skip_msg[0] = 0;
	fflush(stdout);
	fn();
	h_num++;
	if (h_cur_failed) {
		h_failures++;
		printf("not ok %d - %s # got %s\n", h_num, name, h_first_msg);
	} else if (h_cur_skipped) {
		printf("ok %d - %s # SKIP %s\n", h_num, name, h_skip_msg);
	} else {
		printf("ok %d - %s\n", h_num, name);
	}
	fflush(stdout);
}

static inline void h_init(void)
{
	const char *t = getenv("CONFORMANCE_TIMEOUT");

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* A hung call must not hang the suite: SIGALRM kills the program. */
	alarm(t ? (unsigned int)atoi(t) : 30);
	if (sysconf(_SC_PAGESIZE) != (long)PAGE_SZ) {
		printf("Bail out! these programs assume 4 KiB pages\n");
		exit(2);
	}
}

static inline int h_done(void)
{
	printf("1..%d\n", h_num);
	if (h_failures)
		printf("# %d of %d test cases failed\n", h_failures, h_num);
	fflush(stdout);
	return h_failures ? 1 : 0;
}

#define TEST(name) static void name(void)
#define RUN(name) h_run(#name, name)

#define SKIP(...)                                                          \
	do {                                                               \
		snprintf(h_skip_msg, sizeof(h_skip_msg), __VA_ARGS__);     \
		h_cur_skipped = 1;                                         \
		return;                                                    \
	} while (0)

/* Ends a forked child: status 0 iff every check in the child held. */
#define CHILD_EXIT() _exit(h_cur_failed ? 1 : 0)

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond))                                               \
			h_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond); \
	} while (0)

#define REQUIRE(cond)                                                      \
	do {                                                               \
		if (!(cond)) {                                             \
			h_fail(__FILE__, __LINE__, "REQUIRE(%s) failed",   \
			       #cond);                                     \
			return;                                            \
		}                                                          \
	} while (0)

/* Compares two integers (as unsigned 64-bit), printing both in hex. */
#define CHECK_EQ(actual, expected)                                         \
	do {                                                               \
		unsigned long long _a = (unsigned long long)(actual);      \
		unsigned long long _e = (unsigned long long)(expected);    \
		if (_a != _e)                                              \
			h_fail(__FILE__, __LINE__,                         \
			       "%s == %s: got 0x%llx, expected 0x%llx",    \
			       #actual, #expected, _a, _e);                \
	} while (0)

#define h_ret_errno(r, e) ((r) == -1 ? h_errname(e) : "-")

/* The call must fail with -1 and exactly errno `expected`. */
#define CHECK_ERRNO(expected, call)                                        \
	do {                                                               \
		long _r;                                                   \
		int _e;                                                    \
		errno = 0;                                                 \
		_r = (long)(call);                                         \
		_e = errno;                                                \
		if (!(_r == -1 && _e == (expected)))                       \
			h_fail(__FILE__, __LINE__,                         \
			       "%s: expected -1/%s, got ret=%ld errno=%s", \
			       #call, h_errname(expected), _r,             \
			       h_ret_errno(_r, _e));                       \
	} while (0)

/* The call must return exactly `expected`. */
#define CHECK_RET(expected, call)                                          \
	do {                                                               \
		long _r;                                                   \
		int _e;                                                    \
		errno = 0;                                                 \
		_r = (long)(call);                                         \
		_e = errno;                                                \
		if (_r != (long)(expected))                                \
			h_fail(__FILE__, __LINE__,                         \
			       "%s: expected %ld, got ret=%ld errno=%s",   \
			       #call, (long)(expected), _r,                \
			       h_ret_errno(_r, _e));                       \
	} while (0)

/* The call must succeed with 0. */
#define CHECK_OK(call) CHECK_RET(0, call)

/* Like CHECK_OK but ends the test case on failure. */
#define REQUIRE_OK(call)                                                   \
	do {                                                               \
		long _r;                                                   \
		int _e;                                                    \
		errno = 0;                                                 \
		_r = (long)(call);                                         \
		_e = errno;                                                \
		if (_r != 0) {                                             \
			h_fail(__FILE__, __LINE__,                         \
			       "%s: expected 0, got ret=%ld errno=%s",     \
			       #call, _r, h_ret_errno(_r, _e));            \
			return;                                            \
		}                                                          \
	} while (0)

/* ------------------------------------------------------------------------ */
/* Memory helpers                                                           */
/* ------------------------------------------------------------------------ */

/* Anonymous read/write memory; ends the program if the host is out of it. */
static inline void *h_mmap(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		printf("Bail out! mmap(%zu): %s\n", len, strerror(errno));
		exit(2);
	}
	return p;
}

/*
 * Memory of `len` bytes whose address has exactly `align` as its lowest set
 * bit (align is a power of two >= PAGE_SZ): the automatic IOVA allocator
 * derives its alignment from the source address, so tests pin it down.
 */
static inline void *h_mmap_exact_align(size_t len, size_t align)
{
	uintptr_t p = (uintptr_t)h_mmap(len + 3 * align);

	p = (p + 2 * align - 1) & ~(uintptr_t)(2 * align - 1);
	return (void *)(p + align);
}

/* An address with nothing mapped behind it (a page mapped and unmapped). */
static inline void *h_unmapped_addr(void)
{
	void *p = h_mmap(PAGE_SZ);

	munmap(p, PAGE_SZ);
	return p;
}

/* A zero-filled page the process may read but not write. */
static inline void *h_readonly_page(void)
{
	void *p = h_mmap(PAGE_SZ);

	memset(p, 0, PAGE_SZ);
	mprotect(p, PAGE_SZ, PROT_READ);
	return p;
}

/* A page with no access at all (PROT_NONE). */
static inline void *h_noaccess_page(void)
{
	void *p = h_mmap(PAGE_SZ);

	mprotect(p, PAGE_SZ, PROT_NONE);
	return p;
}

/*
 * Largest alignment the automatic IOVA allocator may pick: the THP size when
 * the kernel has transparent huge pages (the sysfs directory exists exactly
 * then), PAGE_SIZE otherwise.
 */
static inline unsigned long long h_max_auto_align(void)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size",
			"r");
	unsigned long long v = 0;

	if (!f)
		return PAGE_SZ;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v ? v : PAGE_SZ;
}

/* ------------------------------------------------------------------------ */
/* iommufd helpers (each returns the ioctl's return value, errno intact)     */
/* ------------------------------------------------------------------------ */

static inline int iommufd_open(void)
{
	return open("/dev/iommu", O_RDWR | O_CLOEXEC);
}

static inline int ioas_alloc(int fd, __u32 *out_id)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };
	int rc = ioctl(fd, IOMMU_IOAS_ALLOC, &cmd);

	if (out_id)
		*out_id = rc ? 0 : cmd.out_ioas_id;
	return rc;
}

/*
 * IOMMU_HWPT_ALLOC of a paging HWPT (no driver data); *out, if given, receives the id
 * (0 on failure).
 */
static inline int hwpt_alloc(int fd, __u32 dev_id, __u32 pt_id, __u32 flags, __u32 *out)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.dev_id = dev_id,
		.pt_id = pt_id,
	};
	int rc = ioctl(fd, IOMMU_HWPT_ALLOC, &cmd);

	if (out)
		*out = rc ? 0 : cmd.out_hwpt_id;
	return rc;
}

static inline int iommu_destroy(int fd, __u32 id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };

	return ioctl(fd, IOMMU_DESTROY, &cmd);
}

/* With IOMMU_IOAS_MAP_FIXED_IOVA in flags *iova is the input; *iova always
 * receives the IOVA on success. */
static inline int ioas_map(int fd, __u32 ioas_id, __u32 flags, const void *va,
			   __u64 length, __u64 *iova)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.ioas_id = ioas_id,
		.user_va = (uintptr_t)va,
		.length = length,
		.iova = iova ? *iova : 0,
	};
	int rc = ioctl(fd, IOMMU_IOAS_MAP, &cmd);

	if (!rc && iova)
		*iova = cmd.iova;
	return rc;
}

#define MAP_RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)

static inline int ioas_map_fixed(int fd, __u32 ioas_id, const void *va,
				 __u64 length, __u64 iova)
{
	return ioas_map(fd, ioas_id, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW, va,
			length, &iova);
}

static inline int ioas_map_auto(int fd, __u32 ioas_id, const void *va,
				__u64 length, __u64 *iova)
{
	*iova = 0;
	return ioas_map(fd, ioas_id, MAP_RW, va, length, iova);
}

static inline int ioas_unmap(int fd, __u32 ioas_id, __u64 iova, __u64 length,
			     __u64 *unmapped)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd),
		.ioas_id = ioas_id,
		.iova = iova,
		.length = length,
	};
	int rc = ioctl(fd, IOMMU_IOAS_UNMAP, &cmd);

	if (unmapped)
		*unmapped = cmd.length;
	return rc;
}

/* With IOMMU_IOAS_MAP_FIXED_IOVA in flags *dst_iova is the input. */
static inline int ioas_copy(int fd, __u32 flags, __u32 dst_ioas, __u32 src_ioas,
			    __u64 length, __u64 *dst_iova, __u64 src_iova)
{
	struct iommu_ioas_copy cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.dst_ioas_id = dst_ioas,
		.src_ioas_id = src_ioas,
		.length = length,
		.dst_iova = dst_iova ? *dst_iova : 0,
		.src_iova = src_iova,
	};
	int rc = ioctl(fd, IOMMU_IOAS_COPY, &cmd);

	if (!rc && dst_iova)
		*dst_iova = cmd.dst_iova;
	return rc;
}

/* *num: in capacity, out total (also written back on EMSGSIZE). */
static inline int ioas_iova_ranges(int fd, __u32 ioas_id,
				   struct iommu_iova_range *ranges, __u32 *num,
				   __u64 *alignment)
{
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd),
		.ioas_id = ioas_id,
		.num_iovas = *num,
		.allowed_iovas = (uintptr_t)ranges,
	};
	int rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd);
	int ok = !rc || errno == EMSGSIZE;

	if (ok)
		*num = cmd.num_iovas;
	if (alignment)
		*alignment = ok ? cmd.out_iova_alignment : 0;
	return rc;
}

static inline int ioas_allow_iovas(int fd, __u32 ioas_id,
				   const struct iommu_iova_range *ranges,
				   __u32 num)
{
	struct iommu_ioas_allow_iovas cmd = {
		.size = sizeof(cmd),
		.ioas_id = ioas_id,
		.num_iovas = num,
		.allowed_iovas = (uintptr_t)ranges,
	};

	return ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd);
}

/* *val: in for SET, out for GET (the kernel copies val64 back on both). */
static inline int iommu_option(int fd, __u32 option_id, __u16 op,
			       __u32 object_id, __u64 *val)
{
	struct iommu_option cmd = {
		.size = sizeof(cmd),
		.option_id = option_id,
		.op = op,
		.object_id = object_id,
		.val64 = val ? *val : 0,
	};
	int rc = ioctl(fd, IOMMU_OPTION, &cmd);

	if (val)
		*val = rc ? 0 : cmd.val64;
	return rc;
}

static inline int option_get(int fd, __u32 option_id, __u32 object_id,
			     __u64 *val)
{
	__u64 v = 0;
	int rc = iommu_option(fd, option_id, IOMMU_OPTION_OP_GET, object_id, &v);

	if (val)
		*val = v;
	return rc;
}

static inline int option_set(int fd, __u32 option_id, __u32 object_id,
			     __u64 val)
{
	return iommu_option(fd, option_id, IOMMU_OPTION_OP_SET, object_id, &val);
}

static inline int vfio_ioas(int fd, __u16 op, __u32 *ioas_id)
{
	struct iommu_vfio_ioas cmd = {
		.size = sizeof(cmd),
		.ioas_id = ioas_id ? *ioas_id : 0,
		.op = op,
	};
	int rc = ioctl(fd, IOMMU_VFIO_IOAS, &cmd);

	if (ioas_id)
		*ioas_id = rc ? 0 : cmd.ioas_id;
	return rc;
}

/* True if `id` names a live IOAS in the context (IOVA_RANGES accepts it). */
static inline int ioas_exists(int fd, __u32 id)
{
	struct iommu_iova_range r[4];
	__u32 num = 4;

	return ioas_iova_ranges(fd, id, r, &num, NULL) == 0;
}

/* ------------------------------------------------------------------------ */
/* VFIO device cdev helpers                                                 */
/* ------------------------------------------------------------------------ */

/* Opens the first /dev/vfio/devices/vfioN that opens; -1 if none. */
static inline int vfio_cdev_open_any(char *path, size_t len)
{
	char buf[64];
	int i;

	for (i = 0; i < 32; i++) {
		int fd;

		snprintf(buf, sizeof(buf), "/dev/vfio/devices/vfio%d", i);
		fd = open(buf, O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			if (path)
				snprintf(path, len, "%s", buf);
			return fd;
		}
	}
	return -1;
}

static inline int vfio_bind(int devfd, int iommufd, __u32 *devid)
{
	struct vfio_device_bind_iommufd cmd = {
		.argsz = sizeof(cmd),
		.iommufd = iommufd,
	};
	int rc = ioctl(devfd, VFIO_DEVICE_BIND_IOMMUFD, &cmd);

	if (devid)
		*devid = rc ? 0 : cmd.out_devid;
	return rc;
}

/* *pt_id: in IOAS/HWPT id, out the attached HWPT id. */
static inline int vfio_attach(int devfd, __u32 *pt_id)
{
	struct vfio_device_attach_iommufd_pt cmd = {
		.argsz = sizeof(cmd),
		.pt_id = *pt_id,
	};
	int rc = ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &cmd);

	if (!rc)
		*pt_id = cmd.pt_id;
	return rc;
}

static inline int vfio_detach(int devfd)
{
	struct vfio_device_detach_iommufd_pt cmd = { .argsz = sizeof(cmd) };

	return ioctl(devfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &cmd);
}

/* ------------------------------------------------------------------------ */
/* Capabilities, through the raw syscalls (libcap may be absent)            */
/* ------------------------------------------------------------------------ */

static inline int cap_get(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
		.pid = 0,
	};

	return (int)syscall(SYS_capget, &hdr, data);
}

static inline int cap_set(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
		.pid = 0,
	};

	return (int)syscall(SYS_capset, &hdr, data);
}

/* 1 if `cap` is in the effective set of the calling thread. */
static inline int cap_effective(int cap)
{
	struct __user_cap_data_struct d[2];

	if (cap_get(d))
		return 0;
	return !!(d[cap / 32].effective & (1U << (cap % 32)));
}

/* Adds (on=1) or removes (on=0) `cap` in the effective set. Raising only
 * works while the capability is still permitted. */
static inline int cap_set_effective(int cap, int on)
{
	struct __user_cap_data_struct d[2];

	if (cap_get(d))
		return -1;
	if (on)
		d[cap / 32].effective |= 1U << (cap % 32);
	else
		d[cap / 32].effective &= ~(1U << (cap % 32));
	return cap_set(d);
}

/* ------------------------------------------------------------------------ */
/* Processes                                                                */
/* ------------------------------------------------------------------------ */

/* fork() with stdout flushed first so buffered lines are not duplicated. */
static inline pid_t h_fork(void)
{
	fflush(stdout);
	fflush(stderr);
	return fork();
}

/* Waits for `pid`; returns its exit status, or 128+signal if killed. */
static inline int h_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

#endif /* IOMMUFD_EMU_CONFORMANCE_HARNESS_H */
