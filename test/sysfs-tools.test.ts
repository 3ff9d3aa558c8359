/**
 * The Debian tools that read and bind PCI devices, run unmodified under `iommufd-emu exec`:
 * `lspci -v` (pciutils), `driverctl` (set-override, unset-override, list-*), a script binding
 * through driver_override, and the permission check of an open by a user the node is not
 * given to (`nobody` on a root-owned 0600 node). Each test skips when its tool is missing
 * (`.ci/run` installs pciutils and driverctl).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cliScript } from './cli-runner.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = await cliScript();

interface Result {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `argv` with the emulator's variables cleared from the environment. */
function run(argv: readonly string[], env: Record<string, string> = {}): Promise<Result> {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  delete childEnv.LD_PRELOAD;
  delete childEnv.IOMMUFD_EMU_SOCKET;
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve) => {
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** `iommufd-emu exec [options] -- sh -c script`. */
function execSh(script: string, options: readonly string[] = []): Promise<Result> {
  return run([process.execPath, CLI, 'exec', ...options, '--', 'sh', '-c', script]);
}

function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

function context(r: Result): string {
  return `status ${r.status}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** lspci -v's paragraph of one device. */
function paragraph(out: string, slot: string): string {
  const found = out.split('\n\n').find((p) => p.startsWith(slot));
  return found === undefined ? '' : `${found.trimEnd()}\n`;
}

describe('lspci', { skip: !have('lspci') && 'pciutils is not installed' }, () => {
  test('-v shows each edu, its BAR, its IOMMU group and its driver while bound', async () => {
    const r = await execSh(
      [
        'set -e',
        'lspci -v',
        'echo ===',
        'echo 0000:00:05.0 > /sys/bus/pci/devices/0000:00:05.0/driver/unbind',
        'lspci -v -s 00:05.0',
        'echo ===',
        'lspci -nn',
      ].join('\n'),
    );
    assert.equal(r.status, 0, context(r));
    const [before, after, numeric] = r.stdout.split('===\n');
    const edu0 = paragraph(before!, '00:04.0');
    assert.match(edu0, /^00:04\.0 Unclassified device \[00ff\]: Device 1234:11e8 \(rev 10\)\n/);
    assert.match(edu0, /\n\tSubsystem: Red Hat, Inc\. Device 1100\n/);
    assert.match(edu0, /\n\tFlags: fast devsel, IRQ 11, IOMMU group 0\n/);
    assert.match(edu0, /\n\tMemory at fe000000 \(32-bit, non-prefetchable\) .*\[size=1M\]\n/);
    assert.match(edu0, /\n\tCapabilities: \[40\] MSI: Enable- Count=1\/1 Maskable- 64bit\+\n/);
    assert.match(edu0, /\n\tKernel driver in use: vfio-pci\n/);
    assert.match(paragraph(before!, '00:05.0'), /IOMMU group 1\n[\s\S]*Memory at fe100000/);
    // The no-IOMMU edu: no group, and vfio-pci refused it (no-IOMMU mode off).
    const edu2 = paragraph(before!, '00:06.0');
    assert.match(edu2, /\n\tFlags: fast devsel, IRQ 11\n\tMemory at fe200000/);
    assert.doesNotMatch(edu2, /Kernel driver in use/);
    // Unbound: the driver line goes, the rest stays.
    assert.match(after!, /^00:05\.0 .*\n[\s\S]*IOMMU group 1\n/);
    assert.doesNotMatch(after!, /Kernel driver in use/);
    assert.deepEqual(numeric!.trimEnd().split('\n'), [
      '00:04.0 Unclassified device [00ff]: Device [1234:11e8] (rev 10)',
      '00:05.0 Unclassified device [00ff]: Device [1234:11e8] (rev 10)',
      '00:06.0 Unclassified device [00ff]: Device [1234:11e8] (rev 10)',
    ]);
  });
});

describe('driverctl', { skip: !have('driverctl') && 'driverctl is not installed' }, () => {
  test('set-override and unset-override rebind through driver_override; list-* follow', async () => {
    const r = await execSh(
      [
        'driverctl list-devices',
        'echo ===',
        'driverctl --nosave --noprobe unset-override 0000:00:04.0; echo "rc $?"',
        'driverctl list-devices',
        'ls /dev/vfio/devices',
        'echo ===',
        'driverctl --nosave set-override 0000:00:04.0 vfio-pci; echo "rc $?"',
        'driverctl list-overrides',
        'ls /dev/vfio/devices',
        'echo ===',
        // Nothing but vfio-pci would take an edu: as on a real machine, driverctl says so.
        'driverctl --nosave unset-override 0000:00:05.0; echo "rc $?"',
        'cat /sys/bus/pci/devices/0000:00:05.0/driver_override',
        'driverctl list-devices',
      ].join('\n'),
    );
    assert.equal(r.status, 0, context(r));
    const [boot, unset, set, unsetProbe] = r.stdout.split('===\n');
    assert.equal(
      boot,
      '0000:00:04.0 vfio-pci [*]\n0000:00:05.0 vfio-pci [*]\n0000:00:06.0 (none) [*]\n',
    );
    assert.equal(
      unset,
      'rc 0\n0000:00:04.0 (none)\n0000:00:05.0 vfio-pci [*]\n0000:00:06.0 (none) [*]\nvfio1\n',
    );
    assert.equal(
      set,
      'rc 0\n0000:00:04.0 vfio-pci\n0000:00:05.0 vfio-pci\n0000:00:06.0 (none)\nvfio0\nvfio1\n',
    );
    assert.equal(
      unsetProbe,
      'rc 1\n(null)\n0000:00:04.0 vfio-pci [*]\n0000:00:05.0 (none)\n0000:00:06.0 (none) [*]\n',
    );
    assert.match(r.stderr, /driverctl: failed to bind device 0000:00:05\.0 to driver \n/);
  });
});

describe('binding scripts', () => {
  test('unbind, driver_override, drivers_probe: the tree follows at every step', async () => {
    const dev = '/sys/bus/pci/devices/0000:00:05.0';
    const r = await execSh(
      [
        'set -e',
        'state() { if [ -L $D/driver ]; then readlink $D/driver; else echo unbound; fi; ls /dev/vfio/devices | tr "\\n" " "; ls /sys/bus/pci/drivers/vfio-pci | tr "\\n" " "; echo; }',
        `D=${dev}`,
        'state',
        'echo 0000:00:05.0 > $D/driver/unbind',
        'state',
        'echo > $D/driver_override',
        'echo 0000:00:05.0 > /sys/bus/pci/drivers_probe',
        'state',
        'echo vfio-pci > $D/driver_override',
        'echo 0000:00:05.0 > /sys/bus/pci/drivers_probe',
        'state',
        'cat $D/vfio-dev/vfio1/uevent',
      ].join('\n'),
    );
    assert.equal(r.status, 0, context(r));
    const listing = (bound: boolean) =>
      `${bound ? 'vfio0 vfio1 ' : 'vfio0 '}0000:00:04.0 ${bound ? '0000:00:05.0 ' : ''}bind module new_id remove_id uevent unbind `;
    assert.equal(
      r.stdout,
      [
        '../../../bus/pci/drivers/vfio-pci',
        listing(true),
        'unbound',
        listing(false),
        'unbound',
        listing(false),
        '../../../bus/pci/drivers/vfio-pci',
        listing(true),
        'MAJOR=236',
        'MINOR=1',
        'DEVNAME=vfio/devices/vfio1',
        '',
      ].join('\n'),
      context(r),
    );
  });
});

const isRoot = process.getuid?.() === 0;

/** Why nobody cannot run the emulator from this checkout (a private directory, say), if so. */
function nobodyCannotRun(): string | false {
  if (!isRoot || !have('setpriv')) return 'needs root and setpriv';
  const r = spawnSync('setpriv', [
    '--reuid=65534',
    '--regid=65534',
    '--clear-groups',
    'test',
    '-r',
    CLI,
  ]);
  return r.status === 0 ? false : `nobody cannot read ${CLI}`;
}

describe('permissions', { skip: nobodyCannotRun() }, () => {
  /** The emulator itself run as nobody, so that nobody is the invoking user. */
  function asNobody(args: readonly string[]): Promise<Result> {
    return run(
      [
        'setpriv',
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        CLI,
        'exec',
        ...args,
      ],
      { HOME: os.tmpdir() },
    );
  }

  test('nobody gets EACCES on root-owned 0600 nodes and root-only sysfs files', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-perm-'));
    fs.chmodSync(dir, 0o755);
    const platform = path.join(dir, 'root-owned.json');
    const printed = spawnSync(process.execPath, [CLI, 'platform', '--print-default'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    assert.equal(printed.status, 0, printed.stderr);
    const file = JSON.parse(printed.stdout) as Record<string, unknown>;
    file.deviceNodeOwner = { uid: 0, gid: 0 };
    fs.writeFileSync(platform, JSON.stringify(file), { mode: 0o644 });
    const script = [
      'id -u',
      'for f in /dev/vfio/devices/vfio0 /dev/vfio/0 /dev/iommu; do',
      '  (exec 3<>$f) 2>/dev/null && echo "$f opened" || echo "$f refused"',
      'done',
      '(exec 3</dev/vfio/vfio) && echo "/dev/vfio/vfio opened"',
      '(echo 0000:00:04.0 > /sys/bus/pci/drivers/vfio-pci/unbind) 2>/dev/null || echo "unbind refused"',
      'cat /sys/bus/pci/devices/0000:00:04.0/driver_override',
      // stat and access() through the shim see the same owners and modes.
      'stat -c "%u %g %a" /dev/vfio/devices/vfio0 /dev/vfio/vfio /sys/bus/pci/drivers/vfio-pci/unbind',
      'test -w /dev/vfio/devices/vfio0 && echo writable || echo "not writable"',
    ].join('\n');
    try {
      const rootOwned = await asNobody(['--platform', platform, '--', 'sh', '-c', script]);
      assert.equal(rootOwned.status, 0, context(rootOwned));
      assert.equal(
        rootOwned.stdout,
        [
          '65534',
          '/dev/vfio/devices/vfio0 refused',
          '/dev/vfio/0 refused',
          '/dev/iommu refused',
          '/dev/vfio/vfio opened',
          'unbind refused',
          'vfio-pci',
          '0 0 600',
          '0 0 666',
          '0 0 200',
          'not writable',
          '',
        ].join('\n'),
      );
      // The default platform gives the nodes to the invoking user: nobody here.
      const own = await asNobody(['--', 'sh', '-c', script]);
      assert.equal(own.status, 0, context(own));
      assert.match(
        own.stdout,
        /^65534\n\/dev\/vfio\/devices\/vfio0 opened\n\/dev\/vfio\/0 opened\n/,
      );
      assert.match(own.stdout, /\/dev\/iommu opened\n\/dev\/vfio\/vfio opened\nunbind refused\n/);
      assert.match(own.stdout, /\n65534 65534 600\n0 0 666\n0 0 200\nwritable\n$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
