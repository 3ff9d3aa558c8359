/*
 * iommufd-emu-guard: starts a program so that neither it nor any process it starts can open the
 * host's own iommufd or VFIO nodes, whatever it does to bypass libc (and the shim in it): raw
 * system calls, a static binary exec'd later, another libc.
 *
 *   iommufd-emu-guard PATH ARGV0 [ARG...]
 *
 * IOMMUFD_EMU_PRELOAD, when set, becomes the program's LD_PRELOAD (the guard itself runs without
 * the shim: its own calls must not reach the emulator). IOMMUFD_EMU_FIXED_LAYOUT, when set, turns
 * off address space randomization for the program and its children (personality
 * ADDR_NO_RANDOMIZE, as `setarch -R` does): every run of a fail-nth sweep then maps its memory at
 * the same addresses, so the runs pass the same injection points.
 *
 * How: a seccomp filter with a user-notification listener traps every call that opens a file by
 * name (open, creat, openat, openat2, for x86-64, x32 and i386 callers). A supervisor process,
 * forked before the filter is installed and detached from the program's tree, reads the path
 * from the caller's memory and answers EPERM when it names /dev/iommu or anything under
 * /dev/vfio, or when it resolves to a character device of those drivers (whatever its name);
 * every other open continues in the kernel untouched. open_by_handle_at is refused (it opens
 * without a name) and io_uring_setup answers ENOSYS (io_uring's openat is not seen by seccomp),
 * so programs fall back to plain calls. The supervisor exits when no process uses the filter.
 *
 * Exit status (the program's own once it runs): 125 the guard cannot be installed (no seccomp
 * user notification here), 126 PATH cannot be run, 127 PATH does not exist.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_GUARD_FAILED 125
#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND 127

#define X32_SYSCALL_BIT 0x40000000u
#define MISC_MAJOR 10
#define VFIO_MINOR 196

/* The i386 numbers of the calls the filter traps (a 64-bit program can still use int 0x80). */
#define I386_OPEN 5
#define I386_CREAT 8
#define I386_OPENAT 295
#define I386_OPEN_BY_HANDLE_AT 342
#define I386_IO_URING_SETUP 425
#define I386_OPENAT2 437

static void die(int status, const char *what)
{
	fprintf(stderr, "iommufd-emu: %s\n", what);
	exit(status);
}

/* -- the filter ------------------------------------------------------------------------------ */

#define LOAD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define IS(value, then) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (value), (then), 0)
#define RET(action) BPF_STMT(BPF_RET | BPF_K, (action))

static struct sock_filter filter[] = {
	/* 0 */ LOAD(arch),
	/* 1 */ IS(AUDIT_ARCH_X86_64, 2),
	/* 2 */ IS(AUDIT_ARCH_I386, 10),
	/* 3 */ RET(SECCOMP_RET_ALLOW),
	/* x86-64 and x32 (the x32 bit masked off: both share these numbers) */
	/* 4 */ LOAD(nr),
	/* 5 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~X32_SYSCALL_BIT),
	/* 6 */ IS(SYS_open, 14),
	/* 7 */ IS(SYS_creat, 13),
	/* 8 */ IS(SYS_openat, 12),
	/* 9 */ IS(SYS_openat2, 11),
	/* 10 */ IS(SYS_open_by_handle_at, 11),
	/* 11 */ IS(SYS_io_uring_setup, 11),
	/* 12 */ RET(SECCOMP_RET_ALLOW),
	/* i386 */
	/* 13 */ LOAD(nr),
	/* 14 */ IS(I386_OPEN, 6),
	/* 15 */ IS(I386_CREAT, 5),
	/* 16 */ IS(I386_OPENAT, 4),
	/* 17 */ IS(I386_OPENAT2, 3),
	/* 18 */ IS(I386_OPEN_BY_HANDLE_AT, 3),
	/* 19 */ IS(I386_IO_URING_SETUP, 3),
	/* 20 */ RET(SECCOMP_RET_ALLOW),
	/* 21 */ RET(SECCOMP_RET_USER_NOTIF),
	/* 22 */ RET(SECCOMP_RET_ERRNO | EPERM),
	/* 23 */ RET(SECCOMP_RET_ERRNO | ENOSYS),
};

