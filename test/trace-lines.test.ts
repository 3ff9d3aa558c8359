/** The checker conformance.test.ts applies to every program's trace can fail, line by line. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lineProblem, traceProblems } from './trace-lines.ts';

test('decoded calls and known events pass', () => {
  for (const line of [
    'open("/dev/iommu", O_RDWR) = 3',
    'ioctl(3</dev/iommu>, IOMMU_IOAS_ALLOC, {size=12, flags=0, out_ioas_id=0} => {out_ioas_id=2}) = 0',
    'ioctl(3</dev/iommu>, IOMMU_IOAS_MAP, 0x0) = -1 EFAULT (Bad address)',
    'mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, 5</dev/vfio/devices/vfio0>, BAR0+0x0) = 0x7f0000000000',
    'mmio(5</dev/vfio/devices/vfio0>, BAR0+0x98, 4, w, 0x1) = 0',
    'mmio(5</dev/vfio/devices/vfio0>, BAR0+0x40, 16, r) = "\\x00\\xff\\xa0"...',
    'readlink("/sys/class/vfio-dev/vfio0") = ?',
    'close(3</dev/iommu>) = 0',
    'ioctl(3</dev/iommu>, _IOC(_IOC_NONE, 0x3b, 0x99, 0), 0x0) = -1 ENOTTY (Inappropriate ioctl for device)',
    '[dma] 0000:00:04.0 reads 256 bytes at IOVA 0x10000 -> PA 0x101000',
    '[warn] vfio-pci 0000:00:06.0: Adding kernel taint for vfio-noiommu cdev',
  ]) {
    assert.equal(lineProblem(line), undefined, line);
  }
});

test('raw numbers and undecoded calls fail', () => {
  for (const line of [
    'ioctl(3</dev/iommu>, 0x3b80, 0x7000) = 0',
    'mmap(/dev/vfio/devices/vfio0, 0x1000, prot 0x3, flags 0x1, 0x0) = 0',
    'mmap(NULL, 4096, PROT_READ, MAP_SHARED, 5</dev/vfio/devices/vfio0>, BAR0+0x0) = ?',
    'open("/dev/iommu", O_RDWR) = -1 errno 200',
    'open("/dev/iommu", O_RDWR) = -1 EEXIST',
    'open("/dev/iommu", O_RDWR) = "\\x00"',
    'open("/dev/iommu", O_RDWR) = ?',
    'pread(5</dev/vfio/devices/vfio0>, 4 bytes at region9+0x0: 0x1) = 4',
    'frobnicate(3</dev/iommu>) = 0',
    '[bug] emulator bug in ioctl',
    'some text',
  ]) {
    assert.notEqual(lineProblem(line), undefined, line);
  }
  assert.deepEqual(traceProblems('close(3</dev/iommu>) = 0\nwhat\n'), [
    'line 2: neither a call nor an event: what',
  ]);
});
