// SPDX-License-Identifier: GPL-2.0-only
/*
 * iommufd-emu-faultin PID ADDR LENGTH r|w
 *
 * Faults [ADDR, ADDR+LENGTH) of process PID in as the kernel's own copy_from_user() or
 * copy_to_user() would, for a server that must not wait itself (docs/security.md). The server
 * reads client memory through /proc/<pid>/mem, whose page walk may not sleep in a fault: a page
 * a userfaultfd handler must supply reads as EIO there. process_vm_readv()/writev() walk with
 * the kernel's retrying fault, which queues the fault on the client's userfaultfd and waits,
 * killably, for its handler; a userfaultfd made UFFD_USER_MODE_ONLY or with UFFD_FEATURE_SIGBUS
 * fails it at once with EFAULT, as it fails the kernel's copy. So this process waits where the
 * kernel's caller would; the server runs on and kills it if it no longer cares.
 *
 * 'r' reads one byte of every page of the range; 'w' writes the LENGTH bytes read from stdin,
 * which are the bytes the call was writing there (a write fault: a write-protected page needs
 * one, and writing what the call writes leaves nothing the call would not have left).
 *
 * Exit status: 0 once every page of the range was reached, 1 when nothing could be (EFAULT:
 * the kernel's copy fails too), 2 when the process is gone, 3 for bad usage or anything else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE 4096UL
/* At most this many pages per system call (IOV_MAX). */
#define BATCH 1024
/* The longest range faulted in at once: the server asks again for the rest. */
#define MAX_LENGTH (64UL << 20)

static int status_of(int err)
{
	if (err == ESRCH)
		return 2;
	return err == EFAULT || err == EIO ? 1 : 3;
}

static int read_range(pid_t pid, unsigned long addr, unsigned long length)
{
	static struct iovec local[BATCH], remote[BATCH];
	static char sink[BATCH];
	unsigned long at = addr, end = addr + length;

	while (at < end) {
		unsigned long batch = at;
		int n = 0;

		for (; n < BATCH && at < end; n++) {
			local[n] = (struct iovec){ .iov_base = &sink[n], .iov_len = 1 };
			remote[n] = (struct iovec){ .iov_base = (void *)at, .iov_len = 1 };
			at = (at & ~(PAGE - 1)) + PAGE;
		}
		ssize_t got = process_vm_readv(pid, local, n, remote, n, 0);

		if (got < 0)
			return batch > addr ? 0 : status_of(errno);
		/* A page further on failed: what came before is in, and the server asks again. */
		if (got < n)
			return 0;
	}
	return 0;
}

static int write_range(pid_t pid, unsigned long addr, unsigned long length)
{
	char *data = malloc(length ? length : 1);
	unsigned long have = 0;

	if (data == NULL)
		return 3;
	while (have < length) {
		ssize_t got = read(0, data + have, length - have);

		if (got <= 0) {
			if (got < 0 && errno == EINTR)
				continue;
			free(data);
			return 3;
		}
		have += got;
	}
	struct iovec local = { .iov_base = data, .iov_len = length };
	struct iovec remote = { .iov_base = (void *)addr, .iov_len = length };
	ssize_t done = process_vm_writev(pid, &local, 1, &remote, 1, 0);
	int err = errno;

	free(data);
	if (done < 0)
		return status_of(err);
	return 0;
}

int main(int argc, char **argv)
{
	char *end;

	if (argc != 5 || (argv[4][0] != 'r' && argv[4][0] != 'w') || argv[4][1] != '\0')
		return 3;
	long pid = strtol(argv[1], &end, 10);
	if (*end != '\0' || pid <= 0)
		return 3;
	unsigned long addr = strtoul(argv[2], &end, 0);
	if (*end != '\0')
		return 3;
	unsigned long length = strtoul(argv[3], &end, 0);
	if (*end != '\0' || length == 0 || length > MAX_LENGTH || addr + length < addr)
		return 3;
	if (argv[4][0] == 'r')
		return read_range((pid_t)pid, addr, length);
	return write_range((pid_t)pid, addr, length);
}
