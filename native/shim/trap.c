/*
 * Trapped mappings and the SIGSEGV handler (trap.h).
 *
 * Signal safety. The handler runs on the faulting thread, which may be anywhere in the program
 * (but never inside the shim: every shim call runs with all signals blocked). What it reaches:
 * the trap list (atomics; the list's lock is only taken by mmap/munmap, never by the handler),
 * x86_decode.c (pure), and one call through transport.c with in_signal set: system calls, the
 * thread's own buffers, no malloc (a longer reply is a protocol error), no pthread_setspecific,
 * no locks (HELLO stores the prefixes lock-free). Its messages go through say.c (no stdio). Every
 * libc function it calls through REAL() is resolved before the handler is installed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/ucontext.h>

#include "real.h"
#include "say.h"
#include "transport.h"
#include "trap.h"
#include "x86_decode.h"

#define MAX_TRAPS 64

struct trap {
	int used; /* atomic; the rest is written before used is set */
	uintptr_t start;
	size_t len;
	uint64_t region_offset;
	uint32_t obj;
	int fd;	     /* the shim's copy of the object fd: keeps the file alive like vm_file */
	int prog_fd; /* the program's fd it was mapped through, for the trace */
};

static struct trap traps[MAX_TRAPS];
static pthread_mutex_t trap_lock = PTHREAD_MUTEX_INITIALIZER; /* mmap/munmap only */
/* The program's own SIGSEGV disposition once the shim's handler is installed: sigaction() and
 * signal() for SIGSEGV then read and set this instead, and faults outside trapped ranges go to
 * it, so the program's handler and the trap handler chain. */
static struct sigaction old_segv;
static int segv_installed; /* atomic */

/* The default disposition back, for a fault that must now kill the program. */
static void segv_default(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	REAL(sigaction)(SIGSEGV, &sa, NULL);
}

static const struct trap *trap_at(uintptr_t addr)
{
	int i;
	for (i = 0; i < MAX_TRAPS; i++) {
		if (__atomic_load_n(&traps[i].used, __ATOMIC_ACQUIRE) && addr >= traps[i].start &&
		    addr - traps[i].start < traps[i].len)
			return &traps[i];
	}
	return NULL;
}

/* A fault outside every trapped range: what would have happened without the shim. */
static void chain_segv(int sig, siginfo_t *si, void *ctx)
{
	struct sigaction prog = old_segv;
	if (prog.sa_flags & SA_RESETHAND) {
		memset(&old_segv, 0, sizeof old_segv);
		old_segv.sa_handler = SIG_DFL;
	}
	if ((prog.sa_flags & SA_SIGINFO) && prog.sa_sigaction != NULL)
		prog.sa_sigaction(sig, si, ctx);
	else if (!(prog.sa_flags & SA_SIGINFO) && prog.sa_handler != SIG_DFL &&
		 prog.sa_handler != SIG_IGN)
		prog.sa_handler(sig);
	else
		segv_default(); /* the access faults again, fatally */
}

/* One register access: a positional READ/WRITE of `size` bytes of the region. */
static int trap_access(const struct trap *t, uint64_t pos, int store, uint64_t *value, int size)
{
	struct call c;
	long r;
	call_begin(&c, store ? EMU_OP_WRITE : EMU_OP_READ);
	c.in_signal = 1;
	c.req.flags = EMU_REQ_POSITIONAL | EMU_REQ_MMIO;
	c.req.obj = t->obj;
	c.req.a0 = (uint64_t)size | EMU_FD_BITS(t->prog_fd);
	c.req.a1 = pos;
	if (store) {
		c.part[0] = value;
		c.part_len[0] = (size_t)size;
	}
	r = call_send(&c);
	if (r == 0) {
		r = c.rep.ret;
		if (r == size && !store) {
			*value = 0;
			memcpy(value, c.data, (size_t)size);
		} else if (r >= 0 && r != size) {
			r = -EIO;
		}
	}
	call_end(&c);
	return r < 0 ? (int)r : 0;
}

#if defined(__x86_64__)

static void cannot_emulate(const uint8_t *ip, const void *addr)
{
	struct say s;
	int i;
	say_start(&s);
	say_str(&s, "cannot emulate the instruction at 0x");
	say_hex(&s, (uint64_t)(uintptr_t)ip, 1);
	say_str(&s, " (");
	for (i = 0; i < 4; i++) {
		say_str(&s, i > 0 ? " " : "");
		say_hex(&s, ip[i], 2);
	}
	say_str(&s, ") accessing trapped device memory at 0x");
	say_hex(&s, (uint64_t)(uintptr_t)addr, 1);
	say_end(&s);
}

