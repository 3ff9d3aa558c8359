/*
 * Decoding the x86-64 instructions the MMIO trap serves: where the instruction's memory operand
 * is (ModRM, SIB, displacement, RIP-relative; legacy, REX, VEX and EVEX encodings), how many
 * bytes it reads or writes there, and where the ModRM and the immediate sit, so that x86_exec.c
 * can run a copy of the instruction on a scratch buffer (decisions.md 70). The trap does not
 * need to know what an instruction computes, only what memory it touches:
 *
 * - mov 1/2/4/8 (88-8b, c6, c7), movzx/movsx/movsxd, movnti, movbe, cmovcc, setcc;
 * - ALU ops with a memory operand (add/or/adc/sbb/and/sub/xor/cmp, test, not/neg, mul/div,
 *   inc/dec, shifts, xchg, xadd, cmpxchg, bt* with an immediate): loads, or read-modify-writes;
 * - SSE/AVX/AVX2/AVX-512 moves (movups/movaps/movdqa/movdqu/movntdq/movntps/movntdqa,
 *   vmovdqu8..64, vmovdqa32/64, movd/movq/movss/movsd/movlps/movhps, broadcasts, inserts and
 *   extracts of 128-bit lanes) and the SSE/AVX integer and compare ops that read memory
 *   (pcmpeqb, vpcmpnequb, vpxorq, vpternlogd, ptest, pminub, ...), with AVX-512 masks and
 *   embedded broadcast;
 * - the string moves movs, stos and lods, with or without rep (served element by element).
 *
 * Refused: anything else, address-size (67) overrides, gathers/scatters, instructions that use
 * rsp as a register operand, bt with a register bit offset (it reaches outside the operand).
 *
 * Pure functions of the instruction bytes: async-signal-safe, unit tested (test/x86_decode.c).
 */
#ifndef IOMMUFD_EMU_SHIM_X86_DECODE_H
#define IOMMUFD_EMU_SHIM_X86_DECODE_H

#include <stdint.h>

#define X86_LOAD 1  /* reads its memory operand */
#define X86_STORE 2 /* writes it (both: a read-modify-write) */

/* Segment overrides that change the address (fs/gs; the others are flat in 64-bit mode). */
enum x86_seg { X86_SEG_NONE, X86_SEG_FS, X86_SEG_GS };

/* String instructions, served element by element instead of by running a copy. */
enum x86_string { X86_STR_NONE, X86_STR_MOVS, X86_STR_STOS, X86_STR_LODS };

struct x86_insn {
	int len;      /* instruction bytes */
	int access;   /* X86_LOAD, X86_STORE or both */
	int size;     /* bytes of the memory operand */
	int masked;   /* a store that may write only some of them (AVX-512 mask, vmaskmov) */
	int modrm_at; /* offset of the ModRM byte */
	int imm_at;   /* offset of the immediate (== len when there is none) */
	/* The memory operand: base + index * scale + disp (or rip + len + disp). */
	int base;     /* 0-15, -1 for none */
	int index;    /* 0-15, -1 for none */
	int scale;    /* 1, 2, 4, 8 */
	int64_t disp; /* EVEX's compressed disp8 already scaled */
	int rip_relative;
	enum x86_seg seg;
	/* String instructions: the element size and whether a rep prefix repeats it rcx times. */
	enum x86_string string;
	int rep;
};

/* Decodes the instruction at ip (at most 15 bytes are read). 0, or -1 if the trap cannot
 * serve it. */
int x86_decode(const uint8_t *ip, struct x86_insn *d);

#endif
