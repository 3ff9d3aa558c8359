/**
 * The shim and the server end to end: real C programs (native/shim/test/client.c) run through
 * `iommufd-emu exec` against a test kernel whose /dev/emu/test0 has small test-only ioctls (echo,
 * credentials, embedded pointers, fd resolution, a throwing handler, an mmap backing file).
 * Plus unit tests of the framing, the prefetch overlay and the smaps parser.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cliScript } from '../../test/cli-runner.ts';
import { Kernel } from '../boot/kernel.ts';
import { ensureShim, runProgram } from '../cli/exec.ts';
import { File, type FileOperations, type MmapBacking, S_IFCHR } from '../host/file.ts';
import { CallMemory, findVma, mapRanges } from '../host/proc-memory.ts';
import type { Task } from '../host/task.ts';
import type { UserMemory, Vma } from '../host/user-memory.ts';
import type { EmuEvent } from '../trace/events.ts';
import { Errno } from '../uapi/errno.ts';
import {
  decodeRequest,
  encodeReply,
  encodeRequest,
  encodeSegments,
  FrameReader,
  HEADER_BYTES,
  Op,
} from './protocol.ts';
import { type EmuServer, startServer } from './server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = await cliScript();
const BUILD = path.join(ROOT, 'native', 'build');
const SHIM = path.join(BUILD, 'libiommufd-emu-shim.so');
const CLIENT = path.join(BUILD, 'test', 'shim-client');
const CLIENT_FORTIFY = path.join(BUILD, 'test', 'shim-client-fortify');
const FDCACHE = path.join(BUILD, 'test', 'shim-fdcache');

// -- the test device -------------------------------------------------------------------------------

const ioc = (nr: number): number => (0x45 << 8) | nr;
const ECHO = ioc(1);
const INFO = ioc(2);
const SUM = ioc(3);
const THROW = ioc(4);
const RESOLVE = ioc(5);
const RELEASED = ioc(6);
const TWICE = ioc(7);
const BAR = ioc(8);
const VMA = ioc(9);
const EVENTFD = ioc(10);

/** Trapped mappings start at this file offset; accesses come back as reads/writes here. */
const REGS = 0x10000;

interface TestFile {
  readonly id: number;
  readonly data: Uint8Array;
  length: number;
}

function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  dv(out).setUint32(0, value >>> 0, true);
  return out;
}

function u64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  dv(out).setBigUint64(0, BigInt.asUintN(64, value), true);
  return out;
}

/** A test-only device: each ioctl exercises one piece of the shim/server machinery. */
class TestDevice {
  opened = 0;
  released = 0;
  /** The register window behind trapped mappings; reading REGS+0 counts the reads. */
  readonly regs = new Uint8Array(4096);
  regReads = 0;
  readonly backing: string;
  readonly fops: FileOperations;

  constructor(backing: string) {
    this.backing = backing;
    fs.writeFileSync(backing, new Uint8Array(8192));
    const device = this;
    this.fops = {
      name: 'emu-test',
      ioctl(file: File, task: Task, cmd: number, arg: bigint): number {
        return device.ioctl(file.privateData as TestFile, task, cmd, arg);
      },
      read(file: File, _task: Task, length: number, pos: bigint): Uint8Array | number {
        if (pos >= BigInt(REGS)) return device.regRead(Number(pos) - REGS, length);
        const f = file.privateData as TestFile;
        const start = Number(pos < BigInt(f.length) ? pos : BigInt(f.length));
        return f.data.slice(start, Math.min(f.length, start + length));
      },
      write(file: File, _task: Task, data: Uint8Array, pos: bigint): number {
        if (pos >= BigInt(REGS)) {
          device.regs.set(data, Number(pos) - REGS);
          return data.byteLength;
        }
        const f = file.privateData as TestFile;
        if (pos + BigInt(data.byteLength) > BigInt(f.data.byteLength)) return -Errno.ENOSPC;
        f.data.set(data, Number(pos));
        f.length = Math.max(f.length, Number(pos) + data.byteLength);
        return data.byteLength;
      },
      mmap(_file: File, _task: Task, length: bigint, pgoff: bigint): MmapBacking | number {
        const offset = pgoff * 4096n;
        if (offset >= BigInt(REGS)) {
          if (offset + length > BigInt(REGS + 4096)) return -Errno.EINVAL;
          return { kind: 'trapped', regionOffset: offset };
        }
        if (offset + length > 8192n) return -Errno.EINVAL;
        return { kind: 'file', path: device.backing, fileOffset: offset };
      },
      release(): void {
        device.released++;
      },
    };
  }