/*
 * The jump offsets above count from the next instruction; the table is small enough to check by
 * hand, and check_filter() checks where each one lands.
 */
static void check_filter(void)
{
	static const struct {
		unsigned at, lands;
	} jumps[] = {
		{ 1, 4 }, { 2, 13 }, { 6, 21 }, { 7, 21 }, { 8, 21 }, { 9, 21 }, { 10, 22 }, { 11, 23 },
		{ 14, 21 }, { 15, 21 }, { 16, 21 }, { 17, 21 }, { 18, 22 }, { 19, 23 },
	};
	for (size_t i = 0; i < sizeof jumps / sizeof jumps[0]; i++)
		if (jumps[i].at + 1 + filter[jumps[i].at].jt != jumps[i].lands)
			die(EXIT_GUARD_FAILED, "guard: internal error: a filter jump lands wrong");
}

static int install_filter(void)
{
	struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
	int fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
			      &prog);
	/* Without CAP_SYS_ADMIN the kernel wants no_new_privs first; with it, setuid keeps working. */
	if (fd < 0 && errno == EACCES) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
			return -1;
		fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
				  SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	}
	return fd;
}

/* -- what the supervisor refuses ---------------------------------------------------------------- */

/* Character devices of the drivers behind the host's nodes, read once from /proc. */
static unsigned vfio_group_major, vfio_cdev_major, iommu_misc_minor;
static int have_iommu_minor;

static void read_majors(void)
{
	char line[128];
	FILE *f = fopen("/proc/devices", "re");
	int chars = 0;
	unsigned number;
	char name[64];
	if (f != NULL) {
		while (fgets(line, sizeof line, f) != NULL) {
			if (strncmp(line, "Character", 9) == 0)
				chars = 1;
			else if (strncmp(line, "Block", 5) == 0)
				chars = 0;
			else if (chars && sscanf(line, "%u %63s", &number, name) == 2) {
				if (strcmp(name, "vfio") == 0)
					vfio_group_major = number;
				else if (strcmp(name, "vfio-dev") == 0)
					vfio_cdev_major = number;
			}
		}
		fclose(f);
	}
	f = fopen("/proc/misc", "re");
	if (f != NULL) {
		while (fgets(line, sizeof line, f) != NULL)
			if (sscanf(line, "%u %63s", &number, name) == 2 && strcmp(name, "iommu") == 0) {
				iommu_misc_minor = number;
				have_iommu_minor = 1;
			}
		fclose(f);
	}
}

static int is_host_device(const struct stat *st)
{
	unsigned maj, min;
	if (!S_ISCHR(st->st_mode))
		return 0;
	maj = major(st->st_rdev);
	min = minor(st->st_rdev);
	if (maj == MISC_MAJOR)
		return min == VFIO_MINOR || (have_iommu_minor && min == iommu_misc_minor);
	return (vfio_group_major != 0 && maj == vfio_group_major) ||
	       (vfio_cdev_major != 0 && maj == vfio_cdev_major);
}

/* Lexical normalisation of an absolute path in place: "//", "." and ".." removed. */
static void normalise(char *path)
{
	char *out = path, *in = path;
	while (*in != '\0') {
		while (*in == '/')
			in++;
		char *end = strchrnul(in, '/');
		size_t len = (size_t)(end - in);
		if (len == 0 || (len == 1 && in[0] == '.')) {
			/* nothing */
		} else if (len == 2 && in[0] == '.' && in[1] == '.') {
			while (out > path && *--out != '/')
				;
		} else {
			*out++ = '/';
			memmove(out, in, len);
			out += len;
		}
		in = end;
	}
	if (out == path)
		*out++ = '/';
	*out = '\0';
}

