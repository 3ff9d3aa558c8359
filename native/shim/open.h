/* open, close and dup of emulated files (open.c). */
#ifndef IOMMUFD_EMU_SHIM_OPEN_H
#define IOMMUFD_EMU_SHIM_OPEN_H

#include <stdint.h>
#include <sys/types.h>

/* Opens the emulated path abs: a new object connection, or a testbed directory. fd, or -1 with
 * errno set. */
int emu_open(const char *abs, int flags, mode_t mode);

/* get_unused_fd_flags() for an ioctl that may create a file: a new object connection (RESERVE)
 * opened with flags (O_CLOEXEC), its object id in *obj. The fd, or -errno. */
int emu_reserve_fd(int flags, uint32_t *obj);

#endif
