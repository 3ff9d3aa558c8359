/*
 * iommufd-emu wire protocol between the LD_PRELOAD shim (shim.c) and the Node server
 * (src/server/protocol.ts mirrors every constant and layout here; change both together).
 *
 * Transport: AF_UNIX SOCK_STREAM, host byte order (little-endian on every supported target).
 * Every request is   [emu_req 32 B][emu_creds 48 B][payload]   and every reply is
 *                    [emu_rep 32 B][payload],
 * with `len` counting the whole message. One request is outstanding per connection.
 *
 * Connections:
 *  - transport connection: one per thread (re-made after fork); first message HELLO, then
 *    LOOKUP/CLOSE/IOCTL/READ/WRITE/MMAP/STAT/POLL/SYNC/SEEK.
 *  - object connection: one per open file description; it *is* the fd open() returns. Its only
 *    message is OPEN; the server releases the file when it sees EOF (last copy closed anywhere).
 *    An ioctl that creates a file (VFIO_GROUP_GET_DEVICE_FD, ...) gets one too: the shim
 *    reserves it with RESERVE before the call, and the call installs its new file there.
 *
 * The protocol knows no iommufd or VFIO struct: an ioctl travels as (cmd, arg) plus an optional
 * prefetched window of caller memory at arg.
 */
#ifndef IOMMUFD_EMU_PROTOCOL_H
#define IOMMUFD_EMU_PROTOCOL_H

#include <stdint.h>

#define EMU_PROTO_VERSION 4u

enum emu_op {
	/* transport: a0 = version. reply: v0 = server version, v1 = EMU_HELLO_* bits, payload = the
	 * testbed root (the real directory mirroring the emulated tree), then the emulated path
	 * prefixes, each NUL-terminated. */
	EMU_OP_HELLO = 1,
	/* object connection: obj = the fd this connection is (for the trace), a0 = open flags,
	 * a1 = st_ino of the client's socket, payload = path (NUL-terminated).
	 * reply: ret = object id or -errno (-EISDIR for a directory: open it in the testbed),
	 * v0 = st_mode, v1 = rdev. */
	EMU_OP_OPEN = 2,
	/* a0 = st_ino of a socket fd the shim does not know (after exec, SCM_RIGHTS).
	 * reply: ret = object id or -ENOENT, v0 = st_mode, v1 = rdev. */
	EMU_OP_LOOKUP = 3,
	/* obj = object whose fd this process just closed, a0 = EMU_FD_BITS(fd) for a close(fd) of
	 * the program (traced), EMU_FD_BITS(EMU_FD_UNKNOWN) when the fd went another way (dup2 over
	 * it, close_range, a trapped mapping's copy). The reply comes only after the server has
	 * processed any EOF that close caused, so release is synchronous with close(). */
	EMU_OP_CLOSE = 4,
	/* obj, a0 = cmd | EMU_FD_BITS(fd), a1 = arg; with EMU_REQ_WINDOW the payload is the caller's
	 * memory at arg. reply: ret = result or -errno; payload = emu_seg records (window bytes the
	 * call wrote).
	 * A command that may create a file (the kernel's get_unused_fd_flags + fd_install) needs a
	 * reserved fd: without EMU_REQ_NEWFD the reply is EMU_REP_NEED_FD (nothing ran; v0 = the
	 * new fd's open flags, e.g. O_CLOEXEC). The shim then RESERVEs an object connection and
	 * resends with EMU_REQ_NEWFD, the payload led by struct emu_newfd (then the window). If the
	 * call installed a file there the reply has EMU_REP_NEWFD, v0 = its st_mode, v1 = its rdev;
	 * otherwise the shim closes the reserved fd (put_unused_fd). */
	EMU_OP_IOCTL = 5,
	/* obj, a0 = count | EMU_FD_BITS(fd), a1 = position (EMU_REQ_POSITIONAL). reply: ret = bytes
	 * or -errno, payload = the bytes. */
	EMU_OP_READ = 6,
	/* obj, a0 = count | EMU_FD_BITS(fd), a1 = position (EMU_REQ_POSITIONAL), payload = the
	 * bytes. reply: ret = bytes written or -errno. */
	EMU_OP_WRITE = 7,
	/* obj, a0 = length, a1 = file offset, payload = emu_mmap_req. reply: ret = 0 or -errno,
	 * v1 = EMU_MMAP_FILE: v0 = offset in the backing file, payload = its path (NUL-terminated);
	 * v1 = EMU_MMAP_TRAPPED: v0 = region offset; the shim traps every access and forwards it as
	 * a positional READ/WRITE at region offset + offset into the mapping. */
	EMU_OP_MMAP = 8,
	/* payload = path (NUL-terminated); EMU_REQ_NOFOLLOW for lstat. reply: ret = 0 or -errno,
	 * v0 = st_mode, v1 = rdev. */
	EMU_OP_STAT = 9,
	/* payload = emu_poll_ent[n]. reply: payload = uint32_t revents[n]. */
	EMU_OP_POLL = 10,
	/* Bring the testbed up to date with the emulated devfs/sysfs before the shim uses it.
	 * a0 = the EMU_SYNC_* call about to use it, payload = the emulated path (both for the
	 * trace). reply: ret = 0. */
	EMU_OP_SYNC = 11,
	/* obj, a0 = offset (signed), a1 = whence (SEEK_SET/SEEK_CUR; SEEK_END is EINVAL): lseek of
	 * the object's file position. reply: ret = 0 or -errno, v0 = the new position. */
	EMU_OP_SEEK = 12,
	/* object connection: the first and only request on a connection made to receive a file an
	 * ioctl creates (see IOCTL). obj = the fd this connection is, a1 = st_ino of the client's
	 * socket. reply: ret = the object id the file will have, or -errno. Until a call installs a
	 * file on it, its EOF drops the reservation and nothing else. */
	EMU_OP_RESERVE = 13,
	/* Only when HELLO's reply had EMU_HELLO_NOTES (the server traces): a call on an emulated fd
	 * the server does not otherwise see, or whose result only the shim knows. obj = the object,
	 * a0 = EMU_NOTE_* | EMU_FD_BITS(fd), a1 = the call's result (-errno on failure), payload =
	 * struct emu_note (its args). reply: ret = 0. */
	EMU_OP_NOTE = 14,
};

