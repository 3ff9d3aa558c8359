/* Decoding the x86-64 loads and stores the MMIO trap emulates (x86_decode.h). */
#define _GNU_SOURCE
#include <string.h>

#include "x86_decode.h"

static int segment_prefix(uint8_t b)
{
	return b == 0x2e || b == 0x3e || b == 0x26 || b == 0x36 || b == 0x64 || b == 0x65;
}

/* The access of a one-byte opcode; -1 if not a mov to or from memory. */
static int decode_mov(uint8_t op, struct mmio_insn *d)
{
	switch (op) {
	case 0x88: d->store = 1; d->size = 1; return 0;
	case 0x89: d->store = 1; d->size = d->dest_size; return 0;
	case 0x8a: d->size = 1; d->dest_size = 1; return 0;
	case 0x8b: d->size = d->dest_size; return 0;
	case 0xc6: d->store = 1; d->size = 1; return 0;
	case 0xc7: d->store = 1; d->size = d->dest_size; return 0;
	default: return -1;
	}
}

/* The access of 0f xx: movzx/movsx only. */
static int decode_movx(uint8_t op, struct mmio_insn *d)
{
	switch (op) {
	case 0xb6: d->size = 1; return 0;
	case 0xb7: d->size = 2; return 0;
	case 0xbe: d->size = 1; d->sign_extend = 1; return 0;
	case 0xbf: d->size = 2; d->sign_extend = 1; return 0;
	default: return -1;
	}
}

int x86_decode_mmio(const uint8_t *ip, struct mmio_insn *d)
{
	const uint8_t *p = ip;
	int op16 = 0, rex = 0, two = 0, mod, rm;
	uint8_t op, modrm;

	memset(d, 0, sizeof *d);
	for (;; p++) {
		if (*p == 0x66)
			op16 = 1;
		else if (!segment_prefix(*p)) /* si_addr is the linear address already */
			break;
	}
	if ((*p & 0xf0) == 0x40)
		rex = *p++;
	op = *p++;
	if (op == 0x0f) {
		two = 1;
		op = *p++;
	}
	d->dest_size = (rex & 8) ? 8 : op16 ? 2 : 4;
	if ((two ? decode_movx(op, d) : decode_mov(op, d)) != 0)
		return -1;
	modrm = *p++;
	mod = modrm >> 6;
	rm = modrm & 7;
	d->reg = ((modrm >> 3) & 7) | ((rex & 4) ? 8 : 0);
	if (mod == 3)
		return -1; /* not a memory operand */
	if (rm == 4) {
		uint8_t sib = *p++;
		if (mod == 0 && (sib & 7) == 5)
			p += 4;
	} else if (mod == 0 && rm == 5) {
		p += 4; /* RIP-relative */
	}
	if (mod == 1)
		p += 1;
	else if (mod == 2)
		p += 4;
	if (!two && (op == 0xc6 || op == 0xc7)) {
		if (((modrm >> 3) & 7) != 0)
			return -1;
		d->reg = -1;
		if (op == 0xc6) {
			d->imm = *p;
			p += 1;
		} else if (op16) {
			uint16_t v;
			memcpy(&v, p, 2);
			d->imm = v;
			p += 2;
		} else {
			int32_t v;
			memcpy(&v, p, 4);
			d->imm = (uint64_t)(int64_t)v; /* sign-extended for REX.W */
			p += 4;
		}
	}
	/* Byte registers 4-7 without REX are AH, CH, DH, BH. */
	if (d->reg >= 4 && d->reg < 8 && !rex &&
	    ((d->store && d->size == 1) || (!d->store && d->dest_size == 1)))
		d->high8 = 1;
	d->len = (int)(p - ip);
	return 0;
}

#if defined(__x86_64__)

static const int greg_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
				REG_RSI, REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11,
				REG_R12, REG_R13, REG_R14, REG_R15};

uint64_t x86_store_value(const greg_t *gregs, const struct mmio_insn *d)
{
	if (d->reg < 0)
		return d->imm;
	if (d->high8)
		return ((uint64_t)gregs[greg_of[d->reg - 4]] >> 8) & 0xff;
	return (uint64_t)gregs[greg_of[d->reg]];
}

void x86_load_result(greg_t *gregs, const struct mmio_insn *d, uint64_t v)
{
	greg_t *g;
	uint64_t old;
	if (d->sign_extend)
		v = d->size == 1 ? (uint64_t)(int64_t)(int8_t)v : (uint64_t)(int64_t)(int16_t)v;
	if (d->high8) {
		g = &gregs[greg_of[d->reg - 4]];
		*g = (greg_t)(((uint64_t)*g & ~0xff00ull) | ((v & 0xff) << 8));
		return;
	}
	g = &gregs[greg_of[d->reg]];
	old = (uint64_t)*g;
	switch (d->dest_size) {
	case 1: *g = (greg_t)((old & ~0xffull) | (v & 0xff)); break;
	case 2: *g = (greg_t)((old & ~0xffffull) | (v & 0xffff)); break;
	case 4: *g = (greg_t)(v & 0xffffffffull); break; /* 32-bit writes zero the top */
	default: *g = (greg_t)v; break;
	}
}

#endif
