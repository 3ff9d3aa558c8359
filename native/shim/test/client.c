/*
 * Test client for the LD_PRELOAD shim: run through `iommufd-emu exec` against a test kernel that
 * has a node /dev/emu/test0 (src/server/server.test.ts defines its ioctls). Each scenario prints
 * "FAIL ..." lines for failed checks and exits with the number of failures.
 *
 *   shim-client SCENARIO [ARGS...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "testdev.h"

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static int released(int fd)
{
	return ioctl(fd, EMU_RELEASED, 0);
}

static void check_echo(int fd, uint64_t in, const char *what)
{
	uint64_t out = 0;
	int r = echo(fd, in, &out);
	CHECK(r == 1 && out == in + 1, "%s: ECHO on fd %d gave r=%d out=%llu", what, fd, r,
	      (unsigned long long)out);
}

/* ------------------------------------------------------------------------------------------- */

static void scenario_open(void)
{
	volatile int rdwr = O_RDWR; /* not a constant: fortified open() calls __open_2 */
	volatile int rdwr_cloexec = O_RDWR | O_CLOEXEC;
	int fd, dirfd;

	fd = open(DEV, O_RDWR);
	CHECK(fd >= 0, "open");
	check_echo(fd, 41, "open");
	CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0, "no O_CLOEXEC -> no FD_CLOEXEC");
	close(fd);

	fd = open(DEV, rdwr);
	CHECK(fd >= 0, "open with variable flags (__open_2 when fortified)");
	check_echo(fd, 1, "open variable flags");
	close(fd);

	fd = open(DEV, rdwr_cloexec);
	CHECK(fd >= 0, "open O_CLOEXEC");
	CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "O_CLOEXEC -> FD_CLOEXEC");
	close(fd);

	fd = open64(DEV, O_RDWR);
	CHECK(fd >= 0, "open64");
	check_echo(fd, 2, "open64");
	close(fd);

	fd = openat(AT_FDCWD, DEV, O_RDWR);
	CHECK(fd >= 0, "openat");
	check_echo(fd, 3, "openat");
	close(fd);

	fd = openat(AT_FDCWD, DEV, rdwr);
	CHECK(fd >= 0, "openat with variable flags (__openat_2 when fortified)");
	close(fd);

	fd = openat64(AT_FDCWD, DEV, O_RDWR);
	CHECK(fd >= 0, "openat64");
	close(fd);

	dirfd = open("/dev", O_RDONLY | O_DIRECTORY);
	CHECK(dirfd >= 0, "open /dev (a real directory)");
	fd = openat(dirfd, "emu/test0", O_RDWR);
	CHECK(fd >= 0, "openat relative to a dirfd");
	check_echo(fd, 4, "openat dirfd");
	close(fd);
	close(dirfd);

	fd = open("/dev/emu/../emu/./test0", O_RDWR);
	CHECK(fd >= 0, "open of a non-normalised path");
	close(fd);

	CHECK(chdir("/dev") == 0, "chdir /dev");
	fd = open("emu/test0", O_RDWR);
	CHECK(fd >= 0, "open relative to the cwd");
	close(fd);

	errno = 0;
	fd = open("/dev/emu/nope", O_RDWR);
	CHECK(fd == -1 && errno == ENOENT, "unknown emulated path -> ENOENT, got %d", fd);
	errno = 0;
	fd = open("/dev/emu/nope", rdwr);
	CHECK(fd == -1 && errno == ENOENT, "unknown emulated path via __open_2 -> ENOENT");
	errno = 0;
	CHECK(open(DEV, O_RDWR | O_CREAT | O_EXCL, 0600) == -1 && errno == EEXIST,
	      "O_CREAT|O_EXCL on an existing node -> EEXIST");
}

extern int __xstat(int ver, const char *path, struct stat *st);
extern int __fxstat(int ver, int fd, struct stat *st);

static void check_node(const struct stat *st, const char *what)
{
	CHECK(S_ISCHR(st->st_mode), "%s: S_ISCHR (mode 0%o)", what, st->st_mode);
	CHECK((st->st_mode & 0777) == 0666, "%s: mode bits 0%o", what, st->st_mode & 0777);
	CHECK(major(st->st_rdev) == DEV_MAJOR && minor(st->st_rdev) == DEV_MINOR,
	      "%s: rdev %u:%u", what, major(st->st_rdev), minor(st->st_rdev));
}

