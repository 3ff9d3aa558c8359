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
    }
  | {
      readonly kind: 'dma';
      readonly device: string;
      readonly dir: 'read' | 'write';
      readonly addr: bigint;
      readonly length: number;
      /** 'iommu' when translated through a domain, 'direct' for a no-IOMMU device. */
      readonly path: 'iommu' | 'direct';
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
    }
  | { readonly kind: 'irq'; readonly device: string; readonly irq: string; readonly detail: string }
  | {
      readonly kind: 'log';
      readonly level: 'info' | 'warn' | 'error' | 'bug';
      readonly message: string;
    };

export type EventListener = (event: EmuEvent) => void;

export class EventBus {
  private readonly listeners: EventListener[] = [];

  subscribe(listener: EventListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  get active(): boolean {
    return this.listeners.length > 0;
  }

  publish(event: EmuEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  log(level: 'info' | 'warn' | 'error' | 'bug', message: string): void {
    this.publish({ kind: 'log', level, message });
  }
}
