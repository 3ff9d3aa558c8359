/*
 * Trapped mappings: device memory whose every access must reach the device in program order (a
 * BAR with register side effects). The range is reserved PROT_NONE; each access faults, and the
 * shim's SIGSEGV handler emulates the instruction (x86_decode.h) as a positional READ/WRITE of
 * the region. Everything the handler reaches is async-signal-safe (see trap.c).
 */
#ifndef IOMMUFD_EMU_SHIM_TRAP_H
#define IOMMUFD_EMU_SHIM_TRAP_H

#include <stddef.h>
#include <stdint.h>

#include "fd_table.h"

/* Reserves [addr, len) PROT_NONE for fd's object e, accesses going to region_offset + offset.
 * 0 with *out = the range, or -errno. */
long trap_map(int fd, const struct fdent *e, void *addr, size_t len, int flags,
	      uint64_t region_offset, void **out);
/* Whether e is an iommufd (/dev/iommu, 10:123): the server holds the owner of a region it maps
 * until told the mapping went (EMU_NOTE_VMA_CLOSE). */
int trap_notes_close(const struct fdent *e);
/* After munmap(start, len): forget what is gone (trimming at either end), and let go of the
 * file with the last piece of a mapping (telling the server first, for an iommufd). */
void trap_unmap(uintptr_t start, size_t len);

#endif
