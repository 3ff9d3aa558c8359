/**
 * Device DMA through an IOMMU domain against a raw copy of the same bytes. The edu device sits
 * behind dmar0; a buffer of a simulated process is pinned and mapped into a paging domain the way
 * iommufd maps an area, and the device's DMA port reads it by IOVA. The raw copy reads the same
 * bytes straight out of the process memory (what a read of /proc/<pid>/mem does in-process). The
 * ratio is DMA bandwidth over raw-copy bandwidth: the cost of translation and of going through
 * the frames that stand for the pinned pages.
 */
import { SimulatedMemory } from '../src/host/sim-memory.ts';
import { Prot } from '../src/platform/io-pgtable.ts';
import { allocDomain } from '../src/platform/iommu.ts';
import { Machine } from '../src/platform/machine.ts';
import { PAGE_SIZE } from '../src/platform/sizes.ts';
import { type Budget, type Figure, timePair } from './harness.ts';

const EDU = '0000:00:05.0';
/** Bytes mapped and copied per pass. */
const BUFFER = 1 << 20;
/** One DMA transfer: the edu's engine moves at most its 4 KiB buffer at a time. */
const TRANSFER = 4096;
const IOVA = 0x1000000n;

export async function dmaFigures(budget: Budget): Promise<Figure[]> {
  const machine = new Machine();
  try {
    const mem = new SimulatedMemory();
    const va = mem.mmap(BigInt(BUFFER));
    const fill = new Uint8Array(BUFFER);
    for (let i = 0; i < BUFFER; i++) fill[i] = (i * 131) & 0xff;
    mem.write(va, fill);
    const runs = machine.pinned.pin(mem, va, BigInt(BUFFER) / PAGE_SIZE, true);
    if (typeof runs === 'number') throw new Error(`pin: ${runs}`);
    const domain = allocDomain(machine.iommus.get('dmar0')!);
    if (typeof domain === 'number') throw new Error(`domain: ${domain}`);
    for (const run of runs) {
      const rc = domain.map(
        IOVA + (run.va - va),
        run.pfn * PAGE_SIZE,
        run.npages * PAGE_SIZE,
        Prot.READ | Prot.WRITE,
      );
      if (rc !== 0) throw new Error(`map: ${rc}`);
    }
    const dev = machine.device(EDU)!;
    if (dev.setDomain(domain) !== 0) throw new Error('attach edu');
    const check = dev.dma.read(IOVA, BUFFER);
    if (check === undefined || !check.every((b, i) => b === fill[i]))
      throw new Error('DMA read back other bytes than the process holds');

    const transfers = BUFFER / TRANSFER;
    const { a: dmaNs, b: rawNs } = await timePair(
      budget,
      {
        name: 'edu DMA read through dmar0',
        batch: transfers,
        fn: () => {
          for (let off = 0; off < BUFFER; off += TRANSFER)
            dev.dma.read(IOVA + BigInt(off), TRANSFER);
        },
      },
      {
        name: 'raw copy from the process',
        batch: transfers,
        fn: () => {
          for (let off = 0; off < BUFFER; off += TRANSFER) mem.read(va + BigInt(off), TRANSFER);
        },
      },
    );
    const mbps = (ns: number) => ((TRANSFER / ns) * 1e9) / (1 << 20);
    return [
      {
        name: 'dma_over_raw_copy',
        value: rawNs / dmaNs,
        unit: 'ratio',
        target: { op: '>=', value: 0.5 },
        detail: `${mbps(dmaNs).toFixed(0)} MiB/s DMA / ${mbps(rawNs).toFixed(0)} MiB/s raw, ${TRANSFER} B transfers`,
      },
    ];
  } finally {
    machine.shutdown();
  }
}
