/**
 * The page-table walk of one IOVA through one domain, level by level as the IOMMU (or, for a
 * no-IOMMU domain, iommufd's software table) reads it: which bits of the IOVA index each table,
 * the entry read and what it points to, down to the physical page and the user page it pins.
 */
import { useEffect, useState } from 'preact/hooks';
import type { InspectorState, WalkState } from '../../../src/inspector/state-types.ts';
import { fetchWalk } from './api.ts';
import { big, hex, parseU64, size } from './hex.ts';

export interface WalkTarget {
  readonly domain: number;
  readonly iova: string;
}

/** The IOVA bits that index the table at `level` (9 per level above the 12-bit page offset). */
function bitsOf(level: number): string {
  const lo = 12 + 9 * level;
  return `${lo + 8}:${lo}`;
}

function LevelSplit({ walk }: { readonly walk: WalkState }) {
  const iova = big(walk.iova);
  const parts = [];
  for (let level = walk.levels - 1; level >= 0; level--) {
    const index = Number((iova >> BigInt(12 + 9 * level)) & 511n);
    parts.push(
      <span
        key={level}
        class={`chip l${level}`}
        title={`bits ${bitsOf(level)}: index in the level ${level} table`}
      >
        L{level}: {index}
      </span>,
    );
  }
  parts.push(
    <span key="off" class="chip off" title="bits 11:0: offset in the 4 KiB page">
      offset {hex(iova & 0xfffn)}
    </span>,
  );
  return <div class="split">{parts}</div>;
}

function pteMeaning(s: WalkState['steps'][number]): string {
  if (!s.present) return 'empty: not present';
  const perm = `${s.read ? 'R' : '-'}${s.write ? 'W' : '-'}`;
  if (s.leaf) return `leaf ${perm}: page at PA ${s.next}`;
  return `table pointer: next table at PA ${s.next}`;
}

export function Walk({
  state,
  target,
  onTarget,
}: {
  readonly state: InspectorState;
  readonly target: WalkTarget | undefined;
  readonly onTarget: (t: WalkTarget) => void;
}) {
  const [text, setText] = useState(target?.iova ?? '');
  const [walk, setWalk] = useState<WalkState | string | undefined>(undefined);
  const domains = state.domains;
  const domain = target?.domain ?? domains[0]?.id;

  useEffect(() => {
    if (target !== undefined) setText(target.iova);
  }, [target?.iova, target?.domain]);

  // Walked again whenever the state changes: a map or unmap shows at once.
  useEffect(() => {
    if (target === undefined || !domains.some((d) => d.id === target.domain)) {
      setWalk(undefined);
      return;
    }
    let stale = false;
    fetchWalk(target.domain, target.iova).then((w) => {
      if (!stale) setWalk(w);
    });
    return () => {
      stale = true;
    };
  }, [target?.domain, target?.iova, state.seq]);

  const submit = (e: Event) => {
    e.preventDefault();
    const iova = parseU64(text);
    if (iova === undefined || domain === undefined) {
      setWalk('an IOVA is a 64-bit number: 0x7f0000000000 or decimal');
      return;
    }
    onTarget({ domain, iova: hex(iova) });
  };

  const owner = (id: number): string => {
    for (const ctx of state.contexts) {
      for (const ioas of ctx.ioas)
        if (ioas.domains.includes(id)) return `IOAS ${ioas.id} of context #${ctx.index}`;
    }
    return 'no IOAS';
  };

  return (
    <section class="panel" data-testid="walk">
      <h2>Page-table walk</h2>
      {domains.length === 0 ? (
        <p class="empty">No domain: attach a device to an IOAS first.</p>
      ) : (
        <form onSubmit={submit} class="walk-form">
          <label>
            domain{' '}
            <select
              value={domain}
              data-testid="walk-domain"
              onChange={(e) => {
                const id = Number((e.currentTarget as HTMLSelectElement).value);
                const iova = parseU64(text);
                if (iova !== undefined) onTarget({ domain: id, iova: hex(iova) });
                else onTarget({ domain: id, iova: target?.iova ?? '0x0' });
              }}
            >
              {domains.map((d) => (
                <option key={d.id} value={d.id}>
                  {d.id}: {d.kind === 'noiommu' ? 'no-IOMMU software table' : d.unit}, {d.levels}{' '}
                  levels ({owner(d.id)})
                </option>
              ))}
            </select>
          </label>
          <label>
            IOVA{' '}
            <input
              data-testid="walk-iova"
              class="mono"
              value={text}
              placeholder="0x7f0000000000"
              onInput={(e) => setText((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <button type="submit" data-testid="walk-go">
            walk
          </button>
        </form>
      )}
      {typeof walk === 'string' && <p class="error">{walk}</p>}
      {typeof walk === 'object' && (
        <div data-testid="walk-result">
          <LevelSplit walk={walk} />
          <table class="small">
            <thead>
              <tr>
                <th>level</th>
                <th>IOVA bits</th>
                <th>table PA</th>
                <th>index</th>
                <th>entry PA</th>
                <th>entry</th>
                <th>meaning</th>
              </tr>
            </thead>
            <tbody>
              {walk.steps.map((s) => (
                <tr key={s.level} class={s.present ? '' : 'missing'}>
                  <td>
                    <span class={`chip l${s.level}`}>L{s.level}</span>{' '}
                    {size(1n << BigInt(12 + 9 * s.level))} per entry
                  </td>
                  <td class="mono">{bitsOf(s.level)}</td>
                  <td class="mono">{s.tablePa}</td>
                  <td class="mono">{s.index}</td>
                  <td class="mono">{s.ptePa}</td>
                  <td class="mono">{s.pte}</td>
                  <td>{pteMeaning(s)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p class="walk-outcome" data-testid="walk-outcome">
            {walk.result.kind === 'leaf' && (
              <>
                IOVA <b class="mono">{walk.iova}</b> → PA <b class="mono">{walk.result.pa}</b> in a{' '}
                {size(big(walk.result.pageSize))} page,{' '}
                {walk.result.read ? 'readable' : 'not readable'},{' '}
                {walk.result.write ? 'writable' : 'read-only'}
                {walk.frame !== null && (
                  <>
                    {' '}
                    — the pinned page at VA <span class="mono">{walk.frame.va}</span> of{' '}
                    {walk.frame.mm} ({walk.frame.pins} {walk.frame.pins === 1 ? 'pin' : 'pins'})
                  </>
                )}
              </>
            )}
            {walk.result.kind === 'not-present' && (
              <>
                IOVA <b class="mono">{walk.iova}</b> is not mapped: the level {walk.result.level}{' '}
                entry is empty. A DMA there faults.
              </>
            )}
            {walk.result.kind === 'outside' && (
              <>
                IOVA <b class="mono">{walk.iova}</b> is outside the domain's aperture.
              </>
            )}
          </p>
        </div>
      )}
    </section>
  );
}
