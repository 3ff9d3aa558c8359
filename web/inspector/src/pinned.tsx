/** Pinned user pages: the frames standing for them and how many times each is pinned. */
import type { InspectorState } from '../../../src/inspector/state-types.ts';
import { big, hex, size } from './hex.ts';

/** More rows than a person reads; the totals above stay exact. */
const MAX_ROWS = 200;

export function Pinned({ state }: { readonly state: InspectorState }) {
  const p = state.pinned;
  const rows = p.mms.flatMap((mm) => mm.extents.map((e) => ({ mm: mm.mm, ...e })));
  const omitted = p.mms.reduce((n, mm) => n + mm.omitted, 0) + Math.max(0, rows.length - MAX_ROWS);
  return (
    <section class="panel" data-testid="pinned">
      <h2>Pinned pages</h2>
      <p data-testid="pinned-totals">
        <b>{big(p.pinnedPages).toString()}</b> pages pinned ({size(big(p.pinnedPages) * 4096n)}),{' '}
        <b>{big(p.pins).toString()}</b> pins, <b>{big(p.frames).toString()}</b> frames,{' '}
        {big(p.hugeBlocks).toString()} huge blocks; page-table frames{' '}
        {big(state.frames.pageTable).toString()}
        {state.accounting.user.map((u) => (
          <span key={u.uid} class="muted">
            {' '}
            · uid {u.uid} locked {size(big(u.bytes))}
          </span>
        ))}
      </p>
      {rows.length === 0 ? (
        <p class="empty">Nothing pinned.</p>
      ) : (
        <table class="small">
          <thead>
            <tr>
              <th>mm</th>
              <th>VA</th>
              <th>PA</th>
              <th>pages</th>
              <th>pins each</th>
            </tr>
          </thead>
          <tbody>
            {rows.slice(0, MAX_ROWS).map((r) => {
              const n = big(r.npages);
              return (
                <tr key={`${r.mm}-${r.va}`}>
                  <td class="muted">{r.mm}</td>
                  <td class="mono">
                    {r.va}
                    {n > 1n ? `–${hex(big(r.va) + n * 4096n - 1n)}` : ''}
                  </td>
                  <td class="mono">{r.pa}</td>
                  <td>
                    {n.toString()}
                    {r.huge ? ' (huge)' : ''}
                  </td>
                  <td>×{r.pins}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {omitted > 0 && <p class="muted">… and {omitted} more runs</p>}
    </section>
  );
}