/* HELLO reply v1. */
#define EMU_HELLO_NOTES 0x1u /* send NOTE for dup, mmap and munmap of emulated fds */

/* NOTE a0 bits 0-31, and what struct emu_note's args hold. */
enum emu_note_kind {
	EMU_NOTE_DUP = 1,    /* args: enum emu_dup_call, newfd asked for (dup2/dup3/F_DUPFD), flags */
	EMU_NOTE_MMAP = 2,   /* args: addr asked for, length, prot | flags << 32, offset */
	EMU_NOTE_MUNMAP = 3, /* args: addr, length */
	/* Always sent, tracing or not: the last of a trapped mapping of an iommufd fd went (the
	 * server drops the mapping's hold on its region's owner). args: offset, length. */
	EMU_NOTE_VMA_CLOSE = 4,
};

enum emu_dup_call {
	EMU_DUP_DUP = 1,
	EMU_DUP_DUP2 = 2,
	EMU_DUP_DUP3 = 3,
	EMU_DUP_F_DUPFD = 4,
	EMU_DUP_F_DUPFD_CLOEXEC = 5,
};

/* SYNC a0: the call the shim serves from the testbed. */
enum emu_sync_call {
	EMU_SYNC_OPENDIR = 1,
	EMU_SYNC_SCANDIR = 2,
	EMU_SYNC_READLINK = 3,
	EMU_SYNC_REALPATH = 4,
	EMU_SYNC_CHDIR = 5,
};

/* IOCTL/READ/WRITE a0 bits 32-63: the caller's fd number, only for the trace. */
#define EMU_FD_UNKNOWN 0xffffffffu
#define EMU_FD_BITS(fd) ((uint64_t)(uint32_t)(fd) << 32)

