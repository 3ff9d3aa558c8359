/**
 * `exec --record FILE`: writes a run in the record format (src/trace/record.ts, docs/trace.md).
 * The server tells the recorder about every request it dispatches and every reply; the recorder
 * also sees, during each call, what the call asked of its caller (memory through the process
 * view beneath the CallMemory, the fd table, the credentials check) and every event of the
 * kernel, and it marks where device work completed with the program memory its DMA reached.
 * Events a call (or device work) causes are written after its line, so that each call is
 * followed by its own trace line and device events.
 */
import type { Kernel } from '../boot/kernel.ts';
import type { FsIds } from '../host/credentials.ts';
import type { MapRange } from '../host/proc-memory.ts';
import type { EventfdRef, FdResolver, HostFile } from '../host/task.ts';
import type { UserMemory, Vma } from '../host/user-memory.ts';
import { type DeviceWork, eventLoopTimers } from '../platform/device-timers.ts';
import { platformToJson } from '../platform/platform-config.ts';
import type { EmuEvent } from '../trace/events.ts';
import {
  bytesToHex,
  type CallLine,
  type CredsLookup,
  type FdAccess,
  type MemoryAccess,
  RECORD_FORMAT,
  RECORD_VERSION,
  type RecordedCreds,
  type RecordedFsIds,
  type RecordedReply,
  type RecordedVma,
  type RecordHeader,
  type RecordLine,
  toHex,
} from '../trace/record.ts';
import { bootLogEvents, eventJson } from '../trace/writer.ts';
import type { CallerFound, CallerObserver } from './client-creds.ts';
import type { ClientFiles } from './client-fds.ts';
import type { MemoryView } from './client-memory.ts';
import type { Connection, ReplyExtra } from './connection.ts';
import { Op, type Request, type WireCreds } from './protocol.ts';

/** The protocol op's name (`IOCTL`), or `op<N>` for a number no op has. */
export function opName(op: number): string {
  for (const [name, value] of Object.entries(Op)) if (value === op) return name;
  return `op${op}`;
}

export function recordedCreds(c: WireCreds): RecordedCreds {
  return {
    pid: c.pid,
    tid: c.tid,
    uid: c.uid,
    euid: c.euid,
    gid: c.gid,
    egid: c.egid,
    capEff: toHex(c.capEff),
    memlock: toHex(c.memlock),
    mmCookie: toHex(c.mmCookie),
  };
}

export function recordedReply(ret: number, extra: ReplyExtra): RecordedReply {
  return {
    ret,
    flags: extra.flags ?? 0,
    v0: toHex(extra.v0 ?? 0n),
    v1: toHex(extra.v1 ?? 0n),
    payload: bytesToHex(extra.payload ?? new Uint8Array(0)),
  };
}

export function recordedVma(vma: Vma): RecordedVma {
  return {
    start: toHex(vma.start),
    end: toHex(vma.end),
    readable: vma.readable,
    writable: vma.writable,
    pageSize: toHex(vma.pageSize),
    ...(vma.file === undefined
      ? {}
      : { file: { id: vma.file.id, offset: toHex(vma.file.offset) } }),
  };
}

/** A request being dispatched, and what it saw so far. */
interface OpenCall {
  readonly conn: Connection;
  readonly req: Request;
  readonly memory: MemoryAccess[];
  readonly fds: FdAccess[];
  readonly lookups: CredsLookup[];
  readonly fsIds: RecordedFsIds[];
  readonly comms: string[];
  reply: RecordedReply | undefined;
  /** Events published during the call: written after its line. */
  readonly events: string[];
}

/** A device's asynchronous work completing: the program memory its DMA reached, its events. */
interface OpenWork {
  readonly memory: MemoryAccess[];
  readonly events: string[];
}

export interface RecorderInfo {
  /** The program and its arguments. */
  readonly program: readonly string[];
  readonly grantedCaps: bigint;
  /** The emulator's version. */
  readonly emulator: string;
}

export class Recorder {
  private readonly sink: (text: string) => void;
  private readonly info: RecorderInfo;
  private call: OpenCall | undefined;
  private work: OpenWork | undefined;
  private readonly connIds = new WeakMap<Connection, number>();
  private nextConn = 1;
  private unsubscribe: (() => void) | undefined;
  /** After the end line nothing more is written (connections a shutdown drops). */
  private stopped = false;

