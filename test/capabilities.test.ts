/**
 * Capabilities as the kernel sees them, end to end through the shim: test/capabilities/open_node.c
 * opens the no-IOMMU cdev (CAP_SYS_RAWIO required) under `iommufd-emu exec` and prints what it
 * believes it holds and what the open returned.
 *
 * - As root it opens the node; as root of a user namespace of its own (`unshare -r`) it holds a
 *   full effective set there, yet the emulated kernel's capable() counts only the initial user
 *   namespace (the emulator's): EPERM.
 * - As an unprivileged user it gets EPERM, and opens the node with `--cap CAP_SYS_RAWIO`, which the
 *   trace names; `iommufd-emu demo` runs to the end for that user.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ChildRun, CLI, runCommand } from './child.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = path.join(ROOT, 'test', 'capabilities', 'open_node.c');
/** The edu device without an IOMMU on the built-in platform. */
const NOIOMMU_NODE = '/dev/vfio/devices/noiommu-vfio2';
const NOBODY = 65534;
const EPERM = os.constants.errno.EPERM;
const RUN_TIMEOUT_MS = 60_000;

/** What open_node printed: its own view of itself and the open's result (errno 0 = opened). */
interface Opened {
  readonly uid: number;
  readonly rawio: boolean;
  readonly errno: number;
}

/** Runs argv[0] with the rest as its arguments, killed after RUN_TIMEOUT_MS. */
function run(argv: readonly string[]): Promise<ChildRun> {
  return runCommand(argv, { timeoutMs: RUN_TIMEOUT_MS });
}

function parseOpened(r: ChildRun): Opened {
  const m = /^uid=(\d+) rawio=([01]) open=(0|-1)(?: errno=(\d+))?$/m.exec(r.stdout);
  assert.ok(m !== null, `open_node printed no result (exit ${r.code}):\n${r.stdout}${r.stderr}`);
  return { uid: Number(m[1]), rawio: m[2] === '1', errno: m[3] === '0' ? 0 : Number(m[4]) };
}

function exec(options: readonly string[], program: readonly string[]): string[] {
  return [
    process.execPath,
    CLI,
    'exec',
    '--enable-unsafe-noiommu-mode',
    ...options,
    '--',
    ...program,
  ];
}

/** Why `cmd` cannot run here, or undefined when it exits 0. */
function cannotRun(cmd: readonly string[]): string | undefined {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8' });
  if (r.error !== undefined) return `${cmd.join(' ')}: ${r.error.message}`;
  if (r.status !== 0) return `${cmd.join(' ')} failed: ${r.stderr.trim() || `exit ${r.status}`}`;
  return undefined;
}

const isRoot = process.getuid?.() === 0;

/**
 * How to run a command as an unprivileged user: directly if this test is not root, else through
 * setpriv or su; or why it cannot be done here.
 */
function unprivilegedRunner(): ((argv: readonly string[]) => string[]) | string {
  if (!isRoot) return (argv) => [...argv];
  const setpriv = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'];
  const viaSetpriv = cannotRun([...setpriv, 'test', '-r', CLI]);
  if (viaSetpriv === undefined) return (argv) => [...setpriv, ...argv];
  const quote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;
  const su = (argv: readonly string[]): string[] => [
    'su',
    'nobody',
    '-s',
    '/bin/sh',
    '-c',
    argv.map(quote).join(' '),
  ];
  const viaSu = cannotRun(su(['test', '-r', CLI]));
  if (viaSu === undefined) return su;
  return `cannot run as an unprivileged user here (${viaSetpriv}; ${viaSu})`;
}

let dir = '';
let binary = '';
let built: string | undefined;

before(() => {
  // Readable and runnable by the unprivileged user too.
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-caps-'));
  fs.chmodSync(dir, 0o755);
  binary = path.join(dir, 'open_node');
  const cc = spawnSync('gcc', ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-o', binary, SOURCE], {
    encoding: 'utf8',
  });
  if (cc.error !== undefined) built = `gcc is not installed (${cc.error.message})`;
  else assert.equal(cc.status, 0, `open_node.c does not compile:\n${cc.stdout}${cc.stderr}`);
});

after(() => {
  if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
});