static void segv_handler(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	greg_t *gregs = uc->uc_mcontext.gregs;
	const uint8_t *ip = (const uint8_t *)gregs[REG_RIP];
	uintptr_t addr = (uintptr_t)si->si_addr;
	const struct trap *t = trap_at(addr);
	struct mmio_insn d;
	uint64_t value;
	int saved = errno;

	if (t == NULL) {
		chain_segv(sig, si, ctx);
	} else if (x86_decode_mmio(ip, &d) != 0 || addr + (uintptr_t)d.size > t->start + t->len) {
		cannot_emulate(ip, si->si_addr);
		segv_default();
	} else {
		value = d.store ? x86_store_value(gregs, &d) : 0;
		if (trap_access(t, t->region_offset + (addr - t->start), d.store, &value, d.size) != 0 &&
		    !d.store)
			value = ~0ull; /* a read the device did not answer: all ones, a PCI abort */
		if (!d.store)
			x86_load_result(gregs, &d, value);
		gregs[REG_RIP] += d.len;
	}
	errno = saved;
}

#define TRAPPING_SUPPORTED 1

#else

static void segv_handler(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	(void)ctx;
}

#define TRAPPING_SUPPORTED 0

#endif

/* Installs the handler once, everything it calls resolved first. Under trap_lock. */
static int install_handler(void)
{
	struct sigaction sa;
	if (__atomic_load_n(&segv_installed, __ATOMIC_ACQUIRE))
		return 0;
	transport_prepare();
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = segv_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigfillset(&sa.sa_mask);
	if (REAL(sigaction)(SIGSEGV, &sa, &old_segv) != 0)
		return -errno;
	__atomic_store_n(&segv_installed, 1, __ATOMIC_RELEASE);
	return 0;
}

long trap_map(int fd, const struct fdent *e, void *addr, size_t len, int flags,
	      uint64_t region_offset, void **out)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t span = (len + (size_t)page - 1) & ~((size_t)page - 1);
	int keep = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);
	struct trap *t = NULL;
	void *p;
	int copy, i, err;

	if (!TRAPPING_SUPPORTED)
		return -ENODEV;
	pthread_mutex_lock(&trap_lock);
	for (i = 0; i < MAX_TRAPS && t == NULL; i++) {
		if (!traps[i].used)
			t = &traps[i];
	}
	err = t == NULL ? -ENOMEM : install_handler();
	if (err != 0)
		goto out;
	copy = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 256);
	if (copy < 0) {
		err = -errno;
		goto out;
	}
	p = REAL(mmap)(addr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | keep, -1,
		       0);
	if (p == MAP_FAILED) {
		err = -errno;
		REAL(close)(copy);
		goto out;
	}
	fd_mark_shim(copy, FD_INTERNAL);
	t->start = (uintptr_t)p;
	t->len = span;
	t->region_offset = region_offset;
	t->obj = e->obj;
	t->fd = copy;
	t->prog_fd = fd;
	__atomic_store_n(&t->used, 1, __ATOMIC_RELEASE);
	*out = p;
out:
	pthread_mutex_unlock(&trap_lock);
	return err;
}

void trap_unmap(uintptr_t start, size_t len)
{
	uintptr_t end = start + len;
	int i;
	if (!__atomic_load_n(&segv_installed, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&trap_lock);
	for (i = 0; i < MAX_TRAPS; i++) {
		struct trap *t = &traps[i];
		uintptr_t ts, te;
		if (!t->used)
			continue;
		ts = t->start;
		te = t->start + t->len;
		if (end <= ts || start >= te)
			continue;
		if (start <= ts && end >= te) {
			uint32_t obj = t->obj;
			__atomic_store_n(&t->used, 0, __ATOMIC_RELEASE);
			fd_unmark_shim(t->fd);
			REAL(close)(t->fd);
			pthread_mutex_unlock(&trap_lock);
			fd_close_barrier(obj, -1);
			pthread_mutex_lock(&trap_lock);
		} else if (start <= ts) {
			t->region_offset += end - ts;
			t->len = te - end;
			t->start = end;
		} else if (end >= te) {
			t->len = start - ts;
		}
	}
	pthread_mutex_unlock(&trap_lock);
}

/* Once the shim's handler is installed, the program's sigaction() and signal() for SIGSEGV
 * change the handler the shim chains to instead of replacing it. */
EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *oldact)
{
	struct sigaction prev;
	if (sig != SIGSEGV || !__atomic_load_n(&segv_installed, __ATOMIC_ACQUIRE))
		return REAL(sigaction)(sig, act, oldact);
	prev = old_segv;
	if (act != NULL)
		old_segv = *act;
	if (oldact != NULL)
		*oldact = prev;
	return 0;
}

EXPORT __sighandler_t signal(int sig, __sighandler_t handler)
{
	struct sigaction prev = old_segv;
	if (sig != SIGSEGV || !__atomic_load_n(&segv_installed, __ATOMIC_ACQUIRE))
		return REAL(signal)(sig, handler);
	if (handler == SIG_ERR) {
		errno = EINVAL;
		return SIG_ERR;
	}
	memset(&old_segv, 0, sizeof old_segv);
	old_segv.sa_handler = handler;
	old_segv.sa_flags = SA_RESTART;
	return (prev.sa_flags & SA_SIGINFO) ? (__sighandler_t)(void *)prev.sa_sigaction
					    : prev.sa_handler;
}
