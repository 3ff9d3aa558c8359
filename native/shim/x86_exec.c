/* Running a trapped instruction on a scratch buffer (x86_exec.h). */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "x86_exec.h"

#if defined(__x86_64__)

const int x86_greg_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
			     REG_RSI, REG_RDI, REG_R8,	REG_R9,	 REG_R10, REG_R11,
			     REG_R12, REG_R13, REG_R14, REG_R15};

/* The data page the trampoline works on (its first argument). */
struct exec_data {
	uint64_t gpr[16]; /* x86 order; rsp is neither loaded nor stored */
	uint64_t flags;
	uint64_t fpstate; /* the signal frame's XSAVE (or FXSAVE) area */
	uint32_t mask_lo, mask_hi; /* XSAVE's requested-feature bitmap */
	uint32_t fxsave_only;
	uint8_t pad[256 - 16 * 8 - 8 - 8 - 4 - 4 - 4];
	uint8_t scratch[192] __attribute__((aligned(64))); /* the operand at + (ea & 63) */
};
_Static_assert(__builtin_offsetof(struct exec_data, flags) == 128, "layout the asm uses");
_Static_assert(__builtin_offsetof(struct exec_data, fpstate) == 136, "layout the asm uses");
_Static_assert(__builtin_offsetof(struct exec_data, mask_lo) == 144, "layout the asm uses");
_Static_assert(__builtin_offsetof(struct exec_data, fxsave_only) == 152, "layout the asm uses");
_Static_assert(__builtin_offsetof(struct exec_data, scratch) == 256, "layout the asm uses");

/*
 * The trampoline's template, copied into each thread's code page (never run in place). It
 * saves the callee-saved registers, loads the program's vector state and flags and general
 * registers (rdi last), runs the slot (the rewritten instruction, then nops), stores everything
 * back and returns. The data pointer waits on the stack while rdi is the program's.
 */
__asm__(".pushsection .rodata\n"
	".balign 16\n"
	".hidden x86_exec_tramp_start\n"
	".hidden x86_exec_tramp_slot\n"
	".hidden x86_exec_tramp_end\n"
	"x86_exec_tramp_start:\n"
	"push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
	"push %rdi\n"
	"mov 136(%rdi), %rcx\n mov 144(%rdi), %eax\n mov 148(%rdi), %edx\n"
	"cmpl $0, 152(%rdi)\n jne 1f\n xrstor64 (%rcx)\n jmp 2f\n"
	"1: fxrstor64 (%rcx)\n"
	"2: pushq 128(%rdi)\n popfq\n"
	"mov 0(%rdi), %rax\n mov 8(%rdi), %rcx\n mov 16(%rdi), %rdx\n mov 24(%rdi), %rbx\n"
	"mov 40(%rdi), %rbp\n mov 48(%rdi), %rsi\n mov 64(%rdi), %r8\n mov 72(%rdi), %r9\n"
	"mov 80(%rdi), %r10\n mov 88(%rdi), %r11\n mov 96(%rdi), %r12\n mov 104(%rdi), %r13\n"
	"mov 112(%rdi), %r14\n mov 120(%rdi), %r15\n mov 56(%rdi), %rdi\n"
	"x86_exec_tramp_slot:\n"
	".fill 32, 1, 0x90\n"
	"xchg %rdi, (%rsp)\n"
	"mov %rax, 0(%rdi)\n mov %rcx, 8(%rdi)\n mov %rdx, 16(%rdi)\n mov %rbx, 24(%rdi)\n"
	"mov %rbp, 40(%rdi)\n mov %rsi, 48(%rdi)\n mov %r8, 64(%rdi)\n mov %r9, 72(%rdi)\n"
	"mov %r10, 80(%rdi)\n mov %r11, 88(%rdi)\n mov %r12, 96(%rdi)\n mov %r13, 104(%rdi)\n"
	"mov %r14, 112(%rdi)\n mov %r15, 120(%rdi)\n"
	"pop %rax\n mov %rax, 56(%rdi)\n"
	"pushfq\n popq 128(%rdi)\n"
	"mov 136(%rdi), %rcx\n mov 144(%rdi), %eax\n mov 148(%rdi), %edx\n"
	"cmpl $0, 152(%rdi)\n jne 3f\n xsave64 (%rcx)\n jmp 4f\n"
	"3: fxsave64 (%rcx)\n"
	"4: pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"ret\n"
	"x86_exec_tramp_end:\n"
	".popsection\n");

extern const uint8_t x86_exec_tramp_start[], x86_exec_tramp_slot[], x86_exec_tramp_end[];

#define SLOT_SIZE 32
#define PAGE 4096
#define FP_XSTATE_MAGIC1 0x46505853u
#define ARITH_FLAGS 0x8d5u /* CF PF AF ZF SF OF: what an instruction may change */

/* The thread's code page (then its data page); made at its first trapped access and kept for
 * the thread's life. RWX where the system allows it, else flipped RW/RX around each patch. */
static __thread uint8_t *t_code;
static __thread int t_flip;

