/*
 * The shim's fd table under fd-number churn, run through `iommufd-emu exec` against the test
 * kernel of src/server/server.test.ts (/dev/emu/test0, /dev/iommu):
 *
 *   shim-fdcache foreign   calls on the program's own fds cost no slow-path lookup (the negative
 *                          cache), and a number it remembers as foreign becomes ours again
 *                          through open, dup2, F_DUPFD and SCM_RIGHTS
 *   shim-fdcache vfork     a vfork child's dup2/close do not rewrite the parent's fd table
 *
 * Prints "FAIL ..." for each failed check, "ok SCENARIO" at the end; exits with the failures.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/iommufd.h> /* the project's include/ */

#include "check.h"
#include "testdev.h"

/* The shim's test hook: how many times its slow path (getpeername, LOOKUP) ran. */
static unsigned long slow_lookups(void)
{
	static unsigned long (*hook)(void);
	if (hook == NULL)
		hook = (unsigned long (*)(void))dlsym(RTLD_DEFAULT, "iommufd_emu_shim_slow_lookups");
	CHECK(hook != NULL, "the shim exports iommufd_emu_shim_slow_lookups");
	return hook != NULL ? hook() : 0;
}

/* The lowest free fd number, left closed behind the shim's back (a raw close, as glibc's own
 * fclose would) after a failed read made the shim remember it as foreign. */
static int foreign_hole(void)
{
	char c;
	int fd = open("/dev/null", O_RDONLY);
	CHECK(fd >= 0, "open /dev/null");
	syscall(SYS_close, fd);
	errno = 0;
	CHECK(read(fd, &c, 1) == -1 && errno == EBADF, "read of closed fd %d -> EBADF", fd);
	return fd;
}

static int echo_works(int fd)
{
	uint64_t out = 0;
	return echo(fd, 41, &out) >= 0 && out == 42;
}

static void send_fd(int sock, int fd)
{
	char byte = 'x', ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&byte, 1};
	struct msghdr m;
	struct cmsghdr *h;
	memset(&m, 0, sizeof m);
	memset(ctl, 0, sizeof ctl);
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = ctl;
	m.msg_controllen = sizeof ctl;
	h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof fd);
	CHECK(sendmsg(sock, &m, 0) == 1, "sendmsg SCM_RIGHTS");
}

static int receive_fd(int sock)
{
	char byte, ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&byte, 1};
	struct msghdr m;
	struct cmsghdr *h;
	int fd = -1;
	memset(&m, 0, sizeof m);
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = ctl;
	m.msg_controllen = sizeof ctl;
	CHECK(recvmsg(sock, &m, 0) == 1, "recvmsg SCM_RIGHTS");
	h = CMSG_FIRSTHDR(&m);
	if (h != NULL && h->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(h), sizeof fd);
	return fd;
}

/* Many calls on the program's own fds, and how many slow-path lookups they cost. */
static void own_fds_cost_nothing(void)
{
	unsigned long before, after;
	struct stat st;
	char buf[8];
	int p[2], file, i, n;

	CHECK(pipe(p) == 0, "pipe");
	file = open("/dev/zero", O_RDONLY); /* open() knows it is the program's own */
	CHECK(file >= 0, "open /dev/zero");
	before = slow_lookups();
	for (i = 0; i < 1000; i++) {
		CHECK(write(p[1], "x", 1) == 1, "write pipe");
		CHECK(ioctl(p[0], FIONREAD, &n) == 0 && n == 1, "FIONREAD %d", n);
		CHECK(read(p[0], buf, 1) == 1, "read pipe");
		CHECK(fstat(p[0], &st) == 0 && S_ISFIFO(st.st_mode), "fstat pipe");
		CHECK(read(file, buf, sizeof buf) == (ssize_t)sizeof buf, "read /dev/zero");
		CHECK(pread(file, buf, 1, 0) == 1, "pread /dev/zero");
	}
	after = slow_lookups();
	/* The pipe's two ends are looked at once each (pipe() is not wrapped); nothing else. */
	CHECK(after - before <= 2, "6000 calls on own fds cost %lu slow lookups", after - before);
	close(p[0]);
	close(p[1]);
	close(file);
}

