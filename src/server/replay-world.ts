/**
 * What a replayed call sees of its caller, served from the record instead of a live process:
 * the memory it read (and the VMAs and mappings it asked about), the fds it looked up, the
 * user-namespace check, and device work that completes only where the record says it did, its
 * DMA reading what the program had there. Anything a replayed call or device work asks that the
 * recorded one did not (or asks differently) is a divergence, reported through `diverge`.
 */
import type { File } from '../host/file.ts';
import type { MapRange } from '../host/proc-memory.ts';
import type { EventfdRef, FdResolver, HostFile } from '../host/task.ts';
import type { MmId, UserMemory, Vma } from '../host/user-memory.ts';
import type { DeviceTimers, DeviceWork } from '../platform/device-timers.ts';
import {
  bytesDifference,
  bytesToHex,
  type CallLine,
  type CredsLookup,
  type FdAccess,
  fromHex,
  hexToBytes,
  type MemoryAccess,
  type RecordedFsIds,
  type RecordedVma,
} from '../trace/record.ts';
import { Errno } from '../uapi/errno.ts';
import { PAGE_SIZE } from '../uapi/iommufd.ts';
import type { RecordedCallers } from './client-creds.ts';
import { ClientFiles } from './client-fds.ts';
import { type CallMemories, type IoctlWindow, memoryKey, ServedMemory } from './client-memory.ts';
import type { WireCreds } from './protocol.ts';

export type Diverge = (what: string) => void;

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

function vmaOf(v: RecordedVma): Vma {
  return {
    start: fromHex(v.start),
    end: fromHex(v.end),
    readable: v.readable,
    writable: v.writable,
    pageSize: fromHex(v.pageSize),
    ...(v.file === undefined ? {} : { file: { id: v.file.id, offset: fromHex(v.file.offset) } }),
  };
}

/** A recorded call's log, consumed as the replayed call asks. */
export class CallSeen {
  readonly memory: (MemoryAccess & { used?: boolean })[];
  readonly fds: (FdAccess & { used?: boolean })[];
  readonly lookups: CredsLookup[];
  readonly fsIds: RecordedFsIds[];
  readonly comms: string[];
  private nextLookup = 0;
  private nextFsIds = 0;
  private nextComm = 0;

  /** What a call, or device work (memory only), saw of the program. */
  constructor(
    line: Pick<CallLine, 'memory'> & Partial<Pick<CallLine, 'fds' | 'lookups' | 'fsIds' | 'comms'>>,
  ) {
    this.memory = line.memory.map((m) => ({ ...m }));
    this.fds = (line.fds ?? []).map((f) => ({ ...f }));
    this.lookups = [...(line.lookups ?? [])];
    this.fsIds = [...(line.fsIds ?? [])];
    this.comms = [...(line.comms ?? [])];
  }

  takeMemory<K extends MemoryAccess['op']>(
    op: K,
    match: (m: Extract<MemoryAccess, { op: K }>) => boolean,
  ): Extract<MemoryAccess, { op: K }> | undefined {
    for (const m of this.memory) {
      if (m.used !== true && m.op === op && match(m as Extract<MemoryAccess, { op: K }>)) {
        m.used = true;
        return m as Extract<MemoryAccess, { op: K }>;
      }
    }
    return undefined;
  }

  takeFd<K extends FdAccess['op']>(op: K, fd: number): Extract<FdAccess, { op: K }> | undefined {
    for (const f of this.fds) {
      if (f.used !== true && f.op === op && f.fd === fd) {
        f.used = true;
        return f as Extract<FdAccess, { op: K }>;
      }
    }
    return undefined;
  }

  takeLookup(): CredsLookup | undefined {
    return this.lookups[this.nextLookup++];
  }

  takeFsIds(): RecordedFsIds | undefined {
    return this.fsIds[this.nextFsIds++];
  }

  takeComm(): string | undefined {
    return this.comms[this.nextComm++];
  }