static int names_host_node(const char *abs)
{
	return strcmp(abs, "/dev/iommu") == 0 || strcmp(abs, "/dev/vfio") == 0 ||
	       strncmp(abs, "/dev/vfio/", 10) == 0;
}

/* Reads the NUL-terminated string at addr in pid's memory; 0 on success, else an errno. */
static int read_path(pid_t pid, unsigned long long addr, char *buf, size_t size)
{
	size_t got = 0;
	while (got < size) {
		/* Never across a page boundary in one read: the next page may be unmapped. */
		size_t chunk = 4096 - ((addr + got) & 4095);
		if (chunk > size - got)
			chunk = size - got;
		struct iovec local = { buf + got, chunk };
		struct iovec remote = { (void *)(uintptr_t)(addr + got), chunk };
		ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
		if (n < 0)
			return errno;
		if (n == 0)
			return EFAULT;
		if (memchr(buf + got, '\0', (size_t)n) != NULL)
			return 0;
		got += (size_t)n;
	}
	return ENAMETOOLONG;
}

enum verdict { CONTINUE, REFUSE };

/* Whether the open described by notif must be refused (see the file's comment). */
static enum verdict judge(const struct seccomp_notif *n)
{
	int i386 = n->data.arch == AUDIT_ARCH_I386;
	unsigned nr = n->data.nr & ~X32_SYSCALL_BIT;
	int at = i386 ? (nr == I386_OPENAT || nr == I386_OPENAT2)
		      : (nr == SYS_openat || nr == SYS_openat2);
	int dirfd = at ? (int)n->data.args[0] : AT_FDCWD;
	unsigned long long addr = at ? n->data.args[1] : n->data.args[0];
	char path[PATH_MAX], base[PATH_MAX], abs[2 * PATH_MAX + 2], via[PATH_MAX + 96];
	struct stat st;
	pid_t pid = (pid_t)n->pid;

	switch (read_path(pid, addr, path, sizeof path)) {
	case 0:
		break;
	case EFAULT:
	case ENAMETOOLONG:
		return CONTINUE; /* the kernel fails it the same way */
	default:
		return REFUSE; /* cannot tell what it opens (not dumpable): refuse, to be safe */
	}
	/* The name as the caller's root and cwd (or dirfd) make it, normalised. */
	if (path[0] == '/') {
		snprintf(abs, sizeof abs, "%s", path);
		snprintf(via, sizeof via, "/proc/%d/root%s", pid, path);
	} else {
		char link[64];
		ssize_t len;
		if (dirfd == AT_FDCWD)
			snprintf(link, sizeof link, "/proc/%d/cwd", pid);
		else
			snprintf(link, sizeof link, "/proc/%d/fd/%d", pid, dirfd);
		len = readlink(link, base, sizeof base - 1);
		base[len < 0 ? 0 : len] = '\0';
		snprintf(abs, sizeof abs, "%s/%s", base, path);
		snprintf(via, sizeof via, "%s/%s", link, path);
	}
	normalise(abs);
	if (names_host_node(abs))
		return REFUSE;
	/* Any other name for the same device (a symlink, a node made elsewhere, /proc/N/fd/M). */
	if (stat(via, &st) == 0 && is_host_device(&st))
		return REFUSE;
	return CONTINUE;
}

static void supervise(int listener)
{
	struct seccomp_notif_sizes sizes;
	struct seccomp_notif *req;
	struct seccomp_notif_resp *resp;

	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0)
		_exit(1);
	req = calloc(1, sizes.seccomp_notif);
	resp = calloc(1, sizes.seccomp_notif_resp);
	if (req == NULL || resp == NULL)
		_exit(1);
	for (;;) {
		struct pollfd p = { .fd = listener, .events = POLLIN };
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		/* No process uses the filter any more. */
		if ((p.revents & POLLIN) == 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0)
			_exit(0);
		memset(req, 0, sizes.seccomp_notif);
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) != 0)
			continue; /* the caller went away (ENOENT) or a signal interrupted it */
		enum verdict v = judge(req);
		/* The pid read from may have died and been reused while we read: then nobody waits. */
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) != 0)
			continue;
		memset(resp, 0, sizes.seccomp_notif_resp);
		resp->id = req->id;
		if (v == REFUSE)
			resp->error = -EPERM;
		else
			resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
		ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp);
	}
}

