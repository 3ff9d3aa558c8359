/**
 * The page's link to the emulator: the state (GET /api/state, fetched again shortly after events
 * arrive), the event stream (/api/events, Server-Sent Events) and page-table walks.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type {
  EventState,
  InspectorState,
  ProgramState,
  RecordState,
  ReplayState,
  WalkState,
} from '../../../src/inspector/state-types.ts';

/** Events kept in the page (the oldest are dropped). */
const KEEP = 3000;
/** A burst of events causes one state fetch, at most this often. */
const REFRESH_MS = 120;

export interface Live {
  readonly state: InspectorState | undefined;
  /** Live: the events as they came. Stepping through a record: its events up to the step. */
  readonly events: readonly EventState[];
  readonly program: ProgramState | undefined;
  readonly connected: boolean;
  /** Stepping through a record: the record (its calls and events). */
  readonly record: RecordState | undefined;
}

export function useLive(): Live {
  const [state, setState] = useState<InspectorState | undefined>(undefined);
  const [events, setEvents] = useState<readonly EventState[]>([]);
  const [program, setProgram] = useState<ProgramState | undefined>(undefined);
  const [connected, setConnected] = useState(false);
  const [record, setRecord] = useState<RecordState | undefined>(undefined);
  const pending = useRef<EventState[]>([]);
  const timer = useRef<number | undefined>(undefined);

  useEffect(() => {
    let closed = false;
    const refresh = async (): Promise<void> => {
      timer.current = undefined;
      const arrived = pending.current;
      pending.current = [];
      if (arrived.length > 0) {
        setEvents((old) => {
          const all = old.concat(arrived);
          return all.length > KEEP ? all.slice(all.length - KEEP) : all;
        });
      }
      try {
        const res = await fetch('api/state', { cache: 'no-store' });
        if (res.ok && !closed) setState((await res.json()) as InspectorState);
      } catch {
        // The emulator has stopped; the stream's error handler says so.
      }
    };
    const schedule = (): void => {
      if (timer.current === undefined) timer.current = window.setTimeout(refresh, REFRESH_MS);
    };
    const source = new EventSource('api/events');
    source.onopen = () => setConnected(true);
    source.onerror = () => setConnected(false);
    source.addEventListener('emu', (msg) => {
      pending.current.push(JSON.parse((msg as MessageEvent<string>).data) as EventState);
      schedule();
    });
    source.addEventListener('program', (msg) => {
      setProgram(JSON.parse((msg as MessageEvent<string>).data) as ProgramState);
      schedule();
    });
    let recordAsked = false;
    source.addEventListener('replay', () => {
      if (!recordAsked) {
        recordAsked = true;
        fetch('api/record', { cache: 'no-store' })
          .then((res) => res.json() as Promise<RecordState>)
          .then((r) => {
            if (!closed) setRecord(r);
          })
          .catch(() => {
            recordAsked = false;
          });
      }
      schedule();
    });
    schedule();
    return () => {
      closed = true;
      source.close();
      if (timer.current !== undefined) window.clearTimeout(timer.current);
    };
  }, []);

  const line = state?.replay?.line;
  const shown =
    record === undefined || line === undefined
      ? events
      : record.events.filter((e) => e.seq <= line);
  return { state, events: shown, program, connected, record };
}

/** Stepping through a record: asks for the state after call `to` (0: before the first). */
export async function stepTo(to: number): Promise<ReplayState | string> {
  try {
    const res = await fetch(`api/step?to=${to}`, { method: 'POST' });
    const body = (await res.json()) as ReplayState | { error: string };
    return 'error' in body ? body.error : body;
  } catch (err) {
    return String(err);
  }
}

export async function fetchWalk(domain: number, iova: string): Promise<WalkState | string> {
  try {
    const res = await fetch(`api/walk?domain=${domain}&iova=${encodeURIComponent(iova)}`, {
      cache: 'no-store',
    });
    const body = (await res.json()) as WalkState | { error: string };
    return 'error' in body ? body.error : body;
  } catch (err) {
    return String(err);
  }
}