  /** What the recorded call asked and the replayed one did not. */
  unused(): string | undefined {
    const m = this.memory.find((x) => x.used !== true);
    if (m !== undefined) return `the record also has ${describeAccess(m)} here; the replay did not`;
    const f = this.fds.find((x) => x.used !== true);
    if (f !== undefined)
      return `the record also has a lookup of fd ${f.fd} (${f.op}) here; the replay did not`;
    if (
      this.nextLookup < this.lookups.length ||
      this.nextFsIds < this.fsIds.length ||
      this.nextComm < this.comms.length
    ) {
      return "the record also has a check of the caller's credentials here; the replay did not";
    }
    return undefined;
  }
}

function describeAccess(m: MemoryAccess): string {
  switch (m.op) {
    case 'read':
      return `a ${m.length}-byte read of the program's memory at ${m.addr}`;
    case 'write':
      return `a ${m.bytes.length / 2}-byte write to the program's memory at ${m.addr}`;
    case 'vma':
      return `a VMA lookup at ${m.addr}`;
    case 'pagemap':
      return `a read of the host pagemap of ${m.count} pages at ${m.addr}`;
    case 'maps':
      return 'a look at its mappings';
  }
}

/** The bytes of one address space a replay knows: what calls read, what the kernel wrote. */
class ReplayStore {
  readonly mm: MmId;
  private readonly pages = new Map<bigint, Uint8Array>();
  /** VMAs calls were told about, latest first. */
  private vmas: Vma[] = [];

  constructor(mm: MmId) {
    this.mm = mm;
  }

  read(addr: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const at = addr + BigInt(done);
      const offset = Number(at % PAGE_SIZE);
      const n = Math.min(length - done, Number(PAGE_SIZE) - offset);
      const page = this.pages.get(at / PAGE_SIZE);
      if (page !== undefined) out.set(page.subarray(offset, offset + n), done);
      done += n;
    }
    return out;
  }

  write(addr: bigint, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const at = addr + BigInt(done);
      const offset = Number(at % PAGE_SIZE);
      const n = Math.min(data.length - done, Number(PAGE_SIZE) - offset);
      let page = this.pages.get(at / PAGE_SIZE);
      if (page === undefined) {
        page = new Uint8Array(Number(PAGE_SIZE));
        this.pages.set(at / PAGE_SIZE, page);
      }
      page.set(data.subarray(done, done + n), offset);
      done += n;
    }
  }

  remember(vma: Vma): void {
    this.vmas = [vma, ...this.vmas.filter((v) => v.end <= vma.start || v.start >= vma.end)];
  }

  vma(addr: bigint): Vma | undefined {
    return this.vmas.find((v) => v.start <= addr && addr < v.end);
  }
}

/**
 * The process memory beneath one replayed call's CallMemory: while any call runs (this one, or
 * a later one reaching pages this one mapped), every access is answered from that call's log (a
 * read the record has the bytes of, a write compared with what the recorded kernel wrote);
 * between calls (device DMA) from the address space's store.
 */
class CallView implements UserMemory {
  readonly mm: MmId;
  private readonly store: ReplayStore;
  private readonly current: () => CallSeen | undefined;
  private readonly diverge: Diverge;

  constructor(store: ReplayStore, current: () => CallSeen | undefined, diverge: Diverge) {
    this.mm = store.mm;
    this.store = store;
    this.current = current;
    this.diverge = diverge;
  }

  read(addr: bigint, length: number): Uint8Array | undefined {
    const seen = this.current();
    if (seen === undefined) return this.store.read(addr, length);
    const m = seen.takeMemory('read', (x) => fromHex(x.addr) === addr && x.length === length);
    if (m === undefined) {
      this.diverge(
        `${length} bytes of the program's memory at ${hex(addr)} were read; the record has no such read here`,
      );
      return undefined;
    }
    if (m.bytes === null) return undefined;
    const bytes = hexToBytes(m.bytes);
    this.store.write(addr, bytes);
    return bytes;
  }

