/*
 * The transport: process state (whether the shim is active, which process owns the shim's
 * tables), the per-thread transport connection, and the one request helper every wrapper uses.
 *
 * A call:
 *
 *	struct call c;
 *	long r = call_begin_fd(&c, EMU_OP_READ, fd);	// EMU_NOT_OURS: use libc
 *	if (r == EMU_NOT_OURS)
 *		return REAL(read)(fd, buf, n);
 *	c.req.a0 = ...; c.part[0] = ...;		// the request
 *	r = call_send(&c);				// 0: c.rep and c.data hold the reply
 *	if (r == 0)
 *		r = c.rep.ret;				// ... use the reply
 *	call_end(&c);					// signals back; the reply is gone
 *
 * call_begin*() block every signal until call_end(): a handler that itself makes an emulated
 * call cannot corrupt the thread's stream or its reply buffer. call_send() on an fd's object
 * handles a STALE reply itself: it forgets the fd, looks it up again and resends, or says
 * EMU_NOT_OURS when the fd is no longer emulated.
 */
#ifndef IOMMUFD_EMU_SHIM_TRANSPORT_H
#define IOMMUFD_EMU_SHIM_TRANSPORT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "fd_table.h"
#include "protocol.h"

/* Internal result: the fd is not (or no longer) emulated; the wrapper calls libc. Outside both
 * the range of results (>= 0) and of errnos (-4095..-1). */
#define EMU_NOT_OURS (-100000L)

struct call {
	struct emu_req req;
	struct emu_creds creds;
	const void *part[2]; /* the request's payload, in two pieces */
	size_t part_len[2];
	struct emu_rep rep;
	unsigned char *data; /* the reply's payload */
	size_t data_len;
	int data_on_heap;
	int fd;		  /* the program's fd the call is on, -1 for none */
	struct fdent ent; /* its entry, kept up to date across a STALE retry */
	int in_signal;	  /* from a signal handler: no heap, no pthread_setspecific */
	pid_t pid;	  /* getpid() at call_begin: one system call serves the whole call */
	sigset_t saved;	  /* the signal mask before call_begin */
};

/* Starts a call (op) that is not on an fd; blocks all signals. */
void call_begin(struct call *c, uint16_t op);
/* Starts a call (op) on fd's object with req.obj set; EMU_NOT_OURS (nothing begun, no system
 * call made) if fd is not emulated. */
long call_begin_fd(struct call *c, uint16_t op, int fd);
/* Sends the request on the thread's transport and receives the reply: 0, EMU_NOT_OURS (an fd
 * the server no longer knows, and the slow path does not either), or -errno: -ENXIO when no
 * server answers, -EIO when the connection broke (a call on an fd: always -EIO). */
long call_send(struct call *c);
/* The same on an object connection (OPEN): 0 or -errno. */
long call_send_on(struct call *c, int sock);
/* Frees the reply and restores the signal mask. */
void call_end(struct call *c);

/* A new connection to the server (an object connection, or a transport). fd or -errno. */
int server_connect(int cloexec);
/* The server's socket path (IOMMUFD_EMU_SOCKET). */
const char *server_socket_path(void);
/* Whether IOMMUFD_EMU_SOCKET is set (initialises the shim on first use). */
int shim_active(void);
/* Whether this process owns the shim's tables: false in a vfork child (CLONE_VM without fork's
 * atfork handlers), which shares its parent's memory and must leave the tables alone. */
int shim_owns_memory(void);
/* Whether this thread of this process has a transport already (never makes one). */
int transport_ready(void);
/* Makes the thread's transport if there is none (HELLO: the prefixes and the testbed). */
void transport_hello(void);
/* Whether the server traces and wants NOTEs (HELLO's EMU_HELLO_NOTES) and this thread has a
 * transport. */
int transport_notes(void);
/* Sends a NOTE (kind, the program's fd, its object, the call's result, the args) when the server
 * wants them; errno is kept. */
void call_note(uint32_t kind, int fd, uint32_t obj, int64_t result, uint64_t arg0, uint64_t arg1,
	       uint64_t arg2, uint64_t arg3);
/* Resolves every libc function the transport uses, before a signal handler may need them. */
void transport_prepare(void);
/* Blocks every signal, saving the old mask; and back. */
void block_signals(sigset_t *old);
void restore_signals(const sigset_t *old);

#endif
