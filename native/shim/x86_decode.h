/*
 * The x86-64 instructions the MMIO trap emulates: what compilers emit for `volatile` loads and
 * stores of 1, 2, 4 and 8 bytes. mov (88 89 8a 8b c6 c7) and movzx/movsx (0f b6 b7 be bf), with
 * operand-size (66), REX and segment prefixes, any memory operand (ModRM, SIB, disp8/32,
 * RIP-relative). Everything else is refused: SSE/AVX moves (movdqu, movups, vmovdqu: what glibc's
 * memcpy uses), string moves (rep movs), read-modify-write ops (add, xchg, lock prefixes).
 *
 * Pure functions of the instruction bytes and a register array: async-signal-safe, and unit
 * tested (test/x86_decode.c).
 */
#ifndef IOMMUFD_EMU_SHIM_X86_DECODE_H
#define IOMMUFD_EMU_SHIM_X86_DECODE_H

#include <stdint.h>

struct mmio_insn {
	int len;	 /* instruction bytes */
	int store;	 /* 1: writes memory; 0: loads into reg */
	int size;	 /* bytes accessed */
	int dest_size;	 /* register bytes a load writes (movzx/movsx widen) */
	int sign_extend; /* movsx */
	int reg;	 /* register operand (x86 numbering 0-15), -1 for an immediate */
	int high8;	 /* reg 4-7 mean AH, CH, DH, BH */
	uint64_t imm;	 /* the immediate of c6/c7 (sign-extended for REX.W) */
};

/* Decodes the instruction at ip. 0, or -1 if it is not one the trap emulates. */
int x86_decode_mmio(const uint8_t *ip, struct mmio_insn *d);

#if defined(__x86_64__)
#include <sys/ucontext.h>
/* What a store writes: the register operand's value (AH..BH shifted down) or the immediate. */
uint64_t x86_store_value(const greg_t *gregs, const struct mmio_insn *d);
/* Puts a load's result v in the destination register as the CPU would: 8- and 16-bit writes
 * keep the rest, 32-bit writes clear the top half, movsx/movzx widen. */
void x86_load_result(greg_t *gregs, const struct mmio_insn *d, uint64_t v);
#endif

#endif
