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
  private readonly failNths = new Map<string, FailNth>();
  /** Values written to the debugfs fault-injection knobs (accepted, no other effect). */
  private readonly debugfsKnobs = new Map<string, string>();

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
    const key = `${pid}/${tid}`;
    let counter = this.failNths.get(key);
    if (counter === undefined) {
      counter = new FailNth();
      this.failNths.set(key, counter);
    }
    return counter;
  }

  /** A task exited: its counter goes with it. */
  forgetTask(pid: number, tid: number): void {
    this.failNths.delete(`${pid}/${tid}`);
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
    const attr = this.failNthAttr(task, path) ?? this.debugfsAttr(path);
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

/** kstrtouint(): decimal, 0x hex or 0 octal, with an optional trailing newline. */
function parseUint(text: string): number | undefined {
  const t = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (!/^(0x[0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.test(t)) return undefined;
  const n = Number(
    t.startsWith('0') && !t.startsWith('0x') && t.length > 1 ? Number.parseInt(t, 8) : t,
  );
  return n <= 0xffffffff ? n : undefined;
}
