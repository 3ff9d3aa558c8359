/*
 * A program whose calls depend on where its memory lands, as a driver's page-table allocations
 * depend on where its buffer lands: it opens /dev/iommu once, plus once for each value of four
 * address bits of an anonymous mapping (1 to 16 opens, four injection points each). Two runs with
 * address randomization pass different numbers of injection points; `check`'s runs, and
 * `exec --fail-nth`, turn it off, so every run passes as many as the counting run.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (page == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	unsigned opens = 1 + (unsigned)(((uintptr_t)page >> 12) & 15);
	for (unsigned i = 0; i < opens; i++) {
		/* An injected failure fails the open: nothing to close then. */
		int fd = open("/dev/iommu", O_RDWR);
		if (fd >= 0)
			close(fd);
	}
	printf("page at %p: %u opens\n", page, opens);
	return 0;
}
