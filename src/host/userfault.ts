/**
 * Where an access to a real process's memory must wait for the process's userfaultfd handler.
 *
 * The kernel's own copy_from_user()/copy_to_user() and a pin (GUP) fault with FAULT_FLAG_ALLOW_RETRY:
 * in a range registered with a userfaultfd, handle_userfault() queues the fault for the handler and
 * the caller sleeps until it is resolved (or fails at once with EFAULT, for a userfaultfd made
 * UFFD_USER_MODE_ONLY or with UFFD_FEATURE_SIGBUS). The server's /proc/<pid>/mem walk faults
 * without ALLOW_RETRY, so the same page fails there at once with EIO: the server never waits, but
 * it would answer EFAULT where the kernel waits. This module tells, after such a failure (never
 * on the common path), whether it was that: smaps' VmFlags for the VMAs (`um` missing, `ui` minor,
 * `uw` write-protect, `ur` read-write protect, new in Linux 7.3) and pagemap for the pages. The
 * wait itself is the server's (fault-in.ts).
 */
import { PM_PRESENT, PM_SWAP, PM_UFFD_WP } from './pagemap.ts';

const PAGE = 4096n;

/** A part of an access that has to be faulted in through the process's userfaultfd. */
export interface UserfaultRange {
  readonly addr: bigint;
  readonly length: number;
  /** For a write: the bytes the access writes at [addr, addr+length) (a write fault). */
  readonly data?: Uint8Array;
}

/** A VMA's span and its userfaultfd registration, from smaps. */
export interface UffdVma {
  readonly start: bigint;
  readonly end: bigint;
  /** `um` or `ui`: a page not present here is supplied by the handler (missing or minor mode). */
  readonly missing: boolean;
  /** `uw`: a write to a page marked write-protected waits for the handler. */
  readonly wp: boolean;
  /** `ur` (Linux 7.3): any access to a page marked read-write protected waits for the handler. */
  readonly rwp: boolean;
}

const HEADER = /^([0-9a-f]+)-([0-9a-f]+) /;

/** The VMAs overlapping [from, to) in the text of /proc/<pid>/smaps, in address order. */
export function uffdVmas(smaps: string, from: bigint, to: bigint): UffdVma[] {
  const out: UffdVma[] = [];
  let span: { start: bigint; end: bigint } | undefined;
  for (const line of smaps.split('\n')) {
    const m = HEADER.exec(line);
    if (m !== null) {
      const start = BigInt(`0x${m[1]}`);
      const end = BigInt(`0x${m[2]}`);
      if (start >= to) break;
      span = end > from ? { start, end } : undefined;
      continue;
    }
    if (span !== undefined && line.startsWith('VmFlags:')) {
      const flags = line.slice(8).trim().split(' ');
      out.push({
        ...span,
        missing: flags.includes('um') || flags.includes('ui'),
        wp: flags.includes('uw'),
        rwp: flags.includes('ur'),
      });
      span = undefined;
    }
  }
  return out;
}

/** Whether a smaps VmFlags line says the VMA is registered with a userfaultfd. */
export function isUffdFlags(line: string): boolean {
  return / u[mwir](?= |$)/.test(line);
}

/** What userfaultRange() needs of the process. */
export interface UffdSource {
  smaps(): string | undefined;
  /** The host's pagemap entries for `count` pages from `va`. */
  hostPagemap(va: bigint, count: number): bigint[] | undefined;
}

/**
 * The first part of [addr, addr+length) that a kernel access would have to fault in through the
 * process's userfaultfd: from the first page of a registered VMA that is not present, that is
 * marked (pagemap bit 57) in an `ur` VMA, or for a write that is marked in a `uw` VMA, to the end
 * of the access. undefined when there is none before the first hole (the access faults as it
 * always did).
 */
export function userfaultRange(
  src: UffdSource,
  addr: bigint,
  length: number,
  write: boolean,
): { addr: bigint; length: number } | undefined {
  const end = addr + BigInt(length);
  const smaps = src.smaps();
  if (smaps === undefined || length <= 0) return undefined;
  let at = addr;
  for (const vma of uffdVmas(smaps, addr, end)) {
    if (vma.start > at) return undefined;
    const upto = vma.end < end ? vma.end : end;
    if (vma.missing || vma.rwp || (write && vma.wp)) {
      const first = at & ~(PAGE - 1n);
      const count = Number((upto - first + PAGE - 1n) / PAGE);
      const entries = src.hostPagemap(first, count);
      if (entries === undefined) return undefined;
      for (let i = 0; i < count; i++) {
        const e = entries[i] ?? 0n;
        const missing = vma.missing && (e & (PM_PRESENT | PM_SWAP)) === 0n;
        // Bit 57 marks a uffd-wp page, or in an `ur` VMA a read-write protected one.
        const marked = (e & PM_UFFD_WP) !== 0n;
        const protectedPage = marked && (vma.rwp || (write && vma.wp));
        if (missing || protectedPage) {
          const page = first + BigInt(i) * PAGE;
          const from = page > addr ? page : addr;
          return { addr: from, length: Number(end - from) };
        }
      }
    }
    at = upto;
    if (at >= end) return undefined;
  }
  return undefined;
}
