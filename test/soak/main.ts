/**
 * `npm run soak`: the full-size reliability runs, with their figures (docs/reliability.md).
 *
 *   npm run soak                    all three phases at full size
 *   npm run soak -- --only P        one phase: storm, kills, fuzz or protocol
 *   npm run soak -- --kills N       SIGKILLs of each storm (default 1,000; --clients N at once
 *                                   in the concurrent one, default 6)
 *   npm run soak -- --calls N       ioctl fuzzer calls (default 1,000,000; --seed N, default 13)
 *   npm run soak -- --runs N        protocol fuzzer runs (default 300, of up to 60 steps each)
 *
 * Phases: `storm`, clients killed at random moments while a bystander must be served throughout
 * (storm.ts); `kills`, one client at a time killed mid-call, each first smashing its own page
 * table, with everything checked after every kill (../reliability/storm.ts); `fuzz`, the seeded
 * ioctl fuzzer until N calls (../reliability/ioctl-fuzz.ts); `protocol`, the seeded protocol
 * fuzzer (../reliability/protocol-fuzz.ts). Exits 0 when no phase found anything, else 1.
 */
import { type FuzzResult, fuzz } from '../reliability/ioctl-fuzz.ts';
import { protocolFuzz } from '../reliability/protocol-fuzz.ts';
import { storm as killOneByOne } from '../reliability/storm.ts';
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

const onlyAt = process.argv.indexOf('--only');
const only = onlyAt < 0 ? undefined : process.argv[onlyAt + 1];
if (only !== undefined && !['storm', 'kills', 'fuzz', 'protocol'].includes(only)) {
  console.error('soak: --only takes storm, kills, fuzz or protocol');
  process.exit(2);
}
const kills = option('kills', 1000);
const problems: string[] = [];
const say = (line: string): void => console.log(`soak: ${line}`);
const seconds = (start: number): string => ((performance.now() - start) / 1000).toFixed(0);

if (only === undefined || only === 'storm') {
  const r = await storm({
    clients: option('clients', 6),
    kills,
    maxLifeMs: 2000,
    bystanderRounds: option('bystander-rounds', 20_000),
    progress: say,
  });
  say(
    `storm: ${r.kills} SIGKILLs, ${r.clientCalls} calls by the killed clients (counted per 100), ` +
      `${r.bystanderRounds} bystander rounds (${r.bystanderRounds * 4} calls) all served, ` +
      `${r.seconds.toFixed(0)} s, server peak RSS ${r.peakRssMiB} MiB`,
  );
  problems.push(...r.problems.map((p) => `storm: ${p}`));
}

if (only === undefined || only === 'kills') {
  const start = performance.now();
  const r = await killOneByOne({
    seed: option('seed', 13),
    kills,
    maxDelayMs: 200,
    onKill: (n) => {
      if ((n + 1) % 100 === 0) say(`kills: ${n + 1} killed and checked (${seconds(start)} s)`);
    },
  });
  say(
    `kills: ${r.kills} SIGKILLs one at a time, each checked; ${r.calls} calls served, ` +
      `${r.corruptions} page-table corruptions reported, ${seconds(start)} s`,
  );
  problems.push(...r.problems.map((p) => `kills: ${p}`));
}

if (only === undefined || only === 'fuzz') {
  const start = performance.now();
  const target = option('calls', 1_000_000);
  const length = 300;
  const results = new Map<string, number>();
  let calls = 0;
  let runs = 0;
  const seed = option('seed', 13);
  let found: string[] = [];
  // fast-check plays whole runs: enough of them to pass the target (a run makes ~100 calls).
  while (calls < target) {
    try {
      await fuzz({
        seed: seed + runs,
        runs: 100,
        length,
        checkEvery: 50,
        onRun: (r: FuzzResult) => {
          runs++;
          calls += r.calls;
          for (const [k, v] of r.results) results.set(k, (results.get(k) ?? 0) + v);
          if (found.length === 0) found = r.problems;
        },
      });
    } catch {
      // The first failing run's problems (before fast-check shrank it), with the seed to replay.
      problems.push(...found.map((p) => `fuzz (seed ${seed + runs}): ${p}`));
      break;
    }
    say(`fuzz: ${calls} calls in ${runs} runs (${seconds(start)} s)`);
  }
  const top = [...results.entries()].sort((a, b) => b[1] - a[1]);
  say(
    `fuzz: ${calls} calls in ${runs} runs of up to ${length} steps, ${seconds(start)} s; ` +
      `results ${top.map(([k, v]) => `${k} ${v}`).join(', ')}`,
  );
}

if (only === undefined || only === 'protocol') {
  const start = performance.now();
  const runs = option('runs', 300);
  try {
    const { frames } = await protocolFuzz({ seed: option('seed', 13), runs, length: 60 });
    say(
      `protocol: ${runs} runs, ${frames} frames, each run by a new client process; ${seconds(start)} s`,
    );
  } catch (err) {
    problems.push(`protocol: ${String(err).split('\n').slice(0, 8).join('\n')}`);
  }
}

for (const p of problems) say(`PROBLEM ${p}`);
process.exit(problems.length === 0 ? 0 : 1);