static void scenario_fstat(void)
{
	struct stat st;
	int fd = open_dev();

	CHECK(fstat(fd, &st) == 0, "fstat");
	check_node(&st, "fstat");
	CHECK(__fxstat(1, fd, &st) == 0, "__fxstat");
	check_node(&st, "__fxstat");
	CHECK(fstatat(fd, "", &st, AT_EMPTY_PATH) == 0, "fstatat AT_EMPTY_PATH");
	check_node(&st, "fstatat AT_EMPTY_PATH");
	CHECK(stat(DEV, &st) == 0, "stat");
	check_node(&st, "stat");
	CHECK(lstat(DEV, &st) == 0, "lstat");
	check_node(&st, "lstat");
	CHECK(__xstat(1, DEV, &st) == 0, "__xstat");
	check_node(&st, "__xstat");
	CHECK(fstatat(AT_FDCWD, DEV, &st, 0) == 0, "fstatat");
	check_node(&st, "fstatat");
	CHECK(stat("/dev/emu", &st) == 0 && S_ISDIR(st.st_mode), "stat of the emulated directory");
	errno = 0;
	CHECK(stat("/dev/emu/nope", &st) == -1 && errno == ENOENT, "stat of an unknown path");
	CHECK(access(DEV, R_OK | W_OK) == 0, "access R_OK|W_OK");
	errno = 0;
	CHECK(access(DEV, X_OK) == -1 && errno == EACCES, "access X_OK on a 0666 node");
	errno = 0;
	CHECK(access("/dev/emu/nope", F_OK) == -1 && errno == ENOENT, "access of an unknown path");
	CHECK(faccessat(AT_FDCWD, DEV, F_OK, 0) == 0, "faccessat");
	close(fd);
}

static void scenario_nonemu(void)
{
	char path[] = "/tmp/shim-client-XXXXXX";
	char buf[16];
	struct stat st;
	int fd, p[2], n = -1;
	void *m;
	struct pollfd pf;

	fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	CHECK(write(fd, "plain", 5) == 5, "write to a regular file");
	CHECK(pread(fd, buf, 5, 0) == 5 && memcmp(buf, "plain", 5) == 0, "pread a regular file");
	CHECK(fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 5, "fstat a regular file");
	CHECK(close(fd) == 0, "close a regular file");
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && read(fd, buf, 16) == 5, "reopen and read a regular file");
	close(fd);
	CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode), "stat a regular file");
	CHECK(access(path, R_OK) == 0, "access a regular file");
	unlink(path);

	CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
		      minor(st.st_rdev) == 3,
	      "stat /dev/null is the host's");
	fd = open("/dev/./null", O_WRONLY);
	CHECK(fd >= 0, "/dev/./null is the host's /dev/null");
	CHECK(fstat(fd, &st) == 0 && major(st.st_rdev) == 1, "fstat /dev/null");
	CHECK(write(fd, "x", 1) == 1, "write /dev/null");
	close(fd);

	CHECK(pipe(p) == 0, "pipe");
	CHECK(write(p[1], "abc", 3) == 3, "write a pipe");
	CHECK(ioctl(p[0], FIONREAD, &n) == 0 && n == 3, "FIONREAD on a pipe: %d", n);
	pf.fd = p[0];
	pf.events = POLLIN;
	pf.revents = 0;
	CHECK(poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN), "poll a pipe");
	CHECK(read(p[0], buf, 3) == 3, "read a pipe");
	close(p[0]);
	close(p[1]);
	errno = 0;
	CHECK(ioctl(p[0], FIONREAD, &n) == -1 && errno == EBADF, "ioctl on a closed fd");

	m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "anonymous mmap");
	CHECK(munmap(m, 8192) == 0, "munmap");
}

static void scenario_dup(void)
{
	int fd, fd2, fd3, fd4, fd5, other, a, b, base;
	uint32_t id;

	other = open_dev();
	base = released(other);
	CHECK(base >= 0, "RELEASED");

	fd = open_dev();
	id = file_id(fd);
	fd2 = dup(fd);
	CHECK(fd2 >= 0, "dup");
	check_echo(fd2, 5, "dup");
	CHECK(file_id(fd2) == id, "dup refers to the same file");
	CHECK(close(fd) == 0, "close the original");
	errno = 0;
	CHECK(ioctl(fd, EMU_ECHO, 0) == -1 && errno == EBADF, "ioctl on the closed fd -> EBADF");
	check_echo(fd2, 6, "dup after closing the original");
	CHECK(released(other) == base, "no release while a copy is open");

	fd3 = dup2(fd2, 100);
	CHECK(fd3 == 100, "dup2");
	check_echo(fd3, 7, "dup2");
	fd4 = fcntl(fd2, F_DUPFD_CLOEXEC, 50);
	CHECK(fd4 >= 50, "F_DUPFD_CLOEXEC");
	CHECK((fcntl(fd4, F_GETFD) & FD_CLOEXEC) != 0, "F_DUPFD_CLOEXEC sets FD_CLOEXEC");
	CHECK(file_id(fd4) == id, "F_DUPFD_CLOEXEC refers to the same file");
	fd5 = dup3(fd2, 101, O_CLOEXEC);
	CHECK(fd5 == 101 && file_id(fd5) == id, "dup3");
	close(fd2);
	close(fd3);
	close(fd5);
	CHECK(released(other) == base, "no release while the F_DUPFD copy is open");
	close(fd4);
	CHECK(released(other) == base + 1, "closing the last copy releases at once (%d, base %d)",
	      released(other), base);
	errno = 0;
	CHECK(ioctl(fd4, EMU_ECHO, 0) == -1 && errno == EBADF, "ioctl after the last close");

	/* dup2 over an emulated fd closes (and releases) what it held. */
	a = open_dev();
	b = open_dev();
	id = file_id(a);
	CHECK(dup2(a, b) == b, "dup2 over an emulated fd");
	CHECK(released(other) == base + 2, "dup2 released the file it replaced");
	CHECK(file_id(b) == id, "dup2 target now refers to the source file");
	close(a);
	close(b);
	CHECK(released(other) == base + 3, "last copy closed");
	close(other);
}

