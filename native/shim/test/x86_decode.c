/*
 * Table-driven test of the MMIO trap's instruction decoder (../x86_decode.c): instruction bytes
 * -> length, direction, access width, register or immediate; and what a load does to the
 * destination register. Each row's bytes come from an assembler listing (GNU as, Intel syntax in
 * the comment). Prints "FAIL ..." per failed row, "ok x86_decode" at the end; exits with the
 * number of failures. Run by src/server/shim-units.test.ts.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ucontext.h>

#include "../x86_decode.h"
#include "check.h"

enum { LOAD = 0, STORE = 1, REFUSED = 2 };
#define IMM (-1) /* reg: the stored value is the immediate */

struct row {
	const char *asm_text;
	uint8_t bytes[15];
	int dir; /* LOAD, STORE or REFUSED */
	int len, size, dest_size, sign_extend, reg, high8;
	uint64_t imm;
};

static const struct row rows[] = {
	/* loads */
	{"mov eax, [rdi]", {0x8b, 0x07}, LOAD, 2, 4, 4, 0, 0, 0, 0},
	{"mov rax, [rdi]", {0x48, 0x8b, 0x07}, LOAD, 3, 8, 8, 0, 0, 0, 0},
	{"mov ax, [rdi]", {0x66, 0x8b, 0x07}, LOAD, 3, 2, 2, 0, 0, 0, 0},
	{"mov al, [rdi]", {0x8a, 0x07}, LOAD, 2, 1, 1, 0, 0, 0, 0},
	{"mov ah, [rdi]", {0x8a, 0x27}, LOAD, 2, 1, 1, 0, 4, 1, 0},
	{"mov spl, [rdi]", {0x40, 0x8a, 0x27}, LOAD, 3, 1, 1, 0, 4, 0, 0},
	{"mov r9d, [rdi+0x10]", {0x44, 0x8b, 0x4f, 0x10}, LOAD, 4, 4, 4, 0, 9, 0, 0},
	{"mov r15, [r8+r9*8+0x12345678]", {0x4f, 0x8b, 0xbc, 0xc8, 0x78, 0x56, 0x34, 0x12}, LOAD,
	 8, 8, 8, 0, 15, 0, 0},
	{"mov ecx, [rip+0x100]", {0x8b, 0x0d, 0x00, 0x01, 0x00, 0x00}, LOAD, 6, 4, 4, 0, 1, 0, 0},
	{"mov edx, [0x1000] (SIB, no base)", {0x8b, 0x14, 0x25, 0x00, 0x10, 0x00, 0x00}, LOAD, 7, 4,
	 4, 0, 2, 0, 0},
	{"mov eax, fs:[rdi]", {0x64, 0x8b, 0x07}, LOAD, 3, 4, 4, 0, 0, 0, 0},
	{"movzx eax, byte [rdi]", {0x0f, 0xb6, 0x07}, LOAD, 3, 1, 4, 0, 0, 0, 0},
	{"movzx esp, byte [rdi] (no AH: 32-bit destination)", {0x0f, 0xb6, 0x27}, LOAD, 3, 1, 4, 0,
	 4, 0, 0},
	{"movzx rax, word [rdi]", {0x48, 0x0f, 0xb7, 0x07}, LOAD, 4, 2, 8, 0, 0, 0, 0},
	{"movzx ax, byte [rdi]", {0x66, 0x0f, 0xb6, 0x07}, LOAD, 4, 1, 2, 0, 0, 0, 0},
	{"movsx eax, byte [rdi]", {0x0f, 0xbe, 0x07}, LOAD, 3, 1, 4, 1, 0, 0, 0},
	{"movsx rcx, word [rdi+8]", {0x48, 0x0f, 0xbf, 0x4f, 0x08}, LOAD, 5, 2, 8, 1, 1, 0, 0},
	/* stores */
	{"mov [rdi+0x10], eax", {0x89, 0x47, 0x10}, STORE, 3, 4, 4, 0, 0, 0, 0},
	{"mov [rdi], rsi", {0x48, 0x89, 0x37}, STORE, 3, 8, 8, 0, 6, 0, 0},
	{"mov [rdi+0x100], r8d", {0x44, 0x89, 0x87, 0x00, 0x01, 0x00, 0x00}, STORE, 7, 4, 4, 0, 8,
	 0, 0},
	{"mov [rsp], cl", {0x88, 0x0c, 0x24}, STORE, 3, 1, 4, 0, 1, 0, 0},
	{"mov [rdi], bh", {0x88, 0x3f}, STORE, 2, 1, 4, 0, 7, 1, 0},
	{"mov [rdi], dil", {0x40, 0x88, 0x3f}, STORE, 3, 1, 4, 0, 7, 0, 0},
	{"mov [rdi], cx (cs: 66 prefixes in any order)", {0x2e, 0x66, 0x89, 0x0f}, STORE, 4, 2, 2,
	 0, 1, 0, 0},
	{"mov dword [rdi], 0x12345678", {0xc7, 0x07, 0x78, 0x56, 0x34, 0x12}, STORE, 6, 4, 4, 0,
	 IMM, 0, 0x12345678},
	{"mov qword [rdi], -1", {0x48, 0xc7, 0x07, 0xff, 0xff, 0xff, 0xff}, STORE, 7, 8, 8, 0, IMM,
	 0, 0xffffffffffffffffull},
	{"mov word [rdi+4], 0x1234", {0x66, 0xc7, 0x47, 0x04, 0x34, 0x12}, STORE, 6, 2, 2, 0, IMM, 0,
	 0x1234},
	{"mov byte [rdi+4], 0xab", {0xc6, 0x47, 0x04, 0xab}, STORE, 4, 1, 4, 0, IMM, 0, 0xab},
	/* refused: not a plain load or store of a general register */
	{"add [rdi], eax", {0x01, 0x07}, .dir = REFUSED},
	{"mov eax, ecx (no memory operand)", {0x8b, 0xc1}, .dir = REFUSED},
	{"c7 /1 (undefined)", {0xc7, 0x0f, 0, 0, 0, 0}, .dir = REFUSED},
	{"xchg [rdi], eax", {0x87, 0x07}, .dir = REFUSED},
	{"lock xadd [rdi], eax", {0xf0, 0x0f, 0xc1, 0x07}, .dir = REFUSED},
	{"movups xmm0, [rdi] (glibc memcpy)", {0x0f, 0x10, 0x07}, .dir = REFUSED},
	{"movups [rdi], xmm0", {0x0f, 0x11, 0x07}, .dir = REFUSED},
	{"movdqu xmm0, [rdi]", {0xf3, 0x0f, 0x6f, 0x07}, .dir = REFUSED},
	{"movdqu [rdi], xmm0", {0xf3, 0x0f, 0x7f, 0x07}, .dir = REFUSED},
	{"movdqa xmm0, [rdi]", {0x66, 0x0f, 0x6f, 0x07}, .dir = REFUSED},
	{"vmovdqu xmm0, [rdi]", {0xc5, 0xfa, 0x6f, 0x07}, .dir = REFUSED},
	{"vmovdqu ymm0, [rdi]", {0xc5, 0xfe, 0x6f, 0x07}, .dir = REFUSED},
	{"vmovdqu [rdi], ymm0", {0xc5, 0xfe, 0x7f, 0x07}, .dir = REFUSED},
	{"rep movsb", {0xf3, 0xa4}, .dir = REFUSED},
	{"rep movsq", {0xf3, 0x48, 0xa5}, .dir = REFUSED},
	{"movsd (string)", {0xa5}, .dir = REFUSED},
	{"rep stosd", {0xf3, 0xab}, .dir = REFUSED},
};

