/*
 * One table of paths, opened and stat'd the way a C program does, to compare the shim's answers
 * with the library's (src/server/paths.test.ts runs the same table through SimProcess).
 *
 *   shim-paths OP:FLAGS:PATH ...
 *
 * OP is open, stat or lstat; FLAGS the open(2) flags in octal (ignored for stat). For each, one
 * line: "OP PATH -> -ERRNO", or for a success "OP PATH -> mode=MODE rdev=MAJ:MIN" (octal mode),
 * and for an open also "read=N:HEX" (the first bytes a read at offset 0 gives, or -ERRNO).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void print_stat(const struct stat *st)
{
	printf("mode=%o rdev=%u:%u", (unsigned)st->st_mode, major(st->st_rdev), minor(st->st_rdev));
}

static void row(const char *op, int flags, const char *path)
{
	struct stat st;
	printf("%s %o %s -> ", op, (unsigned)flags, path);
	if (strcmp(op, "open") == 0) {
		unsigned char buf[64];
		ssize_t n;
		int fd = open(path, flags, 0600);
		if (fd < 0) {
			printf("-%d\n", errno);
			return;
		}
		if (fstat(fd, &st) != 0) {
			printf("fstat -%d\n", errno);
			close(fd);
			return;
		}
		print_stat(&st);
		n = pread(fd, buf, sizeof buf, 0);
		if (n < 0) {
			printf(" read=-%d\n", errno);
		} else {
			printf(" read=%zd:", n);
			for (ssize_t i = 0; i < n; i++)
				printf("%02x", buf[i]);
			printf("\n");
		}
		close(fd);
		return;
	}
	if ((strcmp(op, "stat") == 0 ? stat(path, &st) : lstat(path, &st)) != 0) {
		printf("-%d\n", errno);
		return;
	}
	print_stat(&st);
	printf("\n");
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char *spec = strdup(argv[i]);
		char *flags = strchr(spec, ':');
		char *path = flags != NULL ? strchr(flags + 1, ':') : NULL;
		if (path == NULL) {
			fprintf(stderr, "bad row %s\n", argv[i]);
			return 2;
		}
		*flags++ = '\0';
		*path++ = '\0';
		row(spec, (int)strtol(flags, NULL, 8), path);
		free(spec);
	}
	return 0;
}
