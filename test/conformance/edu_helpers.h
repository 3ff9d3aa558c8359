/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for the conformance programs that drive QEMU's edu device through a VFIO device cdev
 * (vfio_*.c, dma_*.c, noiommu_*.c): the default platform's nodes, BAR0 and config-space access by
 * region offset (pread/pwrite at index << 40, ../shared/spec/edu.md §6.3-6.4), the DMA engine,
 * interrupts through eventfds (SET_IRQS), NOIOMMU_GET_PA, small /sys and /proc readers (a vfio-dev's
 * PCI address among them), and the fail-nth protocol.
 *
 * Include harness.h first, then this file.
 */
#ifndef IOMMUFD_EMU_CONFORMANCE_EDU_HELPERS_H
#define IOMMUFD_EMU_CONFORMANCE_EDU_HELPERS_H

#include <sys/resource.h>

#include "harness.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* The default platform (README.md)                                         */
/* ------------------------------------------------------------------------ */

#define EDU0_CDEV "/dev/vfio/devices/vfio0"		/* 0000:00:04.0, dmar0, group 0 */
#define EDU1_CDEV "/dev/vfio/devices/vfio1"		/* 0000:00:05.0, dmar0, group 1 */
#define NOIOMMU_CDEV "/dev/vfio/devices/noiommu-vfio2"	/* 0000:00:06.0, no IOMMU */
#define EDU0_BDF "0000:00:04.0"
#define EDU1_BDF "0000:00:05.0"
/*
 * The Linux lane (docs/linux-lane.md) moves the no-IOMMU edu behind a root port of its own (QEMU
 * can only bypass the IOMMU per host bridge) and builds with -DNOIOMMU_BDF=... to match.
 */
#ifndef NOIOMMU_BDF
#define NOIOMMU_BDF "0000:00:06.0"
#endif

/* The x86 MSI window every device behind dmar0 reserves, and dmar0's 48-bit aperture. */
#define MSI_START 0xfee00000ULL
#define MSI_LAST 0xfeefffffULL
#define DMAR0_APERTURE_LAST ((1ULL << 48) - 1)

/* ------------------------------------------------------------------------ */
/* edu registers (edu.md §3)                                                */
/* ------------------------------------------------------------------------ */

#define EDU_ID 0x00
#define EDU_LIVENESS 0x04
#define EDU_FACTORIAL 0x08
#define EDU_STATUS 0x20
#define EDU_IRQ_STATUS 0x24
#define EDU_IRQ_RAISE 0x60
#define EDU_IRQ_ACK 0x64
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98

#define EDU_ID_VALUE 0x010000edU
#define EDU_CMD_RUN 0x1ULL
#define EDU_CMD_TO_RAM 0x2ULL	/* edu buffer -> RAM; clear: RAM -> edu buffer */
#define EDU_CMD_IRQ 0x4ULL
#define EDU_IRQ_DMA 0x100U
#define EDU_BUF 0x40000ULL	/* device-side address of the 4 KiB DMA buffer */
#define EDU_BUF_SIZE 4096ULL

#define VFIO_REGION_OFF(index) ((__u64)(index) << 40)
#define BAR0_OFF(reg) (VFIO_REGION_OFF(VFIO_PCI_BAR0_REGION_INDEX) + (reg))
#define CFG_OFF(reg) (VFIO_REGION_OFF(VFIO_PCI_CONFIG_REGION_INDEX) + (reg))

#define PCI_CMD_REG 0x04
#define PCI_CMD_MEMORY 0x2
#define PCI_CMD_MASTER 0x4

/* How long a started DMA or an expected interrupt may take (a platform may use QEMU's 100 ms). */
#define EDU_TIMEOUT_MS 5000
/* How long to watch for an interrupt that must NOT come. */
#define EDU_QUIET_MS 200

/* ------------------------------------------------------------------------ */
/* Device fds                                                               */
/* ------------------------------------------------------------------------ */

static inline int cdev_open(const char *path)
{
	return open(path, O_RDWR | O_CLOEXEC);
}

/* A device opened, bound to `iommufd`, and (if ioas != 0) attached to `ioas`. */
struct edu_dev {
	int fd;
	__u32 devid;
	__u32 hwpt;	/* the HWPT ATTACH returned, 0 if not attached */
};

