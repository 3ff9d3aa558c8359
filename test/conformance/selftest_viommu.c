/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Virtual IOMMUs on the mock driver (issue 12, stage 3): IOMMU_VIOMMU_ALLOC of
 * IOMMU_VIOMMU_TYPE_SELFTEST (loopback data and an mmap region on the iommufd), IOMMU_VDEVICE_ALLOC
 * and the tombstone a vDEVICE leaves when its device goes, nested HWPTs of a vIOMMU (a device
 * attaches only with a vDEVICE there), IOMMU_HWPT_INVALIDATE of a vIOMMU (the device caches),
 * and IOMMU_VEVENTQ_ALLOC with IOMMU_TEST_OP_TRIGGER_VEVENT: records with sequence numbers, the
 * lost-events header on overflow, poll waking for an event from another thread.
 */
#include <poll.h>
#include <pthread.h>
#include <time.h>

#include "harness.h"
#include "nested_helpers.h"

#define NPAGES 4
#define BUF_SIZE (NPAGES * PAGE_SZ)
#define HDR sizeof(struct iommufd_vevent_header)
#define EVT (HDR + sizeof(struct iommu_viommu_event_selftest))

static unsigned char *g_buf;

#define CHECK_REFS(fd, refs) CHECK_OK(check_refs_of(fd, g_buf, BUF_SIZE, refs))

/* One record read at `p`: 1 if it is a header with `flags` and `seq` (and virt_id, if an event). */
static int is_record(const unsigned char *p, __u32 flags, __u32 seq, __u32 virt_id)
{
	struct iommufd_vevent_header h;
	struct iommu_viommu_event_selftest e;

	memcpy(&h, p, sizeof(h));
	if (h.flags != flags || h.sequence != seq)
		return 0;
	if (flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS)
		return 1;
	memcpy(&e, p + HDR, sizeof(e));
	return e.virt_id == virt_id;
}

#define OPEN_IOAS(fd, ioas) OPEN_MOCK_IOAS(fd, ioas, g_buf, BUF_SIZE)

/* Closing the iommufd leaves no pin behind. */
#define close_and_check(fd) mock_close_and_check(fd, g_buf, BUF_SIZE)

