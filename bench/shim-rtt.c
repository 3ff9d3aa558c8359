/*
 * shim-rtt ECHO_SOCKET SERVER_PID ROUNDS BATCH: a forwarded ioctl against a bare Unix-socket echo,
 * timed side by side in this one process (bench/shim-rtt.ts runs it under the shim).
 *
 * The ioctl is IOMMU_IOAS_ALLOC on /dev/iommu with a size below the struct's (8 < 12): the shim
 * sends it with its 8-byte window, the emulator fails it with EINVAL at the size check, nothing
 * changes, so it can repeat forever. The echo sends as many bytes as that request takes on the
 * wire (header, credentials, window) to a Node echo server on ECHO_SOCKET and reads them back.
 *
 * Each round times one batch of each, their order flipped every round, and prints one line per
 * batch: "echo|ioctl WALL_NS CLIENT_CPU_NS SERVER_CPU_NS" for BATCH round trips. The server's
 * CPU time is read from its process CPU clock (clock_getcpuclockid), so the figure can be the CPU
 * both ends spend per round trip, which the load of a shared machine does not inflate.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/iommufd.h>

/* What the shim puts on the wire for this ioctl: emu_req (32) + emu_creds (48) + the window. */
#define REQUEST_BYTES (32 + 48 + 8)

static void die(const char *what)
{
	fprintf(stderr, "shim-rtt: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	if (clock_gettime(id, &ts) != 0)
		die("clock_gettime");
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void echo_once(int s, unsigned char *buf)
{
	size_t done = 0;
	if (write(s, buf, REQUEST_BYTES) != REQUEST_BYTES)
		die("echo write");
	while (done < REQUEST_BYTES) {
		ssize_t n = read(s, buf + done, REQUEST_BYTES - done);
		if (n <= 0)
			die("echo read");
		done += (size_t)n;
	}
}

static void ioctl_once(int iommufd)
{
	struct iommu_ioas_alloc alloc = {.size = 8};
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc) != -1 || errno != EINVAL)
		die("IOMMU_IOAS_ALLOC with a short size did not fail with EINVAL");
}

static void timed(const char *name, int batch, clockid_t server, int s, int iommufd)
{
	unsigned char buf[REQUEST_BYTES];
	uint64_t wall = clock_ns(CLOCK_MONOTONIC);
	uint64_t cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	uint64_t srv = clock_ns(server);
	int i;
	memset(buf, 0x5a, sizeof buf);
	for (i = 0; i < batch; i++) {
		if (s >= 0)
			echo_once(s, buf);
		else
			ioctl_once(iommufd);
	}
	srv = clock_ns(server) - srv;
	cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu;
	wall = clock_ns(CLOCK_MONOTONIC) - wall;
	printf("%s %llu %llu %llu\n", name, (unsigned long long)wall, (unsigned long long)cpu,
	       (unsigned long long)srv);
}

int main(int argc, char **argv)
{
	struct sockaddr_un a;
	clockid_t server;
	int s, iommufd, rounds, batch, r;

	if (argc != 5) {
		fprintf(stderr, "usage: shim-rtt ECHO_SOCKET SERVER_PID ROUNDS BATCH\n");
		return 2;
	}
	rounds = atoi(argv[3]);
	batch = atoi(argv[4]);
	if (clock_getcpuclockid((pid_t)atoi(argv[2]), &server) != 0)
		die("clock_getcpuclockid");
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[1]);
	if (connect(s, (struct sockaddr *)&a, sizeof a) != 0)
		die("connect");
	iommufd = open("/dev/iommu", O_RDWR);
	if (iommufd < 0)
		die("open /dev/iommu");
	/* Warm up both paths (the shim's transport, the fd tables, the JIT on the server). */
	for (r = 0; r < 2; r++) {
		timed("warmup", batch, server, s, iommufd);
		timed("warmup", batch, server, -1, iommufd);
	}
	for (r = 0; r < rounds; r++) {
		if (r % 2 == 0) {
			timed("echo", batch, server, s, iommufd);
			timed("ioctl", batch, server, -1, iommufd);
		} else {
			timed("ioctl", batch, server, -1, iommufd);
			timed("echo", batch, server, s, iommufd);
		}
	}
	fflush(stdout);
	close(iommufd);
	close(s);
	return 0;
}