  /** A register read: offset 0 (4 bytes) counts the reads, the rest reads back what was written. */
  regRead(offset: number, length: number): Uint8Array {
    if (offset === 0 && length === 4) return u32(++this.regReads);
    return this.regs.slice(offset, offset + length);
  }

  open(): File {
    this.opened++;
    const state: TestFile = { id: this.opened, data: new Uint8Array(64), length: 0 };
    return new File('vfio-cdev', this.fops, state, { major: 240, minor: 7 });
  }

  private ioctl(f: TestFile, task: Task, cmd: number, arg: bigint): number {
    const mem = task.memory;
    switch (cmd) {
      case ECHO: {
        const s = mem.read(arg, 24);
        if (s === undefined) return -Errno.EFAULT;
        if (!mem.write(arg + 16n, u64(dv(s).getBigUint64(8, true) + 1n))) return -Errno.EFAULT;
        return mem instanceof CallMemory && mem.prefetched > 0 ? 1 : 0;
      }
      case INFO: {
        const out = new Uint8Array(36);
        const v = dv(out);
        v.setUint32(0, task.creds.pid, true);
        v.setUint32(4, task.creds.tid, true);
        v.setUint32(8, task.creds.uid, true);
        v.setBigUint64(12, task.creds.capEff, true);
        v.setBigUint64(20, BigInt.asUintN(64, task.creds.memlockLimit), true);
        v.setUint32(28, f.id, true);
        return mem.write(arg + 4n, out) ? 0 : -Errno.EFAULT;
      }
      case SUM: {
        const s = mem.read(arg, 24);
        if (s === undefined) return -Errno.EFAULT;
        const count = dv(s).getUint32(4, true);
        const ptr = dv(s).getBigUint64(8, true);
        const items = mem.read(ptr, count * 4);
        if (items === undefined) return -Errno.EFAULT;
        let sum = 0n;
        const v = dv(items);
        for (let i = 0; i < count; i++) {
          sum += BigInt(v.getUint32(i * 4, true));
          v.setUint32(i * 4, v.getUint32(i * 4, true) + 1000, true);
        }
        if (!mem.write(ptr, items)) return -Errno.EFAULT;
        return mem.write(arg + 16n, u64(sum)) ? 0 : -Errno.EFAULT;
      }
      case THROW:
        throw new Error('test handler throws');
      case RESOLVE: {
        const s = mem.read(arg, 16);
        if (s === undefined) return -Errno.EFAULT;
        const fd = dv(s).getInt32(4, true);
        const file = task.fds.fileOf(fd);
        const ours = file !== undefined && file.fops === this.fops;
        const result = ours ? 2 : task.fds.isOpen(fd) ? 1 : 0;
        const id = ours ? (file.privateData as TestFile).id : 0;
        return mem.write(arg + 8n, new Uint8Array([...u32(result), ...u32(id)]))
          ? 0
          : -Errno.EFAULT;
      }
      case RELEASED:
        return this.released;
      case TWICE:
        return Number(arg) * 2;
      case BAR: {
        const bytes = fs.readFileSync(this.backing);
        const value = dv(bytes).getUint32(0, true);
        const fd = fs.openSync(this.backing, 'r+');
        fs.writeSync(fd, u32(value + 1), 0, 4, 4);
        fs.closeSync(fd);
        return value;
      }
      case VMA: {
        const s = mem.read(arg, 40);
        if (s === undefined) return -Errno.EFAULT;
        const vma = mem.vma(dv(s).getBigUint64(8, true));
        const perms = vma === undefined ? 0x80 : (vma.readable ? 1 : 0) | (vma.writable ? 2 : 0);
        const out = new Uint8Array([
          ...u32(perms),
          ...u64(0n),
          ...u64(vma?.start ?? 0n),
          ...u64(vma?.end ?? 0n),
          ...u64(vma?.pageSize ?? 0n),
        ]);
        return mem.write(arg + 4n, out.subarray(0, 4)) && mem.write(arg + 16n, out.subarray(12))
          ? 0
          : -Errno.EFAULT;
      }
      case EVENTFD: {
        const s = mem.read(arg, 12);
        if (s === undefined) return -Errno.EFAULT;
        const ref = task.fds.eventfd(dv(s).getInt32(4, true));
        if (typeof ref === 'number') return ref;
        for (let i = dv(s).getUint32(8, true); i > 0; i--) ref.signal();
        ref.release();
        return 0;
      }
      default:
        return -Errno.ENOTTY;
    }
  }
}

