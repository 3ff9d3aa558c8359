/**
 * The kernel core: what every driver registers with and every front end calls into. The device
 * nodes (devfs), sysfs, the path walk over them (vfs), the event stream the kernel's log and
 * traces go through, the taint mask, and each task's fail-nth counter with the procfs and debugfs
 * files that set it. It knows no driver: the composition root (src/boot) builds one and wires
 * the subsystems to it.
 */
import { FailNth } from '../fault/fault.ts';
import { EventBus } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import { DevFs } from './devfs.ts';
import { type File, OpenFiles } from './file.ts';
import type { Pagemap } from './pagemap.ts';
import { type SysAttr, SysFs } from './sysfs.ts';
import type { Task } from './task.ts';
import type { MmId } from './user-memory.ts';
import { type Inode, Vfs } from './vfs.ts';

export class KernelCore {
  readonly devfs = new DevFs();
  readonly sysfs = new SysFs();
  /** Every file open in this kernel, by kind (the invariants count them). */
  readonly openFiles = new OpenFiles();
  /** Path walks over devfs, sysfs and the files made up on lookup (procfs, debugfs). */
  readonly vfs = new Vfs(this.devfs, this.sysfs, this.openFiles, (task, path) =>
    this.madeUpFile(task, path),
  );
  readonly events = new EventBus();
  /** /proc/<pid>/pagemap, once the composition root gave it the machine's pinned pages. */
  pagemap: Pagemap | undefined;
  /** /proc/sys/kernel/tainted. */
  tainted = 0;
  /** The kernel log (dmesg): every warning and error line since boot, oldest first, bounded. */
  readonly dmesg: string[] = [];
  /** Every task's fail-nth counter, by "pid/tid" (current->fail_nth). */
  /** By pid, then tid (numbers, not a string made per call: every served call asks). */
  private readonly failNths = new Map<number, Map<number, FailNth>>();
  /** Values written to the debugfs fault-injection knobs (accepted, no other effect). */
  private readonly debugfsKnobs = new Map<string, string>();
  /**
   * The host's own /proc/<pid>[/task/<tid>]/status of a process the kernel serves (set by a
   * front end whose tasks are real processes), or undefined when there is no such process.
   * Without it the file has only the lines the emulated kernel keeps.
   */
  hostProcStatus: ((pid: number, tid: number | undefined) => string | undefined) | undefined;
  /** Whether address space `mm` is (or was) one of process `pid`'s; set with hostProcStatus. */
  mmOfProcess: (mm: MmId, pid: number) => boolean = () => false;
  /** Per-mm memory counters drivers keep (iommufd's pinned_vm and locked_vm), in pages. */
  readonly mmCounters: ((which: (mm: MmId) => boolean) => MmCounters)[] = [];

  constructor() {
    // Logs only: a bus with no other listener lets ioctls skip building syscall trace events.
    this.events.subscribe(
      (event) => {
        if (event.kind !== 'log' || event.level === 'info') return;
        this.dmesg.push(`${event.level}: ${event.message}`);
        if (this.dmesg.length > 1000) this.dmesg.shift();
      },
      ['log'],
    );
    this.sysfs.add({
      kind: 'attr',
      path: '/proc/sys/kernel/tainted',
      mode: 0o644,
      show: () => `${this.tainted}\n`,
    });
  }

  /** add_taint(). */
  addTaint(bit: number): void {
    this.tainted |= 1 << bit;
  }

  /** open(2) of an emulated path: a new File, or a negative errno (-ENOENT if not ours). */
  open(task: Task, path: string, flags: number): File | number {
    const opened = this.vfs.open(task, path, flags);
    return typeof opened === 'number' ? opened : opened.file;
  }

  /** The fail-nth counter of task `tid` of process `pid`, made on first use. */
  failNth(pid: number, tid: number): FailNth {
    let threads = this.failNths.get(pid);
    if (threads === undefined) {
      threads = new Map();
      this.failNths.set(pid, threads);
    }
    let counter = threads.get(tid);
    if (counter === undefined) {
      counter = new FailNth();
      threads.set(tid, counter);
    }
    return counter;
  }