TEST(viommu_alloc_rules)
{
	struct iommu_viommu_selftest data = { .in_data = 0xbeef };
	struct iommu_viommu_selftest data2 = { .in_data = 0xcafe };
	__u32 ioas, stdev, auto_hwpt, idev, parent, plain, nested, viommu, viommu2, viommu3, id;
	unsigned char big[32] = { 0 };
	volatile __u32 *page;
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, &auto_hwpt, &idev));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, 0, &plain));
	REQUIRE_OK(nested_alloc(fd, idev, parent, 0, IOMMU_TEST_IOTLB_DEFAULT, &nested));

	/* Flags and type first, then the device and its driver's support, then the parent. */
	CHECK_ERRNO(EOPNOTSUPP, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 1, idev, parent, NULL,
					     0, &id));
	CHECK_ERRNO(EOPNOTSUPP, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_DEFAULT, 0, 999, parent, NULL,
					     0, &id));
	CHECK_ERRNO(ENOENT, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, 999, parent, NULL, 0,
					 &id));
	CHECK_ERRNO(EOPNOTSUPP, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_ARM_SMMUV3, 0, idev, parent,
					     NULL, 0, &id));
	CHECK_ERRNO(ENOENT, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, ioas, NULL, 0,
					 &id));
	CHECK_ERRNO(ENOENT, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, nested, NULL, 0,
					 &id));
	CHECK_ERRNO(EINVAL, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, plain, NULL, 0,
					 &id));
	CHECK_ERRNO(EINVAL, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, auto_hwpt, NULL,
					 0, &id));
	/* The driver's data: 8 to 24 bytes, readable. */
	CHECK_ERRNO(EINVAL, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, &data, 4,
					 &id));
	CHECK_ERRNO(EINVAL, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, big,
					 sizeof(big), &id));
	CHECK_ERRNO(EFAULT, viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent,
					 h_unmapped_addr(), sizeof(data), &id));

	REQUIRE_OK(viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, NULL, 0, &viommu));
	/* Loopback, and a two-page region on the iommufd whose first word is in_data. */
	REQUIRE_OK(viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, &data,
				sizeof(data), &viommu2));
	CHECK_EQ(data.out_data, 0xbeef);
	CHECK_EQ(data.out_mmap_length, 2 * PAGE_SZ);
	CHECK(data.out_mmap_offset != 0 && data.out_mmap_offset % PAGE_SZ == 0);
	REQUIRE_OK(viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, &data2,
				sizeof(data2), &viommu3));
	CHECK(data2.out_mmap_offset != data.out_mmap_offset);

	page = mmap(NULL, data.out_mmap_length, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		    (off_t)data.out_mmap_offset);
	REQUIRE(page != MAP_FAILED);
	CHECK_EQ(page[0], 0xbeef);
	CHECK_EQ(page[1], 0);
	CHECK_OK(munmap((void *)page, data.out_mmap_length));
	page = mmap(NULL, data2.out_mmap_length, PROT_READ, MAP_SHARED, fd,
		    (off_t)data2.out_mmap_offset);
	REQUIRE(page != MAP_FAILED);
	CHECK_EQ(page[0], 0xcafe);
	CHECK_OK(munmap((void *)page, data2.out_mmap_length));
	/* Only exactly a region, shared, not executable. */
	CHECK(mmap(NULL, PAGE_SZ, PROT_READ, MAP_SHARED, fd, (off_t)data.out_mmap_offset) ==
	      MAP_FAILED && errno == ENXIO);
	CHECK(mmap(NULL, data.out_mmap_length, PROT_READ, MAP_SHARED, fd,
		   (off_t)(data.out_mmap_offset + PAGE_SZ)) == MAP_FAILED && errno == ENXIO);
	CHECK(mmap(NULL, PAGE_SZ, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED && errno == ENXIO);
	CHECK(mmap(NULL, data.out_mmap_length, PROT_READ, MAP_PRIVATE, fd,
		   (off_t)data.out_mmap_offset) == MAP_FAILED && errno == EINVAL);
	CHECK(mmap(NULL, data.out_mmap_length, PROT_READ | PROT_EXEC, MAP_SHARED, fd,
		   (off_t)data.out_mmap_offset) == MAP_FAILED && errno == EPERM);

	/* The parent is held while vIOMMUs use it. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, viommu));
	CHECK_OK(iommu_destroy(fd, viommu2));
	/* Its region went with it. */
	CHECK(mmap(NULL, data.out_mmap_length, PROT_READ, MAP_SHARED, fd,
		   (off_t)data.out_mmap_offset) == MAP_FAILED && errno == ENXIO);
	CHECK_OK(iommu_destroy(fd, viommu3));
	CHECK_OK(iommu_destroy(fd, nested));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, plain));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

TEST(vdevice_and_tombstone)
{
	__u32 ioas, stdev, stdev2, idev, idev2, parent, viommu, vdev, vdev2, id, ids[4];
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, &idev));
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev2, NULL, &idev2));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, NULL, 0, &viommu));

	CHECK_ERRNO(ENOENT, vdevice_alloc(fd, 999, idev, 0x99, &id));
	CHECK_ERRNO(ENOENT, vdevice_alloc(fd, parent, idev, 0x99, &id));
	CHECK_ERRNO(ENOENT, vdevice_alloc(fd, viommu, 999, 0x99, &id));
	CHECK_ERRNO(ENOENT, vdevice_alloc(fd, viommu, ioas, 0x99, &id));
	REQUIRE_OK(vdevice_alloc(fd, viommu, idev, 0x99, &vdev));
	/* One vDEVICE per device, one device per virt_id. */
	CHECK_ERRNO(EEXIST, vdevice_alloc(fd, viommu, idev, 0x98, &id));
	CHECK_ERRNO(EEXIST, vdevice_alloc(fd, viommu, idev2, 0x99, &id));
	/* The vIOMMU and the device are held. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, viommu));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, idev));
	CHECK_OK(iommu_destroy(fd, vdev));
	REQUIRE_OK(vdevice_alloc(fd, viommu, idev, 0x99, &vdev));

	/* A device that goes takes its vDEVICE, whose id stays taken until the iommufd is closed. */
	REQUIRE_OK(vdevice_alloc(fd, viommu, idev2, 0x42, &vdev2));
	CHECK_OK(iommu_destroy(fd, stdev2));
	CHECK_ERRNO(ENOENT, iommu_destroy(fd, vdev2));
	for (int i = 0; i < 4; i++) {
		REQUIRE_OK(ioas_alloc(fd, &ids[i]));
		CHECK(ids[i] != vdev2);
	}
	for (int i = 0; i < 4; i++)
		CHECK_OK(iommu_destroy(fd, ids[i]));
	/* virt_id 0x42 is free again. */
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev2, NULL, &idev2));
	REQUIRE_OK(vdevice_alloc(fd, viommu, idev2, 0x42, &vdev2));
	CHECK_OK(iommu_destroy(fd, vdev2));

	CHECK_OK(iommu_destroy(fd, vdev));
	CHECK_OK(iommu_destroy(fd, viommu));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_OK(iommu_destroy(fd, stdev2));
	close_and_check(fd);
}