/* EMU_SUM over arr[0..3] (the server adds 1000 to each): the sum, -1 on failure. */
static long long sum4(int fd, uint32_t *arr)
{
	struct emu_sum s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	s.count = 4;
	s.ptr = (uintptr_t)arr;
	return ioctl(fd, EMU_SUM, &s) == 0 ? (long long)s.sum : -1;
}

static void scenario_fork(void)
{
	int fd = open_dev();
	uint32_t arr[4] = {1, 2, 3, 4};
	long long sum;
	pid_t pid;
	int status = 0;

	pid = fork();
	if (pid == 0) {
		struct emu_info info;
		arr[0] = 10;
		arr[1] = 20;
		arr[2] = 30;
		arr[3] = 40;
		sum = sum4(fd, arr);
		CHECK(sum == 100, "child SUM sees the child's memory: %lld", sum);
		CHECK(arr[0] == 1010 && arr[3] == 1040, "child's memory written: %u", arr[0]);
		memset(&info, 0, sizeof info);
		info.size = sizeof info;
		CHECK(ioctl(fd, EMU_INFO, &info) == 0 && info.pid == (uint32_t)getpid(),
		      "child's credentials: pid %u", info.pid);
		_exit(failures);
	}
	CHECK(pid > 0, "fork");
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "child succeeded (status 0x%x)", status);
	sum = sum4(fd, arr);
	CHECK(sum == 10, "parent SUM sees the parent's memory: %lld", sum);
	CHECK(arr[0] == 1001 && arr[3] == 1004, "parent memory written: %u", arr[0]);
	close(fd);
}

static void scenario_exec(const char *self)
{
	int fd = open_dev();
	char fdstr[16], idstr[16];
	snprintf(fdstr, sizeof fdstr, "%d", fd);
	snprintf(idstr, sizeof idstr, "%u", file_id(fd));
	fflush(stdout);
	execl(self, self, "exec-child", fdstr, idstr, (char *)NULL);
	CHECK(0, "execl");
}

static void scenario_exec_child(int fd, uint32_t id)
{
	uint32_t arr[3] = {5, 6, 7};
	struct emu_sum s;
	struct stat st;
	int other, base;

	/* The fd table is empty after exec: every call below finds fd by the slow path. */
	CHECK(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == DEV_MAJOR,
	      "fstat of the inherited fd");
	CHECK(file_id(fd) == id, "inherited fd is the same file");
	check_echo(fd, 8, "inherited fd");
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	s.count = 3;
	s.ptr = (uintptr_t)arr;
	CHECK(ioctl(fd, EMU_SUM, &s) == 0 && s.sum == 18, "SUM in the new image: %llu",
	      (unsigned long long)s.sum);
	CHECK(arr[2] == 1007, "new image's memory written");
	other = open_dev();
	base = released(other);
	close(fd);
	CHECK(released(other) == base + 1, "closing the inherited (last) copy releases it");
	close(other);
}

struct thread_arg {
	int fd;
	int index;
	int errors;
};

static void *thread_main(void *p)
{
	struct thread_arg *t = p;
	struct emu_info info;
	int i;
	for (i = 0; i < 2000; i++) {
		uint64_t in = ((uint64_t)t->index << 32) | (uint64_t)i, out = 0;
		if (echo(t->fd, in, &out) != 1 || out != in + 1)
			t->errors++;
	}
	memset(&info, 0, sizeof info);
	info.size = sizeof info;
	if (ioctl(t->fd, EMU_INFO, &info) != 0 || info.tid != (uint32_t)gettid_())
		t->errors++;
	return NULL;
}

static void scenario_threads(void)
{
	pthread_t th[4];
	struct thread_arg args[4];
	int fd = open_dev(), i;
	for (i = 0; i < 4; i++) {
		args[i].fd = fd;
		args[i].index = i;
		args[i].errors = 0;
		CHECK(pthread_create(&th[i], NULL, thread_main, &args[i]) == 0, "pthread_create");
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(args[i].errors == 0, "thread %d: %d errors", i, args[i].errors);
	}
	close(fd);
}

