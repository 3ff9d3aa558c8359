/**
 * The one event stream inside the emulator. Calls, device DMA, IOMMU faults, unsafe no-IOMMU DMA,
 * interrupts and log lines are all published here; the trace writer, the check mode and the
 * inspector subscribe. Publishing with no subscriber costs one array length check.
 */

export type EmuEvent =
  | {
      readonly kind: 'syscall';
      readonly pid: number;
      readonly tid: number;
      readonly call: string;
      readonly detail: string;
      readonly ret: number;
      /** The result as shown when it is not the number (mmap's address, an MMIO read's value). */
      readonly shown?: string;
    }
  | {
      readonly kind: 'dma';
      readonly device: string;
      readonly dir: 'read' | 'write';
      readonly addr: bigint;
      readonly length: number;
      /** 'iommu' when translated through a domain, 'direct' for a no-IOMMU device. */
      readonly path: 'iommu' | 'direct';
      /** The physical address of the first byte; undefined when the IOVA does not translate. */
      readonly pa?: bigint | undefined;
    }
  | {
      readonly kind: 'iommu-fault';
      readonly device: string;
      readonly iova: bigint;
      readonly access: 'read' | 'write';
      readonly reason: string;
    }
  | {
      readonly kind: 'unsafe-dma';
      readonly device: string;
      readonly pa: bigint;
      readonly length: number;
      readonly dir: 'read' | 'write';
      readonly reason: string;
      /** A write over memory the kernel owns (I/O page tables): kernel memory corruption. */
      readonly corrupts?: boolean;
    }
  | { readonly kind: 'irq'; readonly device: string; readonly irq: string; readonly detail: string }
  | {
      readonly kind: 'log';
      readonly level: 'info' | 'warn' | 'error' | 'bug';
      readonly message: string;
    };

export type EventListener = (event: EmuEvent) => void;

interface Subscription {
  readonly listener: EventListener;
  /** The kinds it receives; undefined for every kind. */
  readonly kinds: ReadonlySet<EmuEvent['kind']> | undefined;
}

export class EventBus {
  private readonly subscriptions: Subscription[] = [];

  /**
   * Calls `listener` for every event published, or only for those of the given kinds: a bus
   * whose listeners want only logs lets publishers skip building the other events (wants()).
   */
  subscribe(listener: EventListener, kinds?: readonly EmuEvent['kind'][]): () => void {
    const sub: Subscription = { listener, kinds: kinds === undefined ? undefined : new Set(kinds) };
    this.subscriptions.push(sub);
    return () => {
      const i = this.subscriptions.indexOf(sub);
      if (i >= 0) this.subscriptions.splice(i, 1);
    };
  }

  /** Whether any listener receives events of `kind`: when not, publishing one is wasted work. */
  wants(kind: EmuEvent['kind']): boolean {
    for (const sub of this.subscriptions) {
      if (sub.kinds === undefined || sub.kinds.has(kind)) return true;
    }
    return false;
  }

  publish(event: EmuEvent): void {
    for (const sub of this.subscriptions) {
      if (sub.kinds === undefined || sub.kinds.has(event.kind)) sub.listener(event);
    }
  }

  log(level: 'info' | 'warn' | 'error' | 'bug', message: string): void {
    this.publish({ kind: 'log', level, message });
  }
}
