/*
 * Table-driven test of the MMIO trap's instruction decoder (../x86_decode.c): instruction bytes
 * -> length, direction and width of the memory access, where the immediate starts. Each row's bytes come from an assembler listing (GNU as, Intel syntax in
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

enum { REFUSED = 0, LOAD = 1, STORE = 2, RMW = 3 };

struct row {
	const char *asm_text;
	uint8_t bytes[15];
	int access; /* REFUSED, LOAD, STORE or RMW */
	int len, size, imm_at;
};

static const struct row rows[] = {
	{"mov eax, [rdi]", {0x8b, 0x07}, LOAD, 2, 4, 2},
	{"mov rax, [rdi]", {0x48, 0x8b, 0x07}, LOAD, 3, 8, 3},
	{"mov ax, [rdi]", {0x66, 0x8b, 0x07}, LOAD, 3, 2, 3},
	{"mov ah, [rdi]", {0x8a, 0x27}, LOAD, 2, 1, 2},
	{"mov r15, [r8+r9*8+0x12345678]", {0x4f, 0x8b, 0xbc, 0xc8, 0x78, 0x56, 0x34, 0x12}, LOAD, 8, 8, 8},
	{"mov ecx, [rip+0x100]", {0x8b, 0x0d, 0x00, 0x01, 0x00, 0x00}, LOAD, 6, 4, 6},
	{"mov eax, fs:[rdi]", {0x64, 0x8b, 0x07}, LOAD, 3, 4, 3},
	{"movzx eax, byte [rdi]", {0x0f, 0xb6, 0x07}, LOAD, 3, 1, 3},
	{"movsx rcx, word [rdi+8]", {0x48, 0x0f, 0xbf, 0x4f, 0x08}, LOAD, 5, 2, 5},
	{"mov [rdi+0x10], eax", {0x89, 0x47, 0x10}, STORE, 3, 4, 3},
	{"mov dword [rdi], 0x12345678", {0xc7, 0x07, 0x78, 0x56, 0x34, 0x12}, STORE, 6, 4, 2},
	{"mov word [rdi+4], 0x1234", {0x66, 0xc7, 0x47, 0x04, 0x34, 0x12}, STORE, 6, 2, 4},
	{"mov byte [rdi+4], 0xab", {0xc6, 0x47, 0x04, 0xab}, STORE, 4, 1, 3},
	{"movnti [rdi], rax", {0x48, 0x0f, 0xc3, 0x07}, STORE, 4, 8, 4},
	{"add [rdi], eax", {0x01, 0x07}, RMW, 2, 4, 2},
	{"or dword [rdi+0x20], 0x80", {0x83, 0x4f, 0x20, 0x80}, RMW, 4, 4, 3},
	{"cmp dword [rdi], 5", {0x83, 0x3f, 0x05}, LOAD, 3, 4, 2},
	{"xchg [rdi], eax", {0x87, 0x07}, RMW, 2, 4, 2},
	{"lock xadd [rdi], eax", {0xf0, 0x0f, 0xc1, 0x07}, RMW, 4, 4, 4},
	{"movups xmm0, [rdi]", {0x0f, 0x10, 0x07}, LOAD, 3, 16, 3},
	{"movdqu [rdi], xmm0", {0xf3, 0x0f, 0x7f, 0x07}, STORE, 4, 16, 4},
	{"movdqa xmm0, [rdi]", {0x66, 0x0f, 0x6f, 0x07}, LOAD, 4, 16, 4},
	{"movntdq [rdi], xmm0", {0x66, 0x0f, 0xe7, 0x07}, STORE, 4, 16, 4},
	{"pcmpeqb xmm0, [rdi]", {0x66, 0x0f, 0x74, 0x07}, LOAD, 4, 16, 4},
	{"movq xmm0, [rdi]", {0xf3, 0x0f, 0x7e, 0x07}, LOAD, 4, 8, 4},
	{"vmovdqu ymm0, [rdi]", {0xc5, 0xfe, 0x6f, 0x07}, LOAD, 4, 32, 4},
	{"vmovdqu [rdi], ymm0", {0xc5, 0xfe, 0x7f, 0x07}, STORE, 4, 32, 4},
	{"vmovdqu xmm0, [rdi]", {0xc5, 0xfa, 0x6f, 0x07}, LOAD, 4, 16, 4},
	{"vpcmpeqb ymm1, ymm0, [rdi]", {0xc5, 0xfd, 0x74, 0x0f}, LOAD, 4, 32, 4},
	/* glibc 2.36's __memmove_avx512_unaligned_erms, __memset_avx512_unaligned_erms and
	 * __memcmp_evex_movbe on this machine */
	{"vmovdqu64 ymm17, [rsi+0x20]", {0x62, 0xe1, 0xfe, 0x28, 0x6f, 0x4e, 0x01}, LOAD, 7, 32, 7},
	{"vmovdqu64 zmm16, [rsi]", {0x62, 0xe1, 0xfe, 0x48, 0x6f, 0x06}, LOAD, 6, 64, 6},
	{"vmovdqu8 [rax]{k1}, zmm16", {0x62, 0xe1, 0x7f, 0x49, 0x7f, 0x00}, STORE, 6, 64, 6},
	{"vpcmpnequb k1, ymm17, [rdi+0x20]", {0x62, 0xf3, 0x75, 0x20, 0x3e, 0x4f, 0x01, 0x04},
	 LOAD, 8, 32, 7},
	{"rep movsb", {0xf3, 0xa4}, LOAD, 2, 1, 2},
	{"rep movsq", {0xf3, 0x48, 0xa5}, LOAD, 3, 8, 3},
	{"rep stosd", {0xf3, 0xab}, STORE, 2, 4, 2},
	/* refused */
	{"mov eax, ecx (no memory operand)", {0x8b, 0xc1}, .access = REFUSED},
	{"c7 /1 (undefined)", {0xc7, 0x0f, 0, 0, 0, 0}, .access = REFUSED},
	{"mov [rdi], rsp (rsp as the register operand)", {0x48, 0x89, 0x27}, .access = REFUSED},
	{"mov eax, [edi] (32-bit address)", {0x67, 0x8b, 0x07}, .access = REFUSED},
	{"bt [rdi], eax (register bit offset)", {0x0f, 0xa3, 0x07}, .access = REFUSED},
	{"push qword [rdi]", {0xff, 0x37}, .access = REFUSED},
	{"maskmovdqu xmm0, xmm1", {0x66, 0x0f, 0xf7, 0xc1}, .access = REFUSED},
	{"repe cmpsb", {0xf3, 0xa6}, .access = REFUSED},
};

static void check_row(const struct row *r)
{
	struct x86_insn d;
	int got = x86_decode(r->bytes, &d);

	if (r->access == REFUSED) {
		CHECK(got != 0, "%s: refused", r->asm_text);
		return;
	}
	CHECK(got == 0, "%s: decoded", r->asm_text);
	if (got != 0)
		return;
	CHECK(d.len == r->len, "%s: length %d, expected %d", r->asm_text, d.len, r->len);
	CHECK(d.access == r->access, "%s: access %d, expected %d", r->asm_text, d.access, r->access);
	CHECK(d.size == r->size, "%s: size %d, expected %d", r->asm_text, d.size, r->size);
	CHECK(d.imm_at == r->imm_at, "%s: immediate at %d, expected %d", r->asm_text, d.imm_at,
	      r->imm_at);
}

int main(void)
{
	size_t i;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < sizeof rows / sizeof rows[0]; i++)
		check_row(&rows[i]);
	if (failures == 0)
		printf("ok x86_decode (%zu rows)\n", sizeof rows / sizeof rows[0]);
	return failures > 99 ? 99 : failures;
}