static void scenario_efault(void)
{
	int fd = open_dev();
	struct emu_sum s;
	struct emu_echo *ro;
	char *big;
	void *volatile bad_ptr = (void *)8;

	errno = 0;
	CHECK(ioctl(fd, EMU_ECHO, (void *)8) == -1 && errno == EFAULT, "bad arg pointer -> EFAULT");
	errno = 0;
	CHECK(ioctl(fd, EMU_ECHO, NULL) == -1 && errno == EFAULT, "NULL arg -> EFAULT");
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	s.count = 4;
	s.ptr = 16;
	errno = 0;
	CHECK(ioctl(fd, EMU_SUM, &s) == -1 && errno == EFAULT, "bad embedded pointer -> EFAULT");

	/* The handler writes into a read-only struct: copy_to_user faults. */
	ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ro != MAP_FAILED, "mmap");
	ro->size = sizeof *ro;
	ro->in = 9;
	CHECK(mprotect(ro, 4096, PROT_READ) == 0, "mprotect");
	errno = 0;
	CHECK(ioctl(fd, EMU_ECHO, ro) == -1 && errno == EFAULT, "write-back to read-only memory");
	munmap(ro, 4096);

	/* A size beyond the window: no prefetch, the server goes through /proc/<pid>/mem. */
	big = calloc(1, 8192);
	((struct emu_echo *)big)->size = 8192;
	((struct emu_echo *)big)->in = 77;
	CHECK(ioctl(fd, EMU_ECHO, big) == 0 && ((struct emu_echo *)big)->out == 78,
	      "unwindowed ECHO through /proc/pid/mem");
	free(big);

	CHECK(write(fd, "abcd", 4) == 4, "write");
	errno = 0;
	CHECK(pread(fd, bad_ptr, 4, 0) == -1 && errno == EFAULT, "read into a bad buffer");
	errno = 0;
	CHECK(write(fd, bad_ptr, 4) == -1 && errno == EFAULT, "write from a bad buffer");
	close(fd);
}

static void scenario_embedded(void)
{
	int fd = open_dev(), i;
	uint32_t small[5] = {1, 2, 3, 4, 5};
	uint32_t *large;
	uint64_t want = 0;
	struct emu_sum s;

	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	s.count = 5;
	s.ptr = (uintptr_t)small;
	CHECK(ioctl(fd, EMU_SUM, &s) == 0 && s.sum == 15, "SUM of 5: %llu", (unsigned long long)s.sum);
	CHECK(small[0] == 1001 && small[4] == 1005, "embedded array written back");

	large = malloc(3000 * sizeof *large);
	for (i = 0; i < 3000; i++) {
		large[i] = (uint32_t)i * 7;
		want += (uint64_t)i * 7;
	}
	s.count = 3000;
	s.ptr = (uintptr_t)large;
	s.sum = 0;
	CHECK(ioctl(fd, EMU_SUM, &s) == 0 && s.sum == want, "SUM across pages: %llu",
	      (unsigned long long)s.sum);
	CHECK(large[2999] == 2999u * 7 + 1000, "large array written back");
	free(large);
	close(fd);
}

static void scenario_creds(void)
{
	int fd = open_dev();
	struct emu_info info;
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	struct rlimit rl;
	uint64_t eff;

	memset(data, 0, sizeof data);
	CHECK(syscall(SYS_capget, &hdr, data) == 0, "capget");
	eff = data[0].effective | ((uint64_t)data[1].effective << 32);
	getrlimit(RLIMIT_MEMLOCK, &rl);
	memset(&info, 0, sizeof info);
	info.size = sizeof info;
	CHECK(ioctl(fd, EMU_INFO, &info) == 0, "INFO");
	CHECK(info.pid == (uint32_t)getpid() && info.tid == (uint32_t)gettid_(), "pid/tid %u/%u",
	      info.pid, info.tid);
	CHECK(info.uid == getuid(), "uid %u", info.uid);
	CHECK(info.cap_eff == eff, "caps 0x%llx vs 0x%llx", (unsigned long long)info.cap_eff,
	      (unsigned long long)eff);
	CHECK(info.memlock == (uint64_t)rl.rlim_cur, "memlock %llu",
	      (unsigned long long)info.memlock);

	/* Read at the moment of each call. */
	rl.rlim_cur = 123 * 4096; /* below the usual 8 MiB hard limit */
	CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit");
	if (eff & (1ull << CAP_SYS_RAWIO)) {
		data[0].effective &= ~(1u << CAP_SYS_RAWIO);
		CHECK(syscall(SYS_capset, &hdr, data) == 0, "capset");
	}
	info.size = sizeof info;
	CHECK(ioctl(fd, EMU_INFO, &info) == 0, "INFO again");
	CHECK(info.memlock == 123ull * 4096, "new memlock %llu", (unsigned long long)info.memlock);
	CHECK((info.cap_eff & (1ull << CAP_SYS_RAWIO)) == 0, "CAP_SYS_RAWIO dropped");
	close(fd);
}

