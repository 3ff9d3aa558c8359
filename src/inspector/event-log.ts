/**
 * The inspector's copy of the event bus: every event numbered, timed and encoded as the trace's
 * JSON lines encode it, the latest few thousand kept for a page that connects late, and each
 * device event tied to the call that caused it (causes.ts).
 */
import type { Kernel } from '../boot/kernel.ts';
import type { EmuEvent } from '../trace/events.ts';
import { bootLogEvents, eventJson } from '../trace/writer.ts';
import { CauseTracker } from './causes.ts';
import type { EventState } from './state-types.ts';

/** How many events a page that connects late receives. */
export const EVENT_BACKLOG = 5000;

/** The VFIO cdev paths of the device at `bdf` in `kernel`. */
export function vfioPathsOf(kernel: Kernel, bdf: string): string[] {
  return [...kernel.vfio.devices.values()].filter((v) => v.pci.bdf === bdf).map((v) => v.cdevPath);
}

export class EventLog {
  private readonly start = performance.now();
  private readonly recent: EventState[] = [];
  private readonly listeners = new Set<(event: EventState) => void>();
  private readonly causes: CauseTracker;
  private nextSeq = 1;
  private readonly unsubscribe: () => void;

  constructor(kernel: Kernel) {
    this.causes = new CauseTracker((bdf) => vfioPathsOf(kernel, bdf));
    for (const event of bootLogEvents(kernel.dmesg)) this.add(event);
    this.unsubscribe = kernel.events.subscribe((event) => this.add(event));
  }

  /** The seq of the latest event (0 before the first). */
  get seq(): number {
    return this.nextSeq - 1;
  }

  /** The events kept, oldest first. */
  backlog(): readonly EventState[] {
    return this.recent.slice(-EVENT_BACKLOG);
  }

  /** Calls `listener` with every event from now on; returns the function that stops it. */
  listen(listener: (event: EventState) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  close(): void {
    this.unsubscribe();
    this.listeners.clear();
  }

  private add(event: EmuEvent): void {
    const seq = this.nextSeq++;
    const time = Number(((performance.now() - this.start) / 1000).toFixed(6));
    const cause = this.causes.note(event, seq);
    const fields = JSON.parse(eventJson(event)) as Record<string, unknown>;
    const state = {
      ...fields,
      seq,
      time,
      kind: event.kind,
      text: String(fields.text),
      ...(cause === undefined ? {} : { cause }),
    } satisfies EventState;
    this.recent.push(state);
    // Trimmed in halves, not at every event: a splice copies the array.
    if (this.recent.length >= 2 * EVENT_BACKLOG) this.recent.splice(0, EVENT_BACKLOG);
    for (const listener of this.listeners) listener(state);
  }
}
