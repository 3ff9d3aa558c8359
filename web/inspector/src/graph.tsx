/**
 * The object graph: for each open /dev/iommu (context), its objects with their two refcounts in
 * columns (devices, page tables, address spaces), the VFIO devices bound through it on the left
 * and the machine domains on the right; an arrow for every reference one holds on another.
 */
import type {
  ContextState,
  DeviceState,
  DomainState,
  InspectorState,
  NodeKey,
} from '../../../src/inspector/state-types.ts';
import { big, size } from './hex.ts';

const NODE_W = 164;
const NODE_H = 58;
const COL_GAP = 46;
const ROW_GAP = 14;
const PAD = 14;
const HEADER = 56;

interface Box {
  readonly key: NodeKey;
  readonly col: number;
  readonly title: string;
  readonly lines: readonly string[];
  readonly tone: 'vfio' | 'unsafe' | 'object' | 'domain' | 'noiommu-domain' | 'unpublished';
  readonly testid: string;
}

interface Edge {
  readonly from: NodeKey;
  readonly to: NodeKey;
  readonly label: string;
}

const COLUMN_OF: Readonly<Record<string, number>> = {
  device: 1,
  selftest: 1,
  'hwpt-paging': 2,
  'hwpt-nested': 2,
  viommu: 2,
  vdevice: 2,
  ioas: 3,
  access: 3,
  fault: 3,
  veventq: 3,
  'hw-queue': 3,
};

const COLUMN_TITLES = ['VFIO device', 'DEVICE', 'HWPT', 'IOAS', 'domain (page table)'];

function deviceBox(d: DeviceState): Box {
  return {
    key: `dev:${d.bdf}`,
    col: 0,
    title: d.vfio?.replace('/dev/vfio/devices/', '') ?? d.bdf,
    lines: [d.bdf, d.unsafe ? 'UNSAFE: no IOMMU' : `${d.iommu} group ${d.group}`],
    tone: d.unsafe ? 'unsafe' : 'vfio',
    testid: `graph-vfio-${d.bdf}`,
  };
}

function domainBox(d: DomainState): Box {
  return {
    key: d.key,
    col: 4,
    title: `domain ${d.id}`,
    lines: [
      d.kind === 'noiommu' ? `no-IOMMU, ${d.levels} levels` : `${d.unit}, ${d.levels} levels`,
      `${size(big(d.mappedBytes))} mapped, ${big(d.tablePages)} table pages`,
    ],
    tone: d.kind === 'noiommu' ? 'noiommu-domain' : 'domain',
    testid: `graph-domain-${d.id}`,
  };
}

interface Laid {
  readonly boxes: readonly (Box & { readonly x: number; readonly y: number })[];
  readonly edges: readonly Edge[];
  readonly height: number;
  readonly title: string;
  readonly testid: string;
}

function layoutContext(state: InspectorState, ctx: ContextState): Laid {
  const boxes: Box[] = [];
  const edges: Edge[] = [];
  for (const d of state.devices) {
    if (d.bound?.context !== ctx.index) continue;
    boxes.push(deviceBox(d));
    edges.push({ from: `dev:${d.bdf}`, to: `obj:${ctx.index}:${d.bound.devid}`, label: 'bound' });
  }
  const domains = new Set<NodeKey>();
  for (const o of ctx.objects) {
    boxes.push({
      key: o.key,
      col: COLUMN_OF[o.type] ?? 3,
      title: `${o.type.toUpperCase()} ${o.id}`,
      lines: [`users ${o.users} · short-term ${o.shorttermUsers}`, o.detail],
      tone: o.published ? 'object' : 'unpublished',
      testid: `graph-obj-${ctx.index}-${o.id}`,
    });
    for (const r of o.refs) {
      edges.push({ from: o.key, to: r.to, label: r.label });
      if (r.to.startsWith('domain:')) domains.add(r.to);
    }
  }
  for (const d of state.domains) if (domains.has(d.key)) boxes.push(domainBox(d));
  const rows = [0, 0, 0, 0, 0];
  const placed = boxes.map((b) => {
    const row = rows[b.col]!++;
    return {
      ...b,
      x: PAD + b.col * (NODE_W + COL_GAP),
      y: HEADER + PAD + row * (NODE_H + ROW_GAP),
    };
  });
  const height = HEADER + 2 * PAD + Math.max(1, ...rows) * (NODE_H + ROW_GAP);
  return {
    boxes: placed,
    edges,
    height,
    title: `iommufd context #${ctx.index}: /dev/iommu open, ${ctx.fileRefs} file references, accounting ${ctx.accountMode}`,
    testid: `graph-ctx-${ctx.index}`,
  };
}