  constructor(sink: (text: string) => void, info: RecorderInfo) {
    this.sink = sink;
    this.info = info;
  }

  /** The server starts: the header, the boot log, then every event; device work is marked. */
  start(kernel: Kernel, testbed: string): void {
    const header: RecordHeader = {
      kind: 'record',
      format: RECORD_FORMAT,
      version: RECORD_VERSION,
      emulator: this.info.emulator,
      platform: platformToJson(kernel.machine.config),
      // As booted (the module parameter may change later; the server starts right after boot).
      enableUnsafeNoiommuMode: kernel.vfio.enableUnsafeNoiommuMode,
      grantedCaps: toHex(this.info.grantedCaps),
      program: this.info.program,
      testbed,
    };
    this.out(`${JSON.stringify(header)}\n`);
    for (const event of bootLogEvents(kernel.dmesg)) this.out(`${eventJson(event)}\n`);
    this.unsubscribe = kernel.events.subscribe((event: EmuEvent) => {
      const line = `${eventJson(event)}\n`;
      const open = this.call ?? this.work;
      if (open !== undefined) open.events.push(line);
      else this.out(line);
    });
    for (const device of kernel.machine.devices.values()) {
      device.timers = {
        schedule: (bdf, work, delayMs, run) =>
          eventLoopTimers.schedule(bdf, work, delayMs, () => this.deviceWork(bdf, work, run)),
      };
    }
  }

