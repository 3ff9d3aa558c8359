/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * edu interrupts through VFIO_DEVICE_SET_IRQS eventfds (edu.md §5, §6.6): a DMA with the IRQ bit
 * (command bit 2) raises cause 0x100, which is in the interrupt status register (0x24) by the
 * time the eventfd fires and is cleared by an ack at 0x64. MSI is an edge per raise; INTx is a
 * level, automasked by vfio: one signal, then nothing until UNMASK, and an UNMASK while the line
 * is still asserted signals again at once. DATA_NONE|ACTION_TRIGGER with count 1 is the software
 * loopback trigger.
 */
#include "harness.h"
#include "edu_helpers.h"

static unsigned char *g_mem;

/* A device attached to a fresh IOAS with one page mapped at 0x100000, bus mastering on, no
 * interrupt cause pending. */
struct setup {
	int fd;
	__u32 ioas;
	struct edu_dev d;
};

static int setup(struct setup *s, const char *path)
{
	s->d.fd = -1;
	s->fd = iommufd_open();
	if (s->fd < 0 || ioas_alloc(s->fd, &s->ioas) || edu_open(path, s->fd, s->ioas, &s->d))
		return -1;
	if (ioas_map_fixed(s->fd, s->ioas, g_mem, PAGE_SZ, 0x100000))
		return -1;
	if (edu_set_bus_master(s->d.fd, 1))
		return -1;
	return edu_wr32(s->d.fd, EDU_IRQ_ACK, 0xffffffff);
}

static void teardown(struct setup *s)
{
	edu_close(&s->d);
	if (s->fd >= 0)
		close(s->fd);
}

/* A 64-byte DMA RAM -> buffer that raises the DMA interrupt when done. */
static int dma_with_irq(struct setup *s)
{
	return edu_dma(s->d.fd, 0x100000, EDU_BUF, 64, EDU_CMD_RUN | EDU_CMD_IRQ, NULL);
}

TEST(msi_on_dma_completion)
{
	struct setup s;
	int efd = efd_new();
	__u64 cmd = 0;

	REQUIRE(efd >= 0);
	REQUIRE_OK(setup(&s, EDU0_CDEV));
	REQUIRE_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX, efd));
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), 0);

	/* Without the IRQ bit: no interrupt. */
	CHECK_OK(edu_dma_in(s.d.fd, 0x100000, 0, 64));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), 0);

	/* With it: one MSI; the cause is in 0x24 by then; an ack clears it. */
	CHECK_OK(edu_dma(s.d.fd, 0x100000, EDU_BUF, 64, EDU_CMD_RUN | EDU_CMD_IRQ, &cmd));
	CHECK_EQ(cmd, EDU_CMD_IRQ);
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), EDU_IRQ_DMA);
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, EDU_IRQ_DMA));
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), 0);
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);

	/* MSI is an edge per raise, even with a cause still pending. */
	CHECK_OK(dma_with_irq(&s));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_RAISE, 0x10000));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), EDU_IRQ_DMA | 0x10000);
	/* A partial ack leaves the rest. */
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, EDU_IRQ_DMA));
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), 0x10000);
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, 0x10000));
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), 0);

	/* Disabled (count 0, DATA_NONE): no more signals. */
	CHECK_OK(vfio_irq_disable(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	CHECK_OK(dma_with_irq(&s));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), EDU_IRQ_DMA);
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, EDU_IRQ_DMA));
	teardown(&s);
	close(efd);
}

