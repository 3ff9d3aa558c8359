/**
 * One table of paths, opened and stat'd through the library (SimProcess) and through the shim
 * (a C program, native/shim/test/paths.c, under LD_PRELOAD against a server on the same kernel):
 * both front ends walk the kernel model's one VFS, so every row must give the same answer.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Kernel } from '../boot/kernel.ts';
import { SimProcess } from '../host/sim-process.ts';
import { MAXSYMLINKS } from '../host/vfs.ts';
import { Errno } from '../uapi/errno.ts';
import { type EmuServer, startServer } from './server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHIM = path.join(ROOT, 'native', 'build', 'libiommufd-emu-shim.so');
const SOURCE = path.join(ROOT, 'native', 'shim', 'test', 'paths.c');

const O_RDONLY = 0o0;
const O_WRONLY = 0o1;
const O_RDWR = 0o2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_DIRECTORY = 0o200000;
const O_NOFOLLOW = 0o400000;

/** Test-only links, under an emulated prefix so the shim forwards them. */
const LINKS = '/sys/bus/pci/paths-test';
const PARAM = '/sys/module/vfio/parameters/enable_unsafe_noiommu_mode';
const EDU0 = '/sys/bus/pci/devices/0000:00:04.0';

type Row = readonly ['open', number, string] | readonly ['stat' | 'lstat', string];

/** The table: devices, sysfs files through links, implied directories, and every failure. */
const ROWS: readonly Row[] = [
  ['open', O_RDWR, '/dev/iommu'],
  ['open', O_RDWR, '/dev/vfio/vfio'],
  ['open', O_RDWR, '/dev/vfio/devices/vfio0'],
  ['open', O_RDONLY, '/sys/class/vfio-dev/vfio0/dev'],
  ['open', O_RDONLY, `${EDU0}/vendor`],
  ['open', O_RDONLY, `${EDU0}/iommu_group/type`],
  ['open', O_RDONLY, `${EDU0}/vfio-dev/../device`],
  ['open', O_RDWR, `${EDU0}/vendor`],
  ['open', O_RDWR, PARAM],
  ['open', O_RDONLY, '/proc/sys/kernel/tainted'],
  ['open', O_RDWR, '/proc/thread-self/fail-nth'],
  ['open', O_RDONLY, '/sys/kernel/debug/fail_iommufd/probability'],
  ['open', O_RDONLY, '/sys/bus/pci/devices'],
  ['open', O_RDONLY | O_DIRECTORY, '/dev/vfio'],
  ['open', O_RDONLY, '/sys/class/vfio-dev/vfio0'],
  ['open', O_RDWR, '/sys/bus/pci/devices'],
  ['open', O_WRONLY, '/dev/vfio/devices'],
  ['open', O_RDONLY | O_DIRECTORY, '/dev/iommu'],
  ['open', O_RDONLY | O_DIRECTORY, `${EDU0}/vendor`],
  ['open', O_RDONLY | O_NOFOLLOW, '/sys/class/vfio-dev/vfio0'],
  ['open', O_RDWR | O_CREAT | O_EXCL, '/dev/iommu'],
  ['open', O_RDWR | O_CREAT | O_EXCL, '/sys/class/vfio-dev/vfio0'],
  ['open', O_RDWR | O_CREAT, '/sys/bus/pci/devices'],
  ['open', O_RDWR, '/dev/vfio/nonexistent'],
  ['open', O_RDONLY, '/sys/bus/pci/devices/0000:00:09.0/vendor'],
  ['open', O_RDWR, '/dev/iommu/x'],
  ['open', O_RDONLY, `${EDU0}/vendor/x`],
  ['open', O_RDONLY, `${LINKS}/chain0`],
  ['open', O_RDONLY, `${LINKS}/long0`],
  ['open', O_RDONLY, `${LINKS}/loop-a`],
  ['open', O_RDONLY, `${LINKS}/dangling`],
  ['stat', '/dev/iommu'],
  ['stat', '/dev/vfio/devices/vfio1'],
  ['stat', '/sys/class/vfio-dev/vfio0'],
  ['lstat', '/sys/class/vfio-dev/vfio0'],
  ['stat', '/sys/class/vfio-dev/vfio0/dev'],
  ['lstat', `${EDU0}/driver`],
  ['stat', `${EDU0}/driver`],
  ['stat', '/sys/bus/pci'],
  ['stat', '/dev/vfio'],
  ['stat', PARAM],
  ['stat', '/sys/bus/pci/drivers/vfio-pci/bind'],
  ['stat', '/dev/vfio/nonexistent'],
  ['stat', '/dev/iommu/x'],
  ['stat', `${LINKS}/chain0`],
  ['stat', `${LINKS}/long0`],
  ['lstat', `${LINKS}/long0`],
  ['stat', `${LINKS}/loop-a`],
  ['lstat', `${LINKS}/dangling`],
  ['stat', `${LINKS}/dangling`],
];

/**
 * Rows whose ".", ".." or trailing "/" come after the path enters an emulated prefix: the shim
 * decides on the lexical path but sends the rest as written, so the kernel model walks it (a
 * ".." after a link leaves the link's target, not the link's directory).
 */
const WALKED_PAST_A_LINK: readonly Row[] = [
  ['open', O_RDONLY, '/sys/class/vfio-dev/vfio0/../vfio1/dev'],
  ['open', O_RDWR, '/dev/iommu/'],
  ['stat', `${PARAM}/`],
  ['lstat', '/sys/class/vfio-dev/vfio0/'],
  ['open', O_RDWR, '/dev/vfio/./devices/../vfio'],
];