/** The real kernel plus /dev/emu/test0 (and /dev/emu among the emulated prefixes). */
class TestKernel extends Kernel {
  readonly device: TestDevice;

  constructor(backing: string) {
    super();
    const device = new TestDevice(backing);
    this.device = device;
    this.devfs.add({
      path: '/dev/emu/test0',
      rdev: { major: 240, minor: 7 },
      mode: S_IFCHR | 0o666,
      open: () => device.open(),
    });
  }

  override emulatedPrefixes(): string[] {
    return [...super.emulatedPrefixes(), '/dev/emu'];
  }
}

// -- running clients -----------------------------------------------------------------------------

interface Result {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function collect(child: ChildProcess): Promise<Result> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve) => {
    child.on('close', (status, signal) => {
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/** This process's environment without the emulator's variables, plus extra. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  delete env.IOMMUFD_EMU_SOCKET;
  return { ...env, ...extra };
}

/** `iommufd-emu exec [options] -- argv...` (async: the server runs on this event loop). */
function cli(argv: readonly string[], env: Record<string, string> = {}): Promise<Result> {
  const child = spawn(process.execPath, [CLI, ...argv], {
    cwd: ROOT,
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return collect(child);
}

function assertOk(r: Result, scenario: string): void {
  const context = `status ${r.status} signal ${r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
  assert.equal(r.status, 0, context);
  assert.match(r.stdout, new RegExp(`^ok ${scenario}$`, 'm'), context);
}

function waitFor(what: string, predicate: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (predicate()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

// -- unit tests ----------------------------------------------------------------------------------

describe('protocol', () => {
  const creds = {
    pid: 1,
    tid: 2,
    uid: 3,
    euid: 4,
    gid: 5,
    egid: 6,
    capEff: 0x1_0000_0001n,
    memlock: 2n ** 64n - 1n,
    mmCookie: 0xfeedn,
  };

  test('requests round-trip through the framing, split and merged arbitrarily', () => {
    const a = encodeRequest({
      op: Op.IOCTL,
      flags: 1,
      seq: 7,
      obj: 9,
      a0: 0x3b81n,
      a1: 0x7ffe0000n,
      creds,
      payload: new Uint8Array([1, 2, 3, 4]),
    });
    const b = encodeRequest({ op: Op.STAT, flags: 0, seq: 8, obj: 0, a0: 0n, a1: 0n, creds });
    const stream = new Uint8Array([...a, ...b]);
    for (const cut of [1, 5, 31, 32, a.byteLength - 1, a.byteLength, a.byteLength + 3]) {
      const reader = new FrameReader();
      reader.push(stream.subarray(0, cut));
      const frames: Uint8Array[] = [];
      for (let f = reader.next(); f !== undefined; f = reader.next()) frames.push(f);
      reader.push(stream.subarray(cut));
      for (let f = reader.next(); f !== undefined; f = reader.next()) frames.push(f);
      assert.equal(frames.length, 2, `cut at ${cut}`);
      const first = decodeRequest(frames[0]!);
      assert.ok(typeof first !== 'string');
      assert.equal(first.a0, 0x3b81n);
      assert.equal(first.creds.capEff, 0x1_0000_0001n);
      assert.equal(first.creds.memlock, 2n ** 64n - 1n);
      assert.deepEqual([...first.payload], [1, 2, 3, 4]);
      const second = decodeRequest(frames[1]!);
      assert.ok(typeof second !== 'string');
      assert.equal(second.op, Op.STAT);
    }
  });

  test('a frame length no message can have is rejected', () => {
    const reader = new FrameReader();
    reader.push(u32(3));
    assert.throws(() => reader.next(), RangeError);
  });

  test('replies carry a signed result and the segments format', () => {
    const r = encodeReply({
      op: Op.IOCTL,
      seq: 5,
      ret: -Errno.EFAULT,
      payload: encodeSegments([{ offset: 16, data: new Uint8Array([9, 9]) }]),
    });
    const v = dv(r);
    assert.equal(v.getUint32(0, true), HEADER_BYTES + 10);
    assert.equal(v.getInt32(12, true), -Errno.EFAULT);
    assert.equal(v.getUint32(HEADER_BYTES, true), 16);
    assert.equal(v.getUint32(HEADER_BYTES + 4, true), 2);
  });
});

/** Memory that records every access, for the overlay's tests. */
class RecordingMemory implements UserMemory {
  readonly mm = 'test';
  readonly bytes = new Uint8Array(256).map((_, i) => i);
  readonly log: string[] = [];
  read(addr: bigint, length: number): Uint8Array | undefined {
    this.log.push(`r ${addr} ${length}`);
    return this.bytes.slice(Number(addr), Number(addr) + length);
  }
  write(addr: bigint, data: Uint8Array): boolean {
    this.log.push(`w ${addr} ${data.byteLength}`);
    this.bytes.set(data, Number(addr));
    return true;
  }
  vma(): Vma | undefined {
    return undefined;
  }
}

describe('CallMemory', () => {
  test('serves the window from the copy and everything else from the process', () => {
    const base = new RecordingMemory();
    const window = new CallMemory(base, 100n, new Uint8Array(16).fill(0xaa));
    assert.deepEqual([...window.read(100n, 4)!], [0xaa, 0xaa, 0xaa, 0xaa]);
    assert.deepEqual(base.log, []);
    assert.deepEqual([...window.read(98n, 4)!], [98, 99, 0xaa, 0xaa]);
    assert.deepEqual([...window.read(114n, 4)!], [0xaa, 0xaa, 116, 117]);
    assert.deepEqual(base.log, ['r 98 2', 'r 116 2']);
  });

  test('reports exactly the window bytes written, merged, and passes the rest through', () => {
    const base = new RecordingMemory();
    const window = new CallMemory(base, 100n, new Uint8Array(16));
    assert.ok(window.write(104n, new Uint8Array([1, 2])));
    assert.ok(window.write(106n, new Uint8Array([3])));
    assert.ok(window.write(112n, new Uint8Array([4, 5, 6, 7, 8, 9])));
    assert.deepEqual(
      window.written().map((s) => [s.offset, [...s.data]]),
      [
        [4, [1, 2, 3]],
        [12, [4, 5, 6, 7]],
      ],
    );
    assert.deepEqual(base.log, ['w 116 2']);
    assert.deepEqual([...window.read(104n, 3)!], [1, 2, 3]);
  });

  test('accesses fault on PROT_NONE / read-only memory during the call, not after it', () => {
    const base = new RecordingMemory();
    const ranges = mapRanges(
      [
        '00000000-00000080 rw-p 0 00:00 0',
        '00000080-00000100 r--p 0 00:00 0',
        '00000100-00000200 ---p 0 00:00 0',
      ].join('\n'),
    );
    const mem = new CallMemory(base, 16n, new Uint8Array(8), {
      windowWritable: false,
      maps: { mapRanges: () => ranges },
    });
    assert.equal(mem.read(0xf0n, 0x20), undefined, 'reaches into ---p');
    assert.equal(mem.read(0x200n, 1), undefined, 'unmapped');
    assert.deepEqual([...mem.read(0x80n, 2)!], [0x80, 0x81]);
    assert.equal(mem.write(16n, new Uint8Array([1])), false, 'read-only window');
    assert.equal(mem.write(0x7en, new Uint8Array([1, 2, 3])), false, 'crosses into r--p');
    assert.ok(mem.write(0x70n, new Uint8Array([1, 2])));
    assert.deepEqual(base.log, ['r 128 2', 'w 112 2']);
    mem.finish();
    assert.ok(mem.write(0x90n, new Uint8Array([5])), 'after the call: like device DMA');
    assert.ok(mem.write(16n, new Uint8Array([5])));
    assert.equal(base.bytes[16], 5);
  });
});

describe('findVma', () => {
  const smaps = [
    '00400000-00401000 r-xp 00000000 08:01 123 /bin/x',
    'Size:                  4 kB',
    'KernelPageSize:        4 kB',
    '7f0000000000-7f0000400000 rw-s 00000000 00:0f 456 /dev/hugepages/a (deleted)',
    'Size:               4096 kB',
    'KernelPageSize:     2048 kB',
    '7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]',
    'KernelPageSize:        4 kB',
    '',
  ].join('\n');

  test('finds permissions, bounds and the hugetlb page size', () => {
    assert.deepEqual(findVma(smaps, 0x400800n), {
      start: 0x400000n,
      end: 0x401000n,
      readable: true,
      writable: false,
      pageSize: 4096n,
    });
    assert.equal(findVma(smaps, 0x7f0000100000n)?.pageSize, 2n * 1024n * 1024n);
    assert.equal(findVma(smaps, 0x7ffd00000000n)?.writable, true);
    assert.equal(findVma(smaps, 0x401000n), undefined);
  });
});

// -- end to end ----------------------------------------------------------------------------------

describe('shim + server', () => {
  let dir: string;
  let kernel: TestKernel;
  let server: EmuServer;
  const events: EmuEvent[] = [];

  before(async () => {
    const made = spawnSync('make', ['-s', '-C', path.join(ROOT, 'native'), 'tests'], {
      encoding: 'utf8',
    });
    assert.equal(made.status, 0, `make -C native tests failed:\n${made.stdout}${made.stderr}`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emu-server-test-'));
    kernel = new TestKernel(path.join(dir, 'bar0'));
    kernel.events.subscribe((e) => {
      if (e.kind === 'log') events.push(e);
    });
    server = await startServer(kernel, path.join(dir, 'emu.sock'));
  });

  after(async () => {
    await server.close();
    kernel.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  let runs = 0;

  /**
   * A scenario of the test client, run as `exec` joining the test server runs it (runProgram:
   * through the guard, the shim preloaded), from this process: no CLI to start per scenario.
   */
  async function client(args: readonly string[], binary = CLIENT): Promise<Result> {
    const { shim, guard } = ensureShim();
    const run = path.join(dir, `client-${++runs}`);
    const stdout = fs.openSync(`${run}.stdout`, 'w');
    const stderr = fs.openSync(`${run}.stderr`, 'w');
    try {
      const status = await runProgram(
        binary,
        args,
        cleanEnv({ LD_PRELOAD: shim, IOMMUFD_EMU_SOCKET: server.socketPath }),
        { guard, stdio: { stdout, stderr } },
      );
      return {
        status,
        signal: null,
        stdout: fs.readFileSync(`${run}.stdout`, 'utf8'),
        stderr: fs.readFileSync(`${run}.stderr`, 'utf8'),
      };
    } finally {
      fs.closeSync(stdout);
      fs.closeSync(stderr);
    }
  }

  async function scenario(name: string, binary = CLIENT): Promise<void> {
    assertOk(await client([name], binary), name);
  }

  test('open, open64, openat(64), dirfd- and cwd-relative paths; unknown path -> ENOENT', async () => {
    await scenario('open');
  });

  test('fortified open() goes through __open_2 / __openat_2', async () => {
    const nm = spawnSync('nm', ['-D', CLIENT_FORTIFY], { encoding: 'utf8' });
    assert.match(nm.stdout, /U __open_2@/);
    assert.match(nm.stdout, /U __openat_2@/);
    await scenario('open', CLIENT_FORTIFY);
  });

  test('fstat/stat/lstat/fstatat/__xstat report S_IFCHR with the node rdev; access', async () => {
    await scenario('fstat');
  });

  test("the program's own files, pipes and devices are untouched", async () => {
    await scenario('nonemu');
  });

  test('dup, dup2, dup3, F_DUPFD_CLOEXEC, close: release exactly at the last close', async () => {
    await scenario('dup');
  });

  test('fork: the child uses the inherited fd with its own memory and credentials', async () => {
    await scenario('fork');
  });

  test('exec: an inherited fd is found again by its socket inode (slow path)', async () => {
    assertOk(await client(['exec']), 'exec-child');
  });

  test('4 threads of concurrent ioctls, each on its own transport', async () => {
    await scenario('threads');
  });

  test('bad pointers: arg, embedded, read-only write-back, read/write buffers -> EFAULT', async () => {
    await scenario('efault');
  });

  test('embedded pointers are read and written through /proc/<pid>/mem', async () => {
    await scenario('embedded');
  });

  test('credentials are those of the calling thread at the moment of the call', async () => {
    await scenario('creds');
  });

  test('read/write/pread/pwrite reach the file operations, with a shared file position', async () => {
    await scenario('rw');
  });

  test('mmap maps the backing file the driver names; both sides see each other', async () => {
    await scenario('mmap');
  });

  test('trapped mappings: every load and store reaches the device, in order', async () => {
    await scenario('trapped');
    assert.ok(kernel.device.regReads >= 2);
  });

  test('poll combines emulated and real fds', async () => {
    await scenario('poll');
  });

  test('ppoll, select and pselect combine emulated and real fds', async () => {
    await scenario('select');
  });

  test("calls on the program's own fds cost no lookup; reused numbers become ours again", async () => {
    await scenario('foreign', FDCACHE);
  });

  test("a vfork child's dup2/close leave the parent's fd table alone", async () => {
    await scenario('vfork', FDCACHE);
  });

  test('close_range/closefrom spare the shim connections and release emulated fds', async () => {
    await scenario('closerange');
  });

  test("the program's sigaction(SIGSEGV) chains with the trap handler", async () => {
    await scenario('sigsegv');
  });

  test('lseek, fdopen streams, and fortified __read_chk/__pread_chk reach the server', async () => {
    const nm = spawnSync('nm', ['-D', CLIENT_FORTIFY], { encoding: 'utf8' });
    assert.match(nm.stdout, /U __read_chk@/);
    assert.match(nm.stdout, /U __pread_chk@/);
    await scenario('seek', CLIENT_FORTIFY);
  });

  test('fds inside structs resolve to files; integer ioctl arguments', async () => {
    await scenario('resolve');
  });

  test('eventfds in structs: the server holds its own duplicate and signals it', async () => {
    await scenario('eventfd');
  });

  test('vma() reports bounds and protections from smaps', async () => {
    await scenario('vma');
  });

  test('an exception in a handler fails the call with EIO and the server keeps serving', async () => {
    const before = events.length;
    await scenario('bug');
    const bug = events.slice(before).find((e) => e.kind === 'log' && e.level === 'bug');
    assert.ok(
      bug !== undefined && bug.kind === 'log' && bug.message.includes('test handler throws'),
    );
  });

  test('a client SIGKILLed mid-loop looks like closed fds; another client is served meanwhile', async () => {
    const victim = spawn(CLIENT, ['loop'], {
      env: cleanEnv({ LD_PRELOAD: SHIM, IOMMUFD_EMU_SOCKET: server.socketPath }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const victimDone = collect(victim);
    let out = '';
    victim.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await waitFor('the loop client', () => out.includes('ready'));
    const releasedBefore = kernel.device.released;
    const other = client(['count', '3000']);
    await new Promise((r) => setTimeout(r, 100));
    victim.kill('SIGKILL');
    const killed = await victimDone;
    assert.equal(killed.signal, 'SIGKILL', JSON.stringify(killed));
    assertOk(await other, 'count');
    await waitFor(
      'release of the killed client file',
      () => kernel.device.released > releasedBefore + 1,
    );
  });

  test('the real kernel is behind it: /dev/iommu, IOAS alloc/destroy, a sysfs attribute', async () => {
    await scenario('iommu');
  });

  test('no server at the socket: open of an emulated path fails with ENXIO', async () => {
    assertOk(
      await cli(['exec', '--', CLIENT, 'unreachable'], {
        IOMMUFD_EMU_SOCKET: path.join(dir, 'nobody-here.sock'),
      }),
      'unreachable',
    );
  });

  test('after every client: no connection left, every opened file released', async () => {
    await waitFor('idle', () => server.connectionCount === 0);
    await server.whenIdle();
    assert.ok(kernel.device.opened > 0);
    assert.equal(kernel.device.released, kernel.device.opened);
    assert.deepEqual(kernel.leaks(), []);
  });
});

describe('iommufd-emu exec with its own emulator', () => {
  test("exits with the program's status, 128+signal when killed", async () => {
    assert.equal((await cli(['exec', '--', 'sh', '-c', 'exit 7'])).status, 7);
    assert.equal((await cli(['exec', '--', 'sh', '-c', 'kill -9 $$'])).status, 128 + 9);
  });

  test('sets LD_PRELOAD and a private socket, removed afterwards; --trace logs the calls', async () => {
    const trace = path.join(os.tmpdir(), `emu-trace-${process.pid}.txt`);
    const r = await cli([
      'exec',
      '--trace',
      trace,
      '--',
      'sh',
      '-c',
      `echo "$LD_PRELOAD|$IOMMUFD_EMU_SOCKET"; ${CLIENT} iommu`,
    ]);
    const text = fs.existsSync(trace) ? fs.readFileSync(trace, 'utf8') : '';
    fs.rmSync(trace, { force: true });
    assert.equal(r.status, 0, r.stderr);
    const [preload, socket] = r.stdout.split('\n')[0]!.split('|');
    assert.equal(preload, SHIM);
    assert.ok(socket?.endsWith('/emu.sock'), socket);
    assert.equal(fs.existsSync(path.dirname(socket ?? '/')), false, 'the private dir is removed');
    assert.match(text, /open\("\/dev\/iommu", O_RDWR\) = 3$/m);
    assert.match(
      text,
      /ioctl\(3<\/dev\/iommu>, IOMMU_IOAS_ALLOC, \{size=12, flags=0, out_ioas_id=0\} => \{out_ioas_id=1\}\) = 0/,
    );
    assert.match(
      text,
      /IOMMU_DESTROY, \{size=8, id=1\}\) = -1 ENOENT \(No such file or directory\)/,
    );
    assert.match(text, /^close\(3<\/dev\/iommu>\) = 0$/m);
    assert.match(
      text,
      /read\(3<\/sys\/module\/vfio\/parameters\/enable_unsafe_noiommu_mode>, "N\\n", 8\) = 2/,
    );
  });

  test('a bad option value exits 125 with a message', async () => {
    const r = await cli(['exec', '--platform', '/nonexistent/platform.json', '--', 'true']);
    assert.equal(r.status, 125);
    assert.match(r.stderr, /nonexistent/);
  });
});