describe('capable() counts only the initial user namespace', () => {
  test('root opens the no-IOMMU node', async (t) => {
    if (built !== undefined) return t.skip(built);
    if (!isRoot) return t.skip('needs root (CAP_SYS_RAWIO in the initial user namespace)');
    const opened = parseOpened(await run(exec([], [binary, NOIOMMU_NODE])));
    assert.deepEqual(opened, { uid: 0, rawio: true, errno: 0 });
  });

  test('root of its own user namespace (unshare -r) holds CAP_SYS_RAWIO there, and gets EPERM', async (t) => {
    if (built !== undefined) return t.skip(built);
    const why = cannotRun(['unshare', '-r', 'true']);
    if (why !== undefined) return t.skip(`user namespaces unavailable: ${why}`);
    const trace = path.join(dir, 'unshare.trace');
    const r = await run(exec(['--trace', trace], ['unshare', '-r', binary, NOIOMMU_NODE]));
    // Inside, the program is uid 0 with CAP_SYS_RAWIO in its effective set.
    assert.deepEqual(parseOpened(r), { uid: 0, rawio: true, errno: EPERM });
    const outsideUid = process.getuid?.() ?? 0;
    assert.match(
      fs.readFileSync(trace, 'utf8'),
      new RegExp(`in a user namespace other than the emulator's \\(uid ${outsideUid} outside\\)`),
    );
  });

  test('--cap CAP_SYS_RAWIO grants it to a program in its own user namespace too', async (t) => {
    if (built !== undefined) return t.skip(built);
    const why = cannotRun(['unshare', '-r', 'true']);
    if (why !== undefined) return t.skip(`user namespaces unavailable: ${why}`);
    const r = await run(exec(['--cap', 'CAP_SYS_RAWIO'], ['unshare', '-r', binary, NOIOMMU_NODE]));
    assert.deepEqual(parseOpened(r), { uid: 0, rawio: true, errno: 0 });
  });
});

describe('an unprivileged user and exec --cap', () => {
  const runner = unprivilegedRunner();
  // Where the unprivileged emulator may write its trace.
  let traceDir = '';
  before(() => {
    traceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iommufd-emu-caps-trace-'));
    if (isRoot) fs.chownSync(traceDir, NOBODY, NOBODY);
  });
  after(() => {
    if (traceDir !== '') fs.rmSync(traceDir, { recursive: true, force: true });
  });

  test('without the option: EPERM', async (t) => {
    if (built !== undefined) return t.skip(built);
    if (typeof runner === 'string') return t.skip(runner);
    const opened = parseOpened(await run(runner(exec([], [binary, NOIOMMU_NODE]))));
    assert.equal(opened.rawio, false, 'the unprivileged user holds CAP_SYS_RAWIO');
    assert.notEqual(opened.uid, 0);
    assert.equal(opened.errno, EPERM);
  });

  test('with --cap CAP_SYS_RAWIO: opened, and the trace names the grant', async (t) => {
    if (built !== undefined) return t.skip(built);
    if (typeof runner === 'string') return t.skip(runner);
    const trace = path.join(traceDir, 'cap.trace');
    const r = await run(
      runner(exec(['--cap', 'CAP_SYS_RAWIO', '--trace', trace], [binary, NOIOMMU_NODE])),
    );
    const opened = parseOpened(r);
    assert.equal(opened.rawio, false);
    assert.equal(opened.errno, 0, `open failed:\n${r.stderr}`);
    assert.match(
      fs.readFileSync(trace, 'utf8'),
      /capabilities granted by the emulator \(--cap\): CAP_SYS_RAWIO; the task itself lacks: CAP_SYS_RAWIO/,
    );
  });

  test('an unknown capability name is a usage error', async () => {
    const r = await run(exec(['--cap', 'CAP_SYS_RAWIO,CAP_NO_SUCH'], ['true']));
    assert.equal(r.code, 125);
    assert.match(r.stderr, /CAP_NO_SUCH is not a capability/);
  });

  test('iommufd-emu demo runs to the end', async (t) => {
    if (built !== undefined) return t.skip(built);
    if (typeof runner === 'string') return t.skip(runner);
    const r = await run(runner([process.execPath, CLI, 'demo']));
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /capabilities granted by the emulator \(--cap\): CAP_SYS_RAWIO/);
    assert.match(r.stdout, /the device moved the bytes by physical address/);
  });
});