static void check_row(const struct row *r)
{
	struct mmio_insn d;
	int got = x86_decode_mmio(r->bytes, &d);

	if (r->dir == REFUSED) {
		CHECK(got != 0, "%s: refused", r->asm_text);
		return;
	}
	CHECK(got == 0, "%s: decoded", r->asm_text);
	if (got != 0)
		return;
	CHECK(d.len == r->len, "%s: length %d, expected %d", r->asm_text, d.len, r->len);
	CHECK(d.store == r->dir, "%s: store %d", r->asm_text, d.store);
	CHECK(d.size == r->size, "%s: size %d, expected %d", r->asm_text, d.size, r->size);
	if (r->dir == LOAD)
		CHECK(d.dest_size == r->dest_size, "%s: dest_size %d, expected %d", r->asm_text,
		      d.dest_size, r->dest_size);
	CHECK(d.sign_extend == r->sign_extend, "%s: sign_extend %d", r->asm_text, d.sign_extend);
	CHECK(d.reg == r->reg, "%s: reg %d, expected %d", r->asm_text, d.reg, r->reg);
	CHECK(d.high8 == r->high8, "%s: high8 %d", r->asm_text, d.high8);
	if (r->reg == IMM)
		CHECK(d.imm == r->imm, "%s: imm 0x%llx", r->asm_text, (unsigned long long)d.imm);
}

