/**
 * Sysfs and /dev discovery through the shim, end to end on the default platform: a C program
 * (native/shim/test/sysfs.c, plain and fortified) walking the tree with opendir/readdir, scandir,
 * glob, readlink, realpath, stat/statx, fopen/fprintf and chdir; the shell and coreutils (ls, cat,
 * readlink, realpath, echo >) under exec; and `iommufd-emu demo`.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cliScript } from '../../test/cli-runner.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = await cliScript();
const SYSFS = path.join(ROOT, 'native', 'build', 'test', 'shim-sysfs');
const SYSFS_FORTIFY = path.join(ROOT, 'native', 'build', 'test', 'shim-sysfs-fortify');

interface Result {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `iommufd-emu ARGS...` with the emulator's variables cleared from the environment. */
function cli(args: readonly string[]): Promise<Result> {
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  delete env.IOMMUFD_EMU_SOCKET;
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env,
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
    child.on('close', (status) => {
      resolve({ status, stdout, stderr });
    });
  });
}

function context(r: Result): string {
  return `status ${r.status}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

describe('sysfs and /dev through the shim', () => {
  before(() => {
    const made = spawnSync('make', ['-s', '-C', path.join(ROOT, 'native'), 'tests'], {
      encoding: 'utf8',
    });
    assert.equal(made.status, 0, `make -C native tests failed:\n${made.stdout}${made.stderr}`);
  });

  test('a C driver walks the tree (no-IOMMU mode off), plain and fortified; bind/unbind', async () => {
    const r = await cli([
      'exec',
      '--',
      'sh',
      '-c',
      `${SYSFS} walk 2 && ${SYSFS_FORTIFY} walk 2 && ${SYSFS} rebind`,
    ]);
    assert.equal(r.status, 0, context(r));
    assert.equal(r.stdout, 'ok walk\nok walk\nok rebind\n', context(r));
  });

  test('with --enable-unsafe-noiommu-mode the no-IOMMU node is listed everywhere', async () => {
    const r = await cli(['exec', '--enable-unsafe-noiommu-mode', '--', SYSFS, 'walk', '3']);
    assert.equal(r.status, 0, context(r));
    assert.equal(r.stdout, 'ok walk\n', context(r));
  });

  test('sh, echo >, cat, ls, readlink and realpath see the emulated machine', async () => {
    const script = [
      'set -e',
      'ls /sys/bus/pci/devices',
      'ls /sys/class/vfio-dev',
      'cat /proc/sys/kernel/tainted',
      'echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode',
      'cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode',
      'echo 0000:00:06.0 > /sys/bus/pci/drivers/vfio-pci/bind',
      'ls /sys/bus/pci/devices/0000:00:06.0/vfio-dev',
      'ls /dev/vfio/devices',
      'cat /proc/sys/kernel/tainted',
      'readlink /sys/bus/pci/devices/0000:00:04.0/iommu_group',
      'realpath /sys/class/vfio-dev/noiommu-vfio2',
      'cd /sys/bus/pci/devices/0000:00:05.0 && pwd -P && cat device && cd /',
      'ls -l /sys/bus/pci/devices/0000:00:04.0/ /dev/vfio/devices > /dev/null',
      'echo 0000:00:06.0 > /sys/bus/pci/drivers/vfio-pci/unbind',
      'ls /sys/class/vfio-dev',
    ].join('\n');
    const r = await cli(['exec', '--', 'sh', '-c', script]);
    assert.equal(r.status, 0, context(r));
    // Binding the no-IOMMU device taints the kernel, and the kernel says so: nothing else.
    assert.equal(
      r.stderr,
      'iommufd-emu: [warn] vfio-pci 0000:00:06.0: Adding kernel taint for vfio-noiommu group on device\n' +
        'iommufd-emu: [warn] vfio-pci 0000:00:06.0: Adding kernel taint for vfio-noiommu cdev\n',
      context(r),
    );
    assert.equal(
      r.stdout,
      [
        '0000:00:04.0',
        '0000:00:05.0',
        '0000:00:06.0',
        'vfio0',
        'vfio1',
        '0',
        'Y',
        'noiommu-vfio2',
        'noiommu-vfio2',
        'vfio0',
        'vfio1',
        '64',
        '../../../kernel/iommu_groups/0',
        '/sys/devices/pci0000:00/0000:00:06.0/vfio-dev/noiommu-vfio2',
        '/sys/devices/pci0000:00/0000:00:05.0',
        '0x11e8',
        'vfio0',
        'vfio1',
        '',
      ].join('\n'),
      context(r),
    );
  });

  test("bash's echo (stdio, bypassing the shim) still writes sysfs attributes", async (t) => {
    if (!fs.existsSync('/bin/bash')) {
      t.skip('no /bin/bash');
      return;
    }
    const script = [
      'echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode',
      'echo 0000:00:06.0 > /sys/bus/pci/drivers/vfio-pci/bind',
      'cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode',
      'ls /sys/class/vfio-dev',
      'printf "%s\\n" 0000:00:06.0 > /sys/bus/pci/drivers/vfio-pci/unbind',
      'ls /sys/class/vfio-dev',
    ].join('\n');
    const r = await cli(['exec', '--', '/bin/bash', '-c', script]);
    assert.equal(r.status, 0, context(r));
    assert.equal(r.stdout, 'Y\nnoiommu-vfio2\nvfio0\nvfio1\nvfio0\nvfio1\n', context(r));
  });

  test('iommufd-emu demo builds and runs the example, with the trace between its steps', async () => {
    const r = await cli(['demo']);
    assert.equal(r.status, 0, context(r));
    const steps = r.stdout.split('\n').filter((l) => /^\d\. /.test(l));
    assert.deepEqual(
      steps.map((l) => l.slice(0, 2)),
      ['1.', '2.', '3.', '4.', '5.', '6.', '7.', '8.'],
      context(r),
    );
    assert.match(
      r.stdout,
      /^1\. found edu device 0000:00:06\.0, no-IOMMU VFIO node \/dev\/vfio\/devices\/noiommu-vfio2$/m,
    );
    assert.match(r.stdout, /^7\. page 1 now holds a copy of page 0/m);
    assert.match(r.stdout, /^ {2}\| opendir\("\/sys\/bus\/pci\/devices"\)/m);
    assert.match(
      r.stdout,
      /^ {2}\| ioctl\(\d+<\/dev\/iommu>, IOMMU_IOAS_NOIOMMU_GET_PA, \{.*\} => \{.*out_phys=0x[0-9a-f]+\}\) = 0$/m,
    );
    assert.match(
      r.stdout,
      /^ {2}\| \[dma\] 0000:00:06\.0 reads 256 bytes at PA 0x[0-9a-f]+ \(no IOMMU\)$/m,
    );
    // Each step line comes after the calls it made: the bind ioctl before "3.".
    assert.ok(r.stdout.indexOf('VFIO_DEVICE_BIND_IOMMUFD') < r.stdout.indexOf('\n3. '), context(r));
  });
});
