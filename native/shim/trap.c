/*
 * Trapped mappings and the SIGSEGV handler (trap.h).
 *
 * Signal safety. The handler runs on the faulting thread, which may be anywhere in the program
 * (but never inside the shim: every shim call runs with all signals blocked). What it reaches:
 * the trap list (atomics; the list's lock is only taken by mmap/munmap, never by the handler),
 * x86_decode.c (pure), x86_exec.c (raw system calls), and one call through transport.c with in_signal set: system calls, the
 * thread's own buffers, no malloc (a longer reply is a protocol error), no pthread_setspecific,
 * no locks (HELLO stores the prefixes lock-free). Its messages go through say.c (no stdio). Every
 * libc function it calls through REAL() is resolved before the handler is installed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <asm/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include "real.h"
#include "say.h"
#include "transport.h"
#include "trap.h"
#include "x86_decode.h"
#include "x86_exec.h"

#define MAX_TRAPS 64

struct trap {
	int used; /* atomic; the rest is written before used is set */
	uintptr_t start;
	size_t len;
	uint64_t region_offset;
	uint32_t obj;
	int fd;	     /* the shim's copy of the object fd: keeps the file alive like vm_file */
	int prog_fd; /* the program's fd it was mapped through, for the trace */
	int notes_close;     /* an iommufd's: say EMU_NOTE_VMA_CLOSE when the last piece goes */
	uint64_t map_offset; /* the offset and length as mapped, for that note */
	size_t map_len;
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

#if defined(__x86_64__)

/* One access to the device: a positional READ or WRITE of n bytes of the region, which the
 * server splits into naturally aligned 8/4/2/1-byte pieces as the bus delivers them. */
static int trap_access(const struct trap *t, uint64_t pos, int store, uint8_t *buf, int n)
{
	struct call c;
	long r;
	call_begin(&c, store ? EMU_OP_WRITE : EMU_OP_READ);
	c.in_signal = 1;
	c.req.flags = EMU_REQ_POSITIONAL | EMU_REQ_MMIO;
	c.req.obj = t->obj;
	c.req.a0 = (uint64_t)n | EMU_FD_BITS(t->prog_fd);
	c.req.a1 = pos;
	if (store) {
		c.part[0] = buf;
		c.part_len[0] = (size_t)n;
	}
	r = call_send(&c);
	if (r == 0) {
		r = c.rep.ret;
		if (r == n && !store)
			memcpy(buf, c.data, (size_t)n);
		else if (r >= 0 && r != n)
			r = -EIO;
	}
	call_end(&c);
	return r < 0 ? (int)r : 0;
}

/* The trap holding all of [addr, addr + n), or NULL. */
static const struct trap *trap_holding(uintptr_t addr, size_t n)
{
	const struct trap *t = trap_at(addr);
	return t != NULL && addr + n - t->start <= t->len ? t : NULL;
}

/* A load the device did not answer reads all ones, as a PCI master abort does. */
static void device_read(const struct trap *t, uintptr_t addr, uint8_t *buf, int n)
{
	if (trap_access(t, t->region_offset + (addr - t->start), 0, buf, n) != 0)
		memset(buf, 0xff, (size_t)n);
}

static void device_write(const struct trap *t, uintptr_t addr, uint8_t *buf, int n)
{
	trap_access(t, t->region_offset + (addr - t->start), 1, buf, n);
}

static void cannot_emulate(const uint8_t *ip, const void *addr)
{
	struct say s;
	int i, n = 15;
	uintptr_t page_left = 4096 - ((uintptr_t)ip & 4095);
	if ((uintptr_t)n > page_left)
		n = (int)page_left; /* the next page may not be mapped */
	say_start(&s);
	say_str(&s, "cannot emulate the instruction at 0x");
	say_hex(&s, (uint64_t)(uintptr_t)ip, 1);
	say_str(&s, " (bytes");
	for (i = 0; i < n; i++) {
		say_str(&s, " ");
		say_hex(&s, ip[i], 2);
	}
	say_str(&s, ") accessing trapped device memory at 0x");
	say_hex(&s, (uint64_t)(uintptr_t)addr, 1);
	say_str(&s, "; the program is stopped with SIGSEGV (docs/shim.md: MMIO)");
	say_end(&s);
}

static uint64_t segment_base(enum x86_seg seg)
{
	unsigned long base = 0;
	if (seg != X86_SEG_NONE)
		syscall(SYS_arch_prctl, seg == X86_SEG_FS ? ARCH_GET_FS : ARCH_GET_GS, &base);
	return base;
}

static uintptr_t effective_address(const greg_t *gregs, const uint8_t *ip,
				   const struct x86_insn *d)
{
	uint64_t ea = (uint64_t)d->disp + segment_base(d->seg);
	if (d->rip_relative)
		ea += (uint64_t)(uintptr_t)ip + (uint64_t)d->len;
	if (d->base >= 0)
		ea += (uint64_t)gregs[x86_greg_of[d->base]];
	if (d->index >= 0)
		ea += (uint64_t)gregs[x86_greg_of[d->index]] * (uint64_t)d->scale;
	return (uintptr_t)ea;
}

