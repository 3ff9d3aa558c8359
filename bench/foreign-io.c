/*
 * foreign-io FILE ROUNDS BATCH: what the shim adds to read/write/fstat on an ordinary file,
 * measured side by side in this one shimmed process (bench/shim-rtt.ts runs it under the shim).
 *
 * "shimmed" calls read, write and fstat by their names, which LD_PRELOAD binds to the shim's
 * wrappers; "unshimmed" calls libc's own definitions of the same functions, found in libc.so.6
 * itself, which is what the program would run without the shim. One operation is a write of 64
 * bytes appended to FILE, a read of those 64 bytes through a second fd, and an fstat.
 *
 * Each round times one batch of each, their order flipped every round, and prints one line per
 * batch: "shimmed|unshimmed CPU_NS" for BATCH operations (this process's CPU time).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 64

struct calls {
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	int (*fstat)(int, struct stat *);
};

static void die(const char *what)
{
	fprintf(stderr, "foreign-io: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
		die("clock_gettime");
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void timed(const char *name, const struct calls *c, int wfd, int rfd, int batch)
{
	unsigned char buf[CHUNK];
	struct stat st;
	uint64_t t;
	int i;
	/* Start every batch from an empty file, outside the timed part. */
	if (ftruncate(wfd, 0) != 0 || lseek(rfd, 0, SEEK_SET) != 0)
		die("reset");
	memset(buf, 0x5a, sizeof buf);
	t = cpu_ns();
	for (i = 0; i < batch; i++) {
		if (c->write(wfd, buf, CHUNK) != CHUNK)
			die("write");
		if (c->read(rfd, buf, CHUNK) != CHUNK)
			die("read");
		if (c->fstat(rfd, &st) != 0)
			die("fstat");
	}
	t = cpu_ns() - t;
	printf("%s %llu\n", name, (unsigned long long)t);
}

int main(int argc, char **argv)
{
	struct calls shimmed = {read, write, fstat};
	struct calls unshimmed;
	void *libc;
	int wfd, rfd, rounds, batch, r;

	if (argc != 4) {
		fprintf(stderr, "usage: foreign-io FILE ROUNDS BATCH\n");
		return 2;
	}
	rounds = atoi(argv[2]);
	batch = atoi(argv[3]);
	libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (libc == NULL) {
		fprintf(stderr, "foreign-io: %s\n", dlerror());
		return 1;
	}
	unshimmed.read = (ssize_t (*)(int, void *, size_t))dlsym(libc, "read");
	unshimmed.write = (ssize_t (*)(int, const void *, size_t))dlsym(libc, "write");
	unshimmed.fstat = (int (*)(int, struct stat *))dlsym(libc, "fstat");
	if (unshimmed.read == NULL || unshimmed.write == NULL || unshimmed.fstat == NULL) {
		fprintf(stderr, "foreign-io: libc's read/write/fstat not found\n");
		return 1;
	}
	if (unshimmed.read == shimmed.read) {
		fprintf(stderr, "foreign-io: read is libc's own: not running under the shim\n");
		return 1;
	}
	wfd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	rfd = open(argv[1], O_RDONLY);
	if (wfd < 0 || rfd < 0)
		die("open");
	for (r = 0; r < 2; r++) {
		timed("warmup", &shimmed, wfd, rfd, batch);
		timed("warmup", &unshimmed, wfd, rfd, batch);
	}
	for (r = 0; r < rounds; r++) {
		if (r % 2 == 0) {
			timed("shimmed", &shimmed, wfd, rfd, batch);
			timed("unshimmed", &unshimmed, wfd, rfd, batch);
		} else {
			timed("unshimmed", &unshimmed, wfd, rfd, batch);
			timed("shimmed", &shimmed, wfd, rfd, batch);
		}
	}
	fflush(stdout);
	close(wfd);
	close(rfd);
	return 0;
}
