/**
 * Conformance: every C program in test/conformance/ is compiled with the machine's gcc against
 * include/ (the project's own uAPI headers) and run unmodified under `iommufd-emu exec`. Each
 * program prints TAP lines and exits 0 only if all of its test cases held; one node:test test per
 * program, at most two programs at a time.
 *
 * `exec` runs as a function in this process (execCommand, what the CLI calls): each program still
 * gets a freshly booted kernel, its own server and testbed, and the leak check when it exits,
 * without starting a Node process per program. Its stdout and stderr (the kernel's log among it)
 * go to files read back after the run.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { cpus } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ExecFlags, execCommand } from '../src/cli/exec.ts';
import { traceProblems } from './trace-lines.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC_DIR = join(ROOT, 'test', 'conformance');
const BUILD_DIR = join(SRC_DIR, 'build');

const CFLAGS = ['-std=gnu11', '-O1', '-Wall', '-Wextra', '-Werror', '-I', join(ROOT, 'include')];
/** One program is also built with glibc's fortified wrappers, as distribution packages are. */
const FORTIFIED = new Set(['ioas_map']);
/** Built for this CPU's widest vectors, so that gcc's own inline copies reach the BAR too. */
const NATIVE_VECTORS = new Set(['bar_access']);

/** Per-program wall-clock limit; each program also arms alarm(30) on itself. */
const RUN_TIMEOUT_MS = 45_000;

/**
 * Programs that exercise behaviour the emulator deliberately does not have yet, with the
 * docs/decisions.md entry that says so. They still run and report, but as TODO: a failure does not
 * fail `npm test`. Remove an entry as soon as the feature lands.
 */
const KNOWN_GAPS: Record<string, string> = {};

interface RunResult {
  /** exec's status: the program's, 128+N if signal N killed it, 99 for leaks; null if timed out. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

/** `CONFORMANCE_ONLY=a,b` runs only those programs (for working on a few). */
const ONLY = process.env.CONFORMANCE_ONLY?.split(',').filter((n) => n !== '');

function listPrograms(): string[] {
  return readdirSync(SRC_DIR)
    .filter((f) => f.endsWith('.c'))
    .map((f) => basename(f, '.c'))
    .filter((name) => ONLY === undefined || ONLY.includes(name))
    .sort();
}

/** `gcc --version`, or undefined when there is no gcc. */
function gccVersion(): string | undefined {
  const r = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : undefined;
}

/**
 * What every program's build depends on besides its own source and flags: the compiler, the C
 * library, this CPU (for -march=native), and every header of include/ and of the programs.
 */
function toolchainKey(gcc: string): string {
  const hash = createHash('sha256');
  const header = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
  hash.update(`${gcc}\n${header.header?.glibcVersionRuntime}\n${cpus()[0]?.model}\n`);
  const headers = [
    ...readdirSync(join(ROOT, 'include'), { recursive: true, encoding: 'utf8' }).map((f) =>
      join(ROOT, 'include', f),
    ),
    ...readdirSync(SRC_DIR).map((f) => join(SRC_DIR, f)),
  ].filter((f) => f.endsWith('.h'));
  for (const file of headers.sort()) hash.update(`${file}\n`).update(readFileSync(file));
  return hash.digest('hex');
}

/**
 * gcc builds test/conformance/NAME.c into build/NAME+suffix, unless the binary there was built
 * from the same source, flags and toolchainKey (its .key file says so): gcc is a third of the
 * suite's time, and a binary rebuilt from the same inputs is the same binary.
 */
function compile(name: string, suffix = ''): { ok: boolean; output: string; binary: string } {
  const binary = join(BUILD_DIR, `${name}${suffix}`);
  const flags = FORTIFIED.has(name)
    ? [...CFLAGS, '-D_FORTIFY_SOURCE=2']
    : NATIVE_VECTORS.has(name)
      ? [...CFLAGS, '-O2', '-march=native']
      : CFLAGS;
  const source = join(SRC_DIR, `${name}.c`);
  const key = createHash('sha256')
    .update(`${toolchain}\n${flags.join(' ')}\n`)
    .update(readFileSync(source))
    .digest('hex');
  const keyFile = `${binary}.key`;
  if (existsSync(binary) && existsSync(keyFile) && readFileSync(keyFile, 'utf8') === key)
    return { ok: true, output: '', binary };
  rmSync(keyFile, { force: true });
  const r = spawnSync('gcc', [...flags, '-o', binary, source], { cwd: ROOT, encoding: 'utf8' });
  if (r.status === 0) writeFileSync(keyFile, key);
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`, binary };
}

/**
 * Extra `exec` options a program asks for on its first line, e.g.
 * `// exec-args: --enable-unsafe-noiommu-mode`.
 */
function execArgs(name: string): ExecFlags {
  const first = readFileSync(join(SRC_DIR, `${name}.c`), 'utf8').split('\n', 1)[0] ?? '';
  const m = /^\/\/ exec-args:(.*)$/.exec(first);
  const words = m === null ? [] : m[1]!.trim().split(/\s+/);
  let flags: ExecFlags = {};
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word === '') continue;
    if (word === '--enable-unsafe-noiommu-mode')
      flags = { ...flags, enableUnsafeNoiommuMode: true };
    // As the CLI takes it from the checkout's root.
    else if (word === '--platform' && i + 1 < words.length)
      flags = { ...flags, platform: resolve(ROOT, words[++i]!) };
    else throw new Error(`${name}.c: exec-args: ${word} is not an option this test passes on`);
  }
  return flags;
}

