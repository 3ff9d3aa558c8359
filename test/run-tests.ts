/**
 * `npm test`: every `*.test.ts` under src/ and test/, compiled by esbuild in one build into
 * build/test-bundles/ (one bundle per test file, the modules they share split into common chunks),
 * then run by node's test runner, two files at a time.
 *
 * Run through tsx, each test file paid about 0.6 s of CPU for the loader (resolving and loading
 * every module through its hooks) before its first test, which over some seventy files was a
 * third of the suite's CPU. The bundles are the same code (tsx compiles with esbuild too), loaded
 * by plain node. Each module keeps its own `import.meta.url` (the source file's, written into the
 * bundle), so paths found relative to a source file still resolve as they do from the sources.
 * One file still runs from its source: `node --import tsx --test FILE`.
 *
 *   node --import tsx test/run-tests.ts [node --test options...]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'build', 'test-bundles');

/** Every test file, as `npm test` always found them. */
function testFiles(): string[] {
  const found: string[] = [];
  for (const dir of ['src', 'test']) {
    for (const rel of fs.readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
      if (rel.endsWith('.test.ts')) found.push(path.join(ROOT, dir, rel));
    }
  }
  return found.sort();
}

/** Each module of the checkout keeps its own import.meta.url, not the bundle's. */
const ownImportMetaUrl: Plugin = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.tsx?$/ }, async (args) => {
      if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      const text = await fs.promises.readFile(args.path, 'utf8');
      return {
        contents: text.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)),
        loader: args.path.endsWith('.tsx') ? 'tsx' : 'ts',
      };
    });
  },
};

async function bundleTests(files: readonly string[]): Promise<string[]> {
  fs.rmSync(OUT, { recursive: true, force: true });
  await build({
    entryPoints: [...files],
    outdir: OUT,
    outbase: ROOT,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    logLevel: 'error',
    plugins: [ownImportMetaUrl],
  });
  return files.map((f) => path.join(OUT, path.relative(ROOT, f)).replace(/\.ts$/, '.mjs'));
}

const bundles = await bundleTests(testFiles());
const run = spawnSync(
  process.execPath,
  ['--enable-source-maps', '--test', '--test-concurrency=2', ...process.argv.slice(2), ...bundles],
  { cwd: ROOT, stdio: 'inherit' },
);
process.exitCode = run.status ?? 1;