static void scenario_rw(void)
{
	int fd = open_dev();
	char buf[16];
	memset(buf, 0, sizeof buf);
	CHECK(write(fd, "hello", 5) == 5, "write");
	CHECK(pread(fd, buf, 5, 0) == 5 && memcmp(buf, "hello", 5) == 0, "pread");
	CHECK(pwrite(fd, "XY", 2, 1) == 2, "pwrite");
	CHECK(pread64(fd, buf, 16, 0) == 5 && memcmp(buf, "hXYlo", 5) == 0, "pread64 '%.5s'", buf);
	CHECK(pwrite64(fd, "!", 1, 5) == 1, "pwrite64 appends");
	CHECK(read(fd, buf, 16) == 1 && buf[0] == '!', "read continues at the file position");
	CHECK(read(fd, buf, 16) == 0, "read at EOF");
	errno = 0;
	CHECK(pread(fd, buf, 4, -1) == -1 && errno == EINVAL, "pread at a negative offset");
	close(fd);
}

static void scenario_mmap(void)
{
	int fd = open_dev();
	volatile uint32_t *p;
	void *bad;

	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap of the emulated fd");
	if (p != MAP_FAILED) {
		p[0] = 0x12345678;
		CHECK(ioctl(fd, EMU_BAR, 0) == 0x12345678, "the server sees the client's store");
		CHECK(p[1] == 0x12345679, "the client sees the server's store: 0x%x", p[1]);
		CHECK(munmap((void *)p, 4096) == 0, "munmap");
	}
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 4096);
	CHECK(p != MAP_FAILED && p[1] == 0, "mmap at a page offset");
	if (p != MAP_FAILED)
		munmap((void *)p, 4096);
	errno = 0;
	bad = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 1 << 20);
	CHECK(bad == MAP_FAILED && errno == EINVAL, "mmap past the region -> EINVAL");
	errno = 0;
	bad = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 100);
	CHECK(bad == MAP_FAILED && errno == EINVAL, "unaligned offset -> EINVAL");
	close(fd);
}

/* A trapped mapping (offset 0x10000 on): register semantics, every access forwarded. */
static void scenario_trapped(void)
{
	int fd = open_dev(), other = open_dev(), base = released(other);
	volatile uint8_t *b;
	volatile uint16_t *h;
	volatile uint32_t *r;
	volatile uint64_t *q;
	uint32_t first, second, z;
	int32_t sx;
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0x10000);

	CHECK(p != MAP_FAILED, "mmap of a trapped region");
	if (p == MAP_FAILED)
		return;
	b = p;
	h = p;
	r = p;
	q = p;
	first = r[0];
	second = r[0];
	CHECK(second == first + 1, "every load reaches the device (%u then %u)", first, second);
	r[1] = 0xabcd1234u;                        /* mov r32 store */
	CHECK(r[1] == 0xabcd1234u, "32-bit store and load: 0x%x", r[1]);
	r[2] = 7;                                  /* mov imm32 store */
	CHECK(r[2] == 7, "immediate store");
	b[12] = 0x9c;                              /* byte store */
	CHECK(b[12] == 0x9c, "byte load");
	z = b[12];                                 /* movzx */
	CHECK(z == 0x9c, "zero-extended byte load 0x%x", z);
	sx = (int8_t)b[12];                        /* movsx */
	CHECK(sx == (int8_t)0x9c, "sign-extended byte load %d", sx);
	h[8] = 0xbeef;
	CHECK(h[8] == 0xbeef && b[16] == 0xef && b[17] == 0xbe, "16-bit store and load");
	q[3] = 0x1122334455667788ull;
	CHECK(q[3] == 0x1122334455667788ull, "64-bit store and load");
	CHECK(r[6] == 0x55667788u && r[7] == 0x11223344u, "64-bit store seen as two words");

	close(fd); /* the mapping keeps the file, as vm_file does */
	CHECK(r[1] == 0xabcd1234u, "access after closing the fd");
	CHECK(released(other) == base, "not released while mapped");
	CHECK(munmap(p, 4096) == 0, "munmap");
	CHECK(released(other) == base + 1, "released with the mapping");
	close(other);
}

static void scenario_poll(void)
{
	int fd = open_dev(), p[2];
	struct pollfd pf[2];
	CHECK(pipe(p) == 0, "pipe");
	pf[0].fd = fd;
	pf[0].events = POLLIN | POLLOUT;
	pf[1].fd = p[0];
	pf[1].events = POLLIN;
	pf[0].revents = pf[1].revents = 0;
	CHECK(poll(pf, 2, 0) == 1, "poll: only the emulated fd is ready");
	CHECK(pf[0].revents == (POLLIN | POLLOUT), "emulated revents 0x%x", pf[0].revents);
	CHECK(pf[1].revents == 0, "pipe revents 0x%x", pf[1].revents);
	CHECK(pf[0].fd == fd && pf[1].fd == p[0], "poll restores the fds");
	CHECK(write(p[1], "x", 1) == 1, "write pipe");
	CHECK(poll(pf, 2, -1) == 2 && (pf[1].revents & POLLIN), "poll: both ready");
	pf[0].events = POLLIN;
	CHECK(poll(pf, 1, -1) == 1 && pf[0].revents == POLLIN, "poll of just the emulated fd");
	close(p[0]);
	close(p[1]);
	close(fd);
}

