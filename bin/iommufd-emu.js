#!/usr/bin/env node
// The `iommufd-emu` command: runs the compiled CLI (dist/cli/main.js, made by `npm run build`)
// when it exists, else the TypeScript source through tsx (a devDependency: a checkout after
// `npm install`). In a checkout where the sources changed after the last build, the sources win,
// so a stale dist/ never shadows them.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'cli', 'main.js');
const source = join(root, 'src', 'cli', 'main.ts');

function haveTsx() {
  try {
    import.meta.resolve('tsx/esm/api');
    return true;
  } catch {
    return false;
  }
}

/** The newest modification time of the .ts files under dir. */
function newest(dir) {
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) t = Math.max(t, newest(p));
    else if (entry.name.endsWith('.ts')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

const tsx = existsSync(source) && haveTsx();
const stale =
  tsx && existsSync(compiled) && newest(join(root, 'src')) > statSync(compiled).mtimeMs;

if (existsSync(compiled) && !stale) {
  await import(pathToFileURL(compiled).href);
} else if (tsx) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(source).href);
} else {
  process.stderr.write(
    `iommufd-emu: neither ${compiled} nor tsx is there: run \`npm install\` (and \`npm run build\`) in ${root}\n`,
  );
  process.exit(2);
}
