/**
 * `npm run soak`: the full-size reliability runs, with their figures (docs/reliability.md).
 *
 *   npm run soak                  1,000 SIGKILLs of clients making real and random calls
 *   npm run soak -- --kills N     another number of kills (--clients N: at once, default 6)
 *
 * Exits 0 when nothing was left behind and the bystander was served throughout, else 1.
 */
import { storm } from './storm.ts';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`soak: --${name} takes a positive integer`);
    process.exit(2);
  }
  return v;
}

const kills = option('kills', 1000);
const clients = option('clients', 6);
const r = await storm({
  clients,
  kills,
  maxLifeMs: 2000,
  bystanderRounds: option('bystander-rounds', 20_000),
  progress: (line) => console.log(`soak: ${line}`),
});
console.log(
  `soak: ${r.kills} SIGKILLs, ${r.clientCalls} calls by the killed clients (counted per 100), ` +
    `${r.bystanderRounds} bystander rounds (${r.bystanderRounds * 4} calls) all served, ` +
    `${r.seconds.toFixed(0)} s, server peak RSS ${r.peakRssMiB} MiB`,
);
for (const p of r.problems) console.log(`soak: PROBLEM ${p}`);
process.exit(r.problems.length === 0 ? 0 : 1);
