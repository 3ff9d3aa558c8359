/**
 * The guest side of the lane: the initramfs (static busybox, the conformance programs linked
 * statically, scripts/linux-lane/init.sh as /init) and one QEMU boot per variant, with a VM-level
 * timeout. The console is the first serial port; the programs' output comes on the second.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type GuestLog, parseGuestLog } from './results.ts';
import { BIND_ORDER, kernelCommandLine, qemuMachineArgs, type Variant } from './variants.ts';

export interface GuestInputs {
  readonly qemu: string;
  readonly kernel: string;
  readonly busybox: string;
  /** "START END" of iommufd's text, for the fail-nth stack filter. */
  readonly iommufdText: string;
  readonly initScript: string;
}

/**
 * Writes the initramfs (an uncompressed newc cpio) to `path`. `binaries` maps program names to
 * their static builds; `programs` lists what each variant runs, in order.
 */
export function buildInitramfs(
  path: string,
  stage: string,
  inputs: GuestInputs,
  binaries: ReadonlyMap<string, string>,
  variants: readonly { variant: Variant; programs: readonly string[] }[],
): void {
  rmSync(stage, { recursive: true, force: true });
  for (const dir of ['bin', 'lane/bin', 'lane/variants'])
    mkdirSync(join(stage, dir), { recursive: true });
  copyFileSync(inputs.busybox, join(stage, 'bin', 'busybox'));
  chmodSync(join(stage, 'bin', 'busybox'), 0o755);
  copyFileSync(inputs.initScript, join(stage, 'init'));
  chmodSync(join(stage, 'init'), 0o755);
  for (const [name, binary] of binaries) {
    copyFileSync(binary, join(stage, 'lane', 'bin', name));
    chmodSync(join(stage, 'lane', 'bin', name), 0o755);
  }
  writeFileSync(join(stage, 'lane', 'iommufd-text'), `${inputs.iommufdText.trim()}\n`);
  for (const { variant, programs } of variants) {
    writeFileSync(
      join(stage, 'lane', 'variants', variant.name),
      [
        `PROGRAMS="${programs.join(' ')}"`,
        `BIND="${BIND_ORDER.join(' ')}"`,
        `NOIOMMU_MODE=${variant.noiommuMode ? 1 : 0}`,
        `FAIL_NTH=${variant.failNth ? 1 : 0}`,
        '',
      ].join('\n'),
    );
  }
  const r = spawnSync(
    'sh',
    ['-c', `find . | LC_ALL=C sort | cpio -o -H newc --quiet > '${path}'`],
    {
      cwd: stage,
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`cpio failed: ${r.stderr}`);
}

export interface BootResult {
  readonly log: GuestLog;
  /** The console (kernel messages and /init's notes). */
  readonly console: string;
  readonly timedOut: boolean;
  readonly exitCode: number | null;
  readonly seconds: number;
}

/** Boots one variant and waits for it to power off, or kills it after `timeoutMs`. */
export function bootVariant(
  inputs: GuestInputs,
  initramfs: string,
  variant: Variant,
  workDir: string,
  timeoutMs: number,
): Promise<BootResult> {
  mkdirSync(workDir, { recursive: true });
  const consolePath = join(workDir, `${variant.name}.console.log`);
  const resultsPath = join(workDir, `${variant.name}.results.log`);
  rmSync(consolePath, { force: true });
  rmSync(resultsPath, { force: true });
  const args = [
    ...qemuMachineArgs(variant),
    ...['-kernel', inputs.kernel, '-initrd', initramfs, '-append', kernelCommandLine(variant)],
    ...['-chardev', `file,id=con,path=${consolePath}`, '-serial', 'chardev:con'],
    ...['-chardev', `file,id=res,path=${resultsPath}`, '-serial', 'chardev:res'],
  ];
  const started = Date.now();
  return new Promise((resolvePromise) => {
    const child = spawn(inputs.qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let qemuOutput = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      qemuOutput += d;
    });
    child.stderr.on('data', (d: string) => {
      qemuOutput += d;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      const read = (p: string): string => {
        try {
          return readFileSync(p, 'utf8');
        } catch {
          return '';
        }
      };
      const consoleText =
        read(consolePath) + (qemuOutput === '' ? '' : `\n--- qemu ---\n${qemuOutput}`);
      resolvePromise({
        log: parseGuestLog(read(resultsPath)),
        console: consoleText,
        timedOut,
        exitCode: code,
        seconds: (Date.now() - started) / 1000,
      });
    });
  });
}