/* 0 on success; -1 with errno (and the fd closed) on failure. */
static inline int edu_open(const char *path, int iommufd, __u32 ioas, struct edu_dev *d)
{
	int err;

	d->fd = cdev_open(path);
	d->devid = 0;
	d->hwpt = 0;
	if (d->fd < 0)
		return -1;
	if (vfio_bind(d->fd, iommufd, &d->devid))
		goto fail;
	if (ioas) {
		d->hwpt = ioas;
		if (vfio_attach(d->fd, &d->hwpt)) {
			d->hwpt = 0;
			goto fail;
		}
	}
	return 0;
fail:
	err = errno;
	close(d->fd);
	d->fd = -1;
	errno = err;
	return -1;
}

static inline void edu_close(struct edu_dev *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

/*
 * Pins of `len` bytes are allowed: CAP_IPC_LOCK, or a memlock limit raised to fit (up to the
 * hard limit). 1 if so.
 */
static inline int may_pin(unsigned long long len)
{
	struct rlimit rl;

	if (cap_effective(CAP_IPC_LOCK))
		return 1;
	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		return 0;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < len) {
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < len)
			return 0;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_MEMLOCK, &rl))
			return 0;
	}
	return 1;
}

/* ------------------------------------------------------------------------ */
/* BAR0 and config space by region offset                                  */
/* ------------------------------------------------------------------------ */

/* Each returns 0, or -1 (errno set; EIO for a short transfer). */
static inline int edu_rd32(int dev, __u64 reg, __u32 *v)
{
	ssize_t n = pread(dev, v, 4, (off_t)BAR0_OFF(reg));

	if (n == 4)
		return 0;
	if (n >= 0)
		errno = EIO;
	return -1;
}

static inline int edu_rd64(int dev, __u64 reg, __u64 *v)
{
	ssize_t n = pread(dev, v, 8, (off_t)BAR0_OFF(reg));

	if (n == 8)
		return 0;
	if (n >= 0)
		errno = EIO;
	return -1;
}

static inline int edu_wr32(int dev, __u64 reg, __u32 v)
{
	ssize_t n = pwrite(dev, &v, 4, (off_t)BAR0_OFF(reg));

	if (n == 4)
		return 0;
	if (n >= 0)
		errno = EIO;
	return -1;
}

/* 64-bit addresses need 8-byte stores from 0x80 on (edu.md §3). */
static inline int edu_wr64(int dev, __u64 reg, __u64 v)
{
	ssize_t n = pwrite(dev, &v, 8, (off_t)BAR0_OFF(reg));

	if (n == 8)
		return 0;
	if (n >= 0)
		errno = EIO;
	return -1;
}

/* A register value, or 0xdeadbeef if the read failed (the check then shows it). */
static inline __u32 edu_reg(int dev, __u64 reg)
{
	__u32 v;

	return edu_rd32(dev, reg, &v) ? 0xdeadbeefU : v;
}

static inline int cfg_rd16(int dev, __u64 off, __u16 *v)
{
	ssize_t n = pread(dev, v, 2, (off_t)CFG_OFF(off));

	if (n == 2)
		return 0;
	if (n >= 0)
		errno = EIO;
	return -1;
}

static inline int cfg_wr16(int dev, __u64 off, __u16 v)
{
	ssize_t n = pwrite(dev, &v, 2, (off_t)CFG_OFF(off));

	if (n == 2)
		return 0;
	if (n >= 0)
		errno = EIO;
	return -1;
}

/* 1 if bus mastering is on, 0 if off, -1 if the command register cannot be read. */
static inline int edu_bus_master(int dev)
{
	__u16 cmd;

	if (cfg_rd16(dev, PCI_CMD_REG, &cmd))
		return -1;
	return !!(cmd & PCI_CMD_MASTER);
}

/* Read-modify-write of the command register, as drivers do (kobox: cmd |= 0x6). */
static inline int edu_set_bus_master(int dev, int on)
{
	__u16 cmd;

	if (cfg_rd16(dev, PCI_CMD_REG, &cmd))
		return -1;
	if (on)
		cmd |= PCI_CMD_MEMORY | PCI_CMD_MASTER;
	else
		cmd &= (__u16)~PCI_CMD_MASTER;
	return cfg_wr16(dev, PCI_CMD_REG, cmd);
}

