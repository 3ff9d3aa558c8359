/*
 * Decoding the x86-64 instructions the MMIO trap serves (x86_decode.h). Our own tables
 * (decisions.md 70): what each opcode does to its memory operand and how wide that operand is;
 * what it computes is left to the CPU (x86_exec.c runs the instruction itself).
 */
#define _GNU_SOURCE
#include <string.h>

#include "x86_decode.h"

/* How wide the memory operand is. */
enum size_rule {
	SZ_NONE, /* not served */
	SZ_1,
	SZ_2,
	SZ_4,
	SZ_8,
	SZ_16,
	SZ_32,
	SZ_OP,	 /* operand size: 8 with REX.W/VEX.W, 2 with 66, else 4 */
	SZ_W48,	 /* 8 with W, else 4 (movd/movq, pextrd/q) */
	SZ_VL,	 /* the vector length: 16 (SSE), 16/32 (VEX.L), 16/32/64 (EVEX.L'L) */
	SZ_VL2,	 /* half of it (pmovzxbw, cvtps2pd) */
	SZ_VL4,	 /* a quarter (pmovzxbd) */
	SZ_VL8,	 /* an eighth (pmovzxbq) */
	SZ_MMX,	 /* 8 (an MMX register) */
};

enum imm_rule { IMM_NONE, IMM_8, IMM_Z /* 2 with 66, else 4 */ };

struct op {
	uint8_t access; /* X86_LOAD | X86_STORE */
	uint8_t size;	/* enum size_rule */
	uint8_t imm;	/* enum imm_rule */
	uint8_t gpr;	/* ModRM.reg names a general register */
};

static const struct op NONE = {0, SZ_NONE, IMM_NONE, 0};
#define L X86_LOAD
#define S X86_STORE
#define RMW (X86_LOAD | X86_STORE)

static struct op mk(int access, int size, int imm, int gpr)
{
	struct op o = {(uint8_t)access, (uint8_t)size, (uint8_t)imm, (uint8_t)gpr};
	return o;
}

/* The one-byte map. ext is ModRM.reg, the opcode extension of the groups. */
static struct op map0(uint8_t op, int ext)
{
	if (op < 0x40 && (op & 7) < 4) { /* add or adc sbb and sub xor cmp */
		int cmp = (op & 0x38) == 0x38;
		switch (op & 3) {
		case 0: return mk(cmp ? L : RMW, SZ_1, IMM_NONE, 1);
		case 1: return mk(cmp ? L : RMW, SZ_OP, IMM_NONE, 1);
		case 2: return mk(L, SZ_1, IMM_NONE, 1);
		default: return mk(L, SZ_OP, IMM_NONE, 1);
		}
	}
	switch (op) {
	case 0x63: return mk(L, SZ_4, IMM_NONE, 1); /* movsxd */
	case 0x69: return mk(L, SZ_OP, IMM_Z, 1);   /* imul r, r/m, imm */
	case 0x6b: return mk(L, SZ_OP, IMM_8, 1);
	case 0x80: return mk(ext == 7 ? L : RMW, SZ_1, IMM_8, 0);
	case 0x81: return mk(ext == 7 ? L : RMW, SZ_OP, IMM_Z, 0);
	case 0x83: return mk(ext == 7 ? L : RMW, SZ_OP, IMM_8, 0);
	case 0x84: return mk(L, SZ_1, IMM_NONE, 1); /* test */
	case 0x85: return mk(L, SZ_OP, IMM_NONE, 1);
	case 0x86: return mk(RMW, SZ_1, IMM_NONE, 1); /* xchg */
	case 0x87: return mk(RMW, SZ_OP, IMM_NONE, 1);
	case 0x88: return mk(S, SZ_1, IMM_NONE, 1); /* mov */
	case 0x89: return mk(S, SZ_OP, IMM_NONE, 1);
	case 0x8a: return mk(L, SZ_1, IMM_NONE, 1);
	case 0x8b: return mk(L, SZ_OP, IMM_NONE, 1);
	case 0xc0: return mk(RMW, SZ_1, IMM_8, 0); /* shifts and rotates */
	case 0xc1: return mk(RMW, SZ_OP, IMM_8, 0);
	case 0xd0:
	case 0xd2: return mk(RMW, SZ_1, IMM_NONE, 0);
	case 0xd1:
	case 0xd3: return mk(RMW, SZ_OP, IMM_NONE, 0);
	case 0xc6: return ext == 0 ? mk(S, SZ_1, IMM_8, 0) : NONE; /* mov imm */
	case 0xc7: return ext == 0 ? mk(S, SZ_OP, IMM_Z, 0) : NONE;
	case 0xf6: /* test imm, not, neg, mul, imul, div, idiv */
		return ext < 2 ? mk(L, SZ_1, IMM_8, 0) : mk(ext < 4 ? RMW : L, SZ_1, IMM_NONE, 0);
	case 0xf7: return ext < 2 ? mk(L, SZ_OP, IMM_Z, 0) : mk(ext < 4 ? RMW : L, SZ_OP, IMM_NONE, 0);
	case 0xfe: return ext < 2 ? mk(RMW, SZ_1, IMM_NONE, 0) : NONE; /* inc, dec */
	case 0xff: return ext < 2 ? mk(RMW, SZ_OP, IMM_NONE, 0) : NONE;
	default: return NONE;
	}
}