const WIDTH = PAD * 2 + 5 * NODE_W + 4 * COL_GAP;

function ContextGraph({ laid }: { readonly laid: Laid }) {
  const at = new Map(laid.boxes.map((b) => [b.key, b]));
  return (
    <svg
      class="graph"
      data-testid={laid.testid}
      viewBox={`0 0 ${WIDTH} ${laid.height}`}
      style={{ maxWidth: `${WIDTH}px` }}
      role="img"
      aria-label={laid.title}
    >
      <defs>
        <marker
          id="arrow"
          viewBox="0 0 10 10"
          refX="9"
          refY="5"
          markerWidth="7"
          markerHeight="7"
          orient="auto"
        >
          <path d="M0,0 L10,5 L0,10 z" class="arrowhead" />
        </marker>
      </defs>
      <text x={PAD} y={18} class="graph-title">
        {laid.title}
      </text>
      {COLUMN_TITLES.map((t, i) => (
        <text key={t} x={PAD + i * (NODE_W + COL_GAP) + NODE_W / 2} y={36} class="col-title">
          {t}
        </text>
      ))}
      {laid.edges.map((e) => {
        const a = at.get(e.from);
        const b = at.get(e.to);
        if (a === undefined || b === undefined) return null;
        const x1 = a.x + NODE_W;
        const y1 = a.y + NODE_H / 2;
        const x2 = b.x;
        const y2 = b.y + NODE_H / 2;
        const mx = (x1 + x2) / 2;
        // An edge that skips a column arcs over the boxes between, never behind them.
        const skips = b.col - a.col > 1;
        const top = Math.min(y1, y2) - NODE_H * 0.95;
        const d = skips
          ? `M${a.x + NODE_W / 2},${a.y} C${a.x + NODE_W / 2},${top} ${b.x + NODE_W / 2},${top} ${b.x + NODE_W / 2},${b.y - 2}`
          : `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}`;
        return (
          <g key={`${e.from}-${e.to}-${e.label}`} class="edge">
            <path d={d} marker-end="url(#arrow)" />
            <text
              x={skips ? b.x - 4 : mx}
              y={skips ? b.y - 4 : (y1 + y2) / 2 - 4}
              text-anchor={skips ? 'end' : 'middle'}
            >
              {e.label}
            </text>
          </g>
        );
      })}
      {laid.boxes.map((b) => (
        <g
          key={b.key}
          class={`node ${b.tone}`}
          data-testid={b.testid}
          transform={`translate(${b.x},${b.y})`}
        >
          <rect width={NODE_W} height={NODE_H} rx="6" />
          <text x="8" y="17" class="node-title">
            {b.title}
          </text>
          {b.lines.map((line, i) => (
            <text key={line} x="8" y={33 + i * 14} class="node-line">
              {line.length > 26 ? `${line.slice(0, 25)}…` : line}
            </text>
          ))}
        </g>
      ))}
    </svg>
  );
}

export function ObjectGraph({ state }: { readonly state: InspectorState }) {
  const unbound = state.devices.filter((d) => d.bound === null && d.vfio !== null);
  return (
    <section class="panel" data-testid="graph">
      <h2>Objects and references</h2>
      <p class="hint">
        Each box is an object with its two refcounts: <b>users</b> (the table's reference, one per
        arrow pointing at it, one per driver holding it) and <b>short-term</b> users (1 between
        calls). Arrows are references.
      </p>
      {state.contexts.length === 0 ? (
        <p class="empty">No /dev/iommu is open.</p>
      ) : (
        <div class="scroll-x">
          {state.contexts.map((ctx) => (
            <ContextGraph key={ctx.key} laid={layoutContext(state, ctx)} />
          ))}
        </div>
      )}
      {unbound.length > 0 && (
        <p class="hint">
          Not bound to an iommufd:{' '}
          {unbound.map((d) => d.vfio?.replace('/dev/vfio/devices/', '')).join(', ')}
        </p>
      )}
    </section>
  );
}