/* Request flags. */
#define EMU_REQ_WINDOW 0x1u     /* IOCTL: payload holds caller memory at arg */
#define EMU_REQ_POSITIONAL 0x2u /* READ/WRITE: pread/pwrite at a1, else the file position */
#define EMU_REQ_NOFOLLOW 0x4u   /* STAT: do not follow a symlink in the last component */
#define EMU_REQ_WINDOW_RO 0x8u  /* IOCTL: the window's memory is read-only (writes: EFAULT) */
#define EMU_REQ_NEWFD 0x10u     /* IOCTL: payload starts with emu_newfd, a reserved fd */
#define EMU_REQ_MMIO 0x20u      /* READ/WRITE: an access to a trapped mapping, not a pread/pwrite */

/* MMAP reply v1. */
#define EMU_MMAP_FILE 0u
#define EMU_MMAP_TRAPPED 1u

/* Reply flags. */
#define EMU_REP_STALE 0x1u /* obj is not (or no longer) a live object: drop the fd table entry */
#define EMU_REP_NEED_FD 0x2u /* IOCTL: reserve an fd and resend (nothing ran) */
#define EMU_REP_NEWFD 0x4u   /* IOCTL: a new file is installed on the reserved fd */

/* Limits. */
#define EMU_WINDOW_MIN 4u
#define EMU_WINDOW_MAX 4096u
#define EMU_RW_MAX (1u << 20)        /* one read/write moves at most this much (short count) */
#define EMU_MSG_MAX ((1u << 20) + 8192u)

struct emu_req {
	uint32_t len;
	uint16_t op;
	uint16_t flags;
	uint32_t seq;
	uint32_t obj;
	uint64_t a0;
	uint64_t a1;
};

struct emu_rep {
	uint32_t len;
	uint16_t op;
	uint16_t flags;
	uint32_t seq;
	int32_t ret;
	uint64_t v0;
	uint64_t v1;
};

/* The caller's credentials, read at the moment of each call. */
struct emu_creds {
	uint32_t pid;
	uint32_t tid;
	uint32_t uid;  /* real uid */
	uint32_t euid;
	uint32_t gid;
	uint32_t egid;
	uint32_t cap_eff_lo; /* capget() effective set, words 0 and 1 */
	uint32_t cap_eff_hi;
	uint64_t memlock; /* RLIMIT_MEMLOCK soft limit, ~0 for RLIM_INFINITY */
	uint64_t mm_cookie; /* random per address space: new after exec and in a fork child */
};

/* One run of window bytes written by the call; followed by len bytes, no padding. */
struct emu_seg {
	uint32_t off;
	uint32_t len;
};

struct emu_mmap_req {
	uint32_t prot;
	uint32_t flags;
};

/* IOCTL with EMU_REQ_NEWFD: the fd the shim reserved (RESERVE) for a file the call creates. */
struct emu_newfd {
	uint32_t fd;  /* its number in the caller's table */
	uint32_t obj; /* the object id RESERVE returned */
};

/* NOTE payload. */
struct emu_note {
	uint64_t arg0;
	uint64_t arg1;
	uint64_t arg2;
	uint64_t arg3;
};

struct emu_poll_ent {
	uint32_t obj;
	uint32_t events;
};

/* rdev on the wire: major in the high 32 bits, minor in the low 32 bits. */
#define EMU_RDEV(major, minor) (((uint64_t)(major) << 32) | (uint32_t)(minor))
#define EMU_RDEV_MAJOR(v) ((unsigned int)((v) >> 32))
#define EMU_RDEV_MINOR(v) ((unsigned int)((v) & 0xffffffffu))

_Static_assert(sizeof(struct emu_req) == 32, "emu_req is 32 bytes");
_Static_assert(sizeof(struct emu_rep) == 32, "emu_rep is 32 bytes");
_Static_assert(sizeof(struct emu_creds) == 48, "emu_creds is 48 bytes");
_Static_assert(sizeof(struct emu_seg) == 8, "emu_seg is 8 bytes");
_Static_assert(sizeof(struct emu_newfd) == 8, "emu_newfd is 8 bytes");
_Static_assert(sizeof(struct emu_note) == 32, "emu_note is 32 bytes");

#endif
