/**
 * The import rules (.dependency-cruiser.cjs, drawn in docs/architecture.md) as a test: layers
 * import downward only, and no modules import each other at run time in a cycle. Layers are
 * checked on the TypeScript sources (every import, types included); cycles on the JavaScript
 * they compile to, which holds exactly the run-time imports. A planted violation of each kind
 * proves the rules bite.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = path.join(
  ROOT,
  'node_modules',
  'dependency-cruiser',
  'bin',
  'dependency-cruise.mjs',
);

interface Violation {
  readonly from: string;
  readonly to: string;
  readonly rule: { readonly name: string };
  readonly cycle?: readonly { readonly name: string }[];
}

/** Runs dependency-cruiser over `src` in `cwd`: the violations it reports. */
function cruise(cwd: string): Violation[] {
  const r = spawnSync(
    process.execPath,
    [DEPCRUISE, '--config', CONFIG, '--output-type', 'json', 'src'],
    { cwd, encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  assert.ok(r.stdout.startsWith('{'), `dependency-cruiser failed:\n${r.stdout}${r.stderr}`);
  const result = JSON.parse(r.stdout) as { summary: { violations: Violation[] } };
  return result.summary.violations;
}

/**
 * A copy of `root/src` that dependency-cruiser's swc reader can walk: it stops at a `using`
 * declaration (explicit resource management, which its AST visitor does not know yet), so each
 * `using x =` is read as `const x =`. Imports are left as written, so the check sees every one.
 */
function sourcesForSwc(root: string, copy: string): string {
  for (const entry of fs.readdirSync(path.join(root, 'src'), { recursive: true })) {
    const rel = path.join('src', String(entry));
    const from = path.join(root, rel);
    if (!fs.statSync(from).isFile() || !rel.endsWith('.ts')) continue;
    const text = fs.readFileSync(from, 'utf8').replace(/^(\s*)using (\w+) =/gm, '$1const $2 =');
    fs.mkdirSync(path.dirname(path.join(copy, rel)), { recursive: true });
    fs.writeFileSync(path.join(copy, rel), text);
  }
  return copy;
}

/**
 * The JavaScript of `root/src` in `out/src`, as tsc emits it under this project's tsconfig: with
 * `verbatimModuleSyntax` an import stays unless it says `type`, so what remains is exactly what
 * runs; relative `.ts` imports become `.js` (rewriteRelativeImportExtensions). esbuild strips
 * the types file by file, in a fraction of what a whole tsc emit costs.
 */
async function emitJavaScript(root: string, out: string): Promise<string> {
  const rewrite = /((?:\bfrom|\bimport)\s*\(?\s*)"(\.{1,2}\/[^"]*)\.ts"/g;
  for (const entry of fs.readdirSync(path.join(root, 'src'), { recursive: true })) {
    const rel = path.join('src', String(entry));
    if (!rel.endsWith('.ts')) continue;
    const js = await transform(fs.readFileSync(path.join(root, rel), 'utf8'), {
      loader: 'ts',
      format: 'esm',
      target: 'es2023',
      tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true } },
    });
    const to = path.join(out, rel.replace(/\.ts$/, '.js'));
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.writeFileSync(to, js.code.replace(rewrite, '$1"$2.js"'));
  }
  return out;
}

function describeViolation(v: Violation): string {
  const via = v.cycle === undefined ? '' : ` (cycle: ${v.cycle.map((c) => c.name).join(' -> ')})`;
  return `${v.rule.name}: ${v.from} -> ${v.to}${via}`;
}

describe('import rules', () => {
  let dir: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emu-layers-'));
  });

  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the sources import downward only', () => {
    assert.deepEqual(
      cruise(sourcesForSwc(ROOT, path.join(dir, 'sources'))).map(describeViolation),
      [],
    );
  });

  test('no run-time import cycle', async () => {
    const out = await emitJavaScript(ROOT, path.join(dir, 'emitted'));
    assert.deepEqual(cruise(out).map(describeViolation), []);
  });

  test('an upward import and a run-time cycle are caught', () => {
    const planted = path.join(dir, 'planted');
    const write = (file: string, text: string): void => {
      fs.mkdirSync(path.dirname(path.join(planted, file)), { recursive: true });
      fs.writeFileSync(path.join(planted, file), text);
    };
    write('src/vfio/driver.ts', 'export const x = 1;\n');
    write('src/host/core.ts', "import { x } from '../vfio/driver.ts';\nexport const y = x;\n");
    write('src/iommufd/a.js', "import { b } from './b.js';\nexport const a = () => b;\n");
    write('src/iommufd/b.js', "import { a } from './a.js';\nexport const b = () => a;\n");
    const names = cruise(planted).map((v) => `${v.rule.name} ${v.from}`);
    assert.ok(names.includes('no-upward-from-kernel-core src/host/core.ts'), names.join('\n'));
    assert.ok(
      names.some((n) => /^no-circular src\/iommufd\/[ab]\.js$/.test(n)),
      names.join('\n'),
    );
  });
});