/* One element of a string instruction, from or to device or ordinary memory. */
static int element(uintptr_t addr, int store, uint8_t *buf, int n)
{
	const struct trap *t = trap_holding(addr, (size_t)n);
	if (t != NULL) {
		if (store)
			device_write(t, addr, buf, n);
		else
			device_read(t, addr, buf, n);
	} else if (trap_at(addr) != NULL || trap_at(addr + (uintptr_t)n - 1) != NULL) {
		return -1; /* straddles a mapping's edge */
	} else if (store) {
		memcpy((void *)addr, buf, (size_t)n);
	} else {
		memcpy(buf, (const void *)addr, (size_t)n);
	}
	return 0;
}

/* movs, stos, lods (rep: rcx times), one element at a time in the direction DF says, as the
 * CPU accesses uncached memory. */
static int serve_string(greg_t *gregs, const struct x86_insn *d)
{
	uint64_t count = d->rep ? (uint64_t)gregs[REG_RCX] : 1;
	int64_t step = ((uint64_t)gregs[REG_EFL] & 0x400) ? -d->size : d->size;
	uint64_t v;
	uint64_t *rax = (uint64_t *)&gregs[REG_RAX];

	for (; count > 0; count--) {
		v = *rax;
		if (d->string != X86_STR_STOS &&
		    element((uintptr_t)gregs[REG_RSI], 0, (uint8_t *)&v, d->size) != 0)
			return -1;
		if (d->string != X86_STR_LODS &&
		    element((uintptr_t)gregs[REG_RDI], 1, (uint8_t *)&v, d->size) != 0)
			return -1;
		if (d->string == X86_STR_LODS) /* a 4-byte load clears the top half, narrower keep it */
			*rax = d->size == 8 ? v : d->size == 4 ? (uint32_t)v
			     : (*rax & ~((1ull << (8 * d->size)) - 1)) | (v & ((1ull << (8 * d->size)) - 1));
		if (d->string != X86_STR_STOS)
			gregs[REG_RSI] += step;
		if (d->string != X86_STR_LODS)
			gregs[REG_RDI] += step;
		if (d->rep)
			gregs[REG_RCX]--;
	}
	return 0;
}

/* Serves the instruction at ip that faulted at addr. 0, or -1 if it cannot. */
static int serve(ucontext_t *uc, const uint8_t *ip, uintptr_t addr)
{
	greg_t *gregs = uc->uc_mcontext.gregs;
	struct x86_insn d;
	const struct trap *t;
	uint8_t buf[64], written[64];
	uintptr_t ea;
	int i, j;

	if (x86_decode(ip, &d) != 0)
		return -1;
	if (d.string != X86_STR_NONE) {
		if (serve_string(gregs, &d) != 0)
			return -1;
		gregs[REG_RIP] += d.len;
		return 0;
	}
	ea = effective_address(gregs, ip, &d);
	if (addr < ea || addr - ea >= (uintptr_t)d.size)
		return -1; /* the fault is not this operand's */
	t = trap_holding(ea, (size_t)d.size);
	if (t == NULL)
		return -1; /* partly outside the mapping */
	if (d.access & X86_LOAD)
		device_read(t, ea, buf, d.size);
	if (x86_exec(uc, ip, &d, ea, buf, written) != 0)
		return -1;
	if ((d.access & X86_STORE) && !d.masked) {
		device_write(t, ea, buf, d.size);
	} else if (d.access & X86_STORE) { /* each run of bytes the mask let through */
		for (i = 0; i < d.size; i = j) {
			for (; i < d.size && !written[i]; i++)
				;
			for (j = i; j < d.size && written[j]; j++)
				;
			if (j > i)
				device_write(t, ea + (uintptr_t)i, buf + i, j - i);
		}
	}
	gregs[REG_RIP] += d.len;
	return 0;
}

static void segv_handler(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	const uint8_t *ip = (const uint8_t *)uc->uc_mcontext.gregs[REG_RIP];
	uintptr_t addr = (uintptr_t)si->si_addr;
	int saved = errno;

	if (trap_at(addr) == NULL) {
		chain_segv(sig, si, ctx);
	} else if (serve(uc, ip, addr) != 0) {
		cannot_emulate(ip, si->si_addr);
		segv_default();
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

int trap_notes_close(const struct fdent *e)
{
	return (e->mode & S_IFMT) == S_IFCHR && e->rdev == EMU_RDEV(10, 123);
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
	t->notes_close = trap_notes_close(e);
	t->map_offset = region_offset;
	t->map_len = len;
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
			/* While the shim's copy still keeps the file open. */
			if (t->notes_close)
				call_note_always(EMU_NOTE_VMA_CLOSE, t->prog_fd, obj, 0, t->map_offset,
						 t->map_len, 0, 0);
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

/* exit(): the address space is about to go with the process's mappings. Telling the server now
 * makes it let go of what the mappings of iommufd regions hold before the parent's waitpid()
 * returns, as Linux's exit_mm() does; _exit() and a fatal signal leave that to the server seeing
 * the process gone. The ranges stay trapped for what still runs. */
__attribute__((destructor)) static void trap_exit(void)
{
	int i;
	if (!__atomic_load_n(&segv_installed, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&trap_lock);
	for (i = 0; i < MAX_TRAPS; i++) {
		struct trap *t = &traps[i];
		if (!t->used || !t->notes_close)
			continue;
		t->notes_close = 0;
		call_note_always(EMU_NOTE_VMA_CLOSE, t->prog_fd, t->obj, 0, t->map_offset, t->map_len,
				 0, 0);
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
