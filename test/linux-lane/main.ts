/**
 * `npm run test:linux`: the Linux lane (docs/linux-lane.md). Runs every conformance program on a
 * real Linux 7.3 in QEMU and under the emulator on the matching platform, compares them case by
 * case, and fails on any difference test/linux-lane/expectations.json does not explain.
 *
 * Options: --keep-going (report every variant even after a boot failure), --variant NAME (only
 * that one; repeatable), --program NAME (only that one; repeatable).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareRuns, type Difference, judge, loadExpectations } from './compare.ts';
import { type BootResult, bootVariant, buildInitramfs, type GuestInputs } from './guest.ts';
import { compileProgram, runUnderEmulator } from './programs.ts';
import type { ProgramRun } from './results.ts';
import { readProgramInfo, VARIANTS, type Variant } from './variants.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LANE_SCRIPTS = join(ROOT, 'scripts', 'linux-lane');
const CONFORMANCE_DIR = join(ROOT, 'test', 'conformance');
const EXPECTATIONS = join(ROOT, 'test', 'linux-lane', 'expectations.json');
const CACHE =
  process.env.LANE_CACHE ??
  join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'iommufd-emu', 'linux-lane');
const WORK = join(CACHE, 'work');
/** One boot: 2-3 s to /init, then the programs; a guest still running after this has hung. */
const VM_TIMEOUT_MS = Number(process.env.LANE_VM_TIMEOUT_S ?? 420) * 1000;

function log(message: string): void {
  process.stdout.write(`[linux-lane] ${message}\n`);
}

function parseArgs(argv: readonly string[]): { variants: Set<string>; programs: Set<string> } {
  const variants = new Set<string>();
  const programs = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--variant' && v !== undefined) variants.add(v);
    else if (a === '--program' && v !== undefined) programs.add(v);
    else throw new Error(`unknown argument ${a}`);
    i++;
  }
  return { variants, programs };
}

/** Runs scripts/linux-lane/prepare.sh: fetches QEMU and busybox, builds the kernel. */
function prepare(): GuestInputs {
  const r = spawnSync('bash', [join(LANE_SCRIPTS, 'prepare.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LANE_CACHE: CACHE },
  });
  if (r.status !== 0) throw new Error('scripts/linux-lane/prepare.sh failed');
  const values = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m !== null) values.set(m[1]!, m[2]!);
  }
  const need = (k: string): string => {
    const v = values.get(k);
    if (v === undefined) throw new Error(`prepare.sh printed no ${k}`);
    return v;
  };
  return {
    qemu: need('QEMU'),
    kernel: need('KERNEL'),
    busybox: need('BUSYBOX'),
    iommufdText: readFileSync(need('IOMMUFD_TEXT'), 'utf8'),
    initScript: join(LANE_SCRIPTS, 'init.sh'),
  };
}

