/** The page's bigint helpers: the state's u64 are hex strings ("0x2000000"). */

export const U64_END = 1n << 64n;
export const PAGE = 4096n;

export function big(hex: string): bigint {
  return BigInt(hex);
}

export function hex(value: bigint): string {
  return `0x${value.toString(16)}`;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** 4096n -> "4 KiB", 1n << 64n -> "16 EiB"; sizes that are not a whole unit keep one decimal. */
export function size(bytes: bigint): string {
  let unit = 0;
  let whole = bytes;
  while (whole >= 1024n && unit < UNITS.length - 1 && whole % 1024n === 0n) {
    whole /= 1024n;
    unit++;
  }
  if (whole >= 1024n) {
    let n = Number(bytes);
    let u = 0;
    while (n >= 1024 && u < UNITS.length - 1) {
      n /= 1024;
      u++;
    }
    return `${n.toFixed(1)} ${UNITS[u]}`;
  }
  return `${whole} ${UNITS[unit]}`;
}

/** Parses what the user typed as an IOVA: hex with 0x, or decimal; undefined if not a u64. */
export function parseU64(text: string): bigint | undefined {
  const t = text.trim().replaceAll('_', '');
  if (!/^(0x[0-9a-fA-F]{1,16}|\d{1,20})$/.test(t)) return undefined;
  const v = BigInt(t);
  return v < U64_END ? v : undefined;
}
