/**
 * The memory of a real process: read and written through /proc/<pid>/mem (which ignores page
 * protections, like FOLL_FORCE: right for device DMA), with VMAs from /proc/<pid>/smaps. Plus
 * CallMemory, what a handler sees during one call: that memory with the struct bytes the shim sent
 * inline with an ioctl laid over it, and copy_to_user's protection checks.
 *
 * /proc/<pid>/mem binds to the address space at open(): after the process execs, the old fd reads
 * 0 bytes. So one ProcMemory stands for one address space (one mm cookie from the shim), opened
 * while that address space is known to be current (during one of its calls), never cached by pid.
 */
import * as fs from 'node:fs';
import { PM_PFRAME_MASK, PM_SWAP } from './pagemap.ts';
import type { MmId, UserMemory, Vma } from './user-memory.ts';
import { isUffdFlags, type UserfaultRange, userfaultRange } from './userfault.ts';

export type { UserfaultRange } from './userfault.ts';

/** Largest position /proc/<pid>/mem accepts (loff_t is signed). */
const MAX_POSITION = (1n << 63n) - 1n;

/** How a /proc/<pid>/mem access failed: an unmapped address, or the view itself is unusable. */
function isFault(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EIO' || code === 'EFAULT' || code === 'EINVAL' || code === 'ESRCH';
}

/**
 * UserMemory over /proc/<pid>/mem. Unmapped addresses (EIO) read as undefined (EFAULT). Writes
 * ignore PROT_READ (FOLL_FORCE), as the interface allows; callers that must honour protections
 * check vma() first.
 */
export class ProcMemory implements UserMemory {
  readonly mm: MmId;
  readonly pid: number;
  private fd: number | undefined;
  private holds = 0;
  private retired = false;
  /** Why the memory could not be opened (EACCES for a non-dumpable process...), if it could not. */
  readonly openError: string | undefined;

  /**
   * Opens /proc/<pid>/mem now. Construct it while the process is blocked in a call from the
   * address space `mm` names, so the fd binds to that address space.
   */
  constructor(pid: number, mm: MmId) {
    this.pid = pid;
    this.mm = mm;
    let error: string | undefined;
    try {
      this.fd = fs.openSync(`/proc/${pid}/mem`, 'r+');
    } catch (err) {
      this.fd = undefined;
      error = (err as NodeJS.ErrnoException).code ?? String(err);
    }
    this.openError = error;
  }

  /** Whether the view is still open (not closed, opened successfully). */
  get isOpen(): boolean {
    return this.fd !== undefined;
  }

