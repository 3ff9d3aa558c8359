/*
 * Paths: which paths the emulator answers for (the prefixes from HELLO), lexical normalisation,
 * and the testbed, the real directory tree the server mirrors the emulated files into.
 */
#ifndef IOMMUFD_EMU_SHIM_PATHS_H
#define IOMMUFD_EMU_SHIM_PATHS_H

#include <limits.h>
#include <stddef.h>

/* HELLO's payload: the testbed root, then the prefixes. Stored once per process. */
void paths_store_hello(const unsigned char *payload, size_t n);
/* In a fork child: prefixes another thread was storing at the fork are not there. */
void paths_after_fork(void);
/* Fetches the prefixes once per process (any transport's HELLO stores them). */
void paths_load(void);
/* Whether path (relative to dirfd) is one the emulator answers for; fills abs if so. errno is
 * left as it was. */
int path_emulated(int dirfd, const char *path, char abs[PATH_MAX]);
/* Whether a path that is not emulated climbs ".." out of an emulated directory (/dev/vfio/..):
 * the host may not have the directory climbed out of, so the real call gets the path as
 * normalised (abs from path_emulated). */
int climbs_out(int dirfd, const char *path);
/* A path inside the testbed names the emulated file it mirrors: strip the root in place. 1 if
 * it was a testbed path. */
int strip_root(char *path);
/* The testbed's root, "" before HELLO or without a server. */
const char *testbed_root(size_t *len);
/* tb = where the emulated path abs lives in the testbed. 0 if there is no testbed. */
int testbed_join(const char *abs, char tb[PATH_MAX]);
/* For a path the emulator answers for: 1, with abs = the emulated path and tb = its place in the
 * testbed, which the server has just brought up to date (SYNC; call, an EMU_SYNC_* code, names
 * the caller in the trace). -1 with errno set when there is no usable testbed (no server: ENXIO,
 * like open). 0 for any other path (use it as it is). */
int testbed_path(int dirfd, const char *path, char abs[PATH_MAX], char tb[PATH_MAX], int call);

#endif
