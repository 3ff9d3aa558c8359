/**
 * Turns the event stream into a readable, strace-like text trace: one line per call or device
 * event. Unsafe no-IOMMU DMA is marked loudly, because on real hardware it is silent corruption.
 */
import { errnoName } from '../uapi/errno.ts';
import type { EmuEvent, EventBus } from './events.ts';

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** One line for an event, without a trailing newline. */
export function formatEvent(event: EmuEvent): string {
  switch (event.kind) {
    case 'syscall': {
      const ret = event.ret < 0 ? `-1 ${errnoName(event.ret)}` : String(event.ret);
      return `[pid ${event.pid}] ${event.call}(${event.detail}) = ${ret}`;
    }
    case 'dma': {
      const where =
        event.path === 'iommu' ? `IOVA ${hex(event.addr)}` : `PA ${hex(event.addr)} (no IOMMU)`;
      const verb = event.dir === 'read' ? 'reads' : 'writes';
      return `[dma] ${event.device} ${verb} ${event.length} bytes at ${where}`;
    }
    case 'iommu-fault':
      return `[iommu-fault] ${event.device} ${event.access} at IOVA ${hex(event.iova)}: ${event.reason}; no byte moved`;
    case 'unsafe-dma':
      return `[UNSAFE DMA] ${event.device} ${event.dir}s ${event.length} bytes at PA ${hex(event.pa)}: ${event.reason}`;
    case 'irq':
      return `[irq] ${event.device} ${event.irq}: ${event.detail}`;
    case 'log':
      return `[${event.level}] ${event.message}`;
  }
}

/** Writes every event as a line to `write` until the returned function is called. */
export function attachTextTrace(events: EventBus, write: (line: string) => void): () => void {
  return events.subscribe((event) => write(`${formatEvent(event)}\n`));
}