  /** The program is done: its status ends the record. */
  stop(status: number): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.line({ kind: 'end', status });
    this.stopped = true;
  }

  /** A connection was accepted: numbered, and its replies recorded. */
  accept(conn: Connection): void {
    this.connIds.set(conn, this.nextConn++);
    conn.onReply = (req, ret, extra) => this.reply(conn, req, ret, extra);
  }

  beginCall(conn: Connection, req: Request): void {
    this.call = {
      conn,
      req,
      memory: [],
      fds: [],
      lookups: [],
      fsIds: [],
      comms: [],
      reply: undefined,
      events: [],
    };
  }

  /** The dispatch returned: the call's line, then the events it caused. */
  endCall(): void {
    const call = this.call;
    if (call === undefined) return;
    this.call = undefined;
    const { req } = call;
    const line: CallLine = {
      kind: 'call',
      conn: this.connId(call.conn),
      op: opName(req.op),
      opcode: req.op,
      flags: req.flags,
      seq: req.seq,
      obj: req.obj,
      a0: toHex(req.a0),
      a1: toHex(req.a1),
      creds: recordedCreds(req.creds),
      payload: bytesToHex(req.payload),
      memory: call.memory,
      fds: call.fds,
      lookups: call.lookups,
      ...(call.fsIds.length === 0 ? {} : { fsIds: call.fsIds }),
      ...(call.comms.length === 0 ? {} : { comms: call.comms }),
      ...(call.reply === undefined ? {} : { reply: call.reply }),
    };
    this.line(line);
    for (const event of call.events) this.out(event);
  }

  drop(conn: Connection): void {
    this.line({ kind: 'drop', conn: this.connId(conn) });
  }

  rawWrite(conn: Connection, chunk: Uint8Array): void {
    this.line({ kind: 'raw-write', conn: this.connId(conn), data: bytesToHex(chunk) });
  }

  /** A user-namespace check, or a read of filesystem ids, during the current call. */
  readonly observeCaller: CallerObserver = {
    caller: (found: CallerFound): void => {
      this.call?.lookups.push({
        userNs: found.caps.userNs,
        capEff: toHex(found.caps.capEff),
        uid: found.uid,
        unreadable: found.unreadable,
      });
    },
    fsIds: (ids: FsIds): void => {
      this.call?.fsIds.push({ fsuid: ids.fsuid, fsgid: ids.fsgid, groups: [...ids.groups] });
    },
    comm: (name: string): void => {
      this.call?.comms.push(name);
    },
  };

  /**
   * The process memory beneath a call's CallMemory: logged whenever a call runs, that call or a
   * later one (pages a MAP left unpinned are pinned when a later ATTACH gives them a domain,
   * through the memory the MAP saw), or device work (the bytes a device's DMA read from the
   * program, and wrote to it).
   */
  readonly observeMemory = (view: MemoryView): MemoryView => {
    const log = (access: MemoryAccess): void => {
      (this.call ?? this.work)?.memory.push(access);
    };
    const base = view.memory;
    const memory: UserMemory = {
      mm: base.mm,
      read(addr: bigint, length: number): Uint8Array | undefined {
        const bytes = base.read(addr, length);
        log({
          op: 'read',
          addr: toHex(addr),
          length,
          bytes: bytes === undefined ? null : bytesToHex(bytes),
        });
        return bytes;
      },
      write(addr: bigint, data: Uint8Array): boolean {
        const ok = base.write(addr, data);
        log({ op: 'write', addr: toHex(addr), bytes: bytesToHex(data), ok });
        return ok;
      },
      vma(addr: bigint): Vma | undefined {
        const vma = base.vma(addr);
        log({ op: 'vma', addr: toHex(addr), vma: vma === undefined ? null : recordedVma(vma) });
        return vma;
      },
      // The host's flags of the program's pages, for an emulated /proc/<pid>/pagemap.
      hostPagemap(va: bigint, count: number): bigint[] | undefined {
        const entries = base.hostPagemap?.(va, count);
        log({
          op: 'pagemap',
          addr: toHex(va),
          count,
          entries: entries === undefined ? null : entries.map((e) => toHex(e)),
        });
        return entries;
      },
    };
    const mapRanges = (): readonly MapRange[] => {
      const ranges = view.mapRanges();
      log({
        op: 'maps',
        ranges: ranges.map((r) => ({
          start: toHex(r.start),
          end: toHex(r.end),
          readable: r.readable,
          writable: r.writable,
        })),
      });
      return ranges;
    };
    return { memory, mapRanges };
  };

  /** A call's fd table: what each lookup found is logged while that call runs. */
  observeFds(fds: FdResolver, files: ClientFiles): FdResolver {
    const call = this.call;
    if (call === undefined) return fds;
    const log = (access: FdAccess): void => {
      if (this.call === call) call.fds.push(access);
    };
    const hostFile = fds.hostFile;
    return {
      ...fds,
      fileOf: (fd) => {
        const file = fds.fileOf(fd);
        log({ op: 'file', fd, object: file === undefined ? null : (files.idOf(file) ?? null) });
        return file;
      },
      isOpen: (fd) => {
        const open = fds.isOpen(fd);
        log({ op: 'open', fd, open });
        return open;
      },
      eventfd: (fd): EventfdRef | number => {
        const ref = fds.eventfd(fd);
        log({ op: 'eventfd', fd, ret: typeof ref === 'number' ? ref : 0 });
        return ref;
      },
      ...(hostFile === undefined
        ? {}
        : {
            hostFile: (fd: number): HostFile | number => {
              const file = hostFile(fd);
              log(
                typeof file === 'number'
                  ? { op: 'host-file', fd, ret: file }
                  : {
                      op: 'host-file',
                      fd,
                      ret: 0,
                      id: file.id,
                      fileKind: file.kind,
                      size: toHex(file.size()),
                    },
              );
              return file;
            },
          }),
    };
  }

  private reply(conn: Connection, req: Request, ret: number, extra: ReplyExtra): void {
    const call = this.call;
    if (call !== undefined && call.conn === conn && call.req === req) {
      call.reply = recordedReply(ret, extra);
      return;
    }
    this.line({
      kind: 'reply',
      conn: this.connId(conn),
      seq: req.seq,
      ...recordedReply(ret, extra),
    });
  }

  /** Device work completes: its line (with the memory its DMA reached), then its events. */
  private deviceWork(device: string, work: DeviceWork, run: () => void): void {
    const open: OpenWork = { memory: [], events: [] };
    this.work = open;
    try {
      run();
    } finally {
      this.work = undefined;
      this.line({ kind: 'device-work', device, work, memory: open.memory });
      for (const event of open.events) this.out(event);
    }
  }

  private connId(conn: Connection): number {
    let id = this.connIds.get(conn);
    if (id === undefined) {
      id = this.nextConn++;
      this.connIds.set(conn, id);
    }
    return id;
  }

  private line(entry: RecordLine): void {
    this.out(`${JSON.stringify(entry)}\n`);
  }

  private out(text: string): void {
    if (!this.stopped) this.sink(text);
  }
}
