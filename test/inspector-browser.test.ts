/**
 * The inspector in a real browser: Debian's chromium, driven by playwright-core, loads the page
 * of `exec --inspect` while the bundled no-IOMMU driver runs (paused with its buffer mapped and
 * pinned), checks what the page shows against the program's own output and /api/state, lets the
 * program finish and checks the page follows. It takes the screenshots the docs show: into
 * INSPECTOR_SCREENSHOTS (`npm run screenshots` sets it to docs/), else a temporary directory.
 *
 * Skipped only when /usr/bin/chromium is absent and not in CI; CI installs it (.ci/run).
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import type { InspectorState, RecordState } from '../src/inspector/state-types.ts';
import { cliScript } from './cli-runner.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = await cliScript();
/** A directory of its own, run from there as ./noiommu-edu-dma: the page shows that name. */
const BUILD = join(ROOT, 'examples', 'build', 'inspector');
const DRIVER = join(BUILD, 'noiommu-edu-dma');
const CHROMIUM = '/usr/bin/chromium';
const PAGE_INDEX = join(ROOT, 'dist', 'web', 'inspector', 'index.html');

const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === 'true')
  throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium before the tests`);

const shotsDir =
  process.env.INSPECTOR_SCREENSHOTS === undefined
    ? fs.mkdtempSync(join(os.tmpdir(), 'inspector-shots-'))
    : resolve(ROOT, process.env.INSPECTOR_SCREENSHOTS);

let driverBuilt = false;

/** Built once for both suites. */
function buildDriver(): void {
  if (driverBuilt) return;
  driverBuilt = true;
  fs.mkdirSync(BUILD, { recursive: true });
  const cc = spawnSync(
    'gcc',
    ['-O1', '-I', join(ROOT, 'include'), '-o', DRIVER, join(ROOT, 'examples', 'noiommu-edu-dma.c')],
    { encoding: 'utf8' },
  );
  assert.equal(cc.status, 0, cc.stderr);
}

/** The page is built by `npm run build` (and npm ci's prepare); a bare checkout builds it here. */
function ensurePage(): void {
  if (fs.existsSync(PAGE_INDEX)) return;
  const vite = spawnSync(
    process.execPath,
    [
      join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'),
      'build',
      '--config',
      'web/inspector/vite.config.ts',
    ],
    { cwd: ROOT, encoding: 'utf8' },
  );
  assert.equal(vite.status, 0, `${vite.stdout}${vite.stderr}`);
}

/** Collects a stream's text and resolves when it matches. */
function waitForText(
  stream: NodeJS.ReadableStream,
  sink: { text: string },
  pattern: RegExp,
): Promise<RegExpExecArray> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${pattern}; got:\n${sink.text}`)),
      60_000,
    );
    const check = (): boolean => {
      const m = pattern.exec(sink.text);
      if (m === null) return false;
      clearTimeout(timer);
      stream.off('data', onData);
      resolvePromise(m);
      return true;
    };
    const onData = (): void => {
      check();
    };
    stream.on('data', onData);
    check();
  });
}

let sharedBrowser: Promise<Browser> | undefined;

/** One chromium for both suites (each has a page of its own): a launch costs a second or two. */
function launchBrowser(): Promise<Browser> {
  sharedBrowser ??= chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  return sharedBrowser;
}

after(async () => {
  await (await sharedBrowser)?.close();
  if (process.env.INSPECTOR_SCREENSHOTS === undefined)
    fs.rmSync(shotsDir, { recursive: true, force: true });
});

async function text(locator: Locator): Promise<string> {
  return (await locator.textContent()) ?? '';
}

