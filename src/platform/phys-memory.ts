/**
 * The simulated machine's physical RAM and its frame allocator.
 *
 * RAM is sparse: a frame's bytes exist only once something writes them, and untouched RAM reads
 * as zeros. A frame handed out for a pinned user page holds no bytes of its own: it stands for
 * that page of a process, and reads and writes of it go to the process's memory through the
 * registered FrameBacking (PinnedPages). Every other frame is plain simulated RAM, which is what
 * unsafe no-IOMMU DMA can corrupt.
 */
import { shouldFail } from '../fault/fault.ts';
import { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { hex, isPowerOfTwo, PAGE_SHIFT, PAGE_SIZE, SZ_1G } from './sizes.ts';
import type { UserMemory } from './user-memory.ts';

/** Why a frame was allocated; `stats()` counts frames per purpose. */
/** 'dma-buf' is kernel memory exported for devices to reach (the test interface's dma-bufs). */
export type FramePurpose = 'user-page' | 'page-table' | 'kernel' | 'dma-buf';

/** What a frame is now: allocated for a purpose, free, never allocatable, or not RAM at all. */
export type FrameState = FramePurpose | 'free' | 'reserved' | 'outside';

/** The default RAM size of the simulated machine. */
export const DEFAULT_MEMORY_SIZE = 4n * SZ_1G;
/** The largest RAM size a machine may have (keeps frame numbers exact as JS numbers). */
export const MAX_MEMORY_SIZE = 1n << 40n;
/** Frames below 1 MiB (frame 0 included) are firmware territory and never handed out. */
export const LOW_RESERVED_FRAMES = (1n << 20n) >> PAGE_SHIFT;

/**
 * Who a frame stands for, when it is a user page. Implemented by PinnedPages; PhysMemory asks it
 * for every access to a 'user-page' frame.
 */
export interface FrameBacking {
  /**
   * The process page frame `pfn` stands for, or undefined. The frame number is a JS number
   * (exact: frames are below 2^40), as it is asked on every DMA.
   */
  userPage(pfn: number): UserPageOfFrame | undefined;
}

/** A user page a frame stands for: the page's VA in the memory of `owner`, its address space. */
export interface UserPageOfFrame {
  /** Its `mem` is the latest UserMemory seen for the address space. */
  readonly owner: { readonly mem: UserMemory };
  readonly va: bigint;
}

/** Frame accounting, for the inspector and the leak checks. */
export interface PhysStats {
  readonly size: bigint;
  readonly totalFrames: bigint;
  /** The low 1 MiB: RAM, but never handed out. */
  readonly reservedFrames: bigint;
  readonly freeFrames: bigint;
  readonly framesInUse: bigint;
  readonly byPurpose: Readonly<Record<FramePurpose, bigint>>;
  /** Frames of simulated RAM that hold written bytes (the sparse store's size). */
  readonly touchedFrames: bigint;
}

export interface PhysMemoryOptions {
  /** Bytes of RAM: a multiple of 4 KiB, above 1 MiB, at most MAX_MEMORY_SIZE. */
  readonly size?: bigint;
  /** Where access failures and allocator bugs are reported. */
  readonly events?: EventBus;
}

// Frame states are one byte per frame, kept in lazily created 1 GiB chunks, so a large machine
// costs nothing until its memory is used. Internally frame numbers are JS numbers (exact below
// 2^53) because the allocator scans many of them; the API speaks bigint.
const FREE = 0;
const purposeCode: Readonly<Record<FramePurpose, number>> = {
  'user-page': 1,
  'page-table': 2,
  kernel: 3,
  'dma-buf': 4,
};
const purposeOfCode: readonly (FramePurpose | undefined)[] = [
  undefined,
  'user-page',
  'page-table',
  'kernel',
  'dma-buf',
];
const CHUNK_SHIFT = 18;
const CHUNK_FRAMES = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK_FRAMES - 1;
const FRAME_BYTES = Number(PAGE_SIZE);
const PAGE_MASK = PAGE_SIZE - 1n;
const LOW_52_BITS = (1n << 52n) - 1n;
/** Single frames are handed out every other frame, so consecutive ones are never adjacent. */
const SINGLE_STRIDE = 2;

interface Chunk {
  readonly states: Uint8Array;
  used: number;
}

interface RamFrame {
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

/** Simulated physical memory: frame allocator plus byte store. */
export class PhysMemory {
  readonly size: bigint;
  readonly totalFrames: bigint;
  readonly events: EventBus;

  private readonly frames: number;
  private readonly low = Number(LOW_RESERVED_FRAMES);
  private readonly chunks: (Chunk | undefined)[] = [];
  private readonly ram = new Map<number, RamFrame>();
  private readonly inUse: Record<FramePurpose, bigint> = {
    'user-page': 0n,
    'page-table': 0n,
    kernel: 0n,
    'dma-buf': 0n,
  };
  private backing: FrameBacking | undefined;
  /**
   * Bumped by every write to simulated RAM (not to user pages) and every free: a cache of what
   * RAM holds, such as an I/O page-table walk cache, is valid while this is unchanged.
   */
  ramGeneration = 0;
  private nextSingle: number;
  private lastSingle = -SINGLE_STRIDE;

  /** Throws RangeError for an impossible size: a programming error, configs are validated. */
  constructor(options: PhysMemoryOptions = {}) {
    const size = options.size ?? DEFAULT_MEMORY_SIZE;
    if (
      size % PAGE_SIZE !== 0n ||
      size <= LOW_RESERVED_FRAMES * PAGE_SIZE ||
      size > MAX_MEMORY_SIZE
    ) {
      throw new RangeError(`physical memory size ${hex(size)} is not a usable RAM size`);
    }
    this.size = size;
    this.totalFrames = size >> PAGE_SHIFT;
    this.frames = Number(this.totalFrames);
    this.events = options.events ?? new EventBus();
    this.nextSingle = this.low;
  }

  /** Routes accesses to 'user-page' frames to the process memory they stand for. */
  setBacking(backing: FrameBacking): void {
    this.backing = backing;
  }

  // ---- allocator ----------------------------------------------------------------------------

  /**
   * One 4 KiB frame, zeroed. Consecutive single frames are never physically adjacent (unless
   * nothing else is left), so ordinary 4K memory has scattered PAs as on a real machine.
   * Returns the frame number, or -ENOMEM.
   */
  allocFrame(purpose: FramePurpose): bigint | number {
    if (shouldFail(faultSiteFor(purpose))) return -Errno.ENOMEM;
    const span = this.frames - this.low;
    let fallback = -1;
    let f = this.nextSingle;
    for (let scanned = 0; scanned < span; scanned++, f++) {
      if (f >= this.frames) f = this.low;
      const chunk = this.chunks[f >> CHUNK_SHIFT];
      if (chunk !== undefined && chunk.states[f & CHUNK_MASK] !== FREE) continue;
      if (Math.abs(f - this.lastSingle) === 1) {
        if (fallback < 0) fallback = f;
        continue;
      }
      return this.takeSingle(f, purpose);
    }
    if (fallback >= 0) return this.takeSingle(fallback, purpose);
    return -Errno.ENOMEM;
  }

  /**
   * `nframes` physically contiguous frames starting at a multiple of `alignFrames` (a power of
   * two), zeroed unless they are user pages: hugepage backing and page-table pages. First fit from
   * low memory. Returns the first frame number, -EINVAL for bad arguments, or -ENOMEM.
   */
  allocContiguous(nframes: bigint, alignFrames: bigint, purpose: FramePurpose): bigint | number {
    if (nframes <= 0n || nframes > this.totalFrames || !isPowerOfTwo(alignFrames)) {
      return -Errno.EINVAL;
    }
    if (shouldFail(faultSiteFor(purpose))) return -Errno.ENOMEM;
    const n = Number(nframes);
    const align = Number(alignFrames);
    let start = roundUp(this.low, align);
    while (start + n <= this.frames) {
      const used = this.firstUsed(start, start + n);
      if (used < 0) {
        this.mark(start, n, purpose);
        return BigInt(start);
      }
      start = roundUp(used + 1, align);
    }
    return -Errno.ENOMEM;
  }

  /**
   * Returns frames to the allocator. Freeing a frame that is not allocated is an emulator bug: it
   * is reported and nothing is freed (-EINVAL).
   */
  free(pfn: bigint, nframes = 1n): number {
    this.ramGeneration++;
    if (pfn < LOW_RESERVED_FRAMES || nframes <= 0n || pfn + nframes > this.totalFrames) {
      this.events.log('bug', `phys: free of frames ${hex(pfn)}+${nframes} outside allocatable RAM`);
      return -Errno.EINVAL;
    }
    const start = Number(pfn);
    const n = Number(nframes);
    for (let f = start; f < start + n; f++) {
      if (this.code(f) === FREE) {
        this.events.log('bug', `phys: double free of frame ${hex(BigInt(f))}`);
        return -Errno.EINVAL;
      }
    }
    for (let f = start; f < start + n; f++) {
      const purpose = purposeOfCode[this.code(f)];
      if (purpose !== undefined) this.inUse[purpose]--;
      this.setCode(f, FREE);
    }
    return 0;
  }

  /** What frame `pfn` is now. */
  frameState(pfn: bigint): FrameState {
    if (pfn < 0n || pfn >= this.totalFrames) return 'outside';
    if (pfn < LOW_RESERVED_FRAMES) return 'reserved';
    return purposeOfCode[this.code(Number(pfn))] ?? 'free';
  }

  /** Frame accounting. */
  stats(): PhysStats {
    const inUse = this.inUse['user-page'] + this.inUse['page-table'] + this.inUse.kernel;
    return {
      size: this.size,
      totalFrames: this.totalFrames,
      reservedFrames: LOW_RESERVED_FRAMES,
      freeFrames: this.totalFrames - LOW_RESERVED_FRAMES - inUse,
      framesInUse: inUse,
      byPurpose: { ...this.inUse },
      touchedFrames: BigInt(this.ram.size),
    };
  }

  // ---- byte access --------------------------------------------------------------------------

  /** Whether [pa, pa + length) lies entirely in RAM. */
  isRam(pa: bigint, length: bigint): boolean {
    return pa >= 0n && length >= 0n && pa + length <= this.size;
  }

  /**
   * Reads physical memory the way a bus master would: user-page frames read the process's page,
   * other RAM reads the simulated store (zeros if never written), and addresses beyond RAM read
   * as zeros (unassigned memory).
   */
  read(pa: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.readInto(pa, out);
    return out;
  }

  /** read() into the caller's buffer: a DMA lands in its destination with no copy in between. */
  readInto(pa: bigint, dst: Uint8Array): void {
    this.readIntoFrame(Number(pa >> PAGE_SHIFT), Number(pa & PAGE_MASK), dst);
  }

  /**
   * readInto() of the address `offset` bytes into frame `pfn`, in numbers (a frame number of a
   * 64-bit PA is below 2^52, exact in a double): the DMA path, which has its PA as a number.
   */
  readIntoFrame(pfn: number, offset: number, dst: Uint8Array): void {
    const length = dst.length;
    let done = 0;
    let f = pfn;
    let off = offset;
    while (done < length) {
      const n = Math.min(length - done, FRAME_BYTES - off);
      this.readFrame(f, off, n === length ? dst : dst.subarray(done, done + n));
      done += n;
      f++;
      off = 0;
    }
  }

  /**
   * Writes physical memory. Bytes beyond RAM are dropped. Returns false when anything was dropped
   * (beyond RAM, or the process behind a user page refused the write).
   */
  write(pa: bigint, data: Uint8Array): boolean {
    let ok = true;
    let done = 0;
    while (done < data.length) {
      const cur = pa + BigInt(done);
      const off = Number(cur & (PAGE_SIZE - 1n));
      const n = Math.min(data.length - done, FRAME_BYTES - off);
      if (!this.writeFrame(Number(cur >> PAGE_SHIFT), off, data.subarray(done, done + n)))
        ok = false;
      done += n;
    }
    return ok;
  }

  /** A little-endian u64 (a page-table entry). 8-byte aligned `pa` only. */
  readU64(pa: bigint): bigint {
    const pfn = pa >> PAGE_SHIFT;
    if (pfn < this.totalFrames && this.code(Number(pfn)) !== purposeCode['user-page']) {
      const frame = this.ram.get(Number(pfn));
      return frame === undefined ? 0n : frame.view.getBigUint64(Number(pa & 0xff8n), true);
    }
    const bytes = this.read(pa, 8);
    return new DataView(bytes.buffer).getBigUint64(0, true);
  }

  /**
   * The low 52 bits of a little-endian u64 at `pa` (8-byte aligned, below 2^53), as a number:
   * all a page-table entry holds that a walk looks at (flags in bits 0-11, an address in bits
   * 12-51), exact in a double, read without a bigint. The IOMMU's walk for DMA reads this.
   */
  readPteBits(pa: number): number {
    const pfn = Math.floor(pa / FRAME_BYTES);
    if (pfn < this.frames && this.code(pfn) !== purposeCode['user-page']) {
      const frame = this.ram.get(pfn);
      if (frame === undefined) return 0;
      const off = pa % FRAME_BYTES;
      const high = frame.view.getUint32(off + 4, true) & 0xfffff;
      return high * 2 ** 32 + frame.view.getUint32(off, true);
    }
    return Number(this.readU64(BigInt(pa)) & LOW_52_BITS);
  }

  /**
   * Whether the frame holding `pa` stands for a process's page: its bytes are the process's and
   * change without ramGeneration moving, so a cache of what RAM holds cannot rely on them.
   */
  standsForUserPage(pa: number): boolean {
    const pfn = Math.floor(pa / FRAME_BYTES);
    return pfn < this.frames && this.code(pfn) === purposeCode['user-page'];
  }

  /** Stores a little-endian u64 (a page-table entry). 8-byte aligned `pa` only. */
  writeU64(pa: bigint, value: bigint): void {
    const pfn = pa >> PAGE_SHIFT;
    if (pfn < this.totalFrames && this.code(Number(pfn)) !== purposeCode['user-page']) {
      this.ramGeneration++;
      this.ramFrame(Number(pfn)).view.setBigUint64(Number(pa & 0xff8n), value, true);
      return;
    }
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, value, true);
    this.write(pa, bytes);
  }

  // ---- internals ----------------------------------------------------------------------------

  private takeSingle(f: number, purpose: FramePurpose): bigint {
    this.mark(f, 1, purpose);
    this.lastSingle = f;
    this.nextSingle = f + SINGLE_STRIDE;
    return BigInt(f);
  }

  private mark(start: number, n: number, purpose: FramePurpose): void {
    const code = purposeCode[purpose];
    for (let f = start; f < start + n; f++) this.setCode(f, code);
    this.inUse[purpose] += BigInt(n);
    // User-page frames hold no bytes of their own; everything else starts zeroed.
    if (purpose !== 'user-page') this.discardBytes(start, n);
  }

  private discardBytes(start: number, n: number): void {
    if (n < this.ram.size) {
      for (let f = start; f < start + n; f++) this.ram.delete(f);
      return;
    }
    for (const f of this.ram.keys()) if (f >= start && f < start + n) this.ram.delete(f);
  }

  /** The first allocated frame in [start, end), or -1. Skips untouched and empty chunks. */
  private firstUsed(start: number, end: number): number {
    let f = start;
    while (f < end) {
      const chunk = this.chunks[f >> CHUNK_SHIFT];
      const chunkEnd = ((f >> CHUNK_SHIFT) + 1) << CHUNK_SHIFT;
      if (chunk === undefined || chunk.used === 0) {
        f = chunkEnd;
        continue;
      }
      const stop = Math.min(end, chunkEnd);
      for (; f < stop; f++) if (chunk.states[f & CHUNK_MASK] !== FREE) return f;
    }
    return -1;
  }

  private code(f: number): number {
    const chunk = this.chunks[f >> CHUNK_SHIFT];
    return chunk === undefined ? FREE : (chunk.states[f & CHUNK_MASK] ?? FREE);
  }

  private setCode(f: number, code: number): void {
    const index = f >> CHUNK_SHIFT;
    let chunk = this.chunks[index];
    if (chunk === undefined) {
      chunk = { states: new Uint8Array(CHUNK_FRAMES), used: 0 };
      this.chunks[index] = chunk;
    }
    const old = chunk.states[f & CHUNK_MASK] ?? FREE;
    if (old === FREE && code !== FREE) chunk.used++;
    if (old !== FREE && code === FREE) chunk.used--;
    chunk.states[f & CHUNK_MASK] = code;
  }

  private ramFrame(f: number): RamFrame {
    let frame = this.ram.get(f);
    if (frame === undefined) {
      const bytes = new Uint8Array(FRAME_BYTES);
      frame = { bytes, view: new DataView(bytes.buffer) };
      this.ram.set(f, frame);
    }
    return frame;
  }

  private userPageOf(pfn: number): UserPageOfFrame | undefined {
    if (this.code(pfn) !== purposeCode['user-page']) return undefined;
    return this.backing?.userPage(pfn);
  }

  private readFrame(pfn: number, off: number, dst: Uint8Array): void {
    if (pfn >= this.frames) return;
    const page = this.userPageOf(pfn);
    if (page !== undefined) {
      const mem = page.owner.mem;
      // A whole-page read needs no bigint: the page's own VA is the address.
      const at = off === 0 ? page.va : page.va + BigInt(off);
      let ok: boolean;
      if (mem.readInto !== undefined) {
        ok = mem.readInto(at, dst);
      } else {
        const data = mem.read(at, dst.length);
        if (data !== undefined) dst.set(data);
        ok = data !== undefined;
      }
      if (!ok) {
        dst.fill(0);
        this.events.log('error', `phys: read of ${mem.mm} page ${hex(page.va)} failed`);
      }
      return;
    }
    const frame = this.ram.get(pfn);
    if (frame !== undefined) dst.set(frame.bytes.subarray(off, off + dst.length));
  }

  private writeFrame(pfn: number, off: number, src: Uint8Array): boolean {
    if (pfn >= this.frames) return false;
    const page = this.userPageOf(pfn);
    if (page !== undefined) {
      const mem = page.owner.mem;
      if (mem.write(off === 0 ? page.va : page.va + BigInt(off), src)) return true;
      this.events.log('error', `phys: write to ${mem.mm} page ${hex(page.va)} failed`);
      return false;
    }
    this.ramGeneration++;
    this.ramFrame(pfn).bytes.set(src, off);
    return true;
  }
}

function faultSiteFor(purpose: FramePurpose): 'pagetable-alloc' | 'frame-alloc' {
  return purpose === 'page-table' ? 'pagetable-alloc' : 'frame-alloc';
}

function roundUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}
