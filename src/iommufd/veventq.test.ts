import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEmulator } from '../index.ts';
import type { IommufdCtx } from './context.ts';
import { IommufdVeventq } from './veventq.ts';
import type { IommufdViommu } from './viommu.ts';

/** A queue of depth `depth` on a stand-in vIOMMU of a real context (never published). */
function queue(depth: number): IommufdVeventq {
  const emu = createEmulator();
  const proc = emu.spawn();
  assert.ok(proc.open('/dev/iommu') >= 0);
  const ictx: IommufdCtx = [...emu.kernel.iommufd.contexts][0]!;
  const viommu = { veventqs: [] } as unknown as IommufdViommu;
  return new IommufdVeventq(ictx, viommu, 0xbeefbeef, depth);
}

describe('vEVENTQ records', () => {
  it('numbers records from 0 and wraps from INT_MAX to 0', () => {
    const q = queue(4);
    q.sequence = 0x7ffffffe;
    for (let i = 0; i < 3; i++) assert.equal(q.report(new Uint8Array([i, 0, 0, 0])), 0);
    assert.deepEqual(
      q.deliver.map((e) => e.sequence),
      [0x7ffffffe, 0x7fffffff, 0],
    );
    assert.equal(q.sequence, 1);
  });

  it('keeps one lost-events header, last, renumbered by every further loss', () => {
    const q = queue(1);
    q.report(new Uint8Array(4));
    q.report(new Uint8Array(4));
    q.report(new Uint8Array(4));
    assert.equal(q.deliver.length, 2);
    assert.equal(q.deliver[1], q.lostHeader);
    assert.equal(q.lostHeader.sequence, 2);
    assert.equal(q.numEvents, 1);
    assert.ok(q.poll() & 0x1);
  });
});
