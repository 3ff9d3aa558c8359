/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Opens the node argv[1] read-write, as a driver would, and prints one line saying what this
 * process believes it is (uid, whether CAP_SYS_RAWIO is in its own effective set) and what the
 * open returned: "uid=0 rawio=1 open=0" or "uid=0 rawio=1 open=-1 errno=1". Run by
 * test/capabilities.test.ts under `iommufd-emu exec`, inside and outside `unshare -r`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

int main(int argc, char **argv)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { 0 } };
	int rawio, fd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s NODE\n", argv[0]);
		return 2;
	}
	if (syscall(SYS_capget, &hdr, data) != 0) {
		perror("capget");
		return 2;
	}
	rawio = (data[CAP_SYS_RAWIO / 32].effective >> (CAP_SYS_RAWIO % 32)) & 1;
	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		printf("uid=%u rawio=%d open=-1 errno=%d\n", getuid(), rawio, errno);
		return 0;
	}
	printf("uid=%u rawio=%d open=0\n", getuid(), rawio);
	close(fd);
	return 0;
}
