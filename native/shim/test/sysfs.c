/*
 * Sysfs and /dev discovery through the shim, the ways real drivers do it: opendir/readdir,
 * scandir, glob, readlink(at), realpath, stat/lstat/statx, fopen/fgets/fprintf, chdir + relative
 * opens, openat relative to dirfd(opendir(...)), and the fail-nth file. Run through
 * `iommufd-emu exec` on the default platform (src/server/sysfs.test.ts):
 *
 *   shim-sysfs walk NODES    NODES = VFIO device nodes expected (2, or 3 in no-IOMMU mode)
 *   shim-sysfs rebind        bind/unbind 0000:00:06.0 around enable_unsafe_noiommu_mode (off)
 *
 * Prints "FAIL ..." for each failed check, "ok SCENARIO" at the end; exits with the failures.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "check.h"

#define DEVICES "/sys/bus/pci/devices"
#define EDU0 "0000:00:04.0"
#define EDU1 "0000:00:05.0"
#define NOIOMMU "0000:00:06.0"
#define PARAM "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"

/* The names in a directory (without . and ..), sorted, joined by spaces; the d_type of each
 * entry must be `type` (or any, if 0). -1 if opendir fails. */
static int list_dir(const char *path, char *out, size_t outsz, unsigned char type)
{
	struct dirent **names;
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0, i, count;
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		CHECK(type == 0 || e->d_type == type, "d_type of %s/%s is %d, not %d", path, e->d_name,
		      e->d_type, type);
		n++;
	}
	CHECK(closedir(d) == 0, "closedir %s", path);
	/* The same listing through scandir, sorted. */
	count = scandir(path, &names, NULL, alphasort);
	CHECK(count == n + 2, "scandir %s: %d entries, readdir saw %d + 2", path, count, n);
	out[0] = '\0';
	for (i = 0; i < count; i++) {
		if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
			if (out[0] != '\0')
				strncat(out, " ", outsz - strlen(out) - 1);
			strncat(out, names[i]->d_name, outsz - strlen(out) - 1);
		}
		free(names[i]);
	}
	if (count >= 0)
		free(names);
	return n;
}

static void expect_dir(const char *path, const char *want, unsigned char type)
{
	char got[1024];
	int n = list_dir(path, got, sizeof got, type);
	CHECK(n >= 0, "opendir %s", path);
	if (n >= 0)
		CHECK(strcmp(got, want) == 0, "%s lists \"%s\", not \"%s\"", path, got, want);
}

