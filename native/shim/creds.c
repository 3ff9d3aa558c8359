/*
 * The caller's credentials, kept per thread and read again after any change the shim sees
 * (creds.h, decision 260). Reading them took four system calls per request (getresuid,
 * getresgid, capget, getrlimit: a tenth of a forwarded ioctl's round trip).
 */
#define _GNU_SOURCE
#include <linux/capability.h>
#include <sched.h>
#include <stdarg.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "creds.h"
#include "real.h"

/* libc exports these without declaring them. */
int capset(cap_user_header_t header, const cap_user_data_t data);

REAL_DECL(setuid);
REAL_DECL(setgid);
REAL_DECL(seteuid);
REAL_DECL(setegid);
REAL_DECL(setreuid);
REAL_DECL(setregid);
REAL_DECL(setresuid);
REAL_DECL(setresgid);
REAL_DECL(setfsuid);
REAL_DECL(setfsgid);
REAL_DECL(capset);
REAL_DECL(setrlimit);
REAL_DECL(setrlimit64);
REAL_DECL(prlimit);
REAL_DECL(prlimit64);
REAL_DECL(unshare);
REAL_DECL(setns);
REAL_DECL(syscall);

/* Bumped after every change the shim sees; a thread's copy is good while it carries the
 * current value. Starts at 1: a thread's copy of generation 0 was never read. */
static uint64_t generation = 1;

/* The calling thread's credentials as last read, and the generation they were read in. */
struct creds_copy {
	uint64_t generation;
	uint32_t uid, euid, gid, egid;
	uint32_t cap_eff_lo, cap_eff_hi;
	uint64_t memlock;
};
static __thread struct creds_copy t_creds;

static void read_creds(struct creds_copy *k)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	struct rlimit rl;
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	/* Both ids of a kind in one system call each. */
	if (getresuid(&ruid, &euid, &suid) != 0)
		ruid = euid = getuid();
	if (getresgid(&rgid, &egid, &sgid) != 0)
		rgid = egid = getgid();
	k->uid = ruid;
	k->euid = euid;
	k->gid = rgid;
	k->egid = egid;
	memset(data, 0, sizeof data);
	if (REAL(syscall)(SYS_capget, &hdr, data) == 0) {
		k->cap_eff_lo = data[0].effective;
		k->cap_eff_hi = data[1].effective;
	} else {
		k->cap_eff_lo = k->cap_eff_hi = 0;
	}
	k->memlock = getrlimit(RLIMIT_MEMLOCK, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
}

void creds_fill(struct emu_creds *c)
{
	/* The generation is taken before the reads: a change that lands during them bumps it past
	 * the one stored, and the next request reads again. */
	uint64_t now = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
	if (t_creds.generation != now) {
		struct creds_copy k;
		read_creds(&k);
		k.generation = now;
		t_creds = k;
	}
	c->uid = t_creds.uid;
	c->euid = t_creds.euid;
	c->gid = t_creds.gid;
	c->egid = t_creds.egid;
	c->cap_eff_lo = t_creds.cap_eff_lo;
	c->cap_eff_hi = t_creds.cap_eff_hi;
	c->memlock = t_creds.memlock;
}

void creds_changed(void)
{
	__atomic_add_fetch(&generation, 1, __ATOMIC_RELEASE);
}

void creds_prepare(void)
{
	(void)REAL(syscall);
}

/* The system calls that change a thread's or the process's credentials or RLIMIT_MEMLOCK. */
static int changes_creds(long nr)
{
	switch (nr) {
	case SYS_setuid:
	case SYS_setgid:
	case SYS_setreuid:
	case SYS_setregid:
	case SYS_setresuid:
	case SYS_setresgid:
	case SYS_setfsuid:
	case SYS_setfsgid:
	case SYS_capset:
	case SYS_setrlimit:
	case SYS_prlimit64:
	case SYS_unshare:
	case SYS_setns:
		return 1;
	default:
		return 0;
	}
}

/* Each wrapper: libc's call, then the change is announced (after it, whatever it returned). */
#define AFTER(call)                   \
	do {                          \
		int r_ = (call);      \
		creds_changed();      \
		return r_;            \
	} while (0)

EXPORT int setuid(uid_t uid)
{
	AFTER(REAL(setuid)(uid));
}

EXPORT int setgid(gid_t gid)
{
	AFTER(REAL(setgid)(gid));
}

EXPORT int seteuid(uid_t uid)
{
	AFTER(REAL(seteuid)(uid));
}

EXPORT int setegid(gid_t gid)
{
	AFTER(REAL(setegid)(gid));
}

EXPORT int setreuid(uid_t r, uid_t e)
{
	AFTER(REAL(setreuid)(r, e));
}

EXPORT int setregid(gid_t r, gid_t e)
{
	AFTER(REAL(setregid)(r, e));
}

EXPORT int setresuid(uid_t r, uid_t e, uid_t s)
{
	AFTER(REAL(setresuid)(r, e, s));
}

EXPORT int setresgid(gid_t r, gid_t e, gid_t s)
{
	AFTER(REAL(setresgid)(r, e, s));
}

/* A change of the fs uid from or to 0 changes the effective capabilities too. */
EXPORT int setfsuid(uid_t uid)
{
	AFTER(REAL(setfsuid)(uid));
}

EXPORT int setfsgid(gid_t gid)
{
	AFTER(REAL(setfsgid)(gid));
}

EXPORT int capset(cap_user_header_t header, const cap_user_data_t data)
{
	AFTER(REAL(capset)(header, data));
}

EXPORT int setrlimit(__rlimit_resource_t resource, const struct rlimit *rl)
{
	AFTER(REAL(setrlimit)(resource, rl));
}

EXPORT int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rl)
{
	AFTER(REAL(setrlimit64)(resource, rl));
}

EXPORT int prlimit(pid_t pid, __rlimit_resource_t resource, const struct rlimit *rl,
		   struct rlimit *old)
{
	AFTER(REAL(prlimit)(pid, resource, rl, old));
}

EXPORT int prlimit64(pid_t pid, __rlimit_resource_t resource, const struct rlimit64 *rl,
		     struct rlimit64 *old)
{
	AFTER(REAL(prlimit64)(pid, resource, rl, old));
}

/* A new user namespace (or entering one) changes the ids and capabilities the thread sees. */
EXPORT int unshare(int flags)
{
	AFTER(REAL(unshare)(flags));
}

EXPORT int setns(int fd, int nstype)
{
	AFTER(REAL(setns)(fd, nstype));
}

/* libcap and programs that change credentials with syscall(SYS_capset, ...) directly. Six
 * arguments are passed on whatever the call takes, as libc's syscall() reads them. */
EXPORT long syscall(long nr, ...)
{
	va_list ap;
	long a[6];
	long r;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	r = REAL(syscall)(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (changes_creds(nr))
		creds_changed();
	return r;
}