/* ppoll, select and pselect with an emulated fd among real ones. */
static void scenario_select(void)
{
	int fd = open_dev(), p[2];
	struct pollfd pf[2];
	struct timespec zero = {0, 0};
	struct timeval tv = {0, 0};
	fd_set rd, wr;
	sigset_t mask;
	CHECK(pipe(p) == 0, "pipe");
	pf[0].fd = fd;
	pf[0].events = POLLIN;
	pf[1].fd = p[0];
	pf[1].events = POLLIN;
	pf[0].revents = pf[1].revents = 0;
	sigemptyset(&mask);
	CHECK(ppoll(pf, 2, &zero, &mask) == 1 && pf[0].revents == POLLIN && pf[1].revents == 0,
	      "ppoll: the emulated fd is ready, the pipe is not (0x%x 0x%x)", pf[0].revents,
	      pf[1].revents);
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(fd, &rd);
	FD_SET(p[0], &rd);
	FD_SET(fd, &wr);
	CHECK(select((fd > p[0] ? fd : p[0]) + 1, &rd, &wr, NULL, &tv) == 2, "select: 2 ready");
	CHECK(FD_ISSET(fd, &rd) && FD_ISSET(fd, &wr) && !FD_ISSET(p[0], &rd), "select sets");
	CHECK(write(p[1], "x", 1) == 1, "write pipe");
	FD_ZERO(&rd);
	FD_SET(p[0], &rd);
	FD_SET(fd, &rd);
	CHECK(pselect((fd > p[0] ? fd : p[0]) + 1, &rd, NULL, NULL, NULL, &mask) == 2 &&
		      FD_ISSET(p[0], &rd) && FD_ISSET(fd, &rd),
	      "pselect: both ready");
	close(p[0]);
	close(p[1]);
	close(fd);
}

/* close_range/closefrom leave the shim's own connections alone and forget emulated fds. */
static void scenario_closerange(void)
{
	int a = open_dev(), b = open_dev(), c;
	int base = released(a);
	CHECK(close_range((unsigned)b, ~0U, 0) == 0, "close_range(b, ~0)");
	CHECK(released(a) == base + 1, "b released by close_range");
	c = open_dev();
	CHECK(c == b, "the lowest fd is free again (%d, %d)", c, b);
	check_echo(c, 5, "a new fd after close_range");
	closefrom(c);
	CHECK(released(a) == base + 2, "c released by closefrom");
	CHECK(fcntl(c, F_GETFD) == -1 && errno == EBADF, "c is closed");
	check_echo(a, 6, "an fd below the range still works");
	close(a);
}

static sigjmp_buf segv_jump;
static volatile sig_atomic_t segv_seen;

static void on_segv(int sig)
{
	(void)sig;
	segv_seen++;
	siglongjmp(segv_jump, 1);
}

/* The program's SIGSEGV handler, set after a trapped mapping exists, chains with the trap
 * handler: trapped accesses stay emulated, other faults reach the program's handler. */
static void scenario_sigsegv(void)
{
	int fd = open_dev();
	volatile uint32_t *r = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0x10000);
	volatile char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct sigaction sa, old;
	CHECK(r != MAP_FAILED && none != MAP_FAILED, "mmaps");
	if (r == MAP_FAILED || none == MAP_FAILED)
		return;
	r[1] = 11;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	CHECK(sigaction(SIGSEGV, &sa, &old) == 0, "sigaction(SIGSEGV)");
	CHECK(old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO),
	      "the program's previous handler is SIG_DFL");
	CHECK(r[1] == 11, "trapped access still emulated after sigaction");
	if (sigsetjmp(segv_jump, 1) == 0)
		(void)none[0];
	CHECK(segv_seen == 1, "a fault elsewhere reaches the program's handler");
	CHECK(signal(SIGSEGV, SIG_DFL) == on_segv, "signal() returns the program's handler");
	CHECK(sigaction(SIGSEGV, NULL, &old) == 0 && old.sa_handler == SIG_DFL, "reads back");
	r[1] = 12;
	CHECK(r[1] == 12, "trapped access still emulated after signal()");
	munmap((void *)r, 4096);
	munmap((void *)none, 4096);
	close(fd);
}

/* lseek moves the file position the server keeps; stdio on an emulated fd (fdopen); fortified
 * reads with sizes the compiler cannot check (__read_chk, __pread_chk). */
