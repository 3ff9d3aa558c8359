/**
 * The inspector's copy of the event bus: every event numbered, timed and encoded as the trace's
 * JSON lines encode it, the latest few thousand kept for a page that connects late, and each
 * device event tied to the call that caused it.
 *
 * A device acts on a store to its registers: edu starts a DMA when the program writes its DMA
 * command register, and raises its interrupt when the DMA completes. So the cause of a DMA, a
 * fault, an unsafe DMA or an interrupt is the program's latest store (an MMIO store, a write or
 * pwrite, an ioctl) on that device's VFIO file before the event; failing that, the latest call.
 */
import type { Kernel } from '../boot/kernel.ts';
import type { EmuEvent } from '../trace/events.ts';
import { bootLogEvents, eventJson } from '../trace/writer.ts';
import type { EventState } from './state-types.ts';

/** How many events a page that connects late receives. */
export const EVENT_BACKLOG = 5000;

/** Calls through which a program tells a device to act. */
const STORES = new Set(['mmio', 'write', 'pwrite', 'pwrite64', 'ioctl']);

type DeviceEvent = Extract<EmuEvent, { readonly device: string }>;

function isDeviceEvent(event: EmuEvent): event is DeviceEvent {
  return event.kind !== 'syscall' && event.kind !== 'log';
}

/** The VFIO file named in a traced call's arguments (`4</dev/vfio/devices/vfio0>`). */
function vfioPathOf(detail: string): string | undefined {
  const m = /<(\/dev\/vfio\/[^>]+)>/.exec(detail);
  return m === null ? undefined : m[1];
}

/** A store, as opposed to a load: `mmio(fd, BAR0+0x98, 8, w, 0x1)` but not `..., 4, r)`. */
function isStore(event: Extract<EmuEvent, { kind: 'syscall' }>): boolean {
  if (!STORES.has(event.call)) return false;
  return event.call !== 'mmio' || /, w, /.test(event.detail);
}

export class EventLog {
  private readonly kernel: Kernel;
  private readonly start = performance.now();
  private readonly recent: EventState[] = [];
  private readonly listeners = new Set<(event: EventState) => void>();
  /** The seq of the latest store on each VFIO file, by path. */
  private readonly lastStore = new Map<string, number>();
  private lastCall: number | undefined;
  private nextSeq = 1;
  private readonly unsubscribe: () => void;

  constructor(kernel: Kernel) {
    this.kernel = kernel;
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

  private causeOf(event: DeviceEvent): number | undefined {
    for (const vfio of this.kernel.vfio.devices.values()) {
      if (vfio.pci.bdf !== event.device) continue;
      const seq = this.lastStore.get(vfio.cdevPath);
      if (seq !== undefined) return seq;
    }
    return this.lastCall;
  }

  private add(event: EmuEvent): void {
    const seq = this.nextSeq++;
    const time = Number(((performance.now() - this.start) / 1000).toFixed(6));
    let cause: number | undefined;
    if (event.kind === 'syscall') {
      this.lastCall = seq;
      const file = vfioPathOf(event.detail);
      if (file !== undefined && isStore(event)) this.lastStore.set(file, seq);
    } else if (isDeviceEvent(event)) {
      cause = this.causeOf(event);
    }
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