describe('inspector in chromium', { skip: haveChromium ? false : `no ${CHROMIUM}` }, () => {
  let exec: ChildProcessWithoutNullStreams;
  const out = { text: '' };
  const err = { text: '' };
  let url = '';
  let page: Page;
  let exitStatus: Promise<number | null>;

  before(async () => {
    buildDriver();
    ensurePage();
    exec = spawn(
      process.execPath,
      [
        CLI,
        'exec',
        '--enable-unsafe-noiommu-mode',
        '--cap',
        'CAP_SYS_RAWIO',
        '--inspect',
        '--',
        './noiommu-edu-dma',
        '--pause',
      ],
      { cwd: BUILD, stdio: 'pipe' },
    );
    exec.stdout.setEncoding('utf8');
    exec.stderr.setEncoding('utf8');
    exec.stdout.on('data', (chunk: string) => {
      out.text += chunk;
    });
    exec.stderr.on('data', (chunk: string) => {
      err.text += chunk;
    });
    exitStatus = new Promise((done) => exec.on('exit', (code) => done(code)));
    url = (await waitForText(exec.stderr, err, /inspector at (http:\/\/127\.0\.0\.1:\d+\/)/))[1]!;
    await waitForText(exec.stdout, out, /paused with the buffer mapped and pinned/);
    page = await (await launchBrowser()).newPage({ viewport: { width: 1600, height: 1000 } });
    await page.goto(url);
    await page.getByTestId('connection').filter({ hasText: 'live' }).waitFor();
    await page.getByTestId('graph').waitFor();
  });

  after(async () => {
    await page?.close();
    if (exec !== undefined && exec.exitCode === null) exec.kill('SIGKILL');
  });

  /** What the driver printed: its buffer's VA (= IOVA) and the PA of each page. */
  function driverFacts(): { va: bigint; pas: bigint[] } {
    const va = /mapped 64 KiB at IOVA = VA = (0x[0-9a-f]+)/.exec(out.text);
    assert.ok(va !== null, out.text);
    const pas = [...out.text.matchAll(/VA 0x[0-9a-f]+ -> PA (0x[0-9a-f]+), 4096 contiguous/g)].map(
      (m) => BigInt(m[1]!),
    );
    assert.equal(pas.length, 16, out.text);
    return { va: BigInt(va[1]!), pas };
  }

  async function apiState(): Promise<InspectorState> {
    const res = await fetch(`${url}api/state`);
    return (await res.json()) as InspectorState;
  }

  it('marks the no-IOMMU device unsafe, in the device list and in the graph', async () => {
    const row = page.getByTestId('device-0000:00:06.0');
    await assert.doesNotReject(row.filter({ hasText: 'UNSAFE: no IOMMU' }).waitFor());
    assert.match(await text(row), /noiommu-vfio2/);
    assert.doesNotMatch(await text(page.getByTestId('device-0000:00:04.0')), /UNSAFE/);
    assert.match((await page.getByTestId('graph-vfio-0000:00:06.0').textContent()) ?? '', /UNSAFE/);
  });

  it('draws every object with the refcounts /api/state gives', async () => {
    const state = await apiState();
    const objects = state.contexts[0]!.objects;
    assert.deepEqual(
      objects.map((o) => o.type),
      ['device', 'ioas', 'hwpt-paging'],
    );
    for (const o of objects) {
      const text = (await page.getByTestId(`graph-obj-0-${o.id}`).textContent()) ?? '';
      assert.ok(text.includes(`${o.type.toUpperCase()} ${o.id}`), text);
      assert.ok(text.includes(`users ${o.users} · short-term ${o.shorttermUsers}`), text);
    }
    const domain = state.domains[0]!;
    assert.equal(domain.kind, 'noiommu');
    assert.match(
      (await page.getByTestId(`graph-domain-${domain.id}`).textContent()) ?? '',
      /no-IOMMU, 6 levels/,
    );
  });

  it('maps the IOAS, zooms to the area, and walks an IOVA to the PA the driver got', async () => {
    const { va, pas } = driverFacts();
    const state = await apiState();
    const ioas = state.contexts[0]!.ioas[0]!;
    const areaId = `area-0-${ioas.id}-0x${va.toString(16)}`;
    const view = page.getByTestId('view-range');
    assert.match(await text(view), /^0x0 – 0xffffffffffffffff \(16 EiB\)$/);
    await page.getByTestId(areaId).click();
    // Zoomed to the 64 KiB area (a quarter more around it).
    await view.filter({ hasText: '(80 KiB)' }).waitFor();
    const iova = va + 0x1000n;
    await page.getByTestId('walk-iova').fill(`0x${iova.toString(16)}`);
    await page.getByTestId('walk-go').click();
    const outcome = page.getByTestId('walk-outcome');
    await outcome.filter({ hasText: `0x${iova.toString(16)}` }).waitFor();
    const said = await text(outcome);
    assert.ok(said.includes(`PA 0x${pas[1]!.toString(16)}`), said);
    assert.match(said, /4 KiB page, readable, writable/);
    assert.match(said, /\(1 pin\)/);
    assert.equal(await page.locator('[data-testid=walk-result] tbody tr').count(), 6);
    // An IOVA nothing maps stops at an empty entry.
    await page.getByTestId('walk-iova').fill('0x1000');
    await page.getByTestId('walk-go').click();
    await outcome.filter({ hasText: 'is not mapped' }).waitFor();
    // Back to the mapped page for the screenshot.
    await page.getByTestId('walk-iova').fill(`0x${iova.toString(16)}`);
    await page.getByTestId('walk-go').click();
    await outcome.filter({ hasText: `0x${iova.toString(16)}` }).waitFor();
  });

  it('counts the pinned pages and lists DMA with the store that started it', async () => {
    const { pas } = driverFacts();
    assert.match(
      await text(page.getByTestId('pinned-totals')),
      /^16 pages pinned \(64 KiB\), 16 pins/,
    );
    const dma = page
      .locator('[data-kind=dma]')
      .filter({ hasText: `reads 256 bytes at PA 0x${pas[0]!.toString(16)} (no IOMMU)` });
    await dma.waitFor();
    const cause = await text(dma.getByTestId('cause'));
    // The store to edu's DMA command register (0x98) that started the transfer.
    assert.match(
      cause,
      /caused by #\d+ (pwrite|mmio)\(\d+<\/dev\/vfio\/devices\/noiommu-vfio2>.*(BAR0\+0x98)/,
    );
    await page.screenshot({ path: join(shotsDir, 'inspector.png'), fullPage: true });
    await page.getByTestId('ioas-maps').screenshot({ path: join(shotsDir, 'inspector-ioas.png') });
    assert.ok(fs.statSync(join(shotsDir, 'inspector.png')).size > 10_000);
  });

  it('follows the program to its end, then exec stops at Ctrl-C with its status', async () => {
    exec.stdin.write('\n');
    await waitForText(
      exec.stdout,
      out,
      /8\. unmapped \(pages unpinned\), detached and closed: done/,
    );
    await page.getByTestId('program-state').filter({ hasText: 'exited with status 0' }).waitFor();
    await page.getByTestId('pinned').filter({ hasText: 'Nothing pinned.' }).waitFor();
    await page.getByTestId('graph').filter({ hasText: 'No /dev/iommu is open.' }).waitFor();
    await waitForText(exec.stderr, err, /the inspector stays at/);
    exec.kill('SIGINT');
    assert.equal(await exitStatus, 0, err.text);
    await page.getByTestId('connection').filter({ hasText: 'disconnected' }).waitFor();
  });
});

