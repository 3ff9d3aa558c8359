/** The machine's PCI devices: their VFIO node, IOMMU, binding, and a loud mark on those with none. */
import type { InspectorState } from '../../../src/inspector/state-types.ts';

export function Devices({ state }: { readonly state: InspectorState }) {
  return (
    <section class="panel" data-testid="devices">
      <h2>Devices</h2>
      <table class="small">
        <thead>
          <tr>
            <th>BDF</th>
            <th>VFIO node</th>
            <th>IOMMU</th>
            <th>state</th>
          </tr>
        </thead>
        <tbody>
          {state.devices.map((d) => (
            <tr key={d.bdf} data-testid={`device-${d.bdf}`} class={d.unsafe ? 'unsafe-row' : ''}>
              <td class="mono">
                {d.bdf} <span class="muted">{d.type}</span>
              </td>
              <td class="mono">{d.vfio ?? '—'}</td>
              <td>
                {d.unsafe ? (
                  <span class="badge unsafe" title="No IOMMU: its DMA reaches any physical address">
                    UNSAFE: no IOMMU
                  </span>
                ) : (
                  <>
                    {d.iommu} group {d.group}
                  </>
                )}
              </td>
              <td>
                {d.bound === null ? (
                  <span class="muted">not bound</span>
                ) : (
                  <span class="badge">
                    DEVICE {d.bound.devid} of #{d.bound.context}
                  </span>
                )}
                {d.attached && <span class="badge">attached</span>}
                {d.domain !== null && <span class="badge">domain {d.domain}</span>}
                {d.busMaster && <span class="badge">bus master</span>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
