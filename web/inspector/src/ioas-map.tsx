/**
 * One IOAS as an address map: its allowed ranges, reserved ranges and areas (mappings) on one
 * axis, from the whole 64-bit space down to a single page. The wheel zooms at the pointer,
 * the buttons zoom and pan, and a click on an area zooms to it and walks its first IOVA.
 */
import { useState } from 'preact/hooks';
import type { InspectorState, IoasState } from '../../../src/inspector/state-types.ts';
import { big, hex, PAGE, size, U64_END } from './hex.ts';

const W = 1000;
const ROW_H = 22;
const ROWS = ['allowed', 'reserved', 'areas'] as const;
const LABEL_W = 70;
const AXIS_H = 34;
const PLOT = W - LABEL_W;

interface View {
  readonly start: bigint;
  /** Exclusive; at most 2^64. */
  readonly end: bigint;
}

const FULL: View = { start: 0n, end: U64_END };

/** A view of `span` bytes around `center`, inside the 64-bit space and at least a page wide. */
function around(center: bigint, span: bigint): View {
  const s = span < PAGE ? PAGE : span > U64_END ? U64_END : span;
  let start = center - s / 2n;
  if (start < 0n) start = 0n;
  if (start + s > U64_END) start = U64_END - s;
  // Align to pages once zoomed in, so page edges fall on whole pixels.
  if (s <= 64n * PAGE) start -= start % PAGE;
  return { start, end: start + s };
}

function xOf(view: View, addr: bigint): number {
  const span = view.end - view.start;
  if (addr <= view.start) return LABEL_W;
  if (addr >= view.end) return W;
  return LABEL_W + Number(((addr - view.start) * BigInt(PLOT * 64)) / span) / 64;
}

interface Bar {
  readonly row: (typeof ROWS)[number];
  readonly start: bigint;
  /** Exclusive. */
  readonly end: bigint;
  readonly label: string;
  readonly cls: string;
  readonly onClick?: () => void;
  readonly testid?: string;
}

export interface IoasMapProps {
  readonly state: InspectorState;
  readonly ioas: IoasState;
  readonly context: number;
  /** Walk this IOVA (through the IOAS's first domain). */
  readonly onWalk: (domain: number, iova: string) => void;
}