  /** A task exited: its counter goes with it. */
  forgetTask(pid: number, tid: number): void {
    const threads = this.failNths.get(pid);
    threads?.delete(tid);
    if (threads?.size === 0) this.failNths.delete(pid);
  }

  /**
   * The procfs and debugfs files the kernel makes up when they are looked up: /proc/self and
   * /proc/thread-self (links to the caller's own directories), /proc/<pid>[/task/<tid>] and
   * their fail-nth and pagemap, and the debugfs fault-injection directories and knobs.
   */
  private madeUpFile(task: Task, path: string): Inode | undefined {
    const { pid, tid } = task.creds;
    if (path === '/proc/self') return { kind: 'link', target: `${pid}` };
    if (path === '/proc/thread-self') return { kind: 'link', target: `${pid}/task/${tid}` };
    if (PROC_TASK_DIR.test(path) || path === '/sys/kernel/debug') return { kind: 'dir' };
    if (DEBUGFS_DIR.test(path)) return { kind: 'dir' };
    const pagemap = PROC_PAGEMAP.exec(path);
    if (pagemap !== null && this.pagemap !== undefined) {
      const map = this.pagemap;
      const pid = Number(pagemap[1]);
      // Owned by the process (task_dump_owner()): here only the caller's own is served.
      const ids = task.creds.fsIds();
      const owner = { uid: ids.fsuid, gid: ids.fsgid };
      return { kind: 'proc', mode: 0o400, owner, open: (t) => map.open(t, pid) };
    }
    const attr = this.failNthAttr(task, path) ?? this.debugfsAttr(path) ?? this.statusAttr(path);
    return attr === undefined ? undefined : { kind: 'attr', attr };
  }

  /**
   * /proc/<pid>/task/<tid>/fail-nth (and /proc/<pid>/fail-nth, the thread group leader's):
   * write N to fail the Nth injection point that task reaches; reads give what is left, 0 once
   * it fired.
   */
  private failNthAttr(task: Task, path: string): SysAttr | undefined {
    const m = /^\/proc\/(\d+)(?:\/task\/(\d+))?\/fail-nth$/.exec(path);
    if (m === null) return undefined;
    const pid = Number(m[1]);
    const tid = m[2] === undefined ? pid : Number(m[2]);
    // A task's /proc files are its own (task_dump_owner); of another process only its pid is known.
    const own = pid === task.creds.pid;
    const ids = own ? task.creds.fsIds() : undefined;
    return {
      kind: 'attr',
      path,
      mode: 0o644,
      ...(ids === undefined ? {} : { owner: { uid: ids.fsuid, gid: ids.fsgid } }),
      show: () => `${this.failNth(pid, tid).remaining}\n`,
      store: (_task, text) => {
        const n = parseUint(text);
        if (n === undefined) return -Errno.EINVAL;
        this.failNth(pid, tid).arm(n);
        return 0;
      },
    };
  }

  /**
   * /proc/<pid>/status and /proc/<pid>/task/<tid>/status: the process's own lines, with VmLck
   * and VmPin counting what the emulated kernel locks and pins for it too (mm->locked_vm and
   * mm->pinned_vm, which iommufd charges).
   */
  private statusAttr(path: string): SysAttr | undefined {
    const m = /^\/proc\/(\d+)(?:\/task\/(\d+))?\/status$/.exec(path);
    if (m === null) return undefined;
    const pid = Number(m[1]);
    const tid = m[2] === undefined ? undefined : Number(m[2]);
    const host = this.hostProcStatus;
    if (host !== undefined && host(pid, tid) === undefined) return undefined;
    return {
      kind: 'attr',
      path,
      mode: 0o444,
      show: (task) => {
        const text = host?.(pid, tid) ?? `Pid:\t${pid}\nVmLck:\t       0 kB\nVmPin:\t       0 kB\n`;
        // The caller's own process: its current address space exactly; another's: all of its.
        const own = task.creds.pid === pid ? task.memory.mm : undefined;
        const which = (mm: MmId) => (own === undefined ? this.mmOfProcess(mm, pid) : mm === own);
        let pinned = 0n;
        let locked = 0n;
        for (const counters of this.mmCounters) {
          const c = counters(which);
          pinned += c.pinned;
          locked += c.locked;
        }
        return addToKbLine(addToKbLine(text, 'VmLck', locked), 'VmPin', pinned);
      },
    };
  }

