/**
 * The lane's machines. Each variant is one VM boot (QEMU's q35 under TCG) and the emulator
 * platform file that describes the same machine, plus the conformance programs it runs.
 *
 * The topology of every variant: edus at 0000:00:04.0 and 0000:00:05.0, and a third edu behind a
 * PCIe root port on a host bridge of its own (QEMU's `pxb-pcie`, bus 0x10), because QEMU can only
 * let a device bypass the IOMMU per host bridge. The root port is 0000:10:00.0, so that edu is
 * 0000:11:00.0, and the programs are built with NOIOMMU_BDF set to it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const EDU0_BDF = '0000:00:04.0';
export const EDU1_BDF = '0000:00:05.0';
export const NOIOMMU_BDF = '0000:11:00.0';

export interface ProgramInfo {
  readonly name: string;
  /** Asks for `--enable-unsafe-noiommu-mode` on its first line (`// exec-args: ...`). */
  readonly noiommuMode: boolean;
  /** Drives the kernel's fail-nth protocol. */
  readonly failNth: boolean;
  /** The `exec` options of its first line, for the emulator run. */
  readonly execArgs: readonly string[];
}

export interface Variant {
  readonly name: string;
  readonly what: string;
  /** QEMU gets `-device intel-iommu` (the two edus on pcie.0 are then behind it). */
  readonly intelIommu: boolean;
  /** vfio.enable_unsafe_noiommu_mode on the kernel command line and in the emulator. */
  readonly noiommuMode: boolean;
  /** /init arms fault injection (fail-nth) for iommufd's code before running the programs. */
  readonly failNth: boolean;
  /** The emulator's platform file, under test/linux-lane/platforms/. */
  readonly platform: string;
  readonly selects: (p: ProgramInfo) => boolean;
}

export const VARIANTS: readonly Variant[] = [
  {
    name: 'mixed-off',
    what: 'intel-iommu, two IOMMU edus and a bypass edu; no-IOMMU mode off',
    intelIommu: true,
    noiommuMode: false,
    failNth: false,
    platform: 'mixed.json',
    selects: (p) => !p.noiommuMode && !p.failNth,
  },
  {
    name: 'mixed-on',
    what: 'the same machine with no-IOMMU mode on',
    intelIommu: true,
    noiommuMode: true,
    failNth: false,
    platform: 'mixed.json',
    selects: (p) => p.noiommuMode && !p.failNth,
  },
  {
    name: 'pure-noiommu',
    what: 'no IOMMU at all: all three edus are no-IOMMU devices; mode on',
    intelIommu: false,
    noiommuMode: true,
    failNth: false,
    platform: 'pure-noiommu.json',
    selects: (p) => p.noiommuMode && !p.failNth,
  },
  {
    name: 'fail-nth',
    what: 'the mixed machine, mode on, fault injection armed for iommufd',
    intelIommu: true,
    noiommuMode: true,
    failNth: true,
    platform: 'mixed.json',
    selects: (p) => p.failNth,
  },
];

export function readProgramInfo(conformanceDir: string, name: string): ProgramInfo {
  const source = readFileSync(join(conformanceDir, `${name}.c`), 'utf8');
  const first = source.split('\n', 1)[0] ?? '';
  const m = /^\/\/ exec-args:(.*)$/.exec(first);
  const execArgs = m === null ? [] : m[1]!.split(/\s+/).filter((a) => a !== '');
  return {
    name,
    noiommuMode: execArgs.includes('--enable-unsafe-noiommu-mode'),
    failNth: source.includes('/fail-nth') || source.includes('failnth_open('),
    execArgs,
  };
}

/** QEMU's command line for a variant (without the kernel, initramfs and serial ports). */
export function qemuMachineArgs(v: Variant): string[] {
  const edu = 'edu,dma_mask=0xffffffffffffffff';
  return [
    ...['-machine', 'q35,kernel-irqchip=split', '-accel', 'tcg', '-cpu', 'max'],
    ...['-m', '1G', '-smp', '1', '-nodefaults', '-no-user-config', '-display', 'none'],
    '-no-reboot',
    // The IOMMU must be created before the devices behind it.
    ...(v.intelIommu ? ['-device', 'intel-iommu,intremap=on,aw-bits=48'] : []),
    ...['-device', `${edu},addr=04.0`, '-device', `${edu},addr=05.0`],
    ...['-device', 'pxb-pcie,id=pxb1,bus_nr=16,bus=pcie.0,addr=08.0,bypass_iommu=on'],
    ...['-device', 'pcie-root-port,id=rp1,bus=pxb1,chassis=1,addr=00.0'],
    ...['-device', `${edu},bus=rp1,addr=00.0`],
  ];
}

export function kernelCommandLine(v: Variant): string {
  return [
    'console=ttyS0',
    'loglevel=4',
    'panic=-1',
    // Under TCG on a loaded machine the IO-APIC timer check can time out and panic the guest
    // ("timer doesn't work through Interrupt-remapped IO-APIC"): skip it, as VMs usually do.
    'no_timer_check',
    'rdinit=/init',
    `vfio.enable_unsafe_noiommu_mode=${v.noiommuMode ? 1 : 0}`,
    `lane.variant=${v.name}`,
  ].join(' ');
}

/** The devices /init binds to vfio-pci, in the order that numbers their cdevs. */
export const BIND_ORDER = [EDU0_BDF, EDU1_BDF, NOIOMMU_BDF];
