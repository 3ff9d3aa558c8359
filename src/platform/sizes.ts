/**
 * Sizes and address arithmetic shared by the simulated machine. Everything that measures memory
 * is a bigint: addresses, lengths, frame numbers and frame counts.
 */

/** log2 of the CPU and IOMMU base page size. */
export const PAGE_SHIFT = 12n;
/** 4 KiB: the CPU page, the physical frame and the smallest IOMMU page. */
export const PAGE_SIZE = 1n << PAGE_SHIFT;
export const SZ_4K = PAGE_SIZE;
export const SZ_2M = 1n << 21n;
export const SZ_1G = 1n << 30n;
/** The largest u64, and the last byte of a full 64-bit IOVA space. */
export const U64_MAX = (1n << 64n) - 1n;

/** Whether `value` is a multiple of `align` (a power of two). */
export function isAligned(value: bigint, align: bigint): boolean {
  return (value & (align - 1n)) === 0n;
}

/** `value` rounded down to a multiple of `align` (a power of two). */
export function alignDown(value: bigint, align: bigint): bigint {
  return value & ~(align - 1n);
}

/** `value` rounded up to a multiple of `align` (a power of two). */
export function alignUp(value: bigint, align: bigint): bigint {
  return (value + align - 1n) & ~(align - 1n);
}

/** Whether `value` is a power of two (and not zero). */
export function isPowerOfTwo(value: bigint): boolean {
  return value > 0n && (value & (value - 1n)) === 0n;
}

/** Frame number of a physical address. */
export function pfnOf(pa: bigint): bigint {
  return pa >> PAGE_SHIFT;
}

/** Physical address of a frame number. */
export function paOf(pfn: bigint): bigint {
  return pfn << PAGE_SHIFT;
}

/** `0x1f000` style, the way the kernel prints addresses in logs. */
export function hex(value: bigint): string {
  return `0x${value.toString(16)}`;
}
