/**
 * QEMU as a client: qemu-system-x86_64 runs under `iommufd-emu exec` with the default platform's
 * edu passed through by each of its backends (iommufd, and the legacy group and container), reads through QMP what its guest sees (`query-pci`, which needs no guest
 * code: the machine is not even started), quits, and exec checks that nothing leaked (exit 0;
 * a leak would be 99). Skipped without QEMU 10 (`scripts/install-qemu.sh` installs it).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cliScript } from './cli-runner.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = await cliScript();
const TIMEOUT_MS = 120_000;
const EDU = { vendor: 0x1234, device: 0x11e8 };

function qemuMissing(): string | undefined {
  const r = spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' });
  if (r.error !== undefined) return 'qemu-system-x86_64 is not installed (scripts/install-qemu.sh)';
  const major = Number(/version (\d+)\./.exec(r.stdout)?.[1] ?? 0);
  return major >= 10 ? undefined : `QEMU ${major} has no iommufd backend: need 10 or newer`;
}

interface Run {
  readonly code: number | null;
  readonly replies: unknown[];
  readonly stderr: string;
}

/** QEMU under exec with device args, QMP on stdio: capabilities, query-pci, quit. */
function runQemu(deviceArgs: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    const args = [
      ...[CLI, 'exec', '--', 'qemu-system-x86_64'],
      ...['-nodefaults', '-display', 'none', '-machine', 'q35,accel=tcg', '-m', '32', '-S'],
      ...deviceArgs,
      ...['-qmp', 'stdio'],
    ];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.stdin.end(
      '{"execute":"qmp_capabilities"}\n{"execute":"query-pci"}\n{"execute":"quit"}\n',
    );
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      const replies = stdout
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as unknown);
      resolve({ code, replies, stderr });
    });
  });
}

interface PciDevice {
  readonly id: { readonly vendor: number; readonly device: number };
  readonly regions: readonly { readonly bar: number; readonly size: number }[];
}

function pciDevices(replies: readonly unknown[]): PciDevice[] {
  for (const reply of replies) {
    const ret = (reply as { return?: unknown }).return;
    if (Array.isArray(ret) && ret.length > 0 && 'devices' in (ret[0] as object))
      return (ret as { devices: PciDevice[] }[]).flatMap((bus) => bus.devices);
  }
  return [];
}

describe('QEMU 10 passes the emulated edu through', () => {
  /** The guest must see exactly one edu, with its 1 MiB BAR0. */
  function assertEduSeen(r: Run): void {
    assert.equal(r.code, 0, `exit ${r.code} (99: leaks)\n${r.stderr}`);
    const edu = pciDevices(r.replies).filter(
      (d) => d.id.vendor === EDU.vendor && d.id.device === EDU.device,
    );
    assert.equal(edu.length, 1, JSON.stringify(r.replies));
    assert.deepEqual(
      edu[0]!.regions.map((g) => [g.bar, g.size]),
      [[0, 1 << 20]],
    );
    assert.doesNotMatch(r.stderr, /leaks after/);
  }

  test('iommufd backend: the guest sees 1234:11e8 with its 1 MiB BAR0; nothing leaks', async (t) => {
    const missing = qemuMissing();
    if (missing !== undefined) return t.skip(missing);
    assertEduSeen(
      await runQemu([
        ...['-object', 'iommufd,id=iommufd0'],
        ...['-device', 'vfio-pci,host=0000:00:04.0,iommufd=iommufd0'],
      ]),
    );
  });

  // The group path: /dev/vfio/<G>, /dev/vfio/vfio as its container (iommufd's compat layer),
  // SET_IOMMU type1v2, MAP_DMA of guest RAM, then GET_DEVICE_FD by name.
  test('legacy container backend: the same edu through its group and /dev/vfio/vfio', async (t) => {
    const missing = qemuMissing();
    if (missing !== undefined) return t.skip(missing);
    assertEduSeen(await runQemu(['-device', 'vfio-pci,host=0000:00:04.0']));
  });
});