static void scenario_seek(void)
{
	int fd = open_dev();
	volatile size_t n = 5;
	char buf[16], line[16];
	FILE *f;
	memset(buf, 0, sizeof buf);
	CHECK(write(fd, "hello\nworld\n", 12) == 12, "write");
	CHECK(lseek(fd, 0, SEEK_CUR) == 12, "lseek(0, SEEK_CUR) = 12");
	CHECK(lseek(fd, 6, SEEK_SET) == 6, "lseek(6, SEEK_SET)");
	CHECK(read(fd, buf, n) == 5 && memcmp(buf, "world", 5) == 0, "read after lseek '%.5s'", buf);
	CHECK(lseek(fd, -11, SEEK_CUR) == 0, "lseek back to 0");
	CHECK(pread(fd, buf, n, 6) == 5 && memcmp(buf, "world", 5) == 0, "pread");
	errno = 0;
	CHECK(lseek(fd, -1, SEEK_SET) == -1 && errno == EINVAL, "negative position -> EINVAL");
	f = fdopen(fd, "r+");
	CHECK(f != NULL, "fdopen");
	if (f == NULL)
		return;
	CHECK(fgets(line, sizeof line, f) != NULL && strcmp(line, "hello\n") == 0, "fgets line 1");
	CHECK(fgets(line, sizeof line, f) != NULL && strcmp(line, "world\n") == 0, "fgets line 2");
	rewind(f);
	CHECK(fgets(line, sizeof line, f) != NULL && strcmp(line, "hello\n") == 0, "after rewind");
	CHECK(fclose(f) == 0, "fclose");
	CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF, "fclose closed the fd");
}

static void scenario_resolve(void)
{
	int fd = open_dev(), p[2];
	struct emu_resolve r;
	uint32_t id = file_id(fd);
	CHECK(pipe(p) == 0, "pipe");
	memset(&r, 0, sizeof r);
	r.size = sizeof r;
	r.fd = fd;
	CHECK(ioctl(fd, EMU_RESOLVE, &r) == 0 && r.result == 2 && r.file_id == id,
	      "an emulated fd in a struct resolves to its file (result %u)", r.result);
	r.fd = p[0];
	CHECK(ioctl(fd, EMU_RESOLVE, &r) == 0 && r.result == 1, "a pipe fd is open, not ours");
	r.fd = 999;
	CHECK(ioctl(fd, EMU_RESOLVE, &r) == 0 && r.result == 0, "fd 999 is not open");
	CHECK(ioctl(fd, EMU_TWICE, 21) == 42, "integer argument");
	close(p[0]);
	close(p[1]);
	close(fd);
}

static void scenario_eventfd(void)
{
	struct {
		uint32_t size;
		int32_t fd;
		uint32_t signals;
	} a = {12, -1, 3};
	int fd = open_dev(), efd = eventfd(0, EFD_NONBLOCK), p[2];
	uint64_t count = 0;
	CHECK(efd >= 0 && pipe(p) == 0, "eventfd, pipe");
	a.fd = efd;
	CHECK(ioctl(fd, EMU_EVENTFD, &a) == 0, "the server takes the eventfd");
	CHECK(read(efd, &count, sizeof count) == sizeof count && count == 3,
	      "its signals reach our eventfd: %llu", (unsigned long long)count);
	a.fd = p[0];
	errno = 0;
	CHECK(ioctl(fd, EMU_EVENTFD, &a) == -1 && errno == EINVAL, "a pipe is not an eventfd");
	a.fd = 999;
	errno = 0;
	CHECK(ioctl(fd, EMU_EVENTFD, &a) == -1 && errno == EBADF, "a closed fd");
	close(p[0]);
	close(p[1]);
	close(efd);
	close(fd);
}

static void scenario_bug(void)
{
	int fd = open_dev();
	errno = 0;
	CHECK(ioctl(fd, EMU_THROW, 0) == -1 && errno == EIO, "a handler exception -> EIO");
	check_echo(fd, 10, "after the exception");
	close(fd);
}

static void scenario_vma(void)
{
	int fd = open_dev();
	struct emu_vma v;
	char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap");
	CHECK(mprotect(m + 4096, 4096, PROT_READ) == 0, "mprotect the middle page");
	memset(&v, 0, sizeof v);
	v.size = sizeof v;
	v.addr = (uintptr_t)(m + 4096 + 8);
	CHECK(ioctl(fd, EMU_VMA, &v) == 0, "VMA");
	CHECK(v.start == (uintptr_t)(m + 4096) && v.end == (uintptr_t)(m + 8192),
	      "VMA bounds 0x%llx-0x%llx", (unsigned long long)v.start, (unsigned long long)v.end);
	CHECK(v.perms == 1 && v.page_size == 4096, "read-only VMA (perms %u, page %llu)", v.perms,
	      (unsigned long long)v.page_size);
	v.addr = (uintptr_t)m;
	CHECK(ioctl(fd, EMU_VMA, &v) == 0 && v.perms == 3, "read-write VMA");
	munmap(m, 3 * 4096);
	v.addr = (uintptr_t)m;
	CHECK(ioctl(fd, EMU_VMA, &v) == 0 && v.perms == 0x80, "hole after munmap");
	close(fd);
}