function rowArg(row: Row): string {
  return row[0] === 'open' ? `open:${row[1].toString(8)}:${row[2]}` : `${row[0]}:0:${row[1]}`;
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The row as the library answers it, in the C program's format. */
function simRow(proc: SimProcess, row: Row): string {
  const [op] = row;
  const flags = row[0] === 'open' ? row[1] : 0;
  const where = row[0] === 'open' ? row[2] : row[1];
  const head = `${op} ${flags.toString(8)} ${where} -> `;
  const show = (s: { mode: number; rdev: { major: number; minor: number } }): string =>
    `mode=${s.mode.toString(8)} rdev=${s.rdev.major}:${s.rdev.minor}`;
  if (row[0] !== 'open') {
    const st = row[0] === 'stat' ? proc.stat(where) : proc.lstat(where);
    return head + (typeof st === 'number' ? `${st}` : show(st));
  }
  const fd = proc.open(where, flags);
  if (fd < 0) return `${head}${fd}`;
  const st = proc.fstat(fd);
  const data = proc.pread(fd, 64, 0n);
  proc.close(fd);
  if (typeof st === 'number') return `${head}fstat ${st}`;
  const read = typeof data === 'number' ? `${data}` : `${data.length}:${hex(data)}`;
  return `${head}${show(st)} read=${read}`;
}

describe('one table of paths through SimProcess and through the shim', () => {
  let dir: string;
  let client: string;
  let kernel: Kernel;
  let server: EmuServer;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emu-paths-'));
    client = path.join(dir, 'shim-paths');
    const cc = spawnSync('cc', ['-O1', '-Wall', '-Wextra', '-Werror', '-o', client, SOURCE], {
      encoding: 'utf8',
    });
    assert.equal(cc.status, 0, `cc ${SOURCE} failed:\n${cc.stdout}${cc.stderr}`);
    kernel = new Kernel();
    // chain0 -> ... -> chainN: MAXSYMLINKS links in all; long0 takes one more.
    for (let i = 0; i < MAXSYMLINKS - 1; i++) {
      kernel.sysfs.add({ kind: 'link', path: `${LINKS}/chain${i}`, target: `chain${i + 1}` });
    }
    kernel.sysfs.add({ kind: 'link', path: `${LINKS}/chain${MAXSYMLINKS - 1}`, target: PARAM });
    for (let i = 0; i < MAXSYMLINKS; i++) {
      kernel.sysfs.add({ kind: 'link', path: `${LINKS}/long${i}`, target: `long${i + 1}` });
    }
    kernel.sysfs.add({ kind: 'link', path: `${LINKS}/long${MAXSYMLINKS}`, target: PARAM });
    kernel.sysfs.add({ kind: 'link', path: `${LINKS}/loop-a`, target: 'loop-b' });
    kernel.sysfs.add({ kind: 'link', path: `${LINKS}/loop-b`, target: './loop-a' });
    kernel.sysfs.add({ kind: 'link', path: `${LINKS}/dangling`, target: '../nowhere' });
    // The testbed's directories are made with this mask; the shim's fstat of a directory is theirs.
    process.umask(0o022);
    server = await startServer(kernel, path.join(dir, 'emu.sock'));
  });

  after(async () => {
    await server.close();
    kernel.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function compare(rows: readonly Row[]): Promise<void> {
    const env = { ...process.env, LD_PRELOAD: SHIM, IOMMUFD_EMU_SOCKET: server.socketPath };
    // Asynchronously: the server answering the client runs on this event loop.
    const shim = await new Promise<string[]>((resolve, reject) => {
      const child = spawn(client, rows.map(rowArg), { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      child.on('close', (status: number | null) => {
        if (status !== 0) reject(new Error(`client exited ${status}: ${err}`));
        else resolve(out.split('\n').filter((l) => l !== ''));
      });
    });
    await server.whenIdle();
    const proc = new SimProcess(kernel, { uid: 0 });
    const sim = rows.map((row) => simRow(proc, row));
    proc.exit();
    assert.deepEqual(sim, shim);
    assert.deepEqual(kernel.leaks(), []);
  }

  test('every row gives the same answer both ways', async () => {
    await compare(ROWS);
  });

  test('the kernel walks "..", "." and a trailing "/" (what the shim rows above should give)', () => {
    const proc = new SimProcess(kernel, { uid: 0 });
    // ".." from the link's target directory, not from /sys/class/vfio-dev.
    assert.equal(proc.open('/sys/class/vfio-dev/vfio0/../vfio1/dev', O_RDONLY), -Errno.ENOENT);
    const vendor = proc.stat('/sys/class/vfio-dev/vfio0/../../vendor');
    assert.ok(typeof vendor === 'object' && vendor.mode === 0o100444);
    const up = proc.stat('/sys/class/vfio-dev/vfio0/../../driver');
    assert.ok(typeof up === 'object' && (up.mode & 0o170000) === 0o040000);
    // A trailing "/" demands a directory, and makes lstat follow the link.
    assert.equal(proc.open('/dev/iommu/', O_RDWR), -Errno.ENOTDIR);
    assert.equal(proc.stat(`${PARAM}/`), -Errno.ENOTDIR);
    assert.equal(proc.stat('/dev/vfio/nonexistent/'), -Errno.ENOENT);
    const link = proc.lstat('/sys/class/vfio-dev/vfio0/');
    assert.ok(typeof link === 'object' && (link.mode & 0o170000) === 0o040000);
    assert.ok(proc.open('/dev/vfio/./devices/../vfio', O_RDWR) >= 0);
    proc.exit();
  });

  test('"." and ".." past a link, and a trailing "/", walked by the kernel model', async () => {
    await compare(WALKED_PAST_A_LINK);
  });
});
