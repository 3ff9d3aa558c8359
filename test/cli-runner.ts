/**
 * The CLI as the tests start it: src/cli/main.ts bundled once with esbuild into build/test-cli/,
 * run by plain node. Starting it costs about a third of `node --import tsx src/cli/main.ts` (no
 * loader compiling every module at each start), and it is JavaScript, as the user runs it
 * (bin/iommufd-emu.js on dist/).
 *
 * The bundle is named by a hash of the files under src/ (path, size, mtime) and of esbuild's
 * version, so a changed source is never run stale, and is written under a temporary name and
 * renamed, so test files building it at once share one result. It sits inside the checkout:
 * the CLI finds the package root (native/, package.json, dist/web, examples/) upward from its own
 * module, and its npm dependencies (left out of the bundle) in node_modules.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, version as esbuildVersion } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SRC = path.join(ROOT, 'src');
const ENTRY = path.join(SRC, 'cli', 'main.ts');
const OUT_DIR = path.join(ROOT, 'build', 'test-cli');

/**
 * A hash of what the bundle is made of: every file under src/ by path, size and mtime (the tests
 * beside the sources are not in it).
 */
function sourcesKey(): string {
  const hash = createHash('sha256');
  hash.update(`esbuild ${esbuildVersion}\n`);
  const files = fs
    .readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .map((rel) => path.join(SRC, rel))
    .sort();
  for (const file of files) {
    const st = fs.statSync(file);
    if (st.isFile() && !file.endsWith('.test.ts'))
      hash.update(`${file} ${st.size} ${st.mtimeMs}\n`);
  }
  return hash.digest('hex').slice(0, 16);
}

let bundled: Promise<string> | undefined;

async function bundle(): Promise<string> {
  const out = path.join(OUT_DIR, `cli-${sourcesKey()}.mjs`);
  if (fs.existsSync(out)) return out;
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const scratch = `${out}.${process.pid}.tmp`;
  await build({
    entryPoints: [ENTRY],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile: scratch,
    logLevel: 'error',
  });
  fs.renameSync(scratch, out);
  pruneOldBundles(out);
  return out;
}

/**
 * Bundles of older sources, an hour after they were made: a test file started before the change
 * may still be spawning its bundle, so younger ones stay.
 */
function pruneOldBundles(keep: string): void {
  const hourAgo = Date.now() - 3600_000;
  for (const name of fs.readdirSync(OUT_DIR)) {
    const file = path.join(OUT_DIR, name);
    if (file !== keep && fs.statSync(file).mtimeMs < hourAgo) fs.rmSync(file, { force: true });
  }
}

/**
 * The bundled CLI, build/test-cli/cli-HASH.mjs, for `node` (process.execPath) to run with the
 * CLI's arguments after it. Bundled at the first call of a test file, reused afterwards.
 */
export function cliScript(): Promise<string> {
  bundled ??= bundle();
  return bundled;
}

/** The argv that starts the CLI: `[node, build/test-cli/cli-HASH.mjs]`; append its arguments. */
export async function cliArgv(): Promise<[string, string]> {
  return [process.execPath, await cliScript()];
}