TEST(msi_loopback_trigger)
{
	struct setup s;
	int efd = efd_new();
	__u8 yes = 1, no = 0;

	REQUIRE(efd >= 0);
	REQUIRE_OK(setup(&s, EDU1_CDEV));
	/* Not in MSI mode yet: nothing to trigger. */
	CHECK_ERRNO(EINVAL, vfio_irq_loopback(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	REQUIRE_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX, efd));
	CHECK_OK(vfio_irq_loopback(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	/* The device saw nothing of it. */
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), 0);
	CHECK_OK(vfio_irq_loopback(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	CHECK_OK(vfio_irq_loopback(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 2);
	/* DATA_BOOL: true triggers, false does not. */
	{
		union {
			struct vfio_irq_set s;
			char buf[sizeof(struct vfio_irq_set) + 4];
		} u;

		memset(&u, 0, sizeof(u));
		u.s.argsz = sizeof(struct vfio_irq_set) + 1;
		u.s.flags = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
		u.s.index = VFIO_PCI_MSI_IRQ_INDEX;
		u.s.count = 1;
		memcpy(u.buf + sizeof(struct vfio_irq_set), &no, 1);
		CHECK_OK(ioctl(s.d.fd, VFIO_DEVICE_SET_IRQS, &u));
		CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);
		memcpy(u.buf + sizeof(struct vfio_irq_set), &yes, 1);
		CHECK_OK(ioctl(s.d.fd, VFIO_DEVICE_SET_IRQS, &u));
		CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	}
	/* Beyond the one vector: EINVAL. */
	CHECK_ERRNO(EINVAL, vfio_set_irqs(s.d.fd,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
					  VFIO_PCI_MSI_IRQ_INDEX, 1, 1, NULL));
	/* MSI has no mask/unmask through VFIO: vfio_pci_set_irqs_ioctl finds no handler ("XXX Need
	 * masking support exported") and answers ENOTTY. */
	CHECK_ERRNO(ENOTTY, vfio_set_irqs(s.d.fd,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
					  VFIO_PCI_MSI_IRQ_INDEX, 0, 1, NULL));
	/* While MSI is on, INTx cannot be set up. */
	{
		int efd2 = efd_new();

		CHECK_ERRNO(EINVAL, vfio_irq_eventfd(s.d.fd, VFIO_PCI_INTX_IRQ_INDEX, efd2));
		close(efd2);
	}
	CHECK_OK(vfio_irq_disable(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	CHECK_ERRNO(EINVAL, vfio_irq_loopback(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX));
	teardown(&s);
	close(efd);
}

TEST(intx_automask_and_unmask)
{
	struct setup s;
	int efd = efd_new();

	REQUIRE(efd >= 0);
	REQUIRE_OK(setup(&s, EDU0_CDEV));
	REQUIRE_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_INTX_IRQ_INDEX, efd));

	/* The DMA interrupt asserts the line: one signal, and vfio masks it. */
	CHECK_OK(dma_with_irq(&s));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), EDU_IRQ_DMA);
	/* Masked: more causes signal nothing. */
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_RAISE, 0x2));
	CHECK_OK(dma_with_irq(&s));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), EDU_IRQ_DMA | 0x2);

	/* The driver acks the device (the line drops at 0), then unmasks: nothing pending. */
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, EDU_IRQ_DMA | 0x2));
	CHECK_EQ(edu_reg(s.d.fd, EDU_IRQ_STATUS), 0);
	CHECK_OK(vfio_intx_unmask(s.d.fd));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);

	/* Unmasked again: the next interrupt signals. */
	CHECK_OK(dma_with_irq(&s));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	/* Unmask BEFORE the ack: the line is still asserted, so vfio signals again at once and
	 * stays masked (maan2003/drv's spurious extra event, edu.md §6.6). */
	CHECK_OK(vfio_intx_unmask(s.d.fd));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_RAISE, 0x4));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);	/* still masked */
	/* A partial ack keeps the level up: unmask signals again. */
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, EDU_IRQ_DMA));
	CHECK_OK(vfio_intx_unmask(s.d.fd));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	/* The full ack, then unmask: quiet. */
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, 0x4));
	CHECK_OK(vfio_intx_unmask(s.d.fd));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);

	/* An explicit MASK holds the next assertion back until UNMASK. */
	CHECK_OK(vfio_intx_mask(s.d.fd));
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_RAISE, 0x8));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);
	CHECK_OK(vfio_intx_unmask(s.d.fd));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, 0x8));
	CHECK_OK(vfio_intx_unmask(s.d.fd));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);

	/* The loopback trigger works for INTx too. */
	CHECK_OK(vfio_irq_loopback(s.d.fd, VFIO_PCI_INTX_IRQ_INDEX));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);

	/* INTx has one line: start 1 or count 2 is EINVAL (vfio_set_irqs_validate_and_prepare). */
	CHECK_ERRNO(EINVAL, vfio_set_irqs(s.d.fd,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
					  VFIO_PCI_INTX_IRQ_INDEX, 1, 1, NULL));
	CHECK_ERRNO(EINVAL, vfio_set_irqs(s.d.fd,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
					  VFIO_PCI_INTX_IRQ_INDEX, 0, 2, NULL));
	/* While INTx is on, MSI cannot be set up. */
	{
		int efd2 = efd_new();

		CHECK_ERRNO(EINVAL, vfio_irq_eventfd(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX, efd2));
		close(efd2);
	}

	/* Disabled: the device's interrupts go nowhere. */
	CHECK_OK(vfio_irq_disable(s.d.fd, VFIO_PCI_INTX_IRQ_INDEX));
	CHECK_OK(dma_with_irq(&s));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, 0xffffffff));
	teardown(&s);
	close(efd);
}