static void scenario_loop(void)
{
	int fd = open_dev();
	uint64_t i = 0, out;
	if (fd < 0)
		exit(1);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		if (echo(fd, i, &out) != 1 || out != i + 1) {
			printf("FAIL loop %llu\n", (unsigned long long)i);
			exit(1);
		}
		i++;
	}
}

static void scenario_count(int n)
{
	int fd = open_dev(), i;
	for (i = 0; i < n && fd >= 0 && failures == 0; i++)
		check_echo(fd, (uint64_t)i, "count");
	close(fd);
}

static void scenario_unreachable(void)
{
	char path[] = "/tmp/shim-client-XXXXXX";
	int fd;
	errno = 0;
	fd = open("/dev/iommu", O_RDWR);
	CHECK(fd == -1 && errno == ENXIO, "no server -> ENXIO, got %d", fd);
	fd = mkstemp(path);
	CHECK(fd >= 0 && write(fd, "x", 1) == 1, "ordinary files still work");
	close(fd);
	unlink(path);
}

/* The real subsystems behind the default kernel: a smoke test of the whole path. */
static void scenario_iommu(void)
{
	struct {
		uint32_t size, flags, out_ioas_id;
	} alloc = {12, 0, 0};
	struct {
		uint32_t size, id;
	} destroy = {8, 0};
	struct stat st;
	char buf[8];
	int fd = open("/dev/iommu", O_RDWR), sfd;
	CHECK(fd >= 0, "open /dev/iommu");
	CHECK(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode), "/dev/iommu is a char device");
	CHECK(ioctl(fd, _IO(';', 0x81), &alloc) == 0 && alloc.out_ioas_id != 0, "IOMMU_IOAS_ALLOC");
	destroy.id = alloc.out_ioas_id;
	CHECK(ioctl(fd, _IO(';', 0x80), &destroy) == 0, "IOMMU_DESTROY");
	errno = 0;
	CHECK(ioctl(fd, _IO(';', 0x80), &destroy) == -1 && errno == ENOENT, "destroy twice -> ENOENT");
	close(fd);
	sfd = open("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", O_RDONLY);
	CHECK(sfd >= 0, "open a sysfs attribute");
	memset(buf, 0, sizeof buf);
	CHECK(read(sfd, buf, sizeof buf) == 2 && (buf[0] == 'Y' || buf[0] == 'N'), "read it: '%s'",
	      buf);
	close(sfd);
}

int main(int argc, char **argv)
{
	const char *s = argc > 1 ? argv[1] : "";
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(s, "open") == 0)
		scenario_open();
	else if (strcmp(s, "fstat") == 0)
		scenario_fstat();
	else if (strcmp(s, "nonemu") == 0)
		scenario_nonemu();
	else if (strcmp(s, "dup") == 0)
		scenario_dup();
	else if (strcmp(s, "fork") == 0)
		scenario_fork();
	else if (strcmp(s, "exec") == 0)
		scenario_exec(argv[0]);
	else if (strcmp(s, "exec-child") == 0 && argc == 4)
		scenario_exec_child(atoi(argv[2]), (uint32_t)strtoul(argv[3], NULL, 10));
	else if (strcmp(s, "threads") == 0)
		scenario_threads();
	else if (strcmp(s, "efault") == 0)
		scenario_efault();
	else if (strcmp(s, "embedded") == 0)
		scenario_embedded();
	else if (strcmp(s, "creds") == 0)
		scenario_creds();
	else if (strcmp(s, "rw") == 0)
		scenario_rw();
	else if (strcmp(s, "mmap") == 0)
		scenario_mmap();
	else if (strcmp(s, "trapped") == 0)
		scenario_trapped();
	else if (strcmp(s, "poll") == 0)
		scenario_poll();
	else if (strcmp(s, "resolve") == 0)
		scenario_resolve();
	else if (strcmp(s, "eventfd") == 0)
		scenario_eventfd();
	else if (strcmp(s, "bug") == 0)
		scenario_bug();
	else if (strcmp(s, "vma") == 0)
		scenario_vma();
	else if (strcmp(s, "loop") == 0)
		scenario_loop();
	else if (strcmp(s, "count") == 0 && argc == 3)
		scenario_count(atoi(argv[2]));
	else if (strcmp(s, "unreachable") == 0)
		scenario_unreachable();
	else if (strcmp(s, "iommu") == 0)
		scenario_iommu();
	else if (strcmp(s, "select") == 0)
		scenario_select();
	else if (strcmp(s, "closerange") == 0)
		scenario_closerange();
	else if (strcmp(s, "sigsegv") == 0)
		scenario_sigsegv();
	else if (strcmp(s, "seek") == 0)
		scenario_seek();
	else {
		fprintf(stderr, "unknown scenario '%s'\n", s);
		return 100;
	}
	return checks_done(s);
}