/* 0f xx: general-register instructions (legacy encoding only). */
static struct op map1_int(uint8_t op, int ext, int pp)
{
	if (op >= 0x40 && op <= 0x4f)
		return mk(L, SZ_OP, IMM_NONE, 1); /* cmovcc */
	if (op >= 0x90 && op <= 0x9f)
		return mk(S, SZ_1, IMM_NONE, 0); /* setcc */
	switch (op) {
	case 0xaf: return mk(L, SZ_OP, IMM_NONE, 1); /* imul */
	case 0xb0: return mk(RMW, SZ_1, IMM_NONE, 1); /* cmpxchg */
	case 0xb1: return mk(RMW, SZ_OP, IMM_NONE, 1);
	case 0xb6:
	case 0xbe: return mk(L, SZ_1, IMM_NONE, 1); /* movzx, movsx */
	case 0xb7:
	case 0xbf: return mk(L, SZ_2, IMM_NONE, 1);
	case 0xb8: return pp == 2 ? mk(L, SZ_OP, IMM_NONE, 1) : NONE; /* popcnt */
	case 0xba: /* bt, bts, btr, btc with an immediate bit offset */
		return ext < 4 ? NONE : mk(ext == 4 ? L : RMW, SZ_OP, IMM_8, 0);
	case 0xbc:
	case 0xbd: return mk(L, SZ_OP, IMM_NONE, 1); /* bsf/tzcnt, bsr/lzcnt */
	case 0xc0: return mk(RMW, SZ_1, IMM_NONE, 1); /* xadd */
	case 0xc1: return mk(RMW, SZ_OP, IMM_NONE, 1);
	case 0xc3: return pp == 0 ? mk(S, SZ_W48, IMM_NONE, 1) : NONE; /* movnti */
	default: return NONE;
	}
}

