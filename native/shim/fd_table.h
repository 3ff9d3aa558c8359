/*
 * The fd table: what each fd number of the process is to the shim. An emulated file's entry names
 * its object on the server; a "foreign" entry remembers that an fd is not ours (the negative
 * cache), so calls on the program's own files cost no extra system call. Entries change only
 * where the shim sees the fd number change (open, close, dup*, fcntl(F_DUPFD*), close_range,
 * recvmsg with SCM_RIGHTS) and on a STALE reply.
 *
 * The vfork rule: a vfork child shares its parent's memory but has its own fd table, so it must
 * never write an entry the parent would trust. It may only forget entries (the parent then asks
 * the slow path again); remembering is for a process that owns its address space.
 */
#ifndef IOMMUFD_EMU_SHIM_FD_TABLE_H
#define IOMMUFD_EMU_SHIM_FD_TABLE_H

#include <stdint.h>

#define FD_TABLE_SIZE 65536

/* What an fd number is. FD_TRANSPORT and FD_INTERNAL (the shim's own copy of an object fd, held
 * by a trapped mapping) are the shim's: the program cannot close them. */
enum fd_kind {
	FD_UNKNOWN = 0, /* not looked at since it last changed: ask the slow path */
	FD_FOREIGN,	/* the program's own file: libc serves it */
	FD_OBJECT,	/* an emulated file */
	FD_TRANSPORT,
	FD_INTERNAL,
};

/* An emulated file as OPEN or LOOKUP described it. */
struct fdent {
	uint32_t obj;
	uint32_t mode; /* st_mode */
	uint64_t rdev; /* EMU_RDEV() */
};

/* Whether fd is an emulated file, filling e: the table, else (after exec, SCM_RIGHTS) the slow
 * path, which asks getpeername() and the server once and remembers the answer either way. */
int fd_lookup(int fd, struct fdent *e);
/* The table's entry for fd without the slow path: 1 if it is an emulated file. */
int fd_table_get(int fd, struct fdent *e);
/* fd is (now) the emulated file e. Ignored in a vfork child. */
void fd_remember(int fd, const struct fdent *e);
/* fd is (now) one of the program's own files, as libc just opened it. */
void fd_remember_foreign(int fd);
/* fd's number changed under a file the shim did not see, or was closed: ask again next time. */
void fd_forget(int fd);
/* fd is one of the shim's own connections (FD_TRANSPORT or FD_INTERNAL), or no longer one. */
void fd_mark_shim(int fd, enum fd_kind kind);
void fd_unmark_shim(int fd);
int fd_is_shims(int fd);
enum fd_kind fd_kind_of(int fd);

/* After a close of an emulated fd (obj; 0 for any): returns once the server has seen any EOF
 * that close caused, so release is synchronous with close() as in the kernel. Only on an
 * existing transport of this process. closed_fd: the fd the program's close() closed (traced),
 * -1 when the fd went another way. */
void fd_close_barrier(uint32_t obj, int closed_fd);

#endif
