/*
 * The shim test programs' checks: CHECK(cond, fmt, ...) prints "FAIL file:line: cond: message
 * (errno ...)" for a failed check and counts it; a program exits with the count.
 */
#ifndef IOMMUFD_EMU_SHIM_TEST_CHECK_H
#define IOMMUFD_EMU_SHIM_TEST_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			int e_ = errno;                                               \
			failures++;                                                   \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);        \
			printf(__VA_ARGS__);                                          \
			printf(" (errno %d %s)\n", e_, strerror(e_));                 \
		}                                                                     \
	} while (0)

/* The end of a scenario: "ok SCENARIO" if every check passed; the exit status (the failures). */
static inline int checks_done(const char *scenario)
{
	if (failures == 0)
		printf("ok %s\n", scenario);
	return failures > 99 ? 99 : failures;
}

#endif
