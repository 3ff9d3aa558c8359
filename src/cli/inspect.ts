/**
 * `--inspect[=HOST:PORT]` for exec, serve and demo: the inspector's server (src/inspector) for
 * the booted kernel, its URL on stderr, and for exec the wait after the program has exited, so
 * that what it left behind can still be looked at.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import type { Kernel } from '../boot/kernel.ts';
import { ReplayStepper } from '../inspector/replay-stepper.ts';
import {
  type Inspector,
  type InspectorAddress,
  parseInspectAddress,
  startInspector,
} from '../inspector/server.ts';
import type { ProgramState } from '../inspector/state-types.ts';
import type { RunRecord } from '../trace/record.ts';
import { describeErrno, fail } from './exit-status.ts';
import { packageRoot } from './native.ts';

/** The option's value as commander hands it over (main.ts parses it with parseInspectAddress). */
export type InspectFlag = InspectorAddress | true;

/** Where `npm run build` puts the page (vite.config.ts). */
export function inspectorPageDir(): string {
  return path.join(packageRoot(), 'dist', 'web', 'inspector');
}

/** Starts the inspector for kernel and prints where it is; a failure to listen is fatal (125). */
export async function startInspectorFor(
  target: Kernel | ReplayStepper,
  flag: InspectFlag,
  program: ProgramState,
): Promise<Inspector> {
  const address = flag === true ? (parseInspectAddress(true) as InspectorAddress) : flag;
  let inspector: Inspector;
  try {
    inspector = await startInspector(target, { address, pageDir: inspectorPageDir(), program });
  } catch (err) {
    fail(`--inspect: cannot listen on ${address.host}:${address.port}: ${describeErrno(err)}`);
  }
  process.stderr.write(`iommufd-emu: inspector at ${inspector.url}\n`);
  return inspector;
}

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * After exec's program has exited: the page shows its status and the state it left, until
 * SIGINT, SIGTERM or SIGHUP.
 */
export async function holdInspector(inspector: Inspector, program: ProgramState): Promise<void> {
  inspector.setProgram(program);
  process.stderr.write(
    `iommufd-emu: ${program.command[0]} exited with status ${program.exitStatus}; the inspector stays at ${inspector.url} until Ctrl-C\n`,
  );
  await untilStopped();
}

/** Resolves at SIGINT, SIGTERM or SIGHUP. */
export function untilStopped(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      for (const s of STOP_SIGNALS) process.off(s, stop);
      resolve();
    };
    for (const s of STOP_SIGNALS) process.on(s, stop);
  });
}

/**
 * `replay FILE --inspect`: no replay to the end, but the page stepping through the record, the
 * state after any call, until Ctrl-C.
 */
export async function inspectRecord(
  file: string,
  record: RunRecord,
  flag: InspectFlag,
): Promise<number> {
  const stepper = ReplayStepper.open(file, record);
  if (typeof stepper === 'string') fail(`${file}: ${stepper}`);
  const inspector = await startInspectorFor(stepper, flag, {
    command: [...record.header.program],
    state: 'replaying',
    exitStatus: null,
  });
  process.stderr.write(
    `iommufd-emu: stepping through ${file} (${stepper.state().steps} calls) until Ctrl-C\n`,
  );
  try {
    await untilStopped();
  } finally {
    await inspector.close();
    stepper.close();
  }
  return 0;
}

/**
 * `--inspect` takes an optional value, so `exec --inspect prog` would read `prog` as its HOST.
 * As node's own `--inspect[=HOST:PORT]`, a value must be joined with `=`: a bare `--inspect`
 * among the command's own options becomes `--inspect=` before commander sees it. The scan stops
 * at `--` and at the first argument that is not an option or an option's value (the program).
 */
export function joinInspectValue(command: Command, args: readonly string[]): string[] {
  const takesValue = new Set<string>();
  for (const option of command.options) {
    if (option.required && option.long !== undefined) takesValue.add(option.long);
    if (option.required && option.short !== undefined) takesValue.add(option.short);
  }
  const out = [...args];
  for (let i = 0; i < out.length; i++) {
    const arg = out[i]!;
    if (arg === '--' || !arg.startsWith('-')) break;
    if (arg === '--inspect') out[i] = '--inspect=';
    else if (takesValue.has(arg)) i++;
  }
  return out;
}
