/**
 * npm run bench [-- --quick] [-- --json FILE] [-- --suite NAME...]: every performance figure of the emulator, each a
 * ratio or rate measured side by side in this one process (docs/performance.md). Prints a table;
 * the exit status is 0 whether or not targets are met (nothing here is a test).
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { dmaFigures } from './dma.ts';
import { failNthFigures } from './fail-nth.ts';
import { collectGarbage, type Figure, FULL, formatTable, meets, QUICK } from './harness.ts';
import { ioptFigures } from './iopt.ts';
import { shimFigures } from './shim.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    // Only these suites (repeatable): for work on one figure; a full report runs them all.
    suite: { type: 'string', multiple: true },
  },
});
const budget = values.quick ? QUICK : FULL;
if ((globalThis as { gc?: unknown }).gc === undefined) {
  console.error('note: run with node --expose-gc (npm run bench does) for a stable bytes_per_area');
}

const started = performance.now();
const figures: Figure[] = [];
// The io_pagetable suite builds a million areas: it runs last, so that its heap does not slow
// the GC of the others, and each suite starts from a collected heap.
const SUITES = new Map([
  ['shim', shimFigures],
  ['fail-nth', failNthFigures],
  ['dma', dmaFigures],
  ['iopt', ioptFigures],
]);
const chosen = values.suite ?? [...SUITES.keys()];
for (const name of chosen) {
  const suite = SUITES.get(name);
  if (suite === undefined) {
    console.error(`unknown suite ${name}; the suites are ${[...SUITES.keys()].join(', ')}`);
    process.exit(2);
  }
  collectGarbage();
  figures.push(...(await suite(budget)));
}
const seconds = (performance.now() - started) / 1000;
console.log(formatTable(figures));
console.log(`\n${budget.quick ? 'quick' : 'full'} run, ${seconds.toFixed(1)} s`);

if (values.json !== undefined) {
  const out = {
    mode: budget.quick ? 'quick' : 'full',
    node: process.version,
    seconds,
    figures: figures.map((f) => ({ ...f, met: meets(f) })),
  };
  writeFileSync(values.json, `${JSON.stringify(out, null, 2)}\n`);
}
