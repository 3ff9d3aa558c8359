/**
 * `iommufd-emu replay FILE`: a recorded run (`exec --record FILE`) against a fresh emulator of
 * the recorded platform, with no program; the first divergence is reported, decoded as the
 * trace decodes calls, and makes the exit status the one for the emulator's findings.
 */
import * as fs from 'node:fs';
import { replayRecord } from '../server/replay.ts';
import { parseRecord, RecordError, type RunRecord } from '../trace/record.ts';
import { DEFAULT_ERROR_EXITCODE, describeErrno, fail } from './exit-status.ts';
import { type InspectFlag, inspectRecord } from './inspect.ts';

export interface ReplayFlags {
  /** The status for a divergence (default 99). */
  readonly errorExitcode?: number;
  /** Print each matched line's trace text as the replay goes. */
  readonly verbose?: boolean;
  /** Step through the record in the inspector instead of replaying it to the end. */
  readonly inspect?: InspectFlag;
}

/** The record in FILE, or a usage failure (exit 125) naming what is wrong with it. */
export function readRecordFile(file: string): RunRecord {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    fail(`cannot read ${file}: ${describeErrno(err)}`);
  }
  try {
    return parseRecord(text);
  } catch (err) {
    if (err instanceof RecordError) fail(`${file}: ${err.message}`);
    throw err;
  }
}

export async function replayCommand(file: string, flags: ReplayFlags): Promise<number> {
  const record = readRecordFile(file);
  if (flags.inspect !== undefined) return inspectRecord(file, record, flags.inspect);
  const texts = new Map<number, string>();
  if (flags.verbose === true) {
    for (const { line, entry } of record.lines) {
      const text = (entry as { text?: unknown }).text;
      if (typeof text === 'string') texts.set(line, text);
    }
  }
  const result = await replayRecord(record, {
    onLine: (line) => {
      const text = texts.get(line);
      if (text !== undefined) process.stderr.write(`iommufd-emu: | ${text}\n`);
    },
  });
  if (result.ok) {
    process.stderr.write(
      `iommufd-emu: replay of ${file}: ${result.calls} requests and ${result.events} events matched the record\n`,
    );
    return 0;
  }
  const d = result.divergence;
  process.stderr.write(`iommufd-emu: replay of ${file} diverged at line ${d.line}: ${d.what}\n`);
  if (d.recorded !== undefined) process.stderr.write(`iommufd-emu:   recorded: ${d.recorded}\n`);
  if (d.replayed !== undefined) process.stderr.write(`iommufd-emu:   replayed: ${d.replayed}\n`);
  return flags.errorExitcode ?? DEFAULT_ERROR_EXITCODE;
}
