/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Where programs look for iommufd's accounting (issue 15): the VmPin and VmLck lines of
 * /proc/<pid>/status. Every page iommufd pins counts in the source process's VmPin (mm->pinned_vm)
 * whatever the account mode; with IOMMU_OPTION_RLIMIT_MODE set to per-process accounting (and no
 * CAP_IPC_LOCK) it counts in VmLck (mm->locked_vm) too. The lines are read as deltas from what
 * the process had before, through /proc/self, /proc/<pid>, /proc/thread-self and from a child.
 */
#include "harness.h"
#include "selftest_helpers.h"

#define NPAGES 8
#define BUF_SIZE (NPAGES * PAGE_SZ)
#define IOVA MOCK_APERTURE_START
#define KB(pages) ((long)(pages) * (long)(PAGE_SZ / 1024))

static unsigned char *g_buf;

/* The value of "name:" in kB in a status file, or -1. */
static long status_kb(const char *path, const char *name)
{
	char line[256];
	size_t len = strlen(name);
	long kb = -1;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, name, len) == 0 && line[len] == ':') {
			kb = strtol(line + len + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

#define VMPIN() status_kb("/proc/self/status", "VmPin")
#define VMLCK() status_kb("/proc/self/status", "VmLck")

/* An iommufd and an IOAS with g_buf mapped; SKIP without the test interface. */
#define OPEN_IOAS(fd, ioas) OPEN_MOCK_IOAS(fd, ioas, g_buf, BUF_SIZE)

TEST(vmpin_counts_pinned_pages)
{
	char path[96];
	long pin0, lck0;
	__u32 ioas, stdev, ioas2;
	int fd;

	pin0 = VMPIN();
	lck0 = VMLCK();
	REQUIRE(pin0 >= 0 && lck0 >= 0);
	OPEN_IOAS(fd, ioas);
	/* A map with no domain pins nothing. */
	CHECK_EQ(VMPIN(), pin0);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, NULL));
	CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, 1));
	CHECK_EQ(VMPIN(), pin0 + KB(NPAGES));
	/* Per-user accounting (the default) leaves the process's VmLck alone. */
	CHECK_EQ(VMLCK(), lck0);
	/* The same numbers through /proc/<pid>, the thread's own file and /proc/thread-self. */
	snprintf(path, sizeof(path), "/proc/%d/status", (int)getpid());
	CHECK_EQ(status_kb(path, "VmPin"), pin0 + KB(NPAGES));
	snprintf(path, sizeof(path), "/proc/self/task/%ld/status", (long)syscall(SYS_gettid));
	CHECK_EQ(status_kb(path, "VmPin"), pin0 + KB(NPAGES));
	CHECK_EQ(status_kb("/proc/thread-self/status", "VmPin"), pin0 + KB(NPAGES));
	/* A second MAP of the same memory, in a domain too, is a second pin of two pages. */
	REQUIRE_OK(ioas_alloc(fd, &ioas2));
	REQUIRE_OK(mock_domain_flags(fd, ioas2, 0, NULL, NULL, NULL));
	REQUIRE_OK(ioas_map_fixed(fd, ioas2, g_buf, 2 * PAGE_SZ, IOVA));
	CHECK_EQ(VMPIN(), pin0 + KB(NPAGES + 2));
	/* Unpinned as the domain goes. */
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_EQ(VMPIN(), pin0 + KB(2));
	CHECK_OK(close(fd));
	CHECK_EQ(VMPIN(), pin0);
	CHECK_EQ(VMLCK(), lck0);
}

TEST(vmpin_read_by_a_child)
{
	char path[96];
	long pin0;
	__u32 ioas;
	int fd, status;
	pid_t pid;

	pin0 = VMPIN();
	REQUIRE(pin0 >= 0);
	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, NULL, NULL, NULL));
	snprintf(path, sizeof(path), "/proc/%d/status", (int)getpid());
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* The parent's pins are the parent's: the child has none of its own. */
		CHECK_EQ(status_kb(path, "VmPin"), pin0 + KB(NPAGES));
		CHECK_EQ(VMPIN(), pin0);
		CHILD_EXIT();
	}
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fd);
	CHECK_EQ(VMPIN(), pin0);
}

