/**
 * Building the conformance programs for the lane (the flags of test/conformance.test.ts, plus
 * NOIOMMU_BDF for the lane's topology) and running them under the emulator on a variant's
 * platform file, through the CLI the tests run (test/cli-runner.ts).
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { join } from 'node:path';
import { cliArgv } from '../cli-runner.ts';
import { type ProgramEnd, type ProgramRun, parseTap } from './results.ts';
import { NOIOMMU_BDF } from './variants.ts';

/** As test/conformance.test.ts builds them: one program with glibc's fortified wrappers. */
const FORTIFIED = new Set(['ioas_map']);
const EMULATOR_TIMEOUT_MS = 60_000;

/** Runs `argv[0]` with the rest as its arguments, its stdout and stderr joined as they come. */
function run(
  argv: readonly string[],
  cwd: string,
  timeoutMs: number,
): Promise<{
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  timedOut: boolean;
}> {
  return new Promise((resolvePromise) => {
    const [command, ...args] = argv as [string, ...string[]];
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      output += d;
    });
    child.stderr.on('data', (d: string) => {
      output += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, output, timedOut });
    });
  });
}

/** Compiles test/conformance/<name>.c to `out`; throws with gcc's output on failure. */
export async function compileProgram(
  root: string,
  name: string,
  out: string,
  linkStatic: boolean,
): Promise<void> {
  const flags = ['-std=gnu11', '-O1', '-Wall', '-Wextra', '-Werror', '-I', join(root, 'include')];
  if (FORTIFIED.has(name)) flags.push('-D_FORTIFY_SOURCE=2');
  flags.push(`-DNOIOMMU_BDF="${NOIOMMU_BDF}"`);
  if (linkStatic) flags.push('-static');
  // A relative source path, so failure messages name the file as under `npm test`.
  const r = await run(['gcc', ...flags, '-o', out, `test/conformance/${name}.c`], root, 300_000);
  if (r.code !== 0) throw new Error(`${name}.c does not compile:\n${r.output}`);
}

/** The exec options without a program's own `--platform FILE`: the variant's file describes the VM. */
function withoutPlatform(execArgs: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgs.length; i++) {
    if (execArgs[i] === '--platform') i++;
    else out.push(execArgs[i]!);
  }
  return out;
}

/**
 * The argv that runs a dynamically linked build under `iommufd-emu exec` on the variant's platform
 * file: the CLI as the tests start it (test/cli-runner.ts: bundled once, run by plain node).
 */
export async function emulatorCommand(
  binary: string,
  platformFile: string,
  execArgs: readonly string[],
): Promise<string[]> {
  return [
    ...(await cliArgv()),
    'exec',
    '--platform',
    platformFile,
    ...withoutPlatform(execArgs),
    '--',
    binary,
  ];
}

/** Runs a dynamically linked build under `iommufd-emu exec`, on the variant's platform file. */
export async function runUnderEmulator(
  root: string,
  binary: string,
  platformFile: string,
  execArgs: readonly string[],
): Promise<ProgramRun> {
  const argv = await emulatorCommand(binary, platformFile, execArgs);
  const r = await run(argv, root, EMULATOR_TIMEOUT_MS);
  // The guest sees a program killed by its own alarm() as exit 142 (the shell's 128 + SIGALRM).
  let end: ProgramEnd;
  if (r.timedOut || r.signal === 'SIGALRM' || r.code === 142) end = { kind: 'timeout' };
  else if (r.code === null) end = { kind: 'exited', status: 128 + signalNumber(r.signal) };
  else end = { kind: 'exited', status: r.code };
  return { cases: parseTap(r.output), end, output: r.output };
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === null ? 0 : (constants.signals[signal] ?? 0);
}
