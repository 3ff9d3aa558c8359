/* open, close and dup of emulated files (open.c). */
#ifndef IOMMUFD_EMU_SHIM_OPEN_H
#define IOMMUFD_EMU_SHIM_OPEN_H

#include <sys/types.h>

/* Opens the emulated path abs: a new object connection, or a testbed directory. fd, or -1 with
 * errno set. */
int emu_open(const char *abs, int flags, mode_t mode);

#endif