/* 0f xx: SSE, AVX and AVX-512 (pp: 0 none, 1 66, 2 f3, 3 f2). */
static struct op map1_vec(uint8_t op, int pp, int legacy)
{
	int scalar = pp == 2 ? SZ_4 : SZ_8; /* ss / sd forms */
	switch (op) {
	case 0x10: return mk(L, pp < 2 ? SZ_VL : scalar, IMM_NONE, 0); /* movups/pd, movss/sd */
	case 0x11: return mk(S, pp < 2 ? SZ_VL : scalar, IMM_NONE, 0);
	case 0x12: return mk(L, pp == 2 ? SZ_VL : pp == 3 ? SZ_VL2 : SZ_8, IMM_NONE, 0);
	case 0x13:
	case 0x17: return pp < 2 ? mk(S, SZ_8, IMM_NONE, 0) : NONE; /* movlps, movhps */
	case 0x14:
	case 0x15: return pp < 2 ? mk(L, SZ_VL, IMM_NONE, 0) : NONE; /* unpck */
	case 0x16: return mk(L, pp == 2 ? SZ_VL : SZ_8, IMM_NONE, 0); /* movhps, movshdup */
	case 0x28: return pp < 2 ? mk(L, SZ_VL, IMM_NONE, 0) : NONE; /* movaps/pd */
	case 0x29:
	case 0x2b: return pp < 2 ? mk(S, SZ_VL, IMM_NONE, 0) : NONE; /* movaps, movntps */
	case 0x2e:
	case 0x2f: return pp < 2 ? mk(L, pp ? SZ_8 : SZ_4, IMM_NONE, 0) : NONE; /* (u)comis */
	case 0x6e: return pp < 2 ? mk(L, SZ_W48, IMM_NONE, 0) : NONE; /* movd/movq */
	case 0x6f: return mk(L, pp == 0 ? SZ_MMX : SZ_VL, IMM_NONE, 0); /* movq mm, movdq[au] */
	case 0x70: return mk(L, pp == 0 ? SZ_MMX : SZ_VL, IMM_8, 0); /* pshuf* */
	case 0x7e: return pp < 2 ? mk(S, SZ_W48, IMM_NONE, 0) : pp == 2 ? mk(L, SZ_8, IMM_NONE, 0) : NONE;
	case 0x7f: return mk(S, pp == 0 ? SZ_MMX : SZ_VL, IMM_NONE, 0);
	case 0xc2: return mk(L, pp < 2 ? SZ_VL : scalar, IMM_8, 0); /* cmpps/pd/ss/sd */
	case 0xc4: return pp < 2 ? mk(L, SZ_2, IMM_8, 0) : NONE; /* pinsrw */
	case 0xc6: return pp < 2 ? mk(L, SZ_VL, IMM_8, 0) : NONE; /* shufps/pd */
	case 0xd6: return pp == 1 ? mk(S, SZ_8, IMM_NONE, 0) : NONE; /* movq m64, xmm */
	case 0xe6: return pp ? mk(L, pp == 2 ? SZ_VL2 : SZ_VL, IMM_NONE, 0) : NONE;
	case 0xe7: return pp < 2 ? mk(S, pp ? SZ_VL : SZ_MMX, IMM_NONE, 0) : NONE; /* movntq/dq */
	case 0xf0: return pp == 3 ? mk(L, SZ_VL, IMM_NONE, 0) : NONE; /* lddqu */
	case 0xf7: return NONE; /* maskmovq/dqu: writes through rdi */
	case 0x5a: return mk(L, pp == 0 ? SZ_VL2 : pp == 1 ? SZ_VL : scalar, IMM_NONE, 0);
	}
	if (op >= 0x51 && op <= 0x5f) /* sqrt, and, or, xor, add, mul, cvt, sub, min, div, max */
		return mk(L, pp < 2 ? SZ_VL : scalar, IMM_NONE, 0);
	if ((op >= 0x60 && op <= 0x6d) || (op >= 0x74 && op <= 0x76) || op >= 0xd1)
		return pp == 1 ? mk(L, SZ_VL, IMM_NONE, 0)
		       : pp == 0 && legacy ? mk(L, SZ_MMX, IMM_NONE, 0) : NONE; /* p* integer ops */
	return NONE;
}

/* 0f 38 xx. */
static struct op map2(uint8_t op, int pp, int legacy, int vex_masked_store)
{
	if (legacy && (op == 0xf0 || op == 0xf1) && pp != 3) /* movbe */
		return mk(op == 0xf0 ? L : S, SZ_OP, IMM_NONE, 1);
	if (legacy && pp == 3 && (op == 0xf0 || op == 0xf1)) /* crc32 */
		return mk(L, op == 0xf0 ? SZ_1 : SZ_OP, IMM_NONE, 1);
	if (pp == 0)
		return legacy && op <= 0x0b ? mk(L, SZ_MMX, IMM_NONE, 0) : NONE; /* ssse3 on mm */
	if (pp != 1)
		return NONE;
	switch (op) {
	case 0x20: case 0x23: case 0x25: case 0x30: case 0x33: case 0x35:
		return mk(L, SZ_VL2, IMM_NONE, 0); /* pmovsx/zx bw, wd, dq */
	case 0x21: case 0x24: case 0x31: case 0x34: return mk(L, SZ_VL4, IMM_NONE, 0);
	case 0x22: case 0x32: return mk(L, SZ_VL8, IMM_NONE, 0);
	case 0x18: case 0x58: return mk(L, SZ_4, IMM_NONE, 0); /* broadcasts */
	case 0x19: case 0x59: return mk(L, SZ_8, IMM_NONE, 0);
	case 0x1a: case 0x5a: return mk(L, SZ_16, IMM_NONE, 0);
	case 0x1b: case 0x5b: return mk(L, SZ_32, IMM_NONE, 0);
	case 0x78: return mk(L, SZ_1, IMM_NONE, 0);
	case 0x79: return mk(L, SZ_2, IMM_NONE, 0);
	case 0x2e: case 0x2f: case 0x8e: /* vmaskmovps/pd, vpmaskmovd/q stores */
		return vex_masked_store ? mk(S, SZ_VL, IMM_NONE, 0) : NONE;
	}
	if (op <= 0x17 || (op >= 0x1c && op <= 0x1f) || (op >= 0x28 && op <= 0x2d) ||
	    (op >= 0x36 && op <= 0x47) || (op >= 0x64 && op <= 0x66) || (op >= 0x75 && op <= 0x77) ||
	    (op >= 0x7d && op <= 0x7f) || op == 0x8c || op == 0x8d || (op >= 0x96 && op <= 0xbf) ||
	    op == 0xcf || (op >= 0xdc && op <= 0xdf))
		return mk(L, SZ_VL, IMM_NONE, 0); /* loads (movntdqa, ptest, vpmaskmov loads, ...) */
	return NONE;
}