  write(addr: bigint, data: Uint8Array): boolean {
    const seen = this.current();
    if (seen === undefined) {
      this.store.write(addr, data);
      return true;
    }
    const m = seen.takeMemory('write', (x) => fromHex(x.addr) === addr);
    const replayed = bytesToHex(data);
    if (m === undefined) {
      this.diverge(
        `${data.length} bytes were written to the program's memory at ${hex(addr)} (${replayed}); the record has no such write here`,
      );
      return false;
    }
    if (m.bytes !== replayed) {
      this.diverge(
        `the bytes written to the program's memory at ${hex(addr)} differ ${bytesDifference(m.bytes, replayed)}`,
      );
    }
    if (m.ok) this.store.write(addr, data);
    return m.ok;
  }

  vma(addr: bigint): Vma | undefined {
    const seen = this.current();
    if (seen === undefined) return this.store.vma(addr);
    const m = seen.takeMemory('vma', (x) => fromHex(x.addr) === addr);
    if (m === undefined) {
      this.diverge(`the VMA at ${hex(addr)} was looked up; the record has no such lookup here`);
      return undefined;
    }
    if (m.vma === null) return undefined;
    const vma = vmaOf(m.vma);
    this.store.remember(vma);
    return vma;
  }

  /** The recorded host pagemap flags (an emulated /proc/<pid>/pagemap read). */
  hostPagemap(va: bigint, count: number): bigint[] | undefined {
    const seen = this.current();
    if (seen === undefined) return undefined;
    const m = seen.takeMemory('pagemap', (x) => fromHex(x.addr) === va && x.count === count);
    if (m === undefined) {
      this.diverge(
        `the host pagemap of ${count} pages at ${hex(va)} was read; the record has no such read here`,
      );
      return undefined;
    }
    return m.entries === null ? undefined : m.entries.map(fromHex);
  }

  mapRanges(): readonly MapRange[] {
    const m = this.current()?.takeMemory('maps', () => true);
    if (m === undefined) {
      this.diverge(`the program's mappings were looked at; the record has no such look here`);
      return [];
    }
    return m.ranges.map((r) => ({
      start: fromHex(r.start),
      end: fromHex(r.end),
      readable: r.readable,
      writable: r.writable,
    }));
  }
}

/** The client memories of a replay: one store per recorded address space. */
export class ReplayMemories implements CallMemories {
  private readonly stores = new Map<string, ReplayStore>();
  private readonly current: () => CallSeen | undefined;
  private readonly diverge: Diverge;

  constructor(current: () => CallSeen | undefined, diverge: Diverge) {
    this.current = current;
    this.diverge = diverge;
  }

  attach(creds: WireCreds): string {
    return memoryKey(creds);
  }

  detach(): void {}

  forCall(creds: WireCreds, window?: IoctlWindow): ServedMemory {
    const key = memoryKey(creds);
    let store = this.stores.get(key);
    if (store === undefined) {
      store = new ReplayStore(key);
      this.stores.set(key, store);
    }
    const view = new CallView(store, this.current, this.diverge);
    return new ServedMemory(view, view, window);
  }

  close(): void {}
}

/** The files of a replay: fd lookups answered from the record, eventfds and memfds stood in for. */
export class ReplayFiles extends ClientFiles {
  private readonly current: () => CallSeen | undefined;
  private readonly diverge: Diverge;

  constructor(
    events: ConstructorParameters<typeof ClientFiles>[0],
    current: () => CallSeen | undefined,
    diverge: Diverge,
  ) {
    super(events);
    this.current = current;
    this.diverge = diverge;
  }

