/*
 * The caller's credentials as every request reports them (struct emu_creds): uids, gids, the
 * effective capabilities and RLIMIT_MEMLOCK, read with system calls once and kept per thread
 * until something the shim sees may have changed them (decision 260).
 *
 * What invalidates: the shim wraps every libc entry point that changes them (the set*id family,
 * setfsuid/setfsgid, capset, setrlimit/prlimit, unshare, setns) and syscall() with any of their
 * numbers; each bumps one process-wide generation after the change, and a thread whose copy is
 * of another generation reads its own credentials again. glibc's set*id wrappers change every
 * thread (its SIGSETXID broadcast) before they return, so a thread that sees the new generation
 * reads the new ids. Unseen: a system call made without libc (inline assembly), until the next
 * change the shim sees; another process's prlimit() on this one is seen by the server, which
 * reads the process's own limit when it pins.
 */
#ifndef IOMMUFD_EMU_SHIM_CREDS_H
#define IOMMUFD_EMU_SHIM_CREDS_H

#include <sys/types.h>

#include "protocol.h"

/* Fills c's ids, capabilities and memlock limit for the calling thread (plain system calls only
 * when its copy is stale; async-signal-safe). pid, tid and mm_cookie are the caller's to fill. */
void creds_fill(struct emu_creds *c);
/* Something may have changed the credentials of some thread of this process: every thread reads
 * its own again at its next request. Keeps errno. */
void creds_changed(void);
/* Resolves libc's syscall() before a signal handler may need it (the shim calls it too). */
void creds_prepare(void);

#endif