/* After a reset: the device answers on BAR0 and still decodes memory (it kept its config state). */
static inline void edu_check_still_works(int dev)
{
	__u16 cmd = 0;

	CHECK_EQ(edu_reg(dev, EDU_ID), EDU_ID_VALUE);
	CHECK_OK(edu_wr32(dev, EDU_LIVENESS, 0x12345678));
	CHECK_EQ(edu_reg(dev, EDU_LIVENESS), ~0x12345678u);
	CHECK_OK(cfg_rd16(dev, PCI_CMD_REG, &cmd));
	CHECK(cmd & PCI_CMD_MEMORY);
}

/* ------------------------------------------------------------------------ */
/* The DMA engine (edu.md §4)                                               */
/* ------------------------------------------------------------------------ */

static inline long long h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Number of edu_dma() calls whose first poll still saw the RUN bit (asynchronous completion). */
static int edu_dma_seen_running;

/*
 * Programs one transfer and polls the command register's RUN bit (bit 0) until the device clears
 * it: completion is asynchronous, so a driver must poll (or wait for the interrupt). `cmd` is
 * written as given (include EDU_CMD_RUN). Returns 0 once the RUN bit is clear, -1 on an I/O error
 * (errno), -2 if the device did not finish within EDU_TIMEOUT_MS. *final_cmd (optional) receives
 * the command register read after completion.
 */
static inline int edu_dma(int dev, __u64 src, __u64 dst, __u64 count, __u64 cmd,
			  __u64 *final_cmd)
{
	long long deadline;
	__u64 v;
	int first = 1;

	if (edu_wr64(dev, EDU_DMA_SRC, src) || edu_wr64(dev, EDU_DMA_DST, dst) ||
	    edu_wr64(dev, EDU_DMA_COUNT, count) || edu_wr64(dev, EDU_DMA_CMD, cmd))
		return -1;
	deadline = h_now_ms() + EDU_TIMEOUT_MS;
	for (;;) {
		if (edu_rd64(dev, EDU_DMA_CMD, &v))
			return -1;
		if (!(v & EDU_CMD_RUN))
			break;
		if (first)
			edu_dma_seen_running++;
		first = 0;
		if (h_now_ms() > deadline)
			return -2;
		usleep(50);
	}
	if (final_cmd)
		*final_cmd = v;
	return 0;
}

/* RAM (bus address `addr`) -> edu buffer + off. */
static inline int edu_dma_in(int dev, __u64 addr, __u64 off, __u64 count)
{
	return edu_dma(dev, addr, EDU_BUF + off, count, EDU_CMD_RUN, NULL);
}

/* edu buffer + off -> RAM (bus address `addr`). */
static inline int edu_dma_out(int dev, __u64 off, __u64 addr, __u64 count)
{
	return edu_dma(dev, EDU_BUF + off, addr, count, EDU_CMD_RUN | EDU_CMD_TO_RAM, NULL);
}

/* ------------------------------------------------------------------------ */
/* Memory patterns                                                          */
/* ------------------------------------------------------------------------ */

static inline void fill_pattern(void *p, size_t len, unsigned int seed)
{
	unsigned char *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		b[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 8) * 13 + 1);
}

/* 1 if every byte of p is `v`. */
static inline int all_bytes(const void *p, size_t len, unsigned char v)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i] != v)
			return 0;
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Interrupts                                                               */
/* ------------------------------------------------------------------------ */