  override resolver(): FdResolver {
    const seen = this.current();
    const missing = (fd: number, what: string): void => {
      this.diverge(`the call looked up fd ${fd} (${what}); the recorded call did not`);
    };
    return {
      fileOf: (fd: number): File | undefined => {
        const f = seen?.takeFd('file', fd);
        if (f === undefined) {
          missing(fd, 'fget');
          return undefined;
        }
        if (f.object === null) return undefined;
        const object = this.get(f.object);
        if (object === undefined) {
          this.diverge(`fd ${fd} named open file ${f.object}, which the replay does not have open`);
        }
        return object?.file;
      },
      isOpen: (fd: number): boolean => {
        const f = seen?.takeFd('open', fd);
        if (f === undefined) missing(fd, 'is it open');
        return f?.open ?? false;
      },
      eventfd: (fd: number): EventfdRef | number => {
        const f = seen?.takeFd('eventfd', fd);
        if (f === undefined) {
          missing(fd, 'eventfd');
          return -Errno.EBADF;
        }
        // The program's eventfd is gone: the interrupt itself is in the trace ([irq]).
        return f.ret < 0 ? f.ret : { signal: () => {}, release: () => {} };
      },
      hostFile: (fd: number): HostFile | number => {
        const f = seen?.takeFd('host-file', fd);
        if (f === undefined) {
          missing(fd, 'memfd');
          return -Errno.EBADF;
        }
        if (f.ret < 0) return f.ret;
        return standInFile(f.id ?? `replay:${fd}`, f.fileKind ?? 'shmem', fromHex(f.size ?? '0x0'));
      },
      getUnusedFd: (): number => -Errno.EMFILE,
      fdInstall: (): void => {
        throw new Error('fd_install without a reserved fd');
      },
    };
  }
}

/** A memfd of the recorded program: its identity and size; its pages start as zeros. */
function standInFile(id: string, kind: 'shmem' | 'hugetlbfs', size: bigint): HostFile {
  const pages = new ReplayStore(`file:${id}`);
  return {
    id,
    kind,
    size: () => size,
    read: (offset, length) =>
      offset + BigInt(length) > size ? undefined : pages.read(offset, length),
    write: (offset, data) => {
      pages.write(offset, data);
      return true;
    },
    release: () => {},
  };
}

/** The user-namespace check's and the filesystem ids' answers for a replayed call. */
export function recordedCallers(
  current: () => CallSeen | undefined,
  diverge: Diverge,
): RecordedCallers {
  return {
    caller: (wire) => {
      const found = current()?.takeLookup();
      if (found === undefined) {
        diverge("the caller's credentials were checked; the record has no such check here");
        return {
          caps: { userNs: 'initial', capEff: wire.capEff },
          uid: wire.uid,
          unreadable: false,
        };
      }
      return {
        caps:
          found.userNs === 'initial'
            ? { userNs: 'initial', capEff: fromHex(found.capEff) }
            : { userNs: 'other', capEff: 0n },
        uid: found.uid,
        unreadable: found.unreadable,
      };
    },
    comm: () => {
      const name = current()?.takeComm();
      if (name === undefined) {
        diverge("the caller's comm was read; the record has no such read here");
        return '?';
      }
      return name;
    },
    fsIds: (wire) => {
      const ids = current()?.takeFsIds();
      if (ids === undefined) {
        diverge("the caller's filesystem ids were read; the record has no such read here");
        return { fsuid: wire.uid, fsgid: wire.gid, groups: [] };
      }
      return ids;
    },
  };
}

/** Device work held until the record says it completed. */
export class ReplayTimers implements DeviceTimers {
  private pending: { device: string; work: DeviceWork; run: () => void }[] = [];

  schedule(device: string, work: DeviceWork, _delayMs: number, run: () => void): () => void {
    const entry = { device, work, run };
    this.pending.push(entry);
    return () => {
      this.pending = this.pending.filter((e) => e !== entry);
    };
  }

  /** Completes the device's oldest pending work of this kind; false if it has none. */
  complete(device: string, work: DeviceWork): boolean {
    const entry = this.pending.find((e) => e.device === device && e.work === work);
    if (entry === undefined) return false;
    this.pending = this.pending.filter((e) => e !== entry);
    entry.run();
    return true;
  }
}
