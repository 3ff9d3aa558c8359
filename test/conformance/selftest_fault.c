/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * I/O page fault queues (issue 12, stage 2): IOMMU_FAULT_QUEUE_ALLOC and its fd, HWPTs allocated
 * with a fault_id, and IOMMU_TEST_OP_TRIGGER_IOPF. The fd reads whole 40-byte
 * struct iommu_hwpt_pgfault records and takes 8-byte responses naming their cookies; poll says
 * when records wait, and really waits (with a timeout, and for a fault another thread triggers);
 * a handle that goes away answers its faults itself.
 */
#include <poll.h>
#include <pthread.h>
#include <sys/select.h>
#include <time.h>

#include "harness.h"
#include "nested_helpers.h"

#define NPAGES 4
#define BUF_SIZE (NPAGES * PAGE_SZ)
#define REC sizeof(struct iommu_hwpt_pgfault)

static unsigned char *g_buf;

#define CHECK_REFS(fd, refs) CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, refs))

static int respond(int qfd, __u32 cookie, __u32 code)
{
	struct iommu_hwpt_page_response r = { .cookie = cookie, .code = code };

	return (int)write(qfd, &r, sizeof(r));
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

#define OPEN_IOAS(fd, ioas) OPEN_MOCK_IOAS(fd, ioas, g_buf, BUF_SIZE)

/* Closing the iommufd leaves no pin behind. */
#define close_and_check(fd) mock_close_and_check(fd, g_buf, BUF_SIZE)

TEST(fault_queue_fd)
{
	struct iommu_hwpt_pgfault rec[2];
	struct iommu_hwpt_page_response r = { .cookie = 1, .code = 0 };
	__u32 ioas, stdev, idev, fault, id;
	int fd, qfd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, &idev));
	CHECK_ERRNO(EOPNOTSUPP, fault_alloc(fd, 1, &fault, &qfd));
	REQUIRE_OK(fault_alloc(fd, 0, &fault, &qfd));
	CHECK(qfd > 2);
	CHECK_EQ(fcntl(qfd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	CHECK_EQ(fcntl(qfd, F_GETFL) & O_ACCMODE, O_RDWR);

	/* A stream of whole records: no position, no partial record. */
	CHECK_ERRNO(ESPIPE, pread(qfd, rec, REC, 0));
	CHECK_ERRNO(ESPIPE, lseek(qfd, 0, SEEK_SET));
	CHECK_ERRNO(ESPIPE, read(qfd, rec, REC - 1));
	CHECK_ERRNO(ESPIPE, read(qfd, rec, REC + 1));
	CHECK_RET(0, read(qfd, rec, sizeof(rec)));
	CHECK_ERRNO(ESPIPE, write(qfd, &r, sizeof(r) - 1));
	CHECK_ERRNO(ESPIPE, pwrite(qfd, &r, sizeof(r), 0));
	/* No fault was read: no cookie is valid; a code other than SUCCESS or INVALID neither. */
	CHECK_ERRNO(EINVAL, respond(qfd, 1, IOMMUFD_PAGE_RESP_SUCCESS));
	CHECK_ERRNO(EINVAL, respond(qfd, 1, 2));
	/* Always writable, readable only with records waiting. */
	CHECK_EQ(poll_one(qfd, POLLIN | POLLOUT, 0), POLLOUT);
	CHECK_EQ(poll_one(qfd, POLLIN, 0), 0);

	/* fault_id must name a FAULT object, and cannot go with NEST_PARENT. */
	CHECK_ERRNO(ENOENT, hwpt_alloc_fault(fd, idev, ioas, IOMMU_HWPT_FAULT_ID_VALID, ioas, &id));
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc_fault(fd, idev, ioas,
						 IOMMU_HWPT_FAULT_ID_VALID |
							 IOMMU_HWPT_ALLOC_NEST_PARENT,
						 fault, &id));
	/* Without the flag, fault_id is not looked at. */
	CHECK_OK(hwpt_alloc_fault(fd, idev, ioas, 0, 12345, &id));
	CHECK_OK(iommu_destroy(fd, id));

	/* The fd and a HWPT each hold the object. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, fault));
	REQUIRE_OK(hwpt_alloc_fault(fd, idev, ioas, IOMMU_HWPT_FAULT_ID_VALID, fault, &id));
	CHECK_OK(close(qfd));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, fault));
	CHECK_OK(iommu_destroy(fd, id));
	CHECK_OK(iommu_destroy(fd, fault));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, fault));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

TEST(iopf_read_and_respond)
{
	struct iommu_hwpt_pgfault rec[3];
	struct iommu_hwpt_page_response two[2];
	__u32 ioas, stdev, auto_hwpt, idev, fault, hwpt_f, plain;
	int fd, qfd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, &auto_hwpt, &idev));
	REQUIRE_OK(fault_alloc(fd, 0, &fault, &qfd));
	REQUIRE_OK(hwpt_alloc_fault(fd, idev, ioas, IOMMU_HWPT_FAULT_ID_VALID, fault, &hwpt_f));
	REQUIRE_OK(hwpt_alloc_fault(fd, idev, ioas, 0, 0, &plain));

	/* The device is on its auto domain, which has no fault queue: the fault goes nowhere. */
	CHECK_OK(trigger_iopf(fd, idev, 0, 1, IOMMU_PGFAULT_PERM_READ, 0x100000));
	CHECK_RET(0, read(qfd, rec, REC));
	CHECK_ERRNO(ENOENT, trigger_iopf(fd, 0, 0, 1, 0, 0));
	CHECK_ERRNO(ENOENT, trigger_iopf(fd, ioas, 0, 1, 0, 0));

	REQUIRE_OK(mock_replace(fd, stdev, hwpt_f, NULL));
	CHECK_OK(trigger_iopf(fd, idev, 0, 0x23,
			      IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE, 0xdeadb000));
	CHECK_EQ(poll_one(qfd, POLLIN | POLLOUT, 0), POLLIN | POLLOUT);
	CHECK_EQ(poll_one(qfd, POLLRDNORM | POLLWRNORM, 0), POLLRDNORM);
	/* A read with no room for the waiting group: EINVAL, and the group stays. */
	CHECK_ERRNO(EINVAL, read(qfd, rec, 0));
	memset(rec, 0xff, sizeof(rec));
	CHECK_RET((ssize_t)REC, read(qfd, rec, sizeof(rec)));
	CHECK_EQ(rec[0].flags, IOMMU_PGFAULT_FLAGS_LAST_PAGE);
	CHECK_EQ(rec[0].dev_id, idev);
	CHECK_EQ(rec[0].pasid, 0);
	CHECK_EQ(rec[0].grpid, 0x23);
	CHECK_EQ(rec[0].perm, IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE);
	CHECK_EQ(rec[0].__reserved, 0);
	CHECK_EQ(rec[0].addr, 0xdeadb000ULL);
	CHECK_EQ(rec[0].length, 0);
	CHECK(rec[0].cookie != 0);
	CHECK_EQ(poll_one(qfd, POLLIN, 0), 0);
	/* The answer, once: the cookie is then free again. */
	CHECK_RET(8, respond(qfd, rec[0].cookie, IOMMUFD_PAGE_RESP_SUCCESS));
	CHECK_ERRNO(EINVAL, respond(qfd, rec[0].cookie, IOMMUFD_PAGE_RESP_SUCCESS));

	/* Two groups: read one at a time or together; cookies differ. */
	CHECK_OK(trigger_iopf(fd, idev, 0, 1, IOMMU_PGFAULT_PERM_READ, 0x1000));
	CHECK_OK(trigger_iopf(fd, idev, 0, 2, IOMMU_PGFAULT_PERM_WRITE, 0x2000));
	CHECK_OK(trigger_iopf(fd, idev, 0, 3, IOMMU_PGFAULT_PERM_EXEC, 0x3000));
	CHECK_RET((ssize_t)REC, read(qfd, rec, REC));
	CHECK_EQ(rec[0].grpid, 1);
	CHECK_RET((ssize_t)(2 * REC), read(qfd, &rec[1], 2 * REC));
	CHECK_EQ(rec[1].grpid, 2);
	CHECK_EQ(rec[2].grpid, 3);
	CHECK_EQ(rec[2].addr, 0x3000ULL);
	CHECK(rec[0].cookie != rec[1].cookie && rec[1].cookie != rec[2].cookie &&
	      rec[0].cookie != rec[2].cookie);
	/* A write stops at the first bad response; the ones before it count. */
	two[0] = (struct iommu_hwpt_page_response){ .cookie = rec[0].cookie, .code = 1 };
	two[1] = (struct iommu_hwpt_page_response){ .cookie = rec[0].cookie, .code = 0 };
	CHECK_RET(8, write(qfd, two, sizeof(two)));
	two[0] = (struct iommu_hwpt_page_response){ .cookie = rec[1].cookie, .code = 0 };
	two[1] = (struct iommu_hwpt_page_response){ .cookie = rec[2].cookie, .code = 1 };
	CHECK_RET(16, write(qfd, two, sizeof(two)));

	/* A PASID with no attachment of its own: the RID's paging domain does not take it. */
	CHECK_OK(trigger_iopf(fd, idev, 9, 1, IOMMU_PGFAULT_PERM_READ, 0x4000));
	CHECK_RET(0, read(qfd, rec, REC));

	/* Held while attached or queued from. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, hwpt_f));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, fault));

	/* Leaving the HWPT answers its faults: unread ones vanish, read ones lose their cookie. */
	CHECK_OK(trigger_iopf(fd, idev, 0, 5, IOMMU_PGFAULT_PERM_READ, 0x5000));
	REQUIRE_OK(mock_replace(fd, stdev, plain, NULL));
	CHECK_EQ(poll_one(qfd, POLLIN, 0), 0);
	CHECK_RET(0, read(qfd, rec, REC));
	REQUIRE_OK(mock_replace(fd, stdev, hwpt_f, NULL));
	CHECK_OK(trigger_iopf(fd, idev, 0, 6, IOMMU_PGFAULT_PERM_READ, 0x6000));
	CHECK_RET((ssize_t)REC, read(qfd, rec, REC));
	REQUIRE_OK(mock_replace(fd, stdev, plain, NULL));
	CHECK_ERRNO(EINVAL, respond(qfd, rec[0].cookie, IOMMUFD_PAGE_RESP_SUCCESS));

	CHECK_OK(iommu_destroy(fd, hwpt_f));
	CHECK_OK(close(qfd));
	CHECK_OK(iommu_destroy(fd, fault));
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_OK(iommu_destroy(fd, plain));
	close_and_check(fd);
}