/* 0f 3a xx: every one has an imm8. */
static struct op map3(uint8_t op, int pp, int legacy)
{
	if (pp == 0)
		return legacy && op == 0x0f ? mk(L, SZ_MMX, IMM_8, 0) : NONE; /* palignr mm */
	if (pp != 1)
		return NONE;
	switch (op) {
	case 0x14: return mk(S, SZ_1, IMM_8, 0); /* pextrb */
	case 0x15: return mk(S, SZ_2, IMM_8, 0); /* pextrw */
	case 0x16: return mk(S, SZ_W48, IMM_8, 0); /* pextrd/q */
	case 0x17: return mk(S, SZ_4, IMM_8, 0); /* extractps */
	case 0x20: return mk(L, SZ_1, IMM_8, 0); /* pinsrb */
	case 0x21: return mk(L, SZ_4, IMM_8, 0); /* insertps */
	case 0x22: return mk(L, SZ_W48, IMM_8, 0); /* pinsrd/q */
	case 0x18: case 0x38: return mk(L, SZ_16, IMM_8, 0); /* vinsert[fi]128, 32x4 */
	case 0x1a: case 0x3a: return mk(L, SZ_32, IMM_8, 0);
	case 0x19: case 0x39: return mk(S, SZ_16, IMM_8, 0); /* vextract[fi]128 */
	case 0x1b: case 0x3b: return mk(S, SZ_32, IMM_8, 0);
	case 0x1d: return mk(S, SZ_VL2, IMM_8, 0); /* vcvtps2ph */
	}
	if (op <= 0x0f || op == 0x1e || op == 0x1f || op == 0x25 || op == 0x3e || op == 0x3f ||
	    (op >= 0x40 && op <= 0x4c) || (op >= 0x60 && op <= 0x63) || op == 0xce || op == 0xcf)
		return mk(L, SZ_VL, IMM_8, 0); /* blends, pcmp[ei]str, vpcmp[u]b/d, vpternlog */
	return NONE;
}

static int seg_prefix(uint8_t b)
{
	return b == 0x2e || b == 0x3e || b == 0x26 || b == 0x36 || b == 0x64 || b == 0x65;
}