  read(addr: bigint, length: number): Uint8Array | undefined {
    const fd = this.fd;
    if (fd === undefined || !validRange(addr, length)) return undefined;
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = fs.readSync(fd, out, done, length - done, addr + BigInt(done));
      } catch (err) {
        if (isFault(err)) return undefined;
        throw err;
      }
      // 0 bytes: the address space is gone (the process exec'd or exited).
      if (n <= 0) return undefined;
      done += n;
    }
    return out;
  }

  write(addr: bigint, data: Uint8Array): boolean {
    const fd = this.fd;
    if (fd === undefined || !validWriteRange(addr, data.byteLength)) return false;
    let done = 0;
    while (done < data.byteLength) {
      let n: number;
      try {
        // writeSync takes only a number position (a bigint would silently mean "current
        // position"); validRange keeps it exact.
        n = fs.writeSync(fd, data, done, data.byteLength - done, Number(addr) + done);
      } catch (err) {
        if (isFault(err)) return false;
        throw err;
      }
      if (n <= 0) return false;
      done += n;
    }
    return true;
  }

  vma(addr: bigint): Vma | undefined {
    if (this.fd === undefined || addr < 0n) return undefined;
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${this.pid}/smaps`, 'latin1');
    } catch {
      return undefined;
    }
    const vma = findVma(text, addr);
    // smaps is per pid, not per address space: make sure ours is still the current one.
    if (vma !== undefined && !this.current) return undefined;
    return vma;
  }

  /** The text of /proc/<pid>/smaps, or undefined when unreadable. */
  smaps(): string | undefined {
    if (this.fd === undefined) return undefined;
    try {
      return fs.readFileSync(`/proc/${this.pid}/smaps`, 'latin1');
    } catch {
      return undefined;
    }
  }

  /**
   * After an access failed: the part of it the kernel's copy would fault in through the
   * process's userfaultfd, waiting for its handler (userfault.ts), or undefined (a plain fault).
   */
  userfaultRange(addr: bigint, length: number, write: boolean): UserfaultRange | undefined {
    const range = userfaultRange(this, addr, length, write);
    // smaps and pagemap are per pid: the address space must still be ours.
    return range !== undefined && this.current ? range : undefined;
  }

  hostPagemap(va: bigint, count: number): bigint[] | undefined {
    if (this.fd === undefined || count <= 0) return undefined;
    let fd: number;
    try {
      fd = fs.openSync(`/proc/${this.pid}/pagemap`, 'r');
    } catch {
      return undefined;
    }
    try {
      const buf = Buffer.alloc(count * 8);
      const n = fs.readSync(fd, buf, 0, buf.byteLength, Number((va >> 12n) * 8n));
      // pagemap is per pid, not per address space: make sure ours is still the current one.
      if (!this.current) return undefined;
      const out: bigint[] = [];
      for (let i = 0; i < count; i++) {
        let entry = i * 8 + 8 <= n ? buf.readBigUInt64LE(i * 8) : 0n;
        // A swapped page's low bits are its swap entry; a present page's, a host frame.
        if ((entry & PM_SWAP) === 0n) entry &= ~PM_PFRAME_MASK;
        out.push(entry);
      }
      return out;
    } catch {
      return undefined;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The mappings of the address space now (/proc/<pid>/maps); empty if unreadable. */
  mapRanges(): MapRange[] {
    if (this.fd === undefined) return [];
    try {
      return mapRanges(fs.readFileSync(`/proc/${this.pid}/maps`, 'latin1'));
    } catch {
      return [];
    }
  }

  /**
   * Keeps the view open beyond the connections of its process (e.g. pinned pages a device may
   * still DMA to). Returns the matching release.
   */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      if (this.holds === 0 && this.retired) this.close();
    };
  }

  /** The server is done with the view: close it now, or when the last hold() is released. */
  retire(): void {
    this.retired = true;
    if (this.holds === 0) this.close();
  }

  /** Closes the view; every later access faults. */
  close(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) fs.closeSync(fd);
  }

  /** False once the process has exec'd or exited (the fd then reads 0 bytes), or after close(). */
  get current(): boolean {
    const fd = this.fd;
    if (fd === undefined) return false;
    // Any readable address will do; the stack of a live process always is. Reading an
    // unmapped address gives EIO (still current); a dead address space gives 0 bytes.
    try {
      const probe = new Uint8Array(1);
      return fs.readSync(fd, probe, 0, 1, 0) !== 0;
    } catch {
      return true;
    }
  }
}

function validRange(addr: bigint, length: number): boolean {
  if (!Number.isSafeInteger(length) || length < 0) return false;
  return addr >= 0n && addr + BigInt(length) <= MAX_POSITION;
}

/** Writes need a JS-number position: addresses up to 2^53 (every 4- and most 5-level VAs). */
function validWriteRange(addr: bigint, length: number): boolean {
  return validRange(addr, length) && addr + BigInt(length) <= BigInt(Number.MAX_SAFE_INTEGER);
}

const MAP_LINE =
  /^([0-9a-f]+)-([0-9a-f]+) ([-r])([-w])[-x]([ps]) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)/;
const PAGE_SIZE_LINE = /^KernelPageSize:\s+(\d+) kB/;

/** The VMA holding addr in the text of /proc/<pid>/smaps. Exported for tests. */
export function findVma(smaps: string, addr: bigint): Vma | undefined {
  let current: Omit<Vma, 'pageSize'> | undefined;
  let pageSize = 4096n;
  let userfault = false;
  for (const line of smaps.split('\n')) {
    const m = MAP_LINE.exec(line);
    if (m !== null) {
      if (current !== undefined) break;
      const start = BigInt(`0x${m[1]}`);
      const end = BigInt(`0x${m[2]}`);
      if (addr >= start && addr < end) {
        current = { start, end, readable: m[3] === 'r', writable: m[4] === 'w' };
        // A shared mapping of a file (inode != 0) reaches the file's pages.
        const ino = BigInt(m[9]!);
        if (m[5] === 's' && ino !== 0n) {
          const id = `${Number.parseInt(m[7]!, 16)}:${Number.parseInt(m[8]!, 16)}:${ino}`;
          current = { ...current, file: { id, offset: BigInt(`0x${m[6]}`) } };
        }
        pageSize = 4096n;
      }
      continue;
    }
    if (current !== undefined) {
      const p = PAGE_SIZE_LINE.exec(line);
      if (p !== null) pageSize = BigInt(p[1]!) * 1024n;
      else if (line.startsWith('VmFlags:')) userfault = isUffdFlags(line);
    }
  }
  if (current === undefined) return undefined;
  return userfault ? { ...current, pageSize, userfault } : { ...current, pageSize };
}

/** A mapped address range [start, end) and what user code may do there. */
export interface MapRange {
  readonly start: bigint;
  readonly end: bigint;
  readonly readable: boolean;
  readonly writable: boolean;
}

/** The VMAs in the text of /proc/<pid>/maps. Exported for tests. */
export function mapRanges(maps: string): MapRange[] {
  const out: MapRange[] = [];
  for (const line of maps.split('\n')) {
    const m = MAP_LINE.exec(line);
    if (m === null) continue;
    out.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      readable: m[3] === 'r',
      writable: m[4] === 'w',
    });
  }
  return out;
}

/** Whether every byte of [addr, addr+length) lies in ranges that allow `access`. */
function allowed(
  ranges: readonly MapRange[],
  addr: bigint,
  length: number,
  access: 'readable' | 'writable',
): boolean {
  let at = addr;
  const end = addr + BigInt(length);
  while (at < end) {
    const r = ranges.find((x) => at >= x.start && at < x.end);
    if (r === undefined || !r[access]) return false;
    at = r.end;
  }
  return true;
}

/** What CallMemory needs from the process memory beneath it. */
export interface CallMemoryOptions {
  /** Whether the prefetched window may be written (the shim probed it). Default true. */
  readonly windowWritable?: boolean;
  /**
   * Where the mappings of the address space come from, asked at most once per call, so that
   * accesses outside the window fault where copy_from_user / copy_to_user would (PROT_NONE,
   * read-only pages). Absent: no check.
   */
  readonly maps?: { mapRanges(): readonly MapRange[] };
  /**
   * The process beneath, asked after an access failed whether the kernel would have waited for
   * the process's userfaultfd handler there (userfault.ts). Absent: every failure is a fault.
   */
  readonly userfaults?: UserfaultProbe | undefined;
}

/** No window byte written yet (shared: a call that writes none allocates nothing for it). */
const CLEAN: readonly (readonly [number, number])[] = [];
const NOTHING_WRITTEN: readonly { offset: number; data: Uint8Array }[] = [];
/** Tells whether a failed access was one that faults to a userfaultfd handler (ProcMemory). */
export interface UserfaultProbe {
  userfaultRange(addr: bigint, length: number, write: boolean): UserfaultRange | undefined;
}

/** The most one fault-in asks for: a longer access is faulted in by further rounds. */
export const USERFAULT_MAX = 64 * 1024 * 1024;

/**
 * The memory a handler sees during one call: the caller's memory with the bytes the shim
 * prefetched at the ioctl's arg laid over it. Reads of the window come from the copy; writes to
 * it are kept and reported by written() so the shim stores them back (exactly the bytes the call
 * wrote, like copy_to_user); the rest goes to the memory underneath. Writes honour page
 * protections (EFAULT on read-only memory), unlike /proc/<pid>/mem. After finish() (the call has
 * returned) it is a plain pass-through, for anyone who kept it (pinned pages, device DMA).
 */
export class CallMemory implements UserMemory {
  readonly mm: MmId;
  readonly start: bigint;
  private windowEnd: bigint | undefined;
  private readonly bytes: Uint8Array;
  private readonly base: UserMemory;
  private readonly userfaults: UserfaultProbe | undefined;
  /** The first access of this run of the call that has to wait for a userfaultfd handler. */
  private fault: UserfaultRange | undefined;
  private readonly windowWritable: boolean;
  private readonly maps: { mapRanges(): readonly MapRange[] } | undefined;
  private ranges: readonly MapRange[] | undefined;
  private finished = false;
  /** Written ranges [from, to) relative to start, kept sorted and merged. */
  private dirty: readonly (readonly [number, number])[] = CLEAN;

  constructor(base: UserMemory, start: bigint, bytes: Uint8Array, options: CallMemoryOptions = {}) {
    this.base = base;
    this.mm = base.mm;
    this.start = start;
    this.windowEnd = undefined;
    this.bytes = new Uint8Array(bytes);
    this.windowWritable = options.windowWritable ?? true;
    this.maps = options.maps;
    this.userfaults = options.userfaults;
  }

  /**
   * The first access of the call (since it began or was restarted) that the kernel would have
   * made wait for the process's userfaultfd handler; it failed as a fault, as if it could not.
   */
  get userfault(): UserfaultRange | undefined {
    return this.fault;
  }

  /**
   * The call runs again from its start (after a userfault was faulted in): nothing written, the
   * mappings asked afresh, and the window read again from the caller's memory, where the shim
   * read it (its thread is still in the call). Read again rather than kept from the first run,
   * so that the common call copies nothing more.
   */
  restart(): void {
    const window = this.base.read(this.start, this.bytes.byteLength);
    if (window !== undefined) this.bytes.set(window);
    this.dirty = [];
    this.ranges = undefined;
    this.fault = undefined;
  }

  /** Where the window ends; made only when an access is not inside it (most are). */
  get end(): bigint {
    this.windowEnd ??= this.start + BigInt(this.bytes.byteLength);
    return this.windowEnd;
  }

  /** How many bytes the shim prefetched (0: none, everything goes to the process memory). */
  get prefetched(): number {
    return this.bytes.byteLength;
  }

  /** Whether the call has returned (finish()). */
  get finishedCall(): boolean {
    return this.finished;
  }

  /** The call returned: from now on every access goes straight to the memory underneath. */
  finish(): void {
    this.finished = true;
  }

  read(addr: bigint, length: number): Uint8Array | undefined {
    if (!Number.isSafeInteger(length) || length < 0 || addr < 0n) return undefined;
    if (this.finished) return this.base.read(addr, length);
    // Inside the window (a struct's fields, the common case): a copy of the prefetched bytes.
    // The offset is exact while it could be inside; beyond 2^53 it only has to stay beyond.
    if (length > 0 && addr >= this.start) {
      const from = Number(addr - this.start);
      if (from + length <= this.bytes.byteLength) return this.bytes.slice(from, from + length);
    }
    const end = addr + BigInt(length);
    // Every piece outside the window must be readable (FOLL_FORCE would read PROT_NONE pages).
    const belowEnd = end < this.start ? end : this.start;
    if (addr < this.start && !this.may(addr, Number(belowEnd - addr), 'readable')) return undefined;
    const aboveFrom = addr > this.end ? addr : this.end;
    if (end > this.end && !this.may(aboveFrom, Number(end - aboveFrom), 'readable')) {
      return undefined;
    }
    if (addr >= this.end || end <= this.start || length === 0) return this.baseRead(addr, length);
    const out = new Uint8Array(length);
    if (addr < this.start) {
      const below = this.baseRead(addr, Number(this.start - addr));
      if (below === undefined) return undefined;
      out.set(below, 0);
    }
    const from = addr > this.start ? addr : this.start;
    const to = end < this.end ? end : this.end;
    out.set(
      this.bytes.subarray(Number(from - this.start), Number(to - this.start)),
      Number(from - addr),
    );
    if (end > this.end) {
      const above = this.baseRead(this.end, Number(end - this.end));
      if (above === undefined) return undefined;
      out.set(above, Number(this.end - addr));
    }
    return out;
  }

  write(addr: bigint, data: Uint8Array): boolean {
    if (addr < 0n) return false;
    if (this.finished) return this.base.write(addr, data);
    const length = data.byteLength;
    const end = addr + BigInt(length);
    const touchesWindow = addr < this.end && end > this.start && length > 0;
    if (touchesWindow && !this.windowWritable) return false;
    // Check every piece before writing any: a fault leaves no partial write behind.
    const belowEnd = end < this.start ? end : this.start;
    if (addr < this.start && !this.may(addr, Number(belowEnd - addr), 'writable')) return false;
    const aboveFrom = addr > this.end ? addr : this.end;
    if (end > this.end && !this.may(aboveFrom, Number(end - aboveFrom), 'writable')) return false;
    if (!touchesWindow) return this.baseWrite(addr, data);
    if (addr < this.start && !this.baseWrite(addr, data.subarray(0, Number(this.start - addr)))) {
      return false;
    }
    if (end > this.end && !this.baseWrite(this.end, data.subarray(Number(this.end - addr)))) {
      return false;
    }
    const from = addr > this.start ? addr : this.start;
    const to = end < this.end ? end : this.end;
    const off = Number(from - this.start);
    const len = Number(to - from);
    this.bytes.set(data.subarray(Number(from - addr), Number(from - addr) + len), off);
    this.markDirty(off, off + len);
    return true;
  }

  vma(addr: bigint): Vma | undefined {
    return this.base.vma(addr);
  }

  hostPagemap(va: bigint, count: number): bigint[] | undefined {
    return this.base.hostPagemap?.(va, count);
  }

  /** GUP's fault-in before a pin, during the call: pages a handler must supply are a fault. */
  pinFaults(addr: bigint, length: bigint): boolean {
    if (this.finished || this.userfaults === undefined) return false;
    const n = length < BigInt(USERFAULT_MAX) ? Number(length) : USERFAULT_MAX;
    const range = this.userfaults.userfaultRange(addr, n, false);
    if (range === undefined) return false;
    this.fault ??= range;
    return true;
  }

  private baseRead(addr: bigint, length: number): Uint8Array | undefined {
    const bytes = this.base.read(addr, length);
    if (bytes === undefined) this.failed(addr, length, undefined);
    return bytes;
  }

  private baseWrite(addr: bigint, data: Uint8Array): boolean {
    if (this.base.write(addr, data)) return true;
    this.failed(addr, data.byteLength, data);
    return false;
  }

  /** An access failed: remembers it if the kernel would have waited for a handler there. */
  private failed(addr: bigint, length: number, data: Uint8Array | undefined): void {
    if (this.fault !== undefined || this.userfaults === undefined) return;
    const range = this.userfaults.userfaultRange(addr, length, data !== undefined);
    if (range === undefined) return;
    const n = Math.min(range.length, USERFAULT_MAX);
    if (data === undefined) this.fault = { addr: range.addr, length: n };
    else {
      const from = Number(range.addr - addr);
      this.fault = { addr: range.addr, length: n, data: data.subarray(from, from + n) };
    }
  }

  /** The window bytes written during the call, as (offset, bytes) runs in address order. */
  written(): readonly { offset: number; data: Uint8Array }[] {
    if (this.dirty.length === 0) return NOTHING_WRITTEN;
    return this.dirty.map(([from, to]) => ({ offset: from, data: this.bytes.slice(from, to) }));
  }

  private may(addr: bigint, length: number, access: 'readable' | 'writable'): boolean {
    if (this.maps === undefined || length === 0) return true;
    this.ranges ??= this.maps.mapRanges();
    return allowed(this.ranges, addr, length, access);
  }

  private markDirty(from: number, to: number): void {
    const merged: (readonly [number, number])[] = [];
    let lo = from;
    let hi = to;
    for (const [a, b] of this.dirty) {
      if (b < lo || a > hi) merged.push([a, b]);
      else {
        lo = Math.min(lo, a);
        hi = Math.max(hi, b);
      }
    }
    merged.push([lo, hi]);
    merged.sort((x, y) => x[0] - y[0]);
    this.dirty = merged;
  }
}