TEST(iopf_on_nested_and_pasid)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_test_cmd pcmd;
	struct iommu_hwpt_pgfault rec;
	__u32 ioas, stdev, idev, fault, parent, nested, pasid_hwpt;
	int fd, qfd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID, &stdev, NULL, &idev));
	REQUIRE_OK(fault_alloc(fd, 0, &fault, &qfd));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(hwpt_alloc_data(fd, idev, parent, IOMMU_HWPT_FAULT_ID_VALID, fault,
				   IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data), &nested));
	REQUIRE_OK(mock_replace(fd, stdev, nested, NULL));

	/* The guest owns the PASID table: a PASID with no attachment faults through the RID's
	 * nested domain, and the record keeps the PASID. */
	CHECK_OK(trigger_iopf(fd, idev, 7, 4, IOMMU_PGFAULT_PERM_READ, 0x7000));
	CHECK_RET((ssize_t)REC, read(qfd, &rec, REC));
	CHECK_EQ(rec.flags, IOMMU_PGFAULT_FLAGS_LAST_PAGE | IOMMU_PGFAULT_FLAGS_PASID_VALID);
	CHECK_EQ(rec.pasid, 7);
	CHECK_EQ(rec.dev_id, idev);
	CHECK_RET(8, respond(qfd, rec.cookie, IOMMUFD_PAGE_RESP_INVALID));

	/* A PASID attached to a HWPT with a fault queue faults there. */
	REQUIRE_OK(hwpt_alloc_fault(fd, idev, ioas,
				    IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID, fault,
				    &pasid_hwpt));
	pcmd = (struct iommu_test_cmd){ .op = IOMMU_TEST_OP_PASID_ATTACH, .id = stdev,
					.pasid_attach = { .pasid = 3, .pt_id = pasid_hwpt } };
	/* The RID's nested HWPT was not allocated for PASID use. */
	CHECK_ERRNO(EINVAL, test_cmd(fd, &pcmd));

	/* With the RID on a PASID-capable HWPT, PASID 3 attaches and faults through its own. */
	REQUIRE_OK(mock_replace(fd, stdev, pasid_hwpt, NULL));
	REQUIRE_OK(test_cmd(fd, &pcmd));
	CHECK_OK(trigger_iopf(fd, idev, 3, 8, IOMMU_PGFAULT_PERM_WRITE, 0x8000));
	CHECK_RET((ssize_t)REC, read(qfd, &rec, REC));
	CHECK_EQ(rec.flags, IOMMU_PGFAULT_FLAGS_LAST_PAGE | IOMMU_PGFAULT_FLAGS_PASID_VALID);
	CHECK_EQ(rec.pasid, 3);
	CHECK_EQ(rec.grpid, 8);
	/* Detaching the PASID answers its unanswered fault. */
	pcmd = (struct iommu_test_cmd){ .op = IOMMU_TEST_OP_PASID_DETACH, .id = stdev,
					.pasid_detach = { .pasid = 3 } };
	CHECK_OK(test_cmd(fd, &pcmd));
	CHECK_ERRNO(EINVAL, respond(qfd, rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS));
	/* A PASID with nothing attached, the RID not nested: nothing is queued. */
	CHECK_OK(trigger_iopf(fd, idev, 3, 9, IOMMU_PGFAULT_PERM_WRITE, 0x9000));
	CHECK_RET(0, read(qfd, &rec, REC));

	REQUIRE_OK(mock_replace(fd, stdev, ioas, NULL));
	CHECK_OK(iommu_destroy(fd, pasid_hwpt));
	CHECK_OK(iommu_destroy(fd, nested));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(close(qfd));
	CHECK_OK(iommu_destroy(fd, fault));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

