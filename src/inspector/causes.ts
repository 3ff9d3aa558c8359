/**
 * Which call caused a device event. A device acts on a store to its registers: edu starts a DMA
 * when the program writes its DMA command register, and raises its interrupt when the DMA
 * completes. So the cause of a DMA, a fault, an unsafe DMA or an interrupt is the program's
 * latest store (an MMIO store, a write or pwrite, an ioctl) on that device's VFIO file before the
 * event; failing that, the latest call. Fed the events in order, live (event-log.ts) or from a
 * record (replay-stepper.ts).
 */

/** Calls through which a program tells a device to act. */
const STORES = new Set(['mmio', 'write', 'pwrite', 'pwrite64', 'ioctl']);

/** The VFIO file named in a traced call's arguments (`4</dev/vfio/devices/vfio0>`). */
function vfioPathOf(detail: string): string | undefined {
  const m = /<(\/dev\/vfio\/[^>]+)>/.exec(detail);
  return m === null ? undefined : m[1];
}

/** A store, as opposed to a load: `mmio(fd, BAR0+0x98, 8, w, 0x1)` but not `..., 4, r)`. */
function isStore(call: string, detail: string): boolean {
  if (!STORES.has(call)) return false;
  return call !== 'mmio' || /, w, /.test(detail);
}

/** The fields of an event the tracker reads (an EmuEvent, or a record's event line). */
export interface CauseInput {
  readonly kind: string;
  readonly call?: unknown;
  readonly detail?: unknown;
  readonly device?: unknown;
}

export class CauseTracker {
  /** The VFIO cdev paths of a device, by BDF (`/dev/vfio/devices/vfio0`). */
  private readonly pathsOf: (bdf: string) => readonly string[];
  /** The seq of the latest store on each VFIO file, by path. */
  private readonly lastStore = new Map<string, number>();
  private lastCall: number | undefined;

  constructor(pathsOf: (bdf: string) => readonly string[]) {
    this.pathsOf = pathsOf;
  }

  /** Takes event number `seq` in order; returns its cause's seq for a device event. */
  note(event: CauseInput, seq: number): number | undefined {
    if (event.kind === 'syscall') {
      this.lastCall = seq;
      const call = String(event.call ?? '');
      const detail = String(event.detail ?? '');
      const file = vfioPathOf(detail);
      if (file !== undefined && isStore(call, detail)) this.lastStore.set(file, seq);
      return undefined;
    }
    if (event.kind === 'log' || typeof event.device !== 'string') return undefined;
    for (const path of this.pathsOf(event.device)) {
      const store = this.lastStore.get(path);
      if (store !== undefined) return store;
    }
    return this.lastCall;
  }
}