describe('stepping through a recorded run in chromium', {
  skip: haveChromium ? false : `no ${CHROMIUM}`,
}, () => {
  let replay: ChildProcessWithoutNullStreams;
  const err = { text: '' };
  let url = '';
  let page: Page;
  let record: RecordState;

  before(async () => {
    buildDriver();
    ensurePage();
    const rec = join(BUILD, 'demo.rec');
    const recording = spawnSync(
      process.execPath,
      [
        CLI,
        'exec',
        '--enable-unsafe-noiommu-mode',
        '--cap',
        'CAP_SYS_RAWIO',
        '--record',
        rec,
        '--',
        './noiommu-edu-dma',
      ],
      { cwd: BUILD, encoding: 'utf8' },
    );
    assert.equal(recording.status, 0, recording.stderr);
    replay = spawn(process.execPath, [CLI, 'replay', 'demo.rec', '--inspect'], {
      cwd: BUILD,
      stdio: 'pipe',
    });
    replay.stderr.setEncoding('utf8');
    replay.stderr.on('data', (chunk: string) => {
      err.text += chunk;
    });
    url = (await waitForText(replay.stderr, err, /inspector at (http:\/\/127\.0\.0\.1:\d+\/)/))[1]!;
    record = (await (await fetch(`${url}api/record`)).json()) as RecordState;
    page = await (await launchBrowser()).newPage({ viewport: { width: 1600, height: 1000 } });
    await page.goto(url);
    await page.getByTestId('replay').waitFor();
  });

  after(async () => {
    await page?.close();
    if (replay !== undefined && replay.exitCode === null) replay.kill('SIGKILL');
  });

  it('starts before the first call and moves forward and back, the page following', async () => {
    const position = page.getByTestId('step-position');
    await position.filter({ hasText: `call 0 of ${record.calls.length}` }).waitFor();
    assert.equal(
      await page.getByTestId('graph').filter({ hasText: 'No /dev/iommu is open.' }).count(),
      1,
    );
    // Click the MAP in the list of calls: its area appears, with its pins.
    const map = record.calls.findIndex((c) => c.text.includes('IOMMU_IOAS_MAP,')) + 1;
    await page
      .locator('ol.calls button.call')
      .nth(map - 1)
      .click();
    await position.filter({ hasText: `call ${map} of` }).waitFor();
    assert.match(await text(page.getByTestId('step-call')), /IOMMU_IOAS_MAP/);
    await page.getByTestId('pinned-totals').filter({ hasText: '16 pages pinned' }).waitFor();
    const areas = page.locator('[data-testid^=area-0-]');
    assert.equal(await areas.count(), 1);
    // One call back (the arrow key): not mapped yet.
    await page.keyboard.press('ArrowLeft');
    await position.filter({ hasText: `call ${map - 1} of` }).waitFor();
    await page.getByTestId('pinned').filter({ hasText: 'Nothing pinned.' }).waitFor();
    assert.equal(await areas.count(), 0);
  });

  it('shows the events up to the call, the DMA with its cause, and takes the screenshot', async () => {
    // The call after the first DMA's command store: the DMA has happened.
    const dma = record.events.find((e) => e.kind === 'dma')!;
    const after = record.calls.findIndex((c) => c.line > dma.seq) + 1;
    await page
      .locator('ol.calls button.call')
      .nth(after - 1)
      .click();
    await page
      .getByTestId('step-position')
      .filter({ hasText: `call ${after} of` })
      .waitFor();
    const shown = page.locator('[data-kind=dma]');
    await shown.first().waitFor();
    assert.equal(await shown.count(), 1);
    assert.match(await text(shown.getByTestId('cause')), /caused by #\d+ .*BAR0\+0x98/);
    await page.screenshot({ path: join(shotsDir, 'inspector-replay.png'), fullPage: true });
    // The last step: every file closed.
    await page.getByTestId('step-last').click();
    await page.getByTestId('graph').filter({ hasText: 'No /dev/iommu is open.' }).waitFor();
    replay.kill('SIGINT');
    const code = await new Promise((done) => replay.on('exit', done));
    assert.equal(code, 0, err.text);
  });
});