struct trigger_args {
	int fd;
	__u32 idev;
	int delay_ms;
	int rc;
};

static void *trigger_later(void *p)
{
	struct trigger_args *a = p;

	usleep(a->delay_ms * 1000);
	a->rc = trigger_iopf(a->fd, a->idev, 0, 9, IOMMU_PGFAULT_PERM_READ, 0x9000);
	return NULL;
}

TEST(poll_waits)
{
	struct iommu_hwpt_pgfault rec;
	struct trigger_args args;
	__u32 ioas, stdev, idev, fault, hwpt_f;
	struct timeval tv = { 0, 0 };
	pthread_t t;
	fd_set rd;
	long start, took;
	int fd, qfd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, &idev));
	REQUIRE_OK(fault_alloc(fd, 0, &fault, &qfd));
	REQUIRE_OK(hwpt_alloc_fault(fd, idev, ioas, IOMMU_HWPT_FAULT_ID_VALID, fault, &hwpt_f));
	REQUIRE_OK(mock_replace(fd, stdev, hwpt_f, NULL));

	/* Nothing comes: the timeout is waited out. */
	start = now_ms();
	CHECK_EQ(poll_one(qfd, POLLIN, 150), 0);
	took = now_ms() - start;
	CHECK(took >= 140);

	/* A fault another thread triggers wakes the poll before its timeout. */
	args = (struct trigger_args){ .fd = fd, .idev = idev, .delay_ms = 200, .rc = -1 };
	REQUIRE(pthread_create(&t, NULL, trigger_later, &args) == 0);
	start = now_ms();
	CHECK_EQ(poll_one(qfd, POLLIN, 10000), POLLIN);
	took = now_ms() - start;
	REQUIRE(pthread_join(t, NULL) == 0);
	CHECK_EQ(args.rc, 0);
	CHECK(took >= 150 && took < 10000);

	/* select() sees the same readiness. */
	FD_ZERO(&rd);
	FD_SET(qfd, &rd);
	CHECK_RET(1, select(qfd + 1, &rd, NULL, NULL, &tv));
	CHECK(FD_ISSET(qfd, &rd));
	CHECK_RET((ssize_t)REC, read(qfd, &rec, REC));
	CHECK_EQ(rec.grpid, 9);
	FD_ZERO(&rd);
	FD_SET(qfd, &rd);
	tv = (struct timeval){ 0, 50000 };
	CHECK_RET(0, select(qfd + 1, &rd, NULL, NULL, &tv));
	CHECK_RET(8, respond(qfd, rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS));

	REQUIRE_OK(mock_replace(fd, stdev, ioas, NULL));
	CHECK_OK(iommu_destroy(fd, hwpt_f));
	CHECK_OK(close(qfd));
	CHECK_OK(iommu_destroy(fd, fault));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