/* Switching from INTx to MSI after disabling INTx works: edu then signals by MSI. */
TEST(intx_then_msi)
{
	struct setup s;
	int e_intx = efd_new(), e_msi = efd_new();

	REQUIRE(e_intx >= 0 && e_msi >= 0);
	REQUIRE_OK(setup(&s, EDU0_CDEV));
	REQUIRE_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_INTX_IRQ_INDEX, e_intx));
	CHECK_OK(vfio_irq_disable(s.d.fd, VFIO_PCI_INTX_IRQ_INDEX));
	REQUIRE_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_MSI_IRQ_INDEX, e_msi));
	CHECK_OK(dma_with_irq(&s));
	CHECK_EQ(efd_wait(e_msi, EDU_TIMEOUT_MS), 1);
	CHECK_EQ(efd_wait(e_intx, EDU_QUIET_MS), 0);
	CHECK_OK(edu_wr32(s.d.fd, EDU_IRQ_ACK, EDU_IRQ_DMA));
	/* Closing the device tears the interrupts down; the eventfd is the program's again. */
	teardown(&s);
	CHECK_EQ(efd_wait(e_msi, EDU_QUIET_MS), 0);
	close(e_intx);
	close(e_msi);
}

TEST(req_loopback_trigger)
{
	struct setup s;
	int efd = efd_new();
	__s32 none = -1;

	REQUIRE(efd >= 0);
	REQUIRE_OK(setup(&s, EDU1_CDEV));
	REQUIRE_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_REQ_IRQ_INDEX, efd));
	CHECK_OK(vfio_irq_loopback(s.d.fd, VFIO_PCI_REQ_IRQ_INDEX));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	/* fd -1 unassigns it: a loopback then has nothing to signal, which is EINVAL
	 * (vfio_pci_set_ctx_trigger_single: DATA_NONE without a ctx falls through to -EINVAL). */
	CHECK_OK(vfio_set_irqs(s.d.fd, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
			       VFIO_PCI_REQ_IRQ_INDEX, 0, 1, &none));
	CHECK_ERRNO(EINVAL, vfio_irq_loopback(s.d.fd, VFIO_PCI_REQ_IRQ_INDEX));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);
	/* Assigned again, count 0 with DATA_NONE releases it. */
	CHECK_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_REQ_IRQ_INDEX, efd));
	CHECK_OK(vfio_irq_disable(s.d.fd, VFIO_PCI_REQ_IRQ_INDEX));
	CHECK_ERRNO(EINVAL, vfio_irq_loopback(s.d.fd, VFIO_PCI_REQ_IRQ_INDEX));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);
	teardown(&s);
	close(efd);
}

