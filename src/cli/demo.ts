/**
 * `iommufd-emu demo` (`npm run demo`): builds examples/noiommu-edu-dma.c with the machine's gcc
 * and runs it, unmodified, under a private emulator in unsafe no-IOMMU mode, with the emulated
 * kernel's view of every call and every DMA printed between the driver's own lines.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Kernel } from '../boot/kernel.ts';
import type { EmuEvent } from '../trace/events.ts';
import { bootLogEvents, escapeLine, formatEvent } from '../trace/writer.ts';
import type { InspectFlag } from './inspect.ts';

const EXAMPLE = 'noiommu-edu-dma';

/** The demo could not start (no gcc, say); the CLI prints the message. */
export class DemoError extends Error {
  override readonly name = 'DemoError';
}

/** What the demo needs from the CLI (passed in: main.ts imports this module). */
export interface DemoDeps {
  /** The project root: examples/, include/, native/. */
  readonly root: string;
  /** `iommufd-emu exec` with a hook that sees the kernel before the program starts. */
  exec(
    program: string,
    args: readonly string[],
    flags: {
      readonly enableUnsafeNoiommuMode?: boolean;
      readonly cap?: readonly string[];
      readonly inspect?: InspectFlag;
    },
    hooks: { readonly attach?: (kernel: Kernel) => () => void; readonly dmesg?: boolean },
  ): Promise<number>;
  /**
   * demo --inspect: the inspector, and the driver pauses before it cleans up (until Enter) so
   * that the page shows its buffer mapped and pinned.
   */
  readonly inspect?: InspectFlag;
  /** Output (the header and the trace go here; the program writes to the real stdout). */
  readonly out?: (text: string) => void;
}

const HEADER = `\
iommufd-emu demo: a userspace PCI driver on a machine without an IOMMU

Linux lets a program drive a PCI device itself through VFIO: it opens the device's node in
/dev/vfio/devices and attaches it to an I/O address space made with /dev/iommu (iommufd).
Normally an IOMMU checks every address the device uses. This device (an "edu" test device at
0000:00:06.0) has none, so in the kernel's unsafe no-IOMMU mode the driver asks iommufd for the
PHYSICAL addresses of its pinned buffer and gives those to the device.

Below, examples/${EXAMPLE}.c runs unmodified on an emulated kernel and machine; an
LD_PRELOAD shim carries its calls to the emulator. Its own output is numbered 1-8. Each step
follows the lines marked | that show what the emulated kernel saw:
  | call(arguments) = result   every call on /sys, /dev/vfio and /dev/iommu (ioctl structs
                               as the kernel left them; fd<path> names the file)
  | [dma] ...                  the device reading or writing memory, by physical address
`;

/**
 * Compiles the example into dir, a directory this run made (mkdtemp) and nobody else can write:
 * a binary found in a shared place could be anyone's. stdout is made line buffered (a tiny
 * constructor linked in), so that the driver's lines and the trace interleave in order even
 * through a pipe. The binary's path, or a message saying what went wrong.
 */
export function buildExample(root: string, dir: string): { binary: string } | { error: string } {
  const source = path.join(root, 'examples', `${EXAMPLE}.c`);
  const binary = path.join(dir, EXAMPLE);
  const linebuf = path.join(dir, 'linebuf.c');
  fs.writeFileSync(
    linebuf,
    '#include <stdio.h>\n__attribute__((constructor)) static void demo_linebuf(void)\n' +
      '{\n\tsetvbuf(stdout, NULL, _IOLBF, 0);\n}\n',
    { mode: 0o600, flag: 'wx' },
  );
  const args = ['-O2', '-Wall', '-I', path.join(root, 'include'), '-o', binary, source, linebuf];
  const cc = spawnSync('gcc', args, { encoding: 'utf8' });
  if (cc.error !== undefined)
    return { error: `cannot run gcc (${cc.error.message}): the demo needs gcc installed` };
  if (cc.status !== 0) return { error: `gcc ${args.join(' ')} failed:\n${cc.stdout}${cc.stderr}` };
  return { binary };
}

const CAP_SYS_RAWIO = 17;

/** Whether this process holds CAP_SYS_RAWIO (which opening a no-IOMMU device needs). */
function hasRawio(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m !== null && ((BigInt(`0x${m[1]}`) >> BigInt(CAP_SYS_RAWIO)) & 1n) === 1n;
  } catch {
    return false;
  }
}

/**
 * The capabilities the emulator must grant the driver: CAP_SYS_RAWIO, which opening a no-IOMMU
 * device needs, unless this process holds it already. A user namespace of its own (unshare -r)
 * would not do: the kernel only counts capabilities held in the initial user namespace.
 */
function capsToGrant(): { cap: string[]; note?: string } {
  if (hasRawio()) return { cap: [] };
  return {
    cap: ['CAP_SYS_RAWIO'],
    note: 'You are not root: the emulator grants the driver CAP_SYS_RAWIO (exec --cap CAP_SYS_RAWIO),\nwhich opening a no-IOMMU device requires; the trace says so.\n',
  };
}

/** One trace line for the reader: the pid prefix dropped (there is one process), indented. */
function traceLine(event: EmuEvent, color: boolean): string {
  const text = escapeLine(formatEvent(event));
  const loud = event.kind === 'unsafe-dma' || event.kind === 'iommu-fault';
  if (!color) return `  | ${text}\n`;
  return loud ? `  | \x1b[1;31m${text}\x1b[0m\n` : `  | \x1b[2m${text}\x1b[0m\n`;
}

/** Runs the demo; resolves with the program's exit status. */
export async function demoCommand(deps: DemoDeps): Promise<number> {
  const out = deps.out ?? ((text: string) => process.stdout.write(text));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-demo-'));
  try {
    return await runDemo(deps, out, dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function runDemo(deps: DemoDeps, out: (text: string) => void, dir: string): Promise<number> {
  const built = buildExample(deps.root, dir);
  if ('error' in built) throw new DemoError(built.error);
  const color = deps.out === undefined && process.stdout.isTTY === true && !process.env.NO_COLOR;
  const grant = capsToGrant();
  out(`${HEADER}\n`);
  if (grant.note !== undefined) out(`${grant.note}\n`);
  const status = await deps.exec(
    built.binary,
    deps.inspect === undefined ? [] : ['--pause'],
    {
      enableUnsafeNoiommuMode: true,
      cap: grant.cap,
      ...(deps.inspect === undefined ? {} : { inspect: deps.inspect }),
    },
    {
      // The trace shows every event already; no separate dmesg lines.
      dmesg: false,
      attach: (kernel) => {
        // Boot already logged the taint of the no-IOMMU device: show it first.
        for (const event of bootLogEvents(kernel.dmesg)) out(traceLine(event, color));
        return kernel.events.subscribe((event) => {
          out(traceLine(event, color));
        });
      },
    },
  );
  out(
    status === 0
      ? '\nThe driver exited with status 0: the device moved the bytes by physical address.\n'
      : `\nThe driver exited with status ${status}.\n`,
  );
  return status;
}