/* The queue's fd keeps the iommufd alive: closing the iommufd first leaks nothing. */
TEST(close_iommufd_first)
{
	struct iommu_hwpt_pgfault rec;
	__u32 ioas, stdev, idev, fault, hwpt_f;
	int fd, qfd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, &idev));
	REQUIRE_OK(fault_alloc(fd, 0, &fault, &qfd));
	REQUIRE_OK(hwpt_alloc_fault(fd, idev, ioas, IOMMU_HWPT_FAULT_ID_VALID, fault, &hwpt_f));
	REQUIRE_OK(mock_replace(fd, stdev, hwpt_f, NULL));
	CHECK_OK(trigger_iopf(fd, idev, 0, 1, IOMMU_PGFAULT_PERM_READ, 0x1000));
	CHECK_OK(close(fd));
	/* The context lives on: its queue still holds the fault. */
	CHECK_RET((ssize_t)REC, read(qfd, &rec, REC));
	CHECK_EQ(rec.grpid, 1);
	CHECK_RET(8, respond(qfd, rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS));
	CHECK_OK(close(qfd));
	fd = iommufd_open();
	REQUIRE(fd >= 0);
	CHECK_REFS(fd, 0);
	close(fd);
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0x5a, BUF_SIZE);
	RUN(fault_queue_fd);
	RUN(iopf_read_and_respond);
	RUN(iopf_on_nested_and_pasid);
	RUN(poll_waits);
	RUN(close_iommufd_first);
	return h_done();
}
