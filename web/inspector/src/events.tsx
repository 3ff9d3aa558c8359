/**
 * The event stream: every call, DMA, IOMMU fault, unsafe no-IOMMU DMA, interrupt and kernel log
 * line, with each device event linked to the call that caused it.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { EventState } from '../../../src/inspector/state-types.ts';

const KINDS = ['syscall', 'dma', 'iommu-fault', 'unsafe-dma', 'irq', 'log'] as const;
const KIND_NAMES: Readonly<Record<(typeof KINDS)[number], string>> = {
  syscall: 'calls',
  dma: 'DMA',
  'iommu-fault': 'faults',
  'unsafe-dma': 'unsafe DMA',
  irq: 'IRQs',
  log: 'log',
};
/** Rows drawn at most (the newest). */
const SHOWN = 600;

export function Events({
  events,
  recorded = false,
}: {
  readonly events: readonly EventState[];
  /** Events of a record: numbered by record line, with no time of their own. */
  readonly recorded?: boolean;
}) {
  const [hidden, setHidden] = useState<ReadonlySet<string>>(new Set());
  const [follow, setFollow] = useState(true);
  const list = useRef<HTMLDivElement>(null);
  const bySeq = new Map(events.map((e) => [e.seq, e]));
  const shown = events.filter((e) => !hidden.has(e.kind)).slice(-SHOWN);

  useEffect(() => {
    if (follow && list.current !== null) list.current.scrollTop = list.current.scrollHeight;
  }, [events.length, follow, hidden]);

  const toggle = (kind: string) => {
    const next = new Set(hidden);
    if (next.has(kind)) next.delete(kind);
    else next.add(kind);
    setHidden(next);
  };
  const counts = new Map<string, number>();
  for (const e of events) counts.set(e.kind, (counts.get(e.kind) ?? 0) + 1);

  return (
    <section class="panel" data-testid="events">
      <h2>Events</h2>
      <div class="filters">
        {KINDS.map((k) => (
          <label key={k} class={`filter ev-${k}`}>
            <input type="checkbox" checked={!hidden.has(k)} onChange={() => toggle(k)} />{' '}
            {KIND_NAMES[k]} ({counts.get(k) ?? 0})
          </label>
        ))}
        <label class="filter">
          <input type="checkbox" checked={follow} onChange={() => setFollow(!follow)} /> follow
        </label>
      </div>
      <div class="event-list" ref={list}>
        {shown.map((e) => {
          const cause = e.cause === undefined ? undefined : bySeq.get(e.cause);
          const failed = e.kind === 'syscall' && typeof e.ret === 'number' && e.ret < 0;
          return (
            <div
              key={e.seq}
              id={`ev-${e.seq}`}
              class={`event ev-${e.kind}${failed ? ' failed' : ''}`}
              data-kind={e.kind}
            >
              <span class="seq" title={recorded ? 'record line' : 'event number'}>
                #{e.seq}
              </span>
              {!recorded && <span class="time">{e.time.toFixed(3)}s</span>}
              <span class="text">{e.text}</span>
              {e.cause !== undefined && (
                <div class="cause" data-testid="cause">
                  ↳ caused by{' '}
                  <a href={`#ev-${e.cause}`}>
                    #{e.cause} {cause?.text ?? '(no longer kept)'}
                  </a>
                </div>
              )}
            </div>
          );
        })}
      </div>
    </section>
  );
}