int x86_decode(const uint8_t *ip, struct x86_insn *d)
{
	const uint8_t *p = ip;
	int op66 = 0, rep = 0, rex = 0, w, rr, xx, bb, map = 0, pp = 0, vl = 16;
	int evex = 0, vex = 0, bcast = 0, aaa = 0, mod, reg, rm, size = 0, imm = 0;
	uint8_t op;
	struct op o;

	memset(d, 0, sizeof *d);
	d->base = d->index = -1;
	d->scale = 1;
	for (;; p++) { /* legacy prefixes, in any order */
		if (*p == 0x66)
			op66 = 1;
		else if (*p == 0xf2 || *p == 0xf3)
			rep = *p;
		else if (*p == 0x64 || *p == 0x65)
			d->seg = *p == 0x64 ? X86_SEG_FS : X86_SEG_GS;
		else if (*p == 0xf0 || seg_prefix(*p))
			; /* lock: the access is served as a read then a write anyway */
		else if (*p == 0x67)
			return -1; /* 32-bit addresses */
		else
			break;
		if (p - ip >= 14)
			return -1;
	}
	if ((*p & 0xf0) == 0x40)
		rex = *p++;
	w = (rex >> 3) & 1;
	rr = (rex >> 2) & 1;
	xx = (rex >> 1) & 1;
	bb = rex & 1;
	if (!rex && (*p == 0xc4 || *p == 0xc5 || *p == 0x62)) {
		if (op66 || rep)
			return -1; /* #UD with VEX/EVEX */
		if (*p == 0xc5) {
			vex = 1;
			rr = !(p[1] & 0x80);
			vl = (p[1] & 4) ? 32 : 16;
			pp = p[1] & 3;
			map = 1;
			p += 2;
		} else if (*p == 0xc4) {
			vex = 1;
			rr = !(p[1] & 0x80);
			xx = !(p[1] & 0x40);
			bb = !(p[1] & 0x20);
			map = p[1] & 0x1f;
			w = p[2] >> 7;
			vl = (p[2] & 4) ? 32 : 16;
			pp = p[2] & 3;
			p += 3;
		} else {
			evex = 1;
			rr = !(p[1] & 0x80);
			xx = !(p[1] & 0x40);
			bb = !(p[1] & 0x20);
			map = p[1] & 7;
			w = p[2] >> 7;
			pp = p[2] & 3;
			vl = 16 << ((p[3] >> 5) & 3);
			bcast = (p[3] >> 4) & 1;
			aaa = p[3] & 7;
			if (vl > 64 || !(p[2] & 4))
				return -1;
			p += 4;
		}
		if (map < 1 || map > 3)
			return -1;
	} else {
		pp = rep == 0xf3 ? 2 : rep == 0xf2 ? 3 : op66 ? 1 : 0;
		if (*p == 0x0f) {
			map = 1;
			p++;
			if (*p == 0x38 || *p == 0x3a) {
				map = *p == 0x38 ? 2 : 3;
				p++;
			}
		}
	}
	op = *p++;

	if (map == 0 && op >= 0xa4 && op <= 0xad && op != 0xa6 && op != 0xa7 && op != 0xa8 &&
	    op != 0xa9) {
		d->string = op <= 0xa5 ? X86_STR_MOVS : op <= 0xab ? X86_STR_STOS : X86_STR_LODS;
		d->size = (op & 1) == 0 ? 1 : w ? 8 : op66 ? 2 : 4;
		d->rep = rep != 0;
		d->access = d->string == X86_STR_STOS ? X86_STORE : X86_LOAD;
		d->len = (int)(p - ip);
		d->modrm_at = d->imm_at = d->len;
		return 0;
	}

	d->modrm_at = (int)(p - ip);
	mod = *p >> 6;
	reg = ((*p >> 3) & 7) | (rr << 3);
	rm = *p & 7;
	if (mod == 3)
		return -1; /* no memory operand */
	if (map == 0)
		o = vex || evex ? NONE : map0(op, reg & 7);
	else if (map == 1)
		o = vex || evex ? map1_vec(op, pp, 0) : map1_int(op, reg & 7, pp);
	else if (map == 2)
		o = map2(op, pp, !vex && !evex, vex);
	else
		o = map3(op, pp, !vex && !evex);
	if (map == 1 && !vex && !evex && o.size == SZ_NONE)
		o = map1_vec(op, pp, 1);
	if (o.size == SZ_NONE)
		return -1;
	/* A general register in ModRM.reg is loaded from the context, except rsp: the copy runs
	 * on the handler's stack. (Without REX, byte register 4 is AH.) */
	if (o.gpr && reg == 4 && !(o.size == SZ_1 && !rex))
		return -1;

	switch (o.size) {
	case SZ_1: size = 1; break;
	case SZ_2: size = 2; break;
	case SZ_4: size = 4; break;
	case SZ_8: case SZ_MMX: size = 8; break;
	case SZ_16: size = 16; break;
	case SZ_32: size = 32; break;
	case SZ_OP: size = w ? 8 : op66 ? 2 : 4; break;
	case SZ_W48: size = w ? 8 : 4; break;
	case SZ_VL: size = vl; break;
	case SZ_VL2: size = vl / 2; break;
	case SZ_VL4: size = vl / 4; break;
	case SZ_VL8: size = vl / 8; break;
	}
	if (evex && bcast)
		size = w ? 8 : 4; /* embedded broadcast: one element is read */
	imm = o.imm == IMM_8 ? 1 : o.imm == IMM_Z ? (op66 ? 2 : 4) : 0;

	p++;
	if (rm == 4) {
		int sib = *p++;
		int idx = ((sib >> 3) & 7) | (xx << 3);
		d->scale = 1 << (sib >> 6);
		if (idx != 4)
			d->index = idx;
		if ((sib & 7) == 5 && mod == 0) {
			int32_t v;
			memcpy(&v, p, 4);
			d->disp = v;
			p += 4;
		} else {
			d->base = (sib & 7) | (bb << 3);
		}
	} else if (rm == 5 && mod == 0) {
		int32_t v;
		memcpy(&v, p, 4);
		d->disp = v;
		d->rip_relative = 1;
		p += 4;
	} else {
		d->base = rm | (bb << 3);
	}
	if (mod == 1) {
		d->disp = (int8_t)*p++;
		if (evex)
			d->disp *= size; /* disp8*N: N is the operand's size for every row above */
	} else if (mod == 2) {
		int32_t v;
		memcpy(&v, p, 4);
		d->disp = v;
		p += 4;
	}
	d->imm_at = (int)(p - ip);
	d->len = d->imm_at + imm;
	d->access = o.access;
	d->size = size;
	d->masked = (o.access & X86_STORE) && ((evex && aaa != 0) || (vex && map == 2));
	if (d->len > 15)
		return -1;
	return 0;
}