export function IoasMap({ state, ioas, context, onWalk }: IoasMapProps) {
  const [view, setView] = useState<View>(FULL);
  const span = view.end - view.start;
  const bars: Bar[] = [];
  for (const r of ioas.allowed) {
    bars.push({
      row: 'allowed',
      start: big(r.start),
      end: big(r.last) + 1n,
      label: 'allowed',
      cls: 'allowed',
    });
  }
  for (const r of ioas.reserved) {
    bars.push({
      row: 'reserved',
      start: big(r.start),
      end: big(r.last) + 1n,
      label: r.owner,
      cls: 'reserved',
    });
  }
  for (const a of ioas.areas) {
    const start = big(a.iova);
    const end = big(a.last) + 1n;
    bars.push({
      row: 'areas',
      start,
      end,
      label: `${a.prot} ${size(end - start)}${a.va === null ? '' : ` VA ${a.va}`}`,
      cls: a.filled ? 'area' : 'area unfilled',
      testid: `area-${context}-${ioas.id}-${a.iova}`,
      onClick: () => {
        setView(around(start + (end - start) / 2n, ((end - start) * 5n) / 4n));
        const domain = ioas.domains[0];
        if (domain !== undefined) onWalk(domain, a.iova);
      },
    });
  }
  const zoom = (factor: bigint, inward: boolean, center = view.start + span / 2n) => {
    const next = inward ? span / factor : span * factor;
    // Keep the point under the pointer where it is.
    const frac = span === 0n ? 0n : ((center - view.start) * 1024n) / span;
    const nspan = next < PAGE ? PAGE : next > U64_END ? U64_END : next;
    let start = center - (nspan * frac) / 1024n;
    if (start < 0n) start = 0n;
    if (start + nspan > U64_END) start = U64_END - nspan;
    setView({ start, end: start + nspan });
  };
  const pan = (dir: bigint) => setView(around(view.start + span / 2n + (dir * span) / 2n, span));
  const onWheel = (e: WheelEvent) => {
    e.preventDefault();
    const svg = e.currentTarget as SVGSVGElement;
    const rect = svg.getBoundingClientRect();
    const px = ((e.clientX - rect.left) / rect.width) * W - LABEL_W;
    const at = view.start + (span * BigInt(Math.max(0, Math.round(px * 64)))) / BigInt(PLOT * 64);
    zoom(2n, e.deltaY < 0, at);
  };
  const ticks = [0, 1, 2, 3, 4].map((i) => view.start + (span * BigInt(i)) / 4n);
  const pages = span <= 64n * PAGE ? Number(span / PAGE) : 0;
  const domains = ioas.domains
    .map((id) => state.domains.find((d) => d.id === id))
    .filter((d) => d !== undefined);
  return (
    <div class="ioas" data-testid={`ioas-${context}-${ioas.id}`}>
      <div class="ioas-head">
        <b>
          IOAS {ioas.id} (context #{context})
        </b>
        <span class="muted">
          {ioas.areas.length} areas, {ioas.reserved.length} reserved, {ioas.allowed.length || 'all'}{' '}
          allowed; alignment {size(big(ioas.iovaAlignment))}; domains{' '}
          {domains.length === 0 ? 'none' : domains.map((d) => `${d.id} (${d.kind})`).join(', ')}
        </span>
      </div>
      <div class="zoom">
        <button type="button" onClick={() => setView(FULL)} title="the whole 64-bit space">
          2^64
        </button>
        <button type="button" onClick={() => zoom(16n, false)} title="zoom out 16x">
          −
        </button>
        <button
          type="button"
          onClick={() => zoom(16n, true)}
          data-testid="zoom-in"
          title="zoom in 16x"
        >
          +
        </button>
        <button type="button" onClick={() => pan(-1n)} title="pan left">
          ◀
        </button>
        <button type="button" onClick={() => pan(1n)} title="pan right">
          ▶
        </button>
        <span class="muted" data-testid="view-range">
          {hex(view.start)} – {hex(view.end - 1n)} ({size(span)})
        </span>
      </div>
      <svg
        class="map"
        viewBox={`0 0 ${W} ${ROWS.length * ROW_H + AXIS_H}`}
        onWheel={onWheel}
        role="img"
        aria-label={`address map of IOAS ${ioas.id}`}
      >
        {ROWS.map((row, i) => (
          <g key={row}>
            <rect x={LABEL_W} y={i * ROW_H + 2} width={PLOT} height={ROW_H - 4} class="lane" />
            <text x={4} y={i * ROW_H + 15} class="lane-label">
              {row}
            </text>
          </g>
        ))}
        {ioas.allowed.length === 0 && (
          <rect x={LABEL_W} y={2} width={PLOT} height={ROW_H - 4} class="lane-fill allowed faint">
            <title>no IOMMU_IOAS_ALLOW_IOVAS: every IOVA is allowed</title>
          </rect>
        )}
        {Array.from({ length: pages + 1 }, (_, i) => {
          const x = xOf(view, view.start + BigInt(i) * PAGE);
          return (
            <line key={`p${i}`} x1={x} x2={x} y1={0} y2={ROWS.length * ROW_H} class="page-line" />
          );
        })}
        {bars
          .filter((b) => b.end > view.start && b.start < view.end)
          .map((b) => {
            const i = ROWS.indexOf(b.row);
            const x1 = xOf(view, b.start);
            const x2 = Math.max(xOf(view, b.end), x1 + 3);
            return (
              <g
                key={`${b.row}-${b.start}`}
                class={`bar ${b.cls}${b.onClick ? ' clickable' : ''}`}
                {...(b.onClick === undefined
                  ? {}
                  : {
                      role: 'button',
                      tabIndex: 0,
                      onClick: b.onClick,
                      onKeyDown: (e: KeyboardEvent) => {
                        if (e.key === 'Enter') b.onClick?.();
                      },
                    })}
                data-testid={b.testid}
              >
                <rect
                  class={`bar-rect ${b.cls}`}
                  x={x1}
                  y={i * ROW_H + 3}
                  width={x2 - x1}
                  height={ROW_H - 6}
                  rx="2"
                />
                <title>
                  {hex(b.start)} – {hex(b.end - 1n)} ({size(b.end - b.start)}): {b.label}
                </title>
                {x2 - x1 > 90 && (
                  <text x={x1 + 4} y={i * ROW_H + 15} class="bar-label">
                    {b.label}
                  </text>
                )}
              </g>
            );
          })}
        {ticks.map((t, i) => {
          const x = LABEL_W + (PLOT * i) / 4;
          return (
            <g key={`t${i}`}>
              <line
                x1={x}
                x2={x}
                y1={ROWS.length * ROW_H}
                y2={ROWS.length * ROW_H + 5}
                class="tick"
              />
              <text
                x={x}
                y={ROWS.length * ROW_H + 18}
                class="tick-label"
                text-anchor={i === 0 ? 'start' : i === 4 ? 'end' : 'middle'}
              >
                {hex(i === 4 ? view.end - 1n : t)}
              </text>
            </g>
          );
        })}
      </svg>
      <table class="small">
        <thead>
          <tr>
            <th>area IOVA</th>
            <th>last</th>
            <th>size</th>
            <th>prot</th>
            <th>user VA</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {ioas.areas.map((a) => (
            <tr key={a.iova}>
              <td class="mono">{a.iova}</td>
              <td class="mono">{a.last}</td>
              <td>{size(big(a.last) - big(a.iova) + 1n)}</td>
              <td class="mono">{a.prot}</td>
              <td class="mono">{a.va ?? '—'}</td>
              <td>
                <button
                  type="button"
                  onClick={() => {
                    const s = big(a.iova);
                    const e = big(a.last) + 1n;
                    setView(around(s + (e - s) / 2n, ((e - s) * 5n) / 4n));
                  }}
                >
                  zoom
                </button>
                {ioas.domains[0] !== undefined && (
                  <button type="button" onClick={() => onWalk(ioas.domains[0]!, a.iova)}>
                    walk
                  </button>
                )}
              </td>
            </tr>
          ))}
          {ioas.reserved.map((r) => (
            <tr key={`r${r.start}`} class="reserved-row">
              <td class="mono">{r.start}</td>
              <td class="mono">{r.last}</td>
              <td>{size(big(r.last) - big(r.start) + 1n)}</td>
              <td colSpan={3}>reserved: {r.owner}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function IoasMaps({
  state,
  onWalk,
}: {
  readonly state: InspectorState;
  readonly onWalk: (domain: number, iova: string) => void;
}) {
  const all = state.contexts.flatMap((ctx) => ctx.ioas.map((ioas) => ({ ctx: ctx.index, ioas })));
  return (
    <section class="panel" data-testid="ioas-maps">
      <h2>I/O address spaces</h2>
      <p class="hint">
        Zoom with the wheel or the buttons, from the whole 2^64 space down to a page; click an area
        to zoom to it and walk its first IOVA.
      </p>
      {all.length === 0 && <p class="empty">No IOAS.</p>}
      {all.map(({ ctx, ioas }) => (
        <IoasMap
          key={`${ctx}:${ioas.id}`}
          state={state}
          ioas={ioas}
          context={ctx}
          onWalk={onWalk}
        />
      ))}
    </section>
  );
}
