/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A mapping of a vIOMMU's mmap region holds the vIOMMU: IOMMU_DESTROY of it is EBUSY while any
 * mapping of the region is left (a second mapping, the last page of a partly unmapped one, a
 * child's mapping until the child exits), and succeeds once they are gone. The region still
 * reads what the driver put there; closing the iommufd while mapped keeps everything until the
 * mapping goes.
 */
#include <sys/wait.h>

#include "harness.h"
#include "nested_helpers.h"

static volatile __u32 *map_region(int fd, const struct iommu_viommu_selftest *data)
{
	void *p = mmap(NULL, data->out_mmap_length, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		       (off_t)data->out_mmap_offset);

	return p == MAP_FAILED ? NULL : p;
}

TEST(destroy_busy_while_mapped)
{
	struct iommu_viommu_selftest data = { .in_data = 0x1234 };
	__u32 ioas, stdev, parent, viommu;
	volatile __u32 *a, *b;
	int fd;

	OPEN_MOCK_VIOMMU(fd, ioas, stdev, parent, viommu, &data);
	a = map_region(fd, &data);
	REQUIRE(a != NULL);
	CHECK_EQ(a[0], 0x1234);
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, viommu));
	/* A second mapping holds it too. */
	b = map_region(fd, &data);
	REQUIRE(b != NULL);
	CHECK_OK(munmap((void *)a, data.out_mmap_length));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, viommu));
	CHECK_EQ(b[0], 0x1234);
	/* Half of it still maps the region. */
	CHECK_OK(munmap((void *)b, PAGE_SZ));
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, viommu));
	CHECK_OK(munmap((void *)(b + PAGE_SZ / sizeof(*b)), PAGE_SZ));
	CHECK_OK(iommu_destroy(fd, viommu));
	/* The region went with it. */
	CHECK(map_region(fd, &data) == NULL && errno == ENXIO);
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_OK(close(fd));
}

/* A refused mapping holds nothing. */
TEST(refused_mapping_holds_nothing)
{
	struct iommu_viommu_selftest data = { .in_data = 7 };
	__u32 ioas, stdev, parent, viommu;
	int fd;

	OPEN_MOCK_VIOMMU(fd, ioas, stdev, parent, viommu, &data);
	CHECK(mmap(NULL, PAGE_SZ, PROT_READ, MAP_SHARED, fd, (off_t)data.out_mmap_offset) ==
	      MAP_FAILED && errno == ENXIO);
	CHECK(mmap(NULL, data.out_mmap_length, PROT_READ, MAP_PRIVATE, fd,
		   (off_t)data.out_mmap_offset) == MAP_FAILED && errno == EINVAL);
	CHECK_OK(iommu_destroy(fd, viommu));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	CHECK_OK(close(fd));
}

/* A child's mapping holds the vIOMMU until the child exits without unmapping it. */
TEST(child_exit_drops_its_mapping)
{
	struct iommu_viommu_selftest data = { .in_data = 0x55 };
	int go[2], ready[2], status;
	__u32 ioas, stdev, parent, viommu;
	char c = 0;
	pid_t pid;
	int fd;

	OPEN_MOCK_VIOMMU(fd, ioas, stdev, parent, viommu, &data);
	REQUIRE_OK(pipe(go));
	REQUIRE_OK(pipe(ready));
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		volatile __u32 *p = map_region(fd, &data);

		c = p != NULL && p[0] == 0x55 ? 'y' : 'n';
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(2);
		exit(0); /* still mapped */
	}
	REQUIRE(read(ready[0], &c, 1) == 1);
	CHECK_EQ(c, 'y');
	CHECK_ERRNO(EBUSY, iommu_destroy(fd, viommu));
	REQUIRE(write(go[1], &c, 1) == 1);
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_OK(iommu_destroy(fd, viommu));
	CHECK_OK(iommu_destroy(fd, parent));
	CHECK_OK(iommu_destroy(fd, stdev));
	close(go[0]);
	close(go[1]);
	close(ready[0]);
	close(ready[1]);
	CHECK_OK(close(fd));
}

/* Closing the iommufd while mapped: the mapping keeps the file, and the region still reads. */
TEST(close_while_mapped)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabc };
	__u32 ioas, stdev, parent, viommu;
	volatile __u32 *p;
	int fd;

	OPEN_MOCK_VIOMMU(fd, ioas, stdev, parent, viommu, &data);
	p = map_region(fd, &data);
	REQUIRE(p != NULL);
	CHECK_OK(close(fd));
	CHECK_EQ(p[0], 0xabc);
	p[1] = 9;
	CHECK_EQ(p[1], 9);
	CHECK_OK(munmap((void *)p, data.out_mmap_length));
}

int main(void)
{
	h_init();
	RUN(destroy_busy_while_mapped);
	RUN(refused_mapping_holds_nothing);
	RUN(child_exit_drops_its_mapping);
	RUN(close_while_mapped);
	return h_done();
}