/*
 * The ERR index exists on conventional PCI too (7.3 dropped the PCI Express check): it takes
 * an eventfd and loops back like REQ. Without one, a loopback is EINVAL.
 */
TEST(err_loopback_trigger)
{
	struct setup s;
	int efd = efd_new();

	REQUIRE(efd >= 0);
	REQUIRE_OK(setup(&s, EDU0_CDEV));
	CHECK_ERRNO(EINVAL, vfio_irq_loopback(s.d.fd, VFIO_PCI_ERR_IRQ_INDEX));
	REQUIRE_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_ERR_IRQ_INDEX, efd));
	CHECK_OK(vfio_irq_loopback(s.d.fd, VFIO_PCI_ERR_IRQ_INDEX));
	CHECK_EQ(efd_wait(efd, EDU_TIMEOUT_MS), 1);
	CHECK_OK(vfio_irq_disable(s.d.fd, VFIO_PCI_ERR_IRQ_INDEX));
	CHECK_ERRNO(EINVAL, vfio_irq_loopback(s.d.fd, VFIO_PCI_ERR_IRQ_INDEX));
	CHECK_EQ(efd_wait(efd, EDU_QUIET_MS), 0);
	teardown(&s);
	close(efd);
}

/* MSI-X does not exist on edu; a bad eventfd is EBADF. */
TEST(set_irqs_errors)
{
	struct setup s;
	__s32 bad = 1000;

	REQUIRE_OK(setup(&s, EDU0_CDEV));
	CHECK_ERRNO(EINVAL, vfio_set_irqs(s.d.fd,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
					  VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, NULL));
	CHECK_ERRNO(EINVAL, vfio_set_irqs(s.d.fd,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 5,
					  0, 1, NULL));
	/* Two data types at once: EINVAL (validate_and_prepare). Two actions at once pass the
	 * validation but match no handler in vfio_pci_set_irqs_ioctl: ENOTTY. */
	CHECK_ERRNO(EINVAL, vfio_set_irqs(s.d.fd,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL |
						  VFIO_IRQ_SET_ACTION_TRIGGER,
					  VFIO_PCI_MSI_IRQ_INDEX, 0, 1, NULL));
	CHECK_ERRNO(ENOTTY, vfio_set_irqs(s.d.fd,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK |
						  VFIO_IRQ_SET_ACTION_TRIGGER,
					  VFIO_PCI_INTX_IRQ_INDEX, 0, 1, NULL));
	REQUIRE(fcntl(bad, F_GETFD) == -1);
	CHECK_ERRNO(EBADF, vfio_set_irqs(s.d.fd,
					 VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
					 VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &bad));
	/* An open fd that is no eventfd: EINVAL (eventfd_ctx_fileget). */
	{
		__s32 nul = open("/dev/null", O_RDWR | O_CLOEXEC);

		CHECK_ERRNO(EINVAL, vfio_set_irqs(s.d.fd,
						  VFIO_IRQ_SET_DATA_EVENTFD |
							  VFIO_IRQ_SET_ACTION_TRIGGER,
						  VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &nul));
		close(nul);
	}
	/* Both failures left the device with no interrupt set up: INTx can be set up now. */
	{
		int efd = efd_new();

		CHECK_OK(vfio_irq_eventfd(s.d.fd, VFIO_PCI_INTX_IRQ_INDEX, efd));
		CHECK_OK(vfio_irq_disable(s.d.fd, VFIO_PCI_INTX_IRQ_INDEX));
		close(efd);
	}
	teardown(&s);
}

int main(void)
{
	h_init();
	g_mem = h_mmap(PAGE_SZ);
	memset(g_mem, 0x42, PAGE_SZ);
	RUN(msi_on_dma_completion);
	RUN(msi_loopback_trigger);
	RUN(intx_automask_and_unmask);
	RUN(intx_then_msi);
	RUN(req_loopback_trigger);
	RUN(err_loopback_trigger);
	RUN(set_irqs_errors);
	return h_done();
}
