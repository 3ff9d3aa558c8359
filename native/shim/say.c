/* Async-signal-safe messages to stderr (say.h). */
#define _GNU_SOURCE
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "say.h"

static void put(struct say *s, char ch)
{
	if (s->len < sizeof s->buf - 1)
		s->buf[s->len++] = ch;
}

void say_start(struct say *s)
{
	s->len = 0;
	say_str(s, "iommufd-emu shim: ");
}

void say_str(struct say *s, const char *text)
{
	while (*text != '\0')
		put(s, *text++);
}

void say_dec(struct say *s, uint64_t v)
{
	char digits[20];
	int n = 0;
	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		put(s, digits[--n]);
}

void say_hex(struct say *s, uint64_t v, int digits)
{
	static const char hex[] = "0123456789abcdef";
	int shift = 60;
	while (shift > 0 && (v >> shift) == 0 && shift >= digits * 4)
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		put(s, hex[(v >> shift) & 0xf]);
}

void say_end(struct say *s)
{
	size_t off = 0;
	s->buf[s->len++] = '\n'; /* put() keeps this one byte free */
	while (off < s->len) {
		/* syscall(), not write(): the shim's own write() is a wrapper. */
		long k = syscall(SYS_write, 2, s->buf + off, s->len - off);
		if (k <= 0)
			break;
		off += (size_t)k;
	}
}
