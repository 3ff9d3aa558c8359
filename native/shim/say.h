/*
 * Messages to stderr that a signal handler may print: no stdio, no malloc, no locale (dprintf and
 * strerror are none of these). A message is built in a caller's buffer and written at once.
 */
#ifndef IOMMUFD_EMU_SHIM_SAY_H
#define IOMMUFD_EMU_SHIM_SAY_H

#include <stddef.h>
#include <stdint.h>

struct say {
	char buf[512];
	size_t len;
};

void say_start(struct say *s); /* "iommufd-emu shim: " */
void say_str(struct say *s, const char *text);
void say_dec(struct say *s, uint64_t v);
/* v in hex, at least `digits` digits, without "0x". */
void say_hex(struct say *s, uint64_t v, int digits);
/* Ends the line and writes it to fd 2 (a plain write(2) system call). */
void say_end(struct say *s);

#endif
