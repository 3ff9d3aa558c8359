/*
 * Running one decoded instruction (x86_decode.h) of the interrupted program on a scratch buffer
 * instead of its trapped memory operand (decisions.md 70). A copy of the instruction, its memory
 * operand rewritten to a RIP-relative one pointing at the scratch buffer, runs in a per-thread
 * executable page between a load and a save of the program's registers: the general registers
 * and flags from the signal context, the x87/SSE/AVX/AVX-512 state (opmasks included) with
 * XRSTOR/XSAVE from and to the signal frame, so that sigreturn resumes the program with what
 * the instruction computed. The CPU does the arithmetic, the masks and the flags; the trap only
 * moves the operand's bytes between the device and the buffer.
 *
 * Async-signal-safe: raw system calls (mmap, mprotect) only, no locks, no malloc.
 */
#ifndef IOMMUFD_EMU_SHIM_X86_EXEC_H
#define IOMMUFD_EMU_SHIM_X86_EXEC_H

#if defined(__x86_64__)
#include <stdint.h>
#include <sys/ucontext.h>

#include "x86_decode.h"

/* Runs the instruction at ip with its memory operand (at address ea, d->size bytes) replaced by
 * buf: a load reads buf, a store writes it. For a masked store (d->masked) written[i] is set to
 * whether the instruction wrote byte i. Registers, flags and vector state in uc are updated;
 * rip is not. 0, or -1 if the instruction cannot be run here (no executable page, a signal
 * frame without a usable FPU state). */
int x86_exec(ucontext_t *uc, const uint8_t *ip, const struct x86_insn *d, uintptr_t ea,
	     uint8_t *buf, uint8_t *written);

/* x86 register number (0 rax ... 15 r15) -> its slot in gregs. */
extern const int x86_greg_of[16];
#endif

#endif