/* -- start-up ------------------------------------------------------------------------------------ */

static void send_fd(int sock, int fd)
{
	char byte = 0, control[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof control };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	if (sendmsg(sock, &msg, 0) != 1)
		die(EXIT_GUARD_FAILED, "guard: cannot hand the seccomp listener to its supervisor");
}

static int recv_fd(int sock)
{
	char byte, control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof control };
	struct cmsghdr *c;
	int fd;
	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (c == NULL || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof fd);
	return fd;
}

/*
 * The supervisor: a grandchild, so that it is nobody's child in the program's tree (a program
 * waiting for any child never reaps it), and started before the filter exists, so that its own
 * opens are not trapped by itself.
 */
static void start_supervisor(int sock, int other)
{
	pid_t child = fork();
	if (child < 0)
		die(EXIT_GUARD_FAILED, "guard: fork failed");
	if (child == 0) {
		if (fork() != 0)
			_exit(0);
		close(other);
		/* Keep stderr for nothing but a crash; never hold the program's stdin or stdout. */
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		signal(SIGINT, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		signal(SIGQUIT, SIG_IGN);
		signal(SIGPIPE, SIG_IGN);
		read_majors();
		int listener = recv_fd(sock);
		if (listener < 0)
			_exit(0);
		close(sock);
		supervise(listener);
	}
	waitpid(child, NULL, 0);
}

/*
 * Turns off address space randomization across the exec. A container's seccomp profile may refuse
 * the flag (Docker's does): the program then runs randomized, and says so.
 */
static void fix_layout(const char *name)
{
	int persona = personality(0xffffffff);

	if (persona == -1 || personality((unsigned long)persona | ADDR_NO_RANDOMIZE) == -1)
		fprintf(stderr,
			"iommufd-emu: cannot turn off address randomization for %s (%s): runs may "
			"pass different injection points where addresses decide them\n",
			name, strerror(errno));
}

int main(int argc, char **argv)
{
	int pair[2], listener;
	const char *preload;

	if (argc < 3) {
		fprintf(stderr, "usage: iommufd-emu-guard PATH ARGV0 [ARG...]\n");
		return EXIT_GUARD_FAILED;
	}
	check_filter();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
		die(EXIT_GUARD_FAILED, "guard: socketpair failed");
	start_supervisor(pair[1], pair[0]);
	close(pair[1]);
	listener = install_filter();
	if (listener < 0) {
		fprintf(stderr,
			"iommufd-emu: cannot guard %s: seccomp user notification is unavailable here "
			"(%s); without it a program that bypasses libc could open the host's "
			"/dev/iommu or /dev/vfio, so it is not started\n",
			argv[2], strerror(errno));
		return EXIT_GUARD_FAILED;
	}
	send_fd(pair[0], listener);
	close(listener);
	close(pair[0]);

	preload = getenv("IOMMUFD_EMU_PRELOAD");
	if (preload != NULL) {
		setenv("LD_PRELOAD", preload, 1);
		unsetenv("IOMMUFD_EMU_PRELOAD");
	}
	if (getenv("IOMMUFD_EMU_FIXED_LAYOUT") != NULL) {
		unsetenv("IOMMUFD_EMU_FIXED_LAYOUT");
		fix_layout(argv[2]);
	}
	execv(argv[1], argv + 2);
	int err = errno;
	fprintf(stderr, "iommufd-emu: cannot run %s: %s\n", argv[2], strerror(err));
	return err == ENOENT || err == ENOTDIR ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN;
}