static inline int efd_new(void)
{
	return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

/*
 * Waits up to timeout_ms for the eventfd to become readable and reads it. Returns the counter
 * value read (>= 1), 0 if nothing arrived in time, -1 on an error.
 */
static inline long long efd_wait(int efd, int timeout_ms)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };
	__u64 v;
	int r;

	do {
		r = poll(&p, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -1;
	if (r == 0)
		return 0;
	if (read(efd, &v, sizeof(v)) != sizeof(v))
		return errno == EAGAIN ? 0 : -1;
	return (long long)v;
}

/* VFIO_DEVICE_SET_IRQS with `count` eventfds (fds may be NULL for DATA_NONE). */
static inline int vfio_set_irqs(int dev, __u32 flags, __u32 index, __u32 start, __u32 count,
				const __s32 *fds)
{
	union {
		struct vfio_irq_set s;
		char buf[sizeof(struct vfio_irq_set) + 8 * sizeof(__s32)];
	} u;
	__u32 n = (flags & VFIO_IRQ_SET_DATA_EVENTFD) ? count : 0;

	memset(&u, 0, sizeof(u));
	if (n > 8)
		n = 8;
	u.s.argsz = (__u32)(sizeof(struct vfio_irq_set) + n * sizeof(__s32));
	u.s.flags = flags;
	u.s.index = index;
	u.s.start = start;
	u.s.count = count;
	if (n)
		memcpy(u.buf + sizeof(struct vfio_irq_set), fds, n * sizeof(__s32));
	return ioctl(dev, VFIO_DEVICE_SET_IRQS, &u);
}

static inline int vfio_irq_eventfd(int dev, __u32 index, int efd)
{
	__s32 fd = efd;

	return vfio_set_irqs(dev, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0,
			     1, &fd);
}

/* count 0, DATA_NONE|TRIGGER: disables the index. */
static inline int vfio_irq_disable(int dev, __u32 index)
{
	return vfio_set_irqs(dev, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0,
			     NULL);
}

/* count 1, DATA_NONE|TRIGGER: the software loopback trigger. */
static inline int vfio_irq_loopback(int dev, __u32 index)
{
	return vfio_set_irqs(dev, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 1,
			     NULL);
}

static inline int vfio_intx_unmask(int dev)
{
	return vfio_set_irqs(dev, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
			     VFIO_PCI_INTX_IRQ_INDEX, 0, 1, NULL);
}

static inline int vfio_intx_mask(int dev)
{
	return vfio_set_irqs(dev, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
			     VFIO_PCI_INTX_IRQ_INDEX, 0, 1, NULL);
}

/* ------------------------------------------------------------------------ */
/* VFIO info                                                                */
/* ------------------------------------------------------------------------ */

static inline int vfio_region_info(int dev, __u32 index, struct vfio_region_info *ri)
{
	memset(ri, 0, sizeof(*ri));
	ri->argsz = sizeof(*ri);
	ri->index = index;
	return ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, ri);
}

static inline int vfio_irq_info(int dev, __u32 index, struct vfio_irq_info *ii)
{
	memset(ii, 0, sizeof(*ii));
	ii->argsz = sizeof(*ii);
	ii->index = index;
	return ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, ii);
}

/* ------------------------------------------------------------------------ */
/* iommufd extras                                                           */
/* ------------------------------------------------------------------------ */

/*
 * IOMMU_IOAS_NOIOMMU_GET_PA. *length: in the cap, out the contiguous length; *pa the physical
 * address. Both are left alone on failure.
 */
static inline int get_pa_ex(int fd, __u32 ioas, __u32 flags, __u32 reserved, __u64 iova,
			    __u64 *length, __u64 *pa)
{
	struct iommu_ioas_noiommu_get_pa cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.ioas_id = ioas,
		.__reserved = reserved,
		.iova = iova,
		.length = *length,
	};
	int rc = ioctl(fd, IOMMU_IOAS_NOIOMMU_GET_PA, &cmd);

	if (!rc) {
		*length = cmd.length;
		if (pa)
			*pa = cmd.out_phys;
	}
	return rc;
}

static inline int get_pa(int fd, __u32 ioas, __u64 iova, __u64 *length, __u64 *pa)
{
	return get_pa_ex(fd, ioas, 0, 0, iova, length, pa);
}

/* GET_PA with a cap, for CHECK_ERRNO: the results are thrown away. */
static inline int get_pa_try(int fd, __u32 ioas, __u64 iova, __u64 cap)
{
	__u64 len = cap, pa;

	return get_pa(fd, ioas, iova, &len, &pa);
}

/* IOVA_RANGES into `r` (room for 8). Returns the ioctl's result; *num the count. */
static inline int iova_ranges8(int fd, __u32 ioas, struct iommu_iova_range r[8], __u32 *num,
			       __u64 *align)
{
	*num = 8;
	memset(r, 0, 8 * sizeof(*r));
	return ioas_iova_ranges(fd, ioas, r, num, align);
}