#if defined(__x86_64__)

/* What a load leaves in the destination register, starting from all ones. */
static uint64_t load_into(const uint8_t *bytes, uint64_t value, int greg)
{
	gregset_t gregs;
	struct mmio_insn d;
	memset(gregs, 0xff, sizeof gregs);
	CHECK(x86_decode_mmio(bytes, &d) == 0 && !d.store, "decodes as a load");
	x86_load_result(gregs, &d, value);
	return (uint64_t)gregs[greg];
}

static void check_registers(void)
{
	static const uint8_t mov_eax[] = {0x8b, 0x07}, mov_ax[] = {0x66, 0x8b, 0x07},
			     mov_al[] = {0x8a, 0x07}, mov_ah[] = {0x8a, 0x27},
			     movsx_eax_b[] = {0x0f, 0xbe, 0x07}, movsx_rcx_w[] = {0x48, 0x0f, 0xbf, 0x0f},
			     movzx_eax_w[] = {0x0f, 0xb7, 0x07}, mov_rax[] = {0x48, 0x8b, 0x07},
			     mov_bh_store[] = {0x88, 0x3f};
	gregset_t gregs;
	struct mmio_insn d;
	uint64_t v;

	v = load_into(mov_eax, 0x12345678, REG_RAX);
	CHECK(v == 0x12345678, "32-bit load clears the top half: 0x%llx", (unsigned long long)v);
	v = load_into(mov_ax, 0x1234, REG_RAX);
	CHECK(v == 0xffffffffffff1234ull, "16-bit load keeps the rest: 0x%llx", (unsigned long long)v);
	v = load_into(mov_al, 0x12, REG_RAX);
	CHECK(v == 0xffffffffffffff12ull, "8-bit load keeps the rest: 0x%llx", (unsigned long long)v);
	v = load_into(mov_ah, 0x12, REG_RAX);
	CHECK(v == 0xffffffffffff12ffull, "load into AH: 0x%llx", (unsigned long long)v);
	v = load_into(movsx_eax_b, 0x80, REG_RAX);
	CHECK(v == 0xffffff80ull, "movsx eax, byte 0x80: 0x%llx", (unsigned long long)v);
	v = load_into(movsx_rcx_w, 0x7fff, REG_RCX);
	CHECK(v == 0x7fff, "movsx rcx, word 0x7fff: 0x%llx", (unsigned long long)v);
	v = load_into(movzx_eax_w, 0x8000, REG_RAX);
	CHECK(v == 0x8000, "movzx eax, word 0x8000: 0x%llx", (unsigned long long)v);
	v = load_into(mov_rax, 0x0123456789abcdefull, REG_RAX);
	CHECK(v == 0x0123456789abcdefull, "64-bit load: 0x%llx", (unsigned long long)v);

	memset(gregs, 0, sizeof gregs);
	gregs[REG_RBX] = 0xa5c3;
	CHECK(x86_decode_mmio(mov_bh_store, &d) == 0, "mov [rdi], bh");
	v = x86_store_value(gregs, &d);
	CHECK(v == 0xa5, "a store of BH stores bits 8-15 of rbx: 0x%llx", (unsigned long long)v);
}

#else

static void check_registers(void)
{
}

#endif

int main(void)
{
	size_t i;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < sizeof rows / sizeof rows[0]; i++)
		check_row(&rows[i]);
	check_registers();
	if (failures == 0)
		printf("ok x86_decode (%zu rows)\n", sizeof rows / sizeof rows[0]);
	return failures > 99 ? 99 : failures;
}