static uint8_t *code_page(void)
{
	long p;
	if (t_code != NULL)
		return t_code;
	p = syscall(SYS_mmap, NULL, 2 * PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == -1) {
		p = syscall(SYS_mmap, NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == -1)
			return NULL;
		t_flip = 1;
	}
	memcpy((void *)p, x86_exec_tramp_start,
	       (size_t)(x86_exec_tramp_end - x86_exec_tramp_start));
	if (t_flip && syscall(SYS_mprotect, p, PAGE, PROT_READ | PROT_EXEC) != 0)
		return NULL;
	t_code = (uint8_t *)p;
	return t_code;
}

static int is_prefix(uint8_t b)
{
	return b == 0x66 || b == 0x67 || b == 0xf0 || b == 0xf2 || b == 0xf3 || b == 0x2e ||
	       b == 0x3e || b == 0x26 || b == 0x36 || b == 0x64 || b == 0x65;
}

/* The instruction with its memory operand made [rip + disp32] reaching target from the slot;
 * fs/gs overrides dropped (the target is a flat address). Its length. */
static int rewrite(const uint8_t *ip, const struct x86_insn *d, uint8_t *slot, const uint8_t *target)
{
	uint8_t out[SLOT_SIZE];
	int n = 0, i = 0, len;
	int32_t disp;
	for (; i < d->modrm_at && is_prefix(ip[i]); i++) {
		if (ip[i] != 0x64 && ip[i] != 0x65)
			out[n++] = ip[i];
	}
	for (; i < d->modrm_at; i++)
		out[n++] = ip[i];
	out[n++] = (uint8_t)((ip[d->modrm_at] & 0x38) | 0x05); /* mod 00, rm 101: RIP-relative */
	len = n + 4 + (d->len - d->imm_at);
	disp = (int32_t)(target - (slot + len));
	memcpy(out + n, &disp, 4);
	n += 4;
	for (i = d->imm_at; i < d->len; i++)
		out[n++] = ip[i];
	memset(out + n, 0x90, (size_t)(SLOT_SIZE - n));
	memcpy(slot, out, SLOT_SIZE);
	return len;
}

int x86_exec(ucontext_t *uc, const uint8_t *ip, const struct x86_insn *d, uintptr_t ea,
	     uint8_t *buf, uint8_t *written)
{
	greg_t *gregs = uc->uc_mcontext.gregs;
	uint8_t *code = code_page();
	struct exec_data *data;
	uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs, *operand, first[64];
	uint32_t magic;
	uint64_t xfeatures;
	void (*tramp)(struct exec_data *);
	int i, run, runs = d->masked ? 2 : 1;

	if (code == NULL || fp == NULL || d->size > 64)
		return -1;
	data = (struct exec_data *)(code + PAGE);
	memcpy(&magic, fp + 464, 4); /* the kernel's sw_reserved bytes: is this an XSAVE area? */
	memcpy(&xfeatures, fp + 472, 8);
	data->fxsave_only = magic != FP_XSTATE_MAGIC1;
	if (data->fxsave_only ? ((uintptr_t)fp & 15) != 0 : ((uintptr_t)fp & 63) != 0)
		return -1;
	data->fpstate = (uint64_t)(uintptr_t)fp;
	data->mask_lo = (uint32_t)xfeatures;
	data->mask_hi = (uint32_t)(xfeatures >> 32);
	operand = data->scratch + (ea & 63); /* the alignment the program's address had */

	if (t_flip && syscall(SYS_mprotect, code, PAGE, PROT_READ | PROT_WRITE) != 0)
		return -1;
	rewrite(ip, d, code + (x86_exec_tramp_slot - x86_exec_tramp_start), operand);
	if (t_flip && syscall(SYS_mprotect, code, PAGE, PROT_READ | PROT_EXEC) != 0)
		return -1;
	/* The copy is new code at an address that held other code: x86 keeps instruction fetch
	 * coherent with stores on the same core, and the page is this thread's alone. */
	tramp = (void (*)(struct exec_data *))(void *)code;

	for (run = 0; run < runs; run++) {
		for (i = 0; i < 16; i++)
			data->gpr[i] = (uint64_t)gregs[x86_greg_of[i]];
		data->flags = ((uint64_t)gregs[REG_EFL] & (ARITH_FLAGS | 0x400u)) | 2u;
		if (d->masked) /* two patterns: the bytes a masked store wrote agree afterwards */
			memset(operand, run == 0 ? 0x00 : 0xff, (size_t)d->size);
		else
			memcpy(operand, buf, (size_t)d->size);
		tramp(data);
		if (d->masked && run == 0)
			memcpy(first, operand, (size_t)d->size);
	}
	if (d->access & X86_STORE)
		memcpy(buf, operand, (size_t)d->size);
	if (d->masked) {
		for (i = 0; i < d->size; i++)
			written[i] = first[i] == operand[i];
	}
	for (i = 0; i < 16; i++) {
		if (i != 4)
			gregs[x86_greg_of[i]] = (greg_t)data->gpr[i];
	}
	gregs[REG_EFL] = (greg_t)(((uint64_t)gregs[REG_EFL] & ~(uint64_t)ARITH_FLAGS) |
				  (data->flags & ARITH_FLAGS));
	return 0;
}

#endif
