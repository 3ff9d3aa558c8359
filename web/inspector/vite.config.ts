/**
 * The inspector's page: `npm run build:web` bundles web/inspector into dist/web/inspector, which the
 * emulator serves (src/inspector/server.ts) and the package ships. Preact's JSX through Vite's
 * own transformer (no plugin); relative asset URLs, so the page works under any path.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../../dist/web/inspector', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    reportCompressedSize: false,
  },
});
