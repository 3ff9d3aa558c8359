/* Looking up the real libc functions (real.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "real.h"

void *real_resolve(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (p == NULL) {
		dprintf(2, "iommufd-emu shim: libc has no %s\n", name);
		abort();
	}
	return p;
}