/** Runs `tasks` at most `limit` at a time (the machine has 2 cores). */
async function inParallel<T>(limit: number, tasks: readonly (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

interface VariantOutcome {
  readonly variant: Variant;
  readonly programs: readonly string[];
  readonly boot: BootResult;
  readonly emulator: ReadonlyMap<string, ProgramRun>;
  readonly diffs: readonly Difference[];
}

function consoleTail(text: string, lines = 60): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

async function main(): Promise<number> {
  const only = parseArgs(process.argv.slice(2));
  const expectations = loadExpectations(EXPECTATIONS);
  const skipped = new Map(expectations.notRun.map((n) => [n.program, n]));
  const allPrograms = readdirSync(CONFORMANCE_DIR)
    .filter((f) => f.endsWith('.c'))
    .map((f) => basename(f, '.c'))
    .sort();
  const programs = allPrograms.filter(
    (p) => (only.programs.size === 0 || only.programs.has(p)) && !skipped.has(p),
  );
  const infos = programs.map((p) => readProgramInfo(CONFORMANCE_DIR, p));
  const variants = VARIANTS.filter(
    (v) => only.variants.size === 0 || only.variants.has(v.name),
  ).map((variant) => ({
    variant,
    programs: infos.filter((p) => variant.selects(p)).map((p) => p.name),
  }));
  const unassigned = infos.filter((p) => !VARIANTS.some((v) => v.selects(p)));
  if (unassigned.length > 0)
    throw new Error(`no variant runs ${unassigned.map((p) => p.name).join(', ')}`);

  // Only what the chosen variants run.
  const needed = new Set(variants.flatMap((v) => v.programs));
  const toBuild = programs.filter((p) => needed.has(p));
  const inputs = prepare();
  const binDir = join(WORK, 'bin');
  mkdirSync(binDir, { recursive: true });
  log(`building ${toBuild.length} programs (static for the guest, dynamic for the emulator)`);
  const staticBinaries = new Map(toBuild.map((p) => [p, join(binDir, `${p}.static`)]));
  await inParallel(
    2,
    toBuild.flatMap((p) => [
      () => compileProgram(ROOT, p, join(binDir, `${p}.static`), true),
      () => compileProgram(ROOT, p, join(binDir, p), false),
    ]),
  );
  const initramfs = join(WORK, 'initramfs.cpio');
  buildInitramfs(initramfs, join(WORK, 'stage'), inputs, staticBinaries, variants);

  const outcomes: VariantOutcome[] = [];
  for (const { variant, programs: selected } of variants) {
    log(`${variant.name}: ${variant.what}; ${selected.length} programs`);
    // The VM and the emulator runs at the same time: TCG uses one core, the emulator the other.
    const platform = join(ROOT, 'test', 'linux-lane', 'platforms', variant.platform);
    const infoOf = new Map(infos.map((i) => [i.name, i]));
    const [boot, emulatorRuns] = await Promise.all([
      bootVariant(inputs, initramfs, variant, WORK, VM_TIMEOUT_MS),
      inParallel(
        1,
        selected.map(
          (p) => () => runUnderEmulator(ROOT, join(binDir, p), platform, infoOf.get(p)!.execArgs),
        ),
      ),
    ]);
    const emulator = new Map(selected.map((p, i) => [p, emulatorRuns[i]!]));
    const diffs: Difference[] = [];
    for (const p of selected)
      diffs.push(...compareRuns(variant.name, p, boot.log.runs.get(p), emulator.get(p)!));
    log(
      `${variant.name}: guest ran ${boot.log.runs.size} programs in ${boot.seconds.toFixed(0)} s`,
    );
    outcomes.push({ variant, programs: selected, boot, emulator, diffs });
  }
  return report(outcomes, expectations);
}

function report(
  outcomes: readonly VariantOutcome[],
  expectations: ReturnType<typeof loadExpectations>,
): number {
  const all = outcomes.flatMap((o) => o.diffs);
  const verdict = judge(all, expectations);
  const out: string[] = [];
  let failedBoots = 0;
  let compared = 0;
  out.push('', '== Linux lane report', '');
  out.push('variant        programs  cases  same  explained  unexplained  guest');
  for (const o of outcomes) {
    const cases = new Set<string>();
    for (const p of o.programs) {
      for (const name of o.emulator.get(p)!.cases.keys()) cases.add(`${p}/${name}`);
      for (const name of o.boot.log.runs.get(p)?.cases.keys() ?? []) cases.add(`${p}/${name}`);
    }
    const explained = verdict.explained.filter(
      (e) => e.difference.variant === o.variant.name,
    ).length;
    const unexplained = verdict.unexplained.filter((d) => d.variant === o.variant.name).length;
    const guestOk = o.boot.log.done && !o.boot.timedOut;
    if (!guestOk) failedBoots++;
    compared += cases.size;
    const guest = o.boot.timedOut
      ? 'HUNG (killed)'
      : o.boot.log.done
        ? `ok ${o.boot.seconds.toFixed(0)} s`
        : 'DIED';
    out.push(
      `${o.variant.name.padEnd(15)}${String(o.programs.length).padStart(8)}${String(cases.size).padStart(7)}` +
        `${String(cases.size - explained - unexplained).padStart(6)}${String(explained).padStart(11)}` +
        `${String(unexplained).padStart(13)}  ${guest}`,
    );
  }
  for (const o of outcomes) {
    if (o.boot.log.done && !o.boot.timedOut) continue;
    out.push(
      '',
      `== ${o.variant.name}: the guest ${o.boot.timedOut ? 'hung and was killed' : 'stopped early'}; console:`,
    );
    out.push(consoleTail(o.boot.console));
  }
  if (verdict.unexplained.length > 0) {
    out.push(
      '',
      '== UNEXPLAINED differences (each fails the lane; fix the emulator, or explain it in',
    );
    out.push('   test/linux-lane/expectations.json with a docs/decisions.md entry)');
    for (const d of verdict.unexplained) {
      out.push(
        `${d.variant} ${d.program} ${d.testCase}`,
        `    linux:    ${d.linux}`,
        `    emulator: ${d.emulator}`,
      );
    }
  }
  if (verdict.explained.length > 0) {
    out.push('', '== explained differences');
    for (const { difference: d, by } of verdict.explained) {
      out.push(
        `${d.variant} ${d.program} ${d.testCase}: ${by.kind.toUpperCase()} (decisions ${by.decision})`,
      );
      out.push(`    linux:    ${d.linux}`, `    emulator: ${d.emulator}`);
    }
  }
  if (verdict.unused.length > 0) {
    out.push(
      '',
      '== expectations no difference matched (fixed? remove them from expectations.json)',
    );
    for (const e of verdict.unused) out.push(`${e.variant} ${e.program} ${e.case}: ${e.kind}`);
  }
  if (expectations.notRun.length > 0) {
    out.push('', '== programs the lane does not run');
    for (const n of expectations.notRun)
      out.push(`${n.program}: ${n.reason} (decisions ${n.decision})`);
  }
  const failed = verdict.unexplained.length + failedBoots;
  out.push('', `linux-lane: ${compared - verdict.unexplained.length} passed, ${failed} failed`);
  process.stdout.write(`${out.join('\n')}\n`);
  const reportPath = join(WORK, 'report.txt');
  writeFileSync(reportPath, `${out.join('\n')}\n`);
  for (const o of outcomes) {
    writeFileSync(
      join(WORK, `${o.variant.name}.emulator.log`),
      [...o.emulator].map(([p, r]) => `@@ ${p}\n${r.output}`).join('\n'),
    );
  }
  log(`report, consoles and outputs in ${WORK}`);
  return failed === 0 ? 0 : 1;
}

if (!existsSync(EXPECTATIONS)) throw new Error(`missing ${EXPECTATIONS}`);
main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`[linux-lane] ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