  /** /sys/kernel/debug/<fail*>/<knob>: programs written for kernel fault injection set these. */
  private debugfsAttr(path: string): SysAttr | undefined {
    const m = DEBUGFS_KNOB.exec(path);
    if (m === null) return undefined;
    return {
      kind: 'attr',
      path,
      mode: 0o600,
      show: () => this.debugfsKnobs.get(path) ?? (m[2] === 'verbose' ? '2\n' : 'N\n'),
      store: (_task, text) => {
        this.debugfsKnobs.set(path, text.trim().endsWith('\n') ? text.trim() : `${text.trim()}\n`);
        return 0;
      },
    };
  }

  /**
   * The debugfs fault-injection knobs a listing of /sys/kernel/debug/<fail*>/ shows (each of
   * them, and any other name debugfsAttr accepts, opens).
   */
  debugfsFiles(): string[] {
    const common = ['interval', 'probability', 'space', 'task-filter', 'times', 'verbose'];
    const extra: Record<string, string[]> = {
      failslab: ['cache-filter', 'ignore-gfp-wait'],
      fail_page_alloc: ['ignore-gfp-highmem', 'ignore-gfp-wait', 'min-order'],
    };
    return DEBUGFS_DIRS.flatMap((dir) =>
      [...common, ...(extra[dir] ?? [])].map((knob) => `/sys/kernel/debug/${dir}/${knob}`),
    );
  }
}

const DEBUGFS_DIRS = ['failslab', 'fail_page_alloc', 'fail_iommufd', 'fail_usercopy'];
const DEBUGFS_KNOB = new RegExp(`^/sys/kernel/debug/(${DEBUGFS_DIRS.join('|')})/([a-z-]+)$`);
const DEBUGFS_DIR = new RegExp(`^/sys/kernel/debug/(${DEBUGFS_DIRS.join('|')})$`);
/** /proc/<pid>/pagemap and /proc/<pid>/task/<tid>/pagemap (the same address space). */
const PROC_PAGEMAP = /^\/proc\/(\d+)(?:\/task\/\d+)?\/pagemap$/;
/** /proc/<pid>, /proc/<pid>/task and /proc/<pid>/task/<tid>. */
const PROC_TASK_DIR = /^\/proc\/\d+(\/task(\/\d+)?)?$/;

/** Pages of one mm that a driver accounts, as /proc/<pid>/status reports them. */
export interface MmCounters {
  /** mm->pinned_vm (VmPin). */
  readonly pinned: bigint;
  /** mm->locked_vm (VmLck). */
  readonly locked: bigint;
}

/**
 * Adds `pages` (4 KiB each) to the "Name:\t<n> kB" line of a status file, in the kernel's
 * format (the value right-aligned in 8 columns).
 */
function addToKbLine(text: string, name: string, pages: bigint): string {
  if (pages === 0n) return text;
  const re = new RegExp(`^${name}:\\s*(\\d+) kB$`, 'm');
  const m = re.exec(text);
  const kb = (m === null ? 0n : BigInt(m[1]!)) + pages * 4n;
  const line = `${name}:\t${kb.toString().padStart(8)} kB`;
  return m === null ? `${text}${line}\n` : text.replace(re, line);
}

/** kstrtouint(): decimal, 0x hex or 0 octal, with an optional trailing newline. */
function parseUint(text: string): number | undefined {
  const t = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (!/^(0x[0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.test(t)) return undefined;
  const n = Number(
    t.startsWith('0') && !t.startsWith('0x') && t.length > 1 ? Number.parseInt(t, 8) : t,
  );
  return n <= 0xffffffff ? n : undefined;
}