TEST(viommu_nested_and_invalidate)
{
	struct iommu_viommu_invalidate_selftest inv[2];
	__u32 ioas, stdev, idev, parent, viommu, vdev, nested, done, id;
	unsigned char wide[16];
	int fd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, &idev));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, NULL, 0, &viommu));

	/* Nested HWPTs of the vIOMMU: the same flag and data rules. */
	CHECK_ERRNO(EOPNOTSUPP, hwpt_alloc(fd, idev, viommu, 0, &id));
	CHECK_ERRNO(EOPNOTSUPP, nested_alloc(fd, idev, viommu, IOMMU_HWPT_ALLOC_NEST_PARENT,
					     IOMMU_TEST_IOTLB_DEFAULT, &id));
	REQUIRE_OK(nested_alloc(fd, idev, viommu, 0, IOMMU_TEST_IOTLB_DEFAULT, &nested));
	/* It holds the vIOMMU, not the parent directly. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, viommu));

	/* A device attaches to it only with a vDEVICE in the vIOMMU. */
	CHECK_ERRNO(ENOENT, mock_replace(fd, stdev, nested, NULL));
	REQUIRE_OK(vdevice_alloc(fd, viommu, idev, 0x99, &vdev));
	CHECK_OK(mock_replace(fd, stdev, nested, NULL));
	CHECK_REFS(fd, 1);

	/* Invalidation of the vIOMMU: the device caches, by vDEVICE id. */
	CHECK_OK(hwpt_invalidate(fd, viommu, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, NULL, 0, 0, 0,
				 &done));
	CHECK_EQ(done, 0);
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, viommu,
					    IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID, NULL, 0,
					    0, 0, &done));
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x99, .cache_id = 1 };
	inv[1] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x98, .cache_id = 2 };
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, viommu, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, inv,
					    sizeof(inv[0]), 2, 0, &done));
	CHECK_EQ(done, 1);
	CHECK_OK(dev_cache(fd, idev, 1, 0));
	CHECK_OK(dev_cache(fd, idev, 0, IOMMU_TEST_DEV_CACHE_DEFAULT));
	CHECK_OK(dev_cache(fd, idev, 2, IOMMU_TEST_DEV_CACHE_DEFAULT));
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x99, .cache_id = 4 };
	CHECK_ERRNO(EINVAL, hwpt_invalidate(fd, viommu, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, inv,
					    sizeof(inv[0]), 1, 0, &done));
	CHECK_EQ(done, 0);
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .flags = 2, .vdev_id = 0x99 };
	CHECK_ERRNO(EOPNOTSUPP, hwpt_invalidate(fd, viommu, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
						inv, sizeof(inv[0]), 1, 0, &done));
	/* Records of another length: a short one is zero-extended, a long one's tail must be 0. */
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x99, .cache_id = 3 };
	CHECK_OK(hwpt_invalidate(fd, viommu, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, inv, 8, 1, 0,
				 &done));
	CHECK_EQ(done, 1);
	CHECK_OK(dev_cache(fd, idev, 0, 0));
	CHECK_OK(dev_cache(fd, idev, 3, IOMMU_TEST_DEV_CACHE_DEFAULT));
	memset(wide, 0, sizeof(wide));
	memcpy(wide, &inv[0], sizeof(inv[0]));
	wide[15] = 1;
	CHECK_ERRNO(E2BIG, hwpt_invalidate(fd, viommu, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, wide,
					   sizeof(wide), 1, 0, &done));
	CHECK_EQ(done, 0);
	inv[0] = (struct iommu_viommu_invalidate_selftest){
		.flags = IOMMU_TEST_INVALIDATE_FLAG_ALL, .vdev_id = 0x99 };
	CHECK_OK(hwpt_invalidate(fd, viommu, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, inv,
				 sizeof(inv[0]), 1, 0, &done));
	CHECK_OK(dev_cache(fd, idev, 3, 0));

	/* The device is held by its vDEVICE; moving it off the nested HWPT frees that HWPT. */
	CHECK_OK(mock_replace(fd, stdev, ioas, NULL));
	CHECK_OK(iommu_destroy(fd, nested));
	CHECK_OK(iommu_destroy(fd, vdev));
	CHECK_OK(iommu_destroy(fd, viommu));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