/* fopen + fgets of a small file; "" on error. */
static const char *read_line(const char *path)
{
	static char buf[128];
	FILE *f = fopen(path, "r");
	buf[0] = '\0';
	if (f == NULL)
		return buf;
	if (fgets(buf, sizeof buf, f) == NULL)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

/* fopen(mode "w") + fputs + fclose: 0, or -1 with errno (the store's error comes at fclose). */
static int write_line(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	if (fputs(text, f) < 0) {
		int e = errno;
		fclose(f);
		errno = e;
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

static void check_links(void)
{
	char buf[PATH_MAX], *p;
	struct stat st;
	ssize_t n;
	int dfd;
	DIR *d;

	n = readlink(DEVICES "/" EDU0 "/iommu_group", buf, sizeof buf - 1);
	CHECK(n > 0, "readlink iommu_group");
	if (n > 0) {
		buf[n] = '\0';
		CHECK(strcmp(buf, "../../../kernel/iommu_groups/0") == 0, "iommu_group -> %s", buf);
	}
	n = readlink(DEVICES "/" EDU1, buf, sizeof buf - 1);
	CHECK(n > 0, "readlink of a device link");
	if (n > 0) {
		buf[n] = '\0';
		CHECK(strcmp(buf, "../../../devices/pci0000:00/" EDU1) == 0, "%s -> %s", EDU1, buf);
	}
	d = opendir(DEVICES);
	CHECK(d != NULL, "opendir " DEVICES);
	if (d != NULL) {
		dfd = dirfd(d);
		n = readlinkat(dfd, EDU1 "/iommu_group", buf, sizeof buf - 1);
		CHECK(n > 0, "readlinkat relative to dirfd(opendir(devices))");
		if (n > 0) {
			buf[n] = '\0';
			CHECK(strcmp(buf, "../../../kernel/iommu_groups/1") == 0, "-> %s", buf);
		}
		CHECK(fstatat(dfd, EDU0, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode),
		      "fstatat(dirfd, BDF, NOFOLLOW) is a link");
		n = openat(dfd, EDU0 "/vendor", O_RDONLY);
		CHECK(n >= 0, "openat(dirfd, BDF/vendor)");
		if (n >= 0) {
			char v[16] = {0};
			CHECK(read((int)n, v, sizeof v - 1) == 7 && strcmp(v, "0x1234\n") == 0,
			      "read through openat: '%s'", v);
			close((int)n);
		}
		closedir(d);
	}
	errno = 0;
	CHECK(readlink(DEVICES "/" EDU0 "/vendor", buf, sizeof buf) == -1 && errno == EINVAL,
	      "readlink of an attribute -> EINVAL");
	errno = 0;
	CHECK(readlink(DEVICES "/0000:00:1f.0", buf, sizeof buf) == -1 && errno == ENOENT,
	      "readlink of a device that does not exist -> ENOENT");

	p = realpath(DEVICES "/" EDU0 "/iommu_group", buf);
	CHECK(p == buf && strcmp(buf, "/sys/kernel/iommu_groups/0") == 0, "realpath iommu_group: %s",
	      p != NULL ? p : "(null)");
	/* ".." after a link goes up from where the link points, as in the kernel. */
	p = realpath("/sys/class/vfio-dev/vfio1/../../vendor", NULL);
	CHECK(p != NULL && strcmp(p, "/sys/devices/pci0000:00/" EDU1 "/vendor") == 0,
	      "realpath through a class link and ..: %s", p != NULL ? p : "(null)");
	free(p);
	errno = 0;
	CHECK(realpath("/sys/class/vfio-dev/vfio1/../vfio0", buf) == NULL && errno == ENOENT,
	      "realpath resolves .. physically (vfio1/.. is 0000:00:05.0/vfio-dev)");
	p = canonicalize_file_name(DEVICES "/" EDU1);
	CHECK(p != NULL && strcmp(p, "/sys/devices/pci0000:00/" EDU1) == 0,
	      "canonicalize_file_name: %s", p != NULL ? p : "(null)");
	free(p);
	errno = 0;
	CHECK(realpath(DEVICES "/0000:00:1f.0", buf) == NULL && errno == ENOENT,
	      "realpath of a missing device -> ENOENT");
}

static void check_stat(void)
{
	struct stat st, st2;
	struct statx stx;
	DIR *d;

	CHECK(stat(DEVICES, &st) == 0 && S_ISDIR(st.st_mode), "stat " DEVICES " is a directory");
	CHECK(lstat(DEVICES "/" EDU0, &st) == 0 && S_ISLNK(st.st_mode), "lstat BDF is a link");
	CHECK(stat(DEVICES "/" EDU0, &st) == 0 && S_ISDIR(st.st_mode), "stat BDF is a directory");
	CHECK(lstat(DEVICES "/" EDU0 "/", &st) == 0 && S_ISDIR(st.st_mode),
	      "lstat BDF/ follows the link");
	CHECK(stat(DEVICES "/" EDU0 "/vendor", &st) == 0 && S_ISREG(st.st_mode) &&
		      (st.st_mode & 0777) == 0444,
	      "vendor is a 0444 regular file (0%o)", st.st_mode);
	CHECK(statx(AT_FDCWD, "/dev/vfio/devices/vfio0", 0, STATX_BASIC_STATS, &stx) == 0 &&
		      S_ISCHR(stx.stx_mode) && stx.stx_rdev_major == 236 && stx.stx_rdev_minor == 0,
	      "statx /dev/vfio/devices/vfio0: char 236:0");
	CHECK(statx(AT_FDCWD, DEVICES "/" EDU0, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) == 0 &&
		      S_ISLNK(stx.stx_mode),
	      "statx NOFOLLOW of a device link");
	CHECK(access(DEVICES "/" EDU0 "/vendor", R_OK) == 0, "access(vendor, R_OK)");
	errno = 0;
	CHECK(access(DEVICES "/0000:00:1f.0", F_OK) == -1 && errno == ENOENT, "access of a missing one");
	/* One inode whichever way a directory is reached (fts and ls -R compare them). */
	d = opendir(DEVICES "/" EDU0);
	CHECK(d != NULL, "opendir BDF");
	if (d != NULL) {
		CHECK(fstat(dirfd(d), &st) == 0 && stat(DEVICES "/" EDU0, &st2) == 0 &&
			      st.st_ino == st2.st_ino && st.st_dev == st2.st_dev,
		      "fstat(dirfd) and stat(path) agree");
		closedir(d);
	}
}

static void check_files(void)
{
	char buf[128], path[PATH_MAX];
	const char *dbg[] = {"fail_iommufd", "fail_page_alloc", "fail_usercopy", "failslab"};
	struct dirent *e;
	glob_t g;
	DIR *d;
	int i, seen = 0;

	CHECK(strcmp(read_line(DEVICES "/" EDU0 "/vendor"), "0x1234\n") == 0, "fopen+fgets vendor");
	CHECK(strcmp(read_line(DEVICES "/" NOIOMMU "/device"), "0x11e8\n") == 0, "fopen+fgets device");
	errno = 0;
	CHECK(fopen(DEVICES "/" EDU0 "/nonexistent", "r") == NULL && errno == ENOENT,
	      "fopen of a missing attribute -> ENOENT");
	errno = 0;
	CHECK(fopen(DEVICES "/" EDU0 "/vendor", "w") == NULL && errno == EACCES,
	      "fopen(w) of a read-only attribute -> EACCES");

	CHECK(glob(DEVICES "/*/vendor", 0, NULL, &g) == 0 && g.gl_pathc == 3, "glob */vendor: %zu",
	      g.gl_pathc);
	if (g.gl_pathc == 3)
		CHECK(strcmp(g.gl_pathv[0], DEVICES "/" EDU0 "/vendor") == 0, "glob[0] %s",
		      g.gl_pathv[0]);
	globfree(&g);

	/* The selftests' fault-injection setup: opendir(debugfs), writes relative to its dirfd. */
	expect_dir("/sys/kernel/debug/", "fail_iommufd fail_page_alloc fail_usercopy failslab", DT_DIR);
	d = opendir("/sys/kernel/debug/");
	CHECK(d != NULL, "opendir /sys/kernel/debug/");
	if (d != NULL) {
		int fd = openat(dirfd(d), "failslab/ignore-gfp-wait", O_WRONLY | O_TRUNC);
		CHECK(fd >= 0 && write(fd, "N", 1) == 1, "write failslab/ignore-gfp-wait");
		if (fd >= 0)
			close(fd);
		while ((e = readdir(d)) != NULL) {
			if (strncmp(e->d_name, "fail", 4) != 0)
				continue;
			snprintf(path, sizeof path, "%s/verbose", e->d_name);
			fd = openat(dirfd(d), path, O_WRONLY | O_TRUNC);
			CHECK(fd >= 0 && write(fd, "0", 1) == 1, "write %s", path);
			if (fd >= 0)
				close(fd);
			seen++;
		}
		closedir(d);
	}
	CHECK(seen == 4, "4 fail* directories, saw %d", seen);
	for (i = 0; i < 4; i++) {
		snprintf(path, sizeof path, "/sys/kernel/debug/%s/verbose", dbg[i]);
		CHECK(strcmp(read_line(path), "0\n") == 0, "%s reads back 0", path);
	}
	/* fopen("w") + fprintf + fclose, then read back. */
	CHECK(write_line("/sys/kernel/debug/fail_iommufd/times", "5\n") == 0, "fprintf times");
	CHECK(strcmp(read_line("/sys/kernel/debug/fail_iommufd/times"), "5\n") == 0, "times is 5");

	/* chdir into the tree: getcwd is the physical path, relative opens work. */
	CHECK(chdir(DEVICES "/" EDU0) == 0, "chdir BDF");
	CHECK(getcwd(buf, sizeof buf) != NULL && strcmp(buf, "/sys/devices/pci0000:00/" EDU0) == 0,
	      "getcwd: %s", buf);
	CHECK(strcmp(read_line("vendor"), "0x1234\n") == 0, "relative fopen");
	CHECK(strcmp(read_line("../" EDU1 "/device"), "0x11e8\n") == 0, "relative fopen with ..");
	CHECK(access("iommu_group", F_OK) == 0, "relative access");
	CHECK(chdir("/") == 0, "chdir /");
}

/* The kernel's fail-nth: write N, the Nth injection point this thread reaches fails. */
static void check_fail_nth(void)
{
	char path[64], buf[16];
	struct {
		uint32_t size, flags, out_ioas_id;
	} alloc = {12, 0, 0};
	int fd, iommu = open("/dev/iommu", O_RDWR);

	snprintf(path, sizeof path, "/proc/self/task/%ld/fail-nth", (long)syscall(SYS_gettid));
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && iommu >= 0, "open %s and /dev/iommu", path);
	if (fd < 0 || iommu < 0)
		return;
	CHECK(write(fd, "3", 1) == 1, "arm fail-nth 3");
	memset(buf, 0, sizeof buf);
	CHECK(pread(fd, buf, sizeof buf - 1, 0) == 2 && strcmp(buf, "3\n") == 0,
	      "reads back what is left: '%s'", buf);
	CHECK(write(fd, "1", 1) == 1, "arm fail-nth 1");
	errno = 0;
	CHECK(ioctl(iommu, _IO(';', 0x81), &alloc) == -1 && (errno == EFAULT || errno == ENOMEM),
	      "the first injection point of IOMMU_IOAS_ALLOC fails");
	memset(buf, 0, sizeof buf);
	CHECK(pread(fd, buf, sizeof buf - 1, 0) == 2 && strcmp(buf, "0\n") == 0,
	      "0 once it fired: '%s'", buf);
	CHECK(ioctl(iommu, _IO(';', 0x81), &alloc) == 0, "disarmed: IOMMU_IOAS_ALLOC succeeds");
	close(fd);
	close(iommu);
	CHECK(strcmp(read_line("/proc/thread-self/fail-nth"), "0\n") == 0, "/proc/thread-self spelling");
}

static void scenario_walk(int nodes)
{
	expect_dir(DEVICES, EDU0 " " EDU1 " " NOIOMMU, DT_LNK);
	expect_dir(DEVICES "/" EDU0 "/vfio-dev", "vfio0", DT_DIR);
	expect_dir("/sys/kernel/iommu_groups/1/devices", EDU1, DT_LNK);
	expect_dir("/sys/module/vfio/parameters", "enable_unsafe_noiommu_mode", DT_REG);
	if (nodes == 3) {
		expect_dir(DEVICES "/" NOIOMMU "/vfio-dev", "noiommu-vfio2", DT_DIR);
		expect_dir("/sys/class/vfio-dev", "noiommu-vfio2 vfio0 vfio1", DT_LNK);
		expect_dir("/dev/vfio/devices", "noiommu-vfio2 vfio0 vfio1", DT_CHR);
		CHECK(strcmp(read_line("/proc/sys/kernel/tainted"), "64\n") == 0, "tainted (TAINT_USER)");
	} else {
		errno = 0;
		CHECK(opendir(DEVICES "/" NOIOMMU "/vfio-dev") == NULL && errno == ENOENT,
		      "no vfio-dev for the no-IOMMU device");
		expect_dir("/sys/class/vfio-dev", "vfio0 vfio1", DT_LNK);
		expect_dir("/dev/vfio/devices", "vfio0 vfio1", DT_CHR);
		CHECK(strcmp(read_line("/proc/sys/kernel/tainted"), "0\n") == 0, "not tainted");
	}
	{
		char got[256];
		CHECK(list_dir("/dev/vfio", got, sizeof got, 0) >= 1 && strstr(got, "devices") != NULL,
		      "/dev/vfio has devices: %s", got);
	}
	check_links();
	check_stat();
	check_files();
	check_fail_nth();
}

/*
 * The `driver` link of a device, which tools read to tell whether it is bound: its target, or
 * (want NULL) no link at all, and the driver's directory links back exactly when bound.
 */
static void expect_driver(const char *bdf, const char *want)
{
	char path[256], back[256], buf[256];
	ssize_t n;

	snprintf(path, sizeof path, DEVICES "/%s/driver", bdf);
	snprintf(back, sizeof back, "/sys/bus/pci/drivers/vfio-pci/%s", bdf);
	errno = 0;
	n = readlink(path, buf, sizeof buf - 1);
	if (want == NULL) {
		CHECK(n == -1 && errno == ENOENT, "%s has no driver link (readlink: %zd)", bdf, n);
		CHECK(access(back, F_OK) == -1 && errno == ENOENT, "vfio-pci has no link to %s", bdf);
		return;
	}
	CHECK(n > 0, "readlink %s", path);
	if (n > 0) {
		buf[n] = 0;
		CHECK(strcmp(buf, want) == 0, "%s -> %s, expected %s", path, buf, want);
	}
	CHECK(access(back, F_OK) == 0, "vfio-pci links back to %s", bdf);
}

/* unbind/bind of the no-IOMMU device while toggling the module parameter (off at boot). */
static void scenario_rebind(void)
{
	const char *vfio_dev = DEVICES "/" NOIOMMU "/vfio-dev";
	errno = 0;
	CHECK(opendir(vfio_dev) == NULL && errno == ENOENT, "not bound at boot");
	expect_driver(NOIOMMU, NULL);
	expect_driver(EDU0, "../../../bus/pci/drivers/vfio-pci");
	errno = 0;
	CHECK(write_line("/sys/bus/pci/drivers/vfio-pci/bind", NOIOMMU "\n") == -1 && errno == EINVAL,
	      "bind refused while the mode is off");
	CHECK(write_line(PARAM, "1\n") == 0, "enable_unsafe_noiommu_mode=1");
	CHECK(strcmp(read_line(PARAM), "Y\n") == 0, "reads Y");
	CHECK(write_line("/sys/bus/pci/drivers/vfio-pci/bind", NOIOMMU "\n") == 0, "bind");
	expect_driver(NOIOMMU, "../../../bus/pci/drivers/vfio-pci");
	expect_dir(vfio_dev, "noiommu-vfio2", DT_DIR);
	expect_dir("/dev/vfio/devices", "noiommu-vfio2 vfio0 vfio1", DT_CHR);
	expect_dir("/sys/class/vfio-dev", "noiommu-vfio2 vfio0 vfio1", DT_LNK);
	CHECK(strcmp(read_line("/proc/sys/kernel/tainted"), "64\n") == 0, "tainted after the bind");
	CHECK(write_line("/sys/bus/pci/drivers/vfio-pci/unbind", NOIOMMU "\n") == 0, "unbind");
	errno = 0;
	CHECK(opendir(vfio_dev) == NULL && errno == ENOENT, "vfio-dev gone after unbind");
	expect_dir("/dev/vfio/devices", "vfio0 vfio1", DT_CHR);
	CHECK(write_line("/sys/bus/pci/drivers/vfio-pci/unbind", EDU0 "\n") == 0, "unbind " EDU0);
	expect_driver(EDU0, NULL);
	expect_driver(NOIOMMU, NULL);
	expect_dir("/sys/class/vfio-dev", "vfio1", DT_LNK);
	CHECK(write_line(PARAM, "0\n") == 0, "enable_unsafe_noiommu_mode=0");
	CHECK(write_line("/sys/bus/pci/drivers/vfio-pci/bind", EDU0 "\n") == 0, "bind " EDU0);
	expect_driver(EDU0, "../../../bus/pci/drivers/vfio-pci");
	expect_dir(DEVICES "/" EDU0 "/vfio-dev", "vfio0", DT_DIR);
	expect_dir("/sys/class/vfio-dev", "vfio0 vfio1", DT_LNK);
}

int main(int argc, char **argv)
{
	const char *s = argc > 1 ? argv[1] : "";
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(s, "walk") == 0 && argc > 2)
		scenario_walk(atoi(argv[2]));
	else if (strcmp(s, "rebind") == 0)
		scenario_rebind();
	else {
		fprintf(stderr, "usage: shim-sysfs walk NODES | rebind\n");
		return 100;
	}
	return checks_done(s);
}
