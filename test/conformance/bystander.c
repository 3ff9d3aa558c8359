/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One thread's huge call does not hold another's (issue 13, item 2): while a
 * thread makes an ioctl that walks gigabytes of its memory (IOMMU_IOAS_ALLOC
 * whose size says 4 GiB over zeroes: copy_struct_from_user's zero check;
 * IOMMU_GET_HW_INFO with data_len 2^31: clear_user of the buffer), a second
 * thread's ordinary ioctl on the same iommufd completes before the huge call
 * has walked to its end. How far the walk got is read from the walked memory
 * itself (mincore: a page the kernel has read or written is resident), so the
 * order is asserted, not a time. The huge calls' own results are those of a
 * call nobody watched.
 *
 * A bystander needs a CPU of its own (with one, a kernel without preemption
 * finishes the walk first): skipped on a single CPU, and the 2 GiB clear is
 * skipped on a machine with less than 4 GiB of RAM.
 */
#include <pthread.h>

#include "harness.h"

#define GIB (1024ULL * 1024 * 1024)
/* Past what the shim reads ahead of a call, and past the emulator's first slice. */
#define PROBE_OFFSET (64ULL * 1024 * 1024)

struct huge_call {
	int fd;
	unsigned long req;
	void *arg;
	int ret;
	int err;
};

static void *huge_call_run(void *p)
{
	struct huge_call *c = p;

	c->ret = ioctl(c->fd, c->req, c->arg);
	c->err = errno;
	return NULL;
}

static int resident(const void *addr)
{
	unsigned char vec = 0;

	if (mincore((void *)((unsigned long)addr & ~(PAGE_SZ - 1)), PAGE_SZ, &vec))
		return -1;
	return vec & 1;
}

/*
 * Starts `c` in a thread, waits until the walk reaches `probe`, makes an
 * ordinary call (IOAS_ALLOC, DESTROY) and checks `last` is still untouched
 * after it returned; then waits for the huge call.
 */
static void bystander_during(struct huge_call *c, const void *probe, const void *last)
{
	pthread_t t;
	__u32 id;
	int r;

	REQUIRE(resident(probe) == 0 && resident(last) == 0);
	REQUIRE(pthread_create(&t, NULL, huge_call_run, c) == 0);
	/* Polled, not spun: the walk needs the CPUs more than the bystander. */
	while ((r = resident(probe)) == 0)
		usleep(1000);
	CHECK_EQ(r, 1);
	CHECK_OK(ioas_alloc(c->fd, &id));
	CHECK_OK(iommu_destroy(c->fd, id));
	/* The bystander's calls came back while the huge one was still walking. */
	CHECK_EQ(resident(last), 0);
	REQUIRE(pthread_join(t, NULL) == 0);
}

static int one_cpu(void)
{
	return sysconf(_SC_NPROCESSORS_ONLN) < 2;
}

/* IOAS_ALLOC whose size is 0xffffffff, over 4 GiB of zeroes: served, and answered. */
TEST(ioas_alloc_4g_zero_tail)
{
	const size_t len = 4 * GIB;
	unsigned char *buf;
	struct iommu_ioas_alloc *cmd;
	struct huge_call c;
	int fd;

	if (one_cpu())
		SKIP("a single CPU");
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	REQUIRE(buf != MAP_FAILED);
	cmd = (struct iommu_ioas_alloc *)buf;
	cmd->size = 0xffffffffU;
	c = (struct huge_call){ .fd = fd, .req = IOMMU_IOAS_ALLOC, .arg = cmd };
	bystander_during(&c, buf + PROBE_OFFSET, buf + len - PAGE_SZ);
	CHECK_EQ(c.ret, 0);
	if (c.ret == -1)
		h_note("IOAS_ALLOC failed: %s", h_errname(c.err));
	CHECK(cmd->out_ioas_id != 0);
	CHECK_OK(iommu_destroy(fd, cmd->out_ioas_id));
	munmap(buf, len);
	close(fd);
}

/* GET_HW_INFO with data_len 2^31: the buffer is cleared, the call succeeds. */
TEST(hw_info_2g_clear)
{
	const size_t len = 2 * GIB;
	char devpath[64];
	struct iommu_hw_info info;
	unsigned char *buf;
	struct huge_call c;
	__u32 devid;
	int fd, dev;

	if (one_cpu())
		SKIP("a single CPU");
	if ((unsigned long long)sysconf(_SC_PHYS_PAGES) * PAGE_SZ < 4 * GIB)
		SKIP("less than 4 GiB of RAM");
	dev = vfio_cdev_open_any(devpath, sizeof(devpath));
	if (dev < 0)
		SKIP("no VFIO device cdev");
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	REQUIRE_OK(vfio_bind(dev, fd, &devid));
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	REQUIRE(buf != MAP_FAILED);
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	info.dev_id = devid;
	info.data_len = 0x80000000U;
	info.data_uptr = (__u64)(unsigned long)buf;
	c = (struct huge_call){ .fd = fd, .req = IOMMU_GET_HW_INFO, .arg = &info };
	bystander_during(&c, buf + PROBE_OFFSET, buf + len - PAGE_SZ);
	CHECK_EQ(c.ret, 0);
	if (c.ret == -1)
		h_note("GET_HW_INFO failed: %s", h_errname(c.err));
	/* Cleared to its end (the emulated IOMMUs have no blob; a real one's is short). */
	CHECK_EQ(resident(buf + len - PAGE_SZ), 1);
	CHECK_EQ(buf[len - 1], 0);
	munmap(buf, len);
	close(dev);
	close(fd);
}

int main(void)
{
	h_init();
	RUN(ioas_alloc_4g_zero_tail);
	RUN(hw_info_2g_clear);
	return h_done();
}
