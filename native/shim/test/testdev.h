/*
 * The test device /dev/emu/test0 of src/server/server.test.ts, as the shim test programs see it:
 * its ioctls, their structs, and small helpers. Include after check.h.
 */
#ifndef IOMMUFD_EMU_SHIM_TEST_TESTDEV_H
#define IOMMUFD_EMU_SHIM_TEST_TESTDEV_H

#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#define DEV "/dev/emu/test0"
#define DEV_MAJOR 240
#define DEV_MINOR 7

/* The test device's ioctls (see server.test.ts). */
#define EMU_IOC(nr) _IO('E', nr)
#define EMU_ECHO EMU_IOC(1)     /* out = in + 1; returns 1 if served from the prefetch window */
#define EMU_INFO EMU_IOC(2)     /* the caller as the server saw it */
#define EMU_SUM EMU_IOC(3)      /* sum of u32s at embedded ptr; adds 1000 to each */
#define EMU_THROW EMU_IOC(4)    /* the handler throws */
#define EMU_RESOLVE EMU_IOC(5)  /* what fd is in the caller: 0 closed, 1 open, 2 ours */
#define EMU_RELEASED EMU_IOC(6) /* returns how many test files were released so far */
#define EMU_TWICE EMU_IOC(7)    /* integer arg: returns arg * 2 */
#define EMU_BAR EMU_IOC(8)      /* reads u32 at backing offset 0, stores it + 1 at offset 4 */
#define EMU_VMA EMU_IOC(9)      /* the VMA holding addr */
#define EMU_EVENTFD EMU_IOC(10) /* takes the eventfd in the struct, signals it n times */

struct emu_echo {
	uint32_t size;
	uint32_t flags;
	uint64_t in;
	uint64_t out;
};

struct emu_info {
	uint32_t size;
	uint32_t pid;
	uint32_t tid;
	uint32_t uid;
	uint64_t cap_eff;
	uint64_t memlock;
	uint32_t file_id;
	uint32_t pad;
};

struct emu_sum {
	uint32_t size;
	uint32_t count;
	uint64_t ptr;
	uint64_t sum;
};

struct emu_resolve {
	uint32_t size;
	int32_t fd;
	uint32_t result;
	uint32_t file_id;
};

struct emu_vma {
	uint32_t size;
	uint32_t perms; /* out: 1 readable, 2 writable; 0x80 no VMA */
	uint64_t addr;
	uint64_t start;
	uint64_t end;
	uint64_t page_size;
};

static inline int open_dev(void)
{
	int fd = open(DEV, O_RDWR);
	CHECK(fd >= 0, "open %s", DEV);
	return fd;
}

static inline int echo(int fd, uint64_t in, uint64_t *out)
{
	struct emu_echo e = {sizeof e, 0, in, 0};
	int r = ioctl(fd, EMU_ECHO, &e);
	*out = e.out;
	return r;
}

static inline uint32_t file_id(int fd)
{
	struct emu_info info;
	memset(&info, 0, sizeof info);
	info.size = sizeof info;
	CHECK(ioctl(fd, EMU_INFO, &info) == 0, "INFO on fd %d", fd);
	return info.file_id;
}

#endif