struct trigger_args {
	int fd;
	__u32 idev;
	int rc;
};

static void *trigger_later(void *p)
{
	struct trigger_args *a = p;

	usleep(200 * 1000);
	a->rc = trigger_vevent(a->fd, a->idev);
	return NULL;
}

TEST(veventq_records)
{
	__u32 ioas, stdev, idev, parent, viommu, vdev, nested, q, q2, id;
	unsigned char buf[64];
	struct trigger_args args;
	pthread_t t;
	int fd, qfd, qfd2, dummy;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, &idev));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, NULL, 0, &viommu));
	REQUIRE_OK(vdevice_alloc(fd, viommu, idev, 0x99, &vdev));
	REQUIRE_OK(nested_alloc(fd, idev, viommu, 0, IOMMU_TEST_IOTLB_DEFAULT, &nested));

	CHECK_ERRNO(EOPNOTSUPP, veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2, 1, 0, &id,
					      &dummy));
	CHECK_ERRNO(EOPNOTSUPP, veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2, 0, 1, &id,
					      &dummy));
	CHECK_ERRNO(EOPNOTSUPP, veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_DEFAULT, 2, 0, 0, &id,
					      &dummy));
	CHECK_ERRNO(EINVAL, veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 0, 0, 0, &id,
					  &dummy));
	CHECK_ERRNO(EINVAL, veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, (1U << 19) + 1, 0,
					  0, &id, &dummy));
	CHECK_ERRNO(ENOENT, veventq_alloc(fd, parent, IOMMU_VEVENTQ_TYPE_SELFTEST, 2, 0, 0, &id,
					  &dummy));
	REQUIRE_OK(veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2, 0, 0, &q, &qfd));
	CHECK_EQ(fcntl(qfd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	/* One queue per type; another type is another queue (nothing reports to it). */
	CHECK_ERRNO(EEXIST, veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 4, 0, 0, &id,
					  &dummy));
	REQUIRE_OK(veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, 4, 0, 0, &q2, &qfd2));
	CHECK_OK(close(qfd2));
	CHECK_OK(iommu_destroy(fd, q2));

	/* Not attached to a nested HWPT of the vIOMMU: nothing to report through. */
	CHECK_ERRNO(ENOENT, trigger_vevent(fd, idev));
	CHECK_ERRNO(ENOENT, trigger_vevent(fd, 999));
	REQUIRE_OK(mock_replace(fd, stdev, nested, NULL));
	CHECK_EQ(poll_one(qfd, POLLIN | POLLOUT, 0), 0);
	CHECK_OK(trigger_vevent(fd, idev));
	CHECK_EQ(poll_one(qfd, POLLIN | POLLOUT, 0), POLLIN);
	/* A read must hold a header, and the whole record if there is one. */
	CHECK_ERRNO(ESPIPE, pread(qfd, buf, sizeof(buf), 0));
	CHECK_ERRNO(EINVAL, read(qfd, buf, HDR - 1));
	CHECK_ERRNO(EINVAL, read(qfd, buf, HDR));
	CHECK_RET((ssize_t)EVT, read(qfd, buf, sizeof(buf)));
	CHECK(is_record(buf, 0, 0, 0x99));
	CHECK_RET(0, read(qfd, buf, sizeof(buf)));

	/* Overflow: depth 2, four events; the header for the lost ones takes the newest number. */
	for (int i = 0; i < 4; i++)
		CHECK_OK(trigger_vevent(fd, idev));
	CHECK_RET((ssize_t)(2 * EVT + HDR), read(qfd, buf, sizeof(buf)));
	CHECK(is_record(buf, 0, 1, 0x99));
	CHECK(is_record(buf + EVT, 0, 2, 0x99));
	CHECK(is_record(buf + 2 * EVT, IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 4, 0));
	/* Room for only one record: the rest stays. A new event takes the lost header's place. */
	CHECK_OK(trigger_vevent(fd, idev));
	CHECK_OK(trigger_vevent(fd, idev));
	CHECK_OK(trigger_vevent(fd, idev));
	CHECK_RET((ssize_t)EVT, read(qfd, buf, EVT + HDR - 1));
	CHECK(is_record(buf, 0, 5, 0x99));
	CHECK_RET((ssize_t)EVT, read(qfd, buf, EVT));
	CHECK(is_record(buf, 0, 6, 0x99));
	CHECK_RET((ssize_t)HDR, read(qfd, buf, sizeof(buf)));
	CHECK(is_record(buf, IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 7, 0));
	CHECK_OK(trigger_vevent(fd, idev));
	CHECK_OK(trigger_vevent(fd, idev));
	CHECK_OK(trigger_vevent(fd, idev));
	CHECK_RET((ssize_t)EVT, read(qfd, buf, EVT));
	CHECK(is_record(buf, 0, 8, 0x99));
	CHECK_OK(trigger_vevent(fd, idev));
	/* The lost header was last: the new event replaced it; only the gap in numbers tells. */
	CHECK_RET((ssize_t)(2 * EVT), read(qfd, buf, sizeof(buf)));
	CHECK(is_record(buf, 0, 9, 0x99));
	CHECK(is_record(buf + EVT, 0, 11, 0x99));

	/* An event from another thread wakes a waiting poll. */
	args = (struct trigger_args){ .fd = fd, .idev = idev, .rc = -1 };
	REQUIRE(pthread_create(&t, NULL, trigger_later, &args) == 0);
	CHECK_EQ(poll_one(qfd, POLLIN | POLLOUT, 10000), POLLIN);
	REQUIRE(pthread_join(t, NULL) == 0);
	CHECK_EQ(args.rc, 0);
	CHECK_RET((ssize_t)EVT, read(qfd, buf, sizeof(buf)));
	CHECK(is_record(buf, 0, 12, 0x99));

	/* The fd holds the queue; without a queue of its type the vIOMMU cannot report. */
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, q));
	CHECK_OK(close(qfd));
	CHECK_OK(iommu_destroy(fd, q));
	CHECK_ERRNO(EOPNOTSUPP, trigger_vevent(fd, idev));

	CHECK_OK(mock_replace(fd, stdev, ioas, NULL));
	CHECK_OK(iommu_destroy(fd, nested));
	CHECK_OK(iommu_destroy(fd, vdev));
	CHECK_OK(iommu_destroy(fd, viommu));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	close_and_check(fd);
}

