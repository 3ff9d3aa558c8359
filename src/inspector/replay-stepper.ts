/**
 * Stepping through a recorded run (`exec --record`) for the inspector: the state after any call,
 * forward and back. Forward replays from where the replay stands; back opens a fresh replay and
 * runs it to the earlier call (a replay cannot be undone, and replaying a small program again
 * takes milliseconds). A step is one call as the trace shows it: the record's `syscall` lines.
 */
import type { Kernel } from '../boot/kernel.ts';
import { RecordReplay } from '../server/replay.ts';
import { isEventLine, type RunRecord } from '../trace/record.ts';
import { CauseTracker } from './causes.ts';
import { vfioPathsOf } from './event-log.ts';
import type { EventState, RecordState, ReplayState } from './state-types.ts';

export class ReplayStepper {
  readonly file: string;
  readonly record: RunRecord;
  /** The record line of each call's trace line, in order: step k is calls[k - 1]. */
  private readonly calls: readonly { readonly line: number; readonly text: string }[];
  private replay: RecordReplay;
  private step = 0;
  private divergence: string | null = null;
  /** Steps are taken one at a time, in the order asked. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(file: string, record: RunRecord, replay: RecordReplay) {
    this.file = file;
    this.record = record;
    this.replay = replay;
    this.calls = record.lines.flatMap(({ line, entry }) =>
      isEventLine(entry) && entry.kind === 'syscall' ? [{ line, text: entry.text }] : [],
    );
  }

  /** A stepper before the first call; a string says why the record cannot be replayed. */
  static open(file: string, record: RunRecord): ReplayStepper | string {
    const replay = RecordReplay.open(record);
    return typeof replay === 'string' ? replay : new ReplayStepper(file, record, replay);
  }

  /** The emulator as it stands after the current step. */
  get kernel(): Kernel {
    return this.replay.kernel;
  }

  state(): ReplayState {
    return {
      file: this.file,
      steps: this.calls.length,
      step: this.step,
      line: this.replay.position,
      divergence: this.divergence,
    };
  }

  /** Every call and event of the record, each device event with the call that caused it. */
  recordState(): RecordState {
    const causes = new CauseTracker((bdf) => vfioPathsOf(this.replay.kernel, bdf));
    const events: EventState[] = [];
    for (const { line, entry } of this.record.lines) {
      if (!isEventLine(entry)) continue;
      const cause = causes.note(entry, line);
      events.push({
        ...entry,
        seq: line,
        time: typeof entry.time === 'number' ? entry.time : 0,
        kind: entry.kind,
        text: entry.text,
        ...(cause === undefined ? {} : { cause }),
      });
    }
    return { file: this.file, calls: this.calls, events };
  }

  /** Moves to step `target` (0 before the first call, clamped to the run), replaying as needed. */
  goTo(target: number): Promise<ReplayState> {
    const next = this.queue.then(() => this.move(target));
    this.queue = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.replay.close();
  }

  private async move(target: number): Promise<ReplayState> {
    const to = Math.max(0, Math.min(Math.trunc(target), this.calls.length));
    if (to < this.step || (this.divergence !== null && to !== this.step)) {
      const fresh = RecordReplay.open(this.record);
      if (typeof fresh === 'string') {
        this.divergence = fresh;
        return this.state();
      }
      this.replay.close();
      this.replay = fresh;
      this.step = 0;
      this.divergence = null;
    }
    if (to > this.step) {
      const result = await this.replay.run({ untilLine: this.calls[to - 1]!.line });
      if (result.ok) {
        this.step = to;
      } else {
        const d = result.divergence;
        this.divergence = `line ${d.line}: ${d.what}`;
        // The state shown is where the replay stopped: the last call at or before that line.
        this.step = this.calls.filter((c) => c.line <= d.line).length;
      }
    }
    return this.state();
  }
}