/* ------------------------------------------------------------------------ */
/* /sys and /proc                                                           */
/* ------------------------------------------------------------------------ */

/*
 * Writes `text` to a file with one open(O_WRONLY) and one write, as `echo -n TEXT > PATH` does:
 * the write's byte count, or -1 with the errno of whichever call failed.
 */
static inline ssize_t write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;
	int err;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	err = errno;
	close(fd);
	errno = err;
	return n;
}

/* Reads a small file with open/read (not fopen). Returns bytes read (NUL-terminated) or -1. */
static inline ssize_t read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;
	int err;

	if (fd < 0)
		return -1;
	while ((size_t)total + 1 < len) {
		n = read(fd, buf + total, len - 1 - (size_t)total);
		if (n < 0) {
			err = errno;
			close(fd);
			errno = err;
			return -1;
		}
		if (n == 0)
			break;
		total += n;
	}
	buf[total] = 0;
	close(fd);
	return total;
}

/* Reads a symlink's target, NUL-terminated (cut to fit). Returns its length, or -1. */
static inline ssize_t read_link(const char *path, char *buf, size_t len)
{
	ssize_t n = readlink(path, buf, len - 1);

	if (n < 0)
		return -1;
	buf[n] = 0;
	return n;
}

/* "DDDD:BB:DD.F" and its NUL. */
#define PCI_BDF_LEN 13

/*
 * The PCI address of the vfio-dev `name` ("vfio0", "noiommu-vfio2"), as a driver finds it: the
 * class link /sys/class/vfio-dev/NAME points into the device's directory
 * (".../0000:00:04.0/vfio-dev/vfio0"). 0 with bdf filled in, or -1 (no link, or no address in it).
 */
static inline int vfio_dev_bdf(const char *name, char bdf[PCI_BDF_LEN])
{
	char link[256], target[512];
	const char *end;

	snprintf(link, sizeof(link), "/sys/class/vfio-dev/%s", name);
	if (read_link(link, target, sizeof(target)) < 0)
		return -1;
	end = strstr(target, "/vfio-dev/");
	if (end == NULL || end - target < PCI_BDF_LEN - 1)
		return -1;
	memcpy(bdf, end - (PCI_BDF_LEN - 1), PCI_BDF_LEN - 1);
	bdf[PCI_BDF_LEN - 1] = 0;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* fail-nth (Documentation/fault-injection/fault-injection.rst)            */
/* ------------------------------------------------------------------------ */

/* Opens /proc/self/task/<tid>/fail-nth of the calling thread, before arming it (an open in the
 * armed window would itself reach injection points). */
static inline int failnth_open(void)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%ld/fail-nth", (long)syscall(SYS_gettid));
	return open(path, O_RDWR | O_CLOEXEC);
}

/* Arms the counter: the Nth injection point this thread reaches fails. 0 disarms. */
static inline int failnth_arm(int fd, unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	return pwrite(fd, buf, (size_t)len, 0) == len ? 0 : -1;
}

/* 1 if the armed injection fired (the file reads "0\n"), 0 if not, -1 on an error. */
static inline int failnth_fired(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return -1;
	buf[n] = 0;
	return strcmp(buf, "0\n") == 0;
}

/*
 * Arms the Nth injection point on the fail-nth file `fnfd`, runs `call` (its result in `rc`, its
 * errno in `err`) and sets `fired` to whether the point fired. Always disarms: in the kernel a
 * counter that was not used up would fire in a later call.
 */
#define FAILNTH_INJECT(fnfd, n, fired, rc, err, call)                      \
	do {                                                               \
		REQUIRE_OK(failnth_arm((fnfd), (n)));                      \
		errno = 0;                                                 \
		(rc) = (call);                                             \
		(err) = errno;                                             \
		(fired) = failnth_fired(fnfd);                             \
		REQUIRE_OK(failnth_arm((fnfd), 0));                        \
		REQUIRE((fired) >= 0);                                     \
	} while (0)

#endif /* IOMMUFD_EMU_CONFORMANCE_EDU_HELPERS_H */