/* Closing the iommufd with everything still there frees everything. */
TEST(close_with_everything)
{
	struct iommu_viommu_selftest data = { .in_data = 1 };
	__u32 ioas, stdev, stdev2, idev, idev2, parent, viommu, vdev, vdev2, nested, q;
	int fd, qfd;

	OPEN_IOAS(fd, ioas);
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev, NULL, &idev));
	REQUIRE_OK(mock_domain_flags(fd, ioas, 0, &stdev2, NULL, &idev2));
	REQUIRE_OK(hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent));
	REQUIRE_OK(viommu_alloc(fd, IOMMU_VIOMMU_TYPE_SELFTEST, 0, idev, parent, &data,
				sizeof(data), &viommu));
	REQUIRE_OK(vdevice_alloc(fd, viommu, idev, 1, &vdev));
	REQUIRE_OK(vdevice_alloc(fd, viommu, idev2, 2, &vdev2));
	REQUIRE_OK(nested_alloc(fd, idev, viommu, 0, IOMMU_TEST_IOTLB_DEFAULT, &nested));
	REQUIRE_OK(mock_replace(fd, stdev, nested, NULL));
	REQUIRE_OK(veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 8, 0, 0, &q, &qfd));
	CHECK_OK(trigger_vevent(fd, idev));
	CHECK_OK(close(qfd));
	close_and_check(fd);
}

int main(void)
{
	h_init();
	g_buf = h_mmap(BUF_SIZE);
	memset(g_buf, 0x5a, BUF_SIZE);
	RUN(viommu_alloc_rules);
	RUN(vdevice_and_tombstone);
	RUN(viommu_nested_and_invalidate);
	RUN(veventq_records);
	RUN(close_with_everything);
	return h_done();
}
