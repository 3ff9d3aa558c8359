/**
 * The inspector page: a live view of the emulated kernel (src/inspector serves it). The state
 * comes from /api/state, refreshed as events arrive on /api/events.
 */
import { render } from 'preact';
import { useState } from 'preact/hooks';
import { useLive } from './api.ts';
import { Devices } from './devices.tsx';
import { Events } from './events.tsx';
import { ObjectGraph } from './graph.tsx';
import { IoasMaps } from './ioas-map.tsx';
import { Pinned } from './pinned.tsx';
import { Replay } from './replay.tsx';
import './style.css';
import { Walk, type WalkTarget } from './walk.tsx';

function ProgramLine({ live }: { readonly live: ReturnType<typeof useLive> }) {
  const program = live.program ?? live.state?.program;
  if (program === undefined) return <span class="muted">connecting…</span>;
  const name = program.command.join(' ') || 'iommufd-emu serve';
  return (
    <span data-testid="program">
      <span class="mono program-name">{name}</span>{' '}
      {program.state === 'replaying' ? (
        <span class="badge running" data-testid="program-state">
          recorded run
        </span>
      ) : program.state === 'exited' ? (
        <span class="badge exited" data-testid="program-state">
          exited with status {program.exitStatus}
        </span>
      ) : (
        <span class="badge running" data-testid="program-state">
          {program.state}
        </span>
      )}
    </span>
  );
}

function App() {
  const live = useLive();
  const [target, setTarget] = useState<WalkTarget | undefined>(undefined);
  const state = live.state;
  // Until the user picks one, walk the first area of the first IOAS that has a domain.
  let walkTarget = target;
  if (walkTarget === undefined && state !== undefined) {
    for (const ctx of state.contexts) {
      for (const ioas of ctx.ioas) {
        const area = ioas.areas[0];
        const domain = ioas.domains[0];
        if (walkTarget === undefined && area !== undefined && domain !== undefined)
          walkTarget = { domain, iova: area.iova };
      }
    }
  }
  return (
    <>
      <header>
        <h1>iommufd-emu inspector</h1>
        <ProgramLine live={live} />
        <span class={`badge ${live.connected ? 'live' : 'offline'}`} data-testid="connection">
          {live.connected ? 'live' : 'disconnected'}
        </span>
        {state !== undefined && state.tainted !== 0 && (
          <span class="badge unsafe" title="/proc/sys/kernel/tainted">
            kernel tainted ({state.tainted})
          </span>
        )}
        {state?.unsafeNoiommuMode && <span class="badge warn">enable_unsafe_noiommu_mode=1</span>}
      </header>
      {state === undefined ? (
        <p class="empty">Waiting for the emulator…</p>
      ) : (
        <main>
          <div class="col wide">
            {state.replay !== null && <Replay replay={state.replay} record={live.record} />}
            <ObjectGraph state={state} />
            <IoasMaps state={state} onWalk={(domain, iova) => setTarget({ domain, iova })} />
            <Walk state={state} target={walkTarget} onTarget={setTarget} />
          </div>
          <div class="col">
            <Devices state={state} />
            <Pinned state={state} />
            <Events events={live.events} recorded={state.replay !== null} />
          </div>
        </main>
      )}
    </>
  );
}

const root = document.getElementById('app');
if (root !== null) render(<App />, root);