TEST(vmlck_with_per_process_accounting)
{
	struct iommu_option opt = {
		.size = sizeof(opt),
		.option_id = IOMMU_OPTION_RLIMIT_MODE,
		.op = IOMMU_OPTION_OP_SET,
		.val64 = 1,
	};
	int had_ipc_lock = cap_effective(CAP_IPC_LOCK);
	long pin0, lck0;
	__u32 ioas;
	int fd;

	fd = iommufd_open();
	REQUIRE(fd >= 0);
	if (ioctl(fd, IOMMU_OPTION, &opt) && errno == EPERM) {
		close(fd);
		SKIP("needs CAP_SYS_RESOURCE for IOMMU_OPTION_RLIMIT_MODE");
	}
	/* Without CAP_IPC_LOCK the pages are charged to this process's locked_vm. */
	if (had_ipc_lock)
		REQUIRE_OK(cap_set_effective(CAP_IPC_LOCK, 0));
	pin0 = VMPIN();
	lck0 = VMLCK();
	REQUIRE(pin0 >= 0 && lck0 >= 0);
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	REQUIRE_OK(ioas_map_fixed(fd, ioas, g_buf, BUF_SIZE, IOVA));
	CHECK_EQ(VMLCK(), lck0);
	if (mock_domain_flags(fd, ioas, 0, NULL, NULL, NULL) == 0) {
		CHECK_EQ(VMLCK(), lck0 + KB(NPAGES));
		CHECK_EQ(VMPIN(), pin0 + KB(NPAGES));
	} else {
		h_fail(__FILE__, __LINE__, "MOCK_DOMAIN: %s", h_errname(errno));
	}
	close(fd);
	CHECK_EQ(VMLCK(), lck0);
	CHECK_EQ(VMPIN(), pin0);
	if (had_ipc_lock)
		CHECK_OK(cap_set_effective(CAP_IPC_LOCK, 1));
}

TEST(change_process_moves_vmpin)
{
	struct iommu_ioas_change_process change = { .size = sizeof(change) };
	struct iommu_ioas_map_file map = { .size = sizeof(map) };
	int had_ipc_lock = cap_effective(CAP_IPC_LOCK);
	long pin0;
	__u32 ioas;
	int fd, mfd, status;
	pid_t pid;

	/* Charged pages (no CAP_IPC_LOCK), so that their pinned_vm moves with their charge. */
	if (had_ipc_lock)
		REQUIRE_OK(cap_set_effective(CAP_IPC_LOCK, 0));
	pin0 = VMPIN();
	REQUIRE(pin0 >= 0);
	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(iommu_destroy(fd, ioas));
	REQUIRE_OK(ioas_alloc(fd, &ioas));
	mfd = memfd_create("proc_status_pins", MFD_CLOEXEC);
	REQUIRE(mfd >= 0);
	REQUIRE_OK(ftruncate(mfd, BUF_SIZE));
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, NULL, NULL, NULL));
	map.flags = IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW;
	map.ioas_id = ioas;
	map.fd = mfd;
	map.length = BUF_SIZE;
	map.iova = IOVA;
	REQUIRE_OK(ioctl(fd, IOMMU_IOAS_MAP_FILE, &map));
	CHECK_EQ(VMPIN(), pin0 + KB(NPAGES));
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		long mine = VMPIN();

		/* The child takes the accounting of every area: its VmPin grows by them. */
		CHECK_OK(ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &change));
		CHECK_EQ(VMPIN(), mine + KB(NPAGES));
		CHILD_EXIT();
	}
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* ... and the parent's shrinks by them. */
	CHECK_EQ(VMPIN(), pin0);
	/* Taking them back. */
	CHECK_OK(ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &change));
	CHECK_EQ(VMPIN(), pin0 + KB(NPAGES));
	close(fd);
	close(mfd);
	CHECK_EQ(VMPIN(), pin0);
	if (had_ipc_lock)
		CHECK_OK(cap_set_effective(CAP_IPC_LOCK, 1));
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0x6b, BUF_SIZE);
	RUN(vmpin_counts_pinned_pages);
	RUN(vmpin_read_by_a_child);
	RUN(vmlck_with_per_process_accounting);
	RUN(change_process_moves_vmpin);
	return h_done();
}