static void scenario_foreign(void)
{
	int hole, dev, fd, sv[2];

	own_fds_cost_nothing();

	/* close() of an own fd, and an emulated open() takes the number. */
	hole = open("/dev/null", O_RDONLY);
	CHECK(ioctl(hole, EMU_ECHO, 0) == -1 && errno == ENOTTY, "ECHO on /dev/null -> ENOTTY");
	close(hole);
	dev = open_dev();
	CHECK(dev == hole, "open reuses fd %d (got %d)", hole, dev);
	CHECK(echo_works(dev), "ECHO on the reused number reaches the device");

	/* A number remembered as foreign, freed behind the shim's back, taken by open(). */
	hole = foreign_hole();
	fd = open_dev();
	CHECK(fd == hole && echo_works(fd), "open over a foreign hole %d: fd %d is ours", hole, fd);
	close(fd);

	/* ... by dup2 and F_DUPFD. */
	hole = foreign_hole();
	CHECK(dup2(dev, hole) == hole && echo_works(hole), "dup2 onto foreign %d", hole);
	close(hole);
	hole = foreign_hole();
	fd = fcntl(dev, F_DUPFD, hole);
	CHECK(fd == hole && echo_works(fd), "F_DUPFD onto foreign %d: %d", hole, fd);

	/* An emulated number overwritten by an own fd: dup2, then socket() after close(). */
	CHECK(dup2(0, fd) == fd, "dup2(0, %d)", fd);
	errno = 0;
	CHECK(ioctl(fd, EMU_ECHO, 0) == -1 && errno == ENOTTY, "dup2'd stdin is not emulated");
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(fd == hole, "socket() reuses %d (got %d)", hole, fd);
	errno = 0;
	CHECK(ioctl(fd, EMU_ECHO, 0) == -1 && errno == ENOTTY, "a new socket is not emulated");
	close(fd);

	/* SCM_RIGHTS: a received emulated fd lands on a number remembered as foreign. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	send_fd(sv[0], dev);
	hole = foreign_hole();
	fd = receive_fd(sv[1]);
	CHECK(fd == hole && echo_works(fd), "received fd %d over foreign %d is ours", fd, hole);
	CHECK(file_id(fd) == file_id(dev), "the received fd is the same file");
	close(fd);
	close(sv[0]);
	close(sv[1]);
	close(dev);
}

/* A vfork child shares the parent's memory (and so the shim's tables) but not its fds. */
static void scenario_vfork(void)
{
	struct iommu_ioas_alloc alloc = {.size = sizeof alloc};
	struct iommu_destroy destroy = {.size = sizeof destroy};
	int iommu = open("/dev/iommu", O_RDWR);
	int a = open_dev(), b = open_dev();
	uint32_t ida = file_id(a), idb = file_id(b);
	int status = -1;
	pid_t pid;

	CHECK(iommu >= 0, "open /dev/iommu");
	CHECK(ida != idb, "two files: %u %u", ida, idb);

	pid = vfork();
	if (pid == 0) {
		dup2(b, iommu); /* the child's own fd table only */
		dup2(b, a);
		close(b);
		_exit(0);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && status == 0, "vfork child");
	CHECK(ioctl(iommu, IOMMU_IOAS_ALLOC, &alloc) == 0 && alloc.out_ioas_id != 0,
	      "the parent's /dev/iommu fd still reaches iommufd after the child's dup2");
	destroy.id = alloc.out_ioas_id;
	CHECK(ioctl(iommu, IOMMU_DESTROY, &destroy) == 0, "IOMMU_DESTROY");
	CHECK(file_id(a) == ida, "the parent's fd %d is still file %u", a, ida);
	CHECK(file_id(b) == idb, "the child's close left the parent's fd %d alone", b);

	/* The child execs with the dup2'd fd: the new image finds it by the slow path. */
	pid = vfork();
	if (pid == 0) {
		char fdarg[16], idarg[16];
		dup2(b, a);
		snprintf(fdarg, sizeof fdarg, "%d", a);
		snprintf(idarg, sizeof idarg, "%u", idb);
		execl("/proc/self/exe", "shim-fdcache", "vfork-exec", fdarg, idarg, (char *)NULL);
		_exit(127);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0,
	      "vfork + exec child (status 0x%x)", status);
	CHECK(file_id(a) == ida, "after vfork + exec the parent's fd %d is still file %u", a, ida);
	close(a);
	close(b);
	close(iommu);
}

/* The exec'd vfork child: fd is the file id. */
static void scenario_vfork_exec(int fd, uint32_t id)
{
	CHECK(file_id(fd) == id, "exec'd vfork child: fd %d is file %u", fd, id);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && strcmp(argv[1], "vfork-exec") == 0) {
		scenario_vfork_exec(atoi(argv[2]), (uint32_t)strtoul(argv[3], NULL, 10));
		return failures;
	}
	if (argc == 2 && strcmp(argv[1], "foreign") == 0)
		scenario_foreign();
	else if (argc == 2 && strcmp(argv[1], "vfork") == 0)
		scenario_vfork();
	else {
		fprintf(stderr, "usage: shim-fdcache foreign | vfork\n");
		return 100;
	}
	return checks_done(argv[1]);
}
