/**
 * Stepping through a recorded run (`replay FILE --inspect`): the calls of the run, the one whose
 * state the page shows, and the buttons (or the arrow keys) that move forward and back.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { RecordState, ReplayState } from '../../../src/inspector/state-types.ts';
import { stepTo } from './api.ts';

export function Replay({
  replay,
  record,
}: {
  readonly replay: ReplayState;
  readonly record: RecordState | undefined;
}) {
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const current = useRef<HTMLLIElement>(null);
  const go = async (to: number) => {
    if (busy) return;
    setBusy(true);
    const result = await stepTo(Math.max(0, Math.min(to, replay.steps)));
    setBusy(false);
    setError(typeof result === 'string' ? result : undefined);
  };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
      if (e.key === 'ArrowRight') go(replay.step + 1);
      else if (e.key === 'ArrowLeft') go(replay.step - 1);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [replay.step, busy]);

  useEffect(() => {
    current.current?.scrollIntoView({ block: 'nearest' });
  }, [replay.step, record !== undefined]);

  const call = record?.calls[replay.step - 1];
  return (
    <section class="panel replay" data-testid="replay">
      <h2>Recorded run</h2>
      <div class="replay-bar">
        <button
          type="button"
          onClick={() => go(0)}
          title="before the first call"
          data-testid="step-first"
        >
          |◀
        </button>
        <button
          type="button"
          onClick={() => go(replay.step - 1)}
          title="back one call (←)"
          data-testid="step-back"
        >
          ◀
        </button>
        <button
          type="button"
          onClick={() => go(replay.step + 1)}
          title="forward one call (→)"
          data-testid="step-forward"
        >
          ▶
        </button>
        <button
          type="button"
          onClick={() => go(replay.steps)}
          title="after the last call"
          data-testid="step-last"
        >
          ▶|
        </button>
        <input
          type="range"
          min={0}
          max={replay.steps}
          value={replay.step}
          onChange={(e) => go(Number((e.currentTarget as HTMLInputElement).value))}
          aria-label="call"
        />
        <span data-testid="step-position">
          call {replay.step} of {replay.steps}
        </span>
        <span class="muted mono">{replay.file}</span>
      </div>
      <p class="replay-call" data-testid="step-call">
        {replay.step === 0 ? (
          <span class="muted">Before the first call: the machine as it booted.</span>
        ) : (
          <>
            State after <span class="mono">{call?.text ?? `call ${replay.step}`}</span>
          </>
        )}
      </p>
      {replay.divergence !== null && (
        <p class="error" data-testid="step-divergence">
          The replay left the record at {replay.divergence}: it can go no further.
        </p>
      )}
      {error !== undefined && <p class="error">{error}</p>}
      {record !== undefined && (
        <ol class="calls">
          {record.calls.map((c, i) => (
            <li
              key={c.line}
              {...(i + 1 === replay.step ? { ref: current } : {})}
              class={i + 1 === replay.step ? 'current' : i + 1 < replay.step ? 'done' : ''}
            >
              <button type="button" class="call" onClick={() => go(i + 1)}>
                {c.text}
              </button>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