/**
 * `iommufd-emu exec [flags] -- binary`, as execCommand in this process, the program's stdout and
 * stderr (and the emulator's messages) captured in files beside the binary.
 */
async function runUnderEmulator(binary: string, flags: ExecFlags): Promise<RunResult> {
  const outFile = `${binary}.stdout`;
  const errFile = `${binary}.stderr`;
  const stdout = openSync(outFile, 'w');
  const stderr = openSync(errFile, 'w');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolveTimeout) => {
    timer = setTimeout(() => resolveTimeout('timeout'), RUN_TIMEOUT_MS);
  });
  const code = await Promise.race([
    execCommand(binary, [], flags, { stdio: { stdout, stderr } }),
    timeout,
  ]);
  clearTimeout(timer);
  const result = {
    code: code === 'timeout' ? null : code,
    stdout: readFileSync(outFile, 'utf8'),
    stderr: readFileSync(errFile, 'utf8'),
    timedOut: code === 'timeout',
  };
  // A run that timed out may still write: its descriptors stay open.
  if (code !== 'timeout') {
    closeSync(stdout);
    closeSync(stderr);
    rmSync(outFile);
    rmSync(errFile);
  }
  return result;
}

function describeFailure(name: string, r: RunResult): string {
  const failed = r.stdout.split('\n').filter((l) => l.startsWith('not ok'));
  const how = r.timedOut ? `timed out after ${RUN_TIMEOUT_MS} ms` : `exit status ${r.code}`;
  return [
    `${name}: ${how}${failed.length ? `, ${failed.length} test case(s) failed` : ''}`,
    ...failed.map((l) => `  ${l}`),
    '--- stdout ---',
    r.stdout.trimEnd(),
    '--- stderr ---',
    r.stderr.trimEnd(),
  ].join('\n');
}

/** Programs that only check the ABI at compile time and make no call on an emulated file. */
const NO_CALLS = new Set(['abi_sizes']);

/** Device events some programs' traces must show. */
const EXPECTED_IN_TRACE: Record<string, RegExp> = {
  dma_iommu: /^\[dma\] \S+ (reads|writes) \d+ bytes at IOVA 0x[0-9a-f]+ -> PA 0x[0-9a-f]+$/m,
  dma_noiommu: /^\[dma\] \S+ (reads|writes) \d+ bytes at PA 0x[0-9a-f]+ \(no IOMMU\)$/m,
  vfio_bar_mmap: /^mmio\(\d+<\/dev\/vfio\/devices\/vfio\d+>, BAR0\+0x[0-9a-f]+, \d, [rw]/m,
};

// Programs run where the CLI would have been started: the checkout's root (this file's process).
process.chdir(ROOT);
const gccText = gccVersion();
const gcc = gccText !== undefined;
const toolchain = gccText === undefined ? '' : toolchainKey(gccText);
if (gcc) mkdirSync(BUILD_DIR, { recursive: true });

describe('conformance (C programs under iommufd-emu exec)', { concurrency: 2 }, () => {
  for (const name of listPrograms()) {
    const gap = KNOWN_GAPS[name];
    const options = gap === undefined ? {} : { todo: gap };
    test(name, options, async (t) => {
      if (!gcc) {
        t.skip('gcc is not installed');
        return;
      }
      const built = compile(name);
      assert.ok(built.ok, `${name}.c does not compile cleanly:\n${built.output}`);
      // Traced, so that every call it makes is shown decoded (docs/trace.md).
      const traceFile = join(BUILD_DIR, `${name}.trace`);
      const r = await runUnderEmulator(built.binary, { trace: traceFile, ...execArgs(name) });
      assert.ok(r.code === 0 && !r.timedOut, describeFailure(name, r));
      const trace = readFileSync(traceFile, 'utf8');
      const problems = traceProblems(trace);
      assert.deepEqual(problems, [], `${name}: lines of its trace not decoded`);
      if (!NO_CALLS.has(name)) assert.match(trace, /^[a-z]+\(/m, `${name}: no call in its trace`);
      const dma = EXPECTED_IN_TRACE[name];
      if (dma !== undefined) assert.match(trace, dma, `${name}: its DMA is not in the trace`);
      rmSync(traceFile);
    });
  }
});

/**
 * The DMA and no-IOMMU programs again on a platform file of our own (QEMU-like delayed DMA
 * completion, less memory), so `exec --platform` is proven with real programs too.
 */
const PLATFORM_FILE = join(ROOT, 'examples', 'platforms', 'slow-dma.json');
const ON_PLATFORM_FILE = ['dma_iommu', 'dma_noiommu', 'noiommu_get_pa'];

describe('conformance on examples/platforms/slow-dma.json', { concurrency: 2 }, () => {
  for (const name of ON_PLATFORM_FILE) {
    test(name, async (t) => {
      if (!gcc) {
        t.skip('gcc is not installed');
        return;
      }
      // Its own binary: the first pass may be running the other one right now.
      const built = compile(name, '.platform');
      assert.ok(built.ok, `${name}.c does not compile cleanly:\n${built.output}`);
      const r = await runUnderEmulator(built.binary, { platform: PLATFORM_FILE });
      assert.ok(r.code === 0 && !r.timedOut, describeFailure(name, r));
    });
  }
});
