/**
 * When a device's asynchronous work (edu's DMA and factorial) completes. A real device finishes
 * on its own time; the emulator uses the event loop. Record and replay need to see and choose
 * that moment: a recorded run marks where each piece of work ran, and its replay runs the work
 * exactly there instead of on a timer, so a program that polls a status register sees the same
 * values at the same reads.
 */

/** The kinds of work a device schedules. */
export type DeviceWork = 'dma' | 'factorial';

export interface DeviceTimers {
  /**
   * Runs `run` once the work is done: after `delayMs` milliseconds, or on the next event-loop
   * turn for 0. Returns the cancel function.
   */
  schedule(device: string, work: DeviceWork, delayMs: number, run: () => void): () => void;
}

/** The event loop: setImmediate for 0, setTimeout otherwise. */
export const eventLoopTimers: DeviceTimers = {
  schedule(_device, _work, delayMs, run) {
    if (delayMs === 0) {
      const handle = setImmediate(run);
      return () => clearImmediate(handle);
    }
    const handle = setTimeout(run, delayMs);
    return () => clearTimeout(handle);
  },
};
