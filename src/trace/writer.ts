/**
 * Turns the event stream into a readable, strace-like text trace (one line per call or device
 * event), or JSON lines for tools. Unsafe no-IOMMU DMA is marked loudly, because on real hardware
 * it is silent corruption.
 */
import { errnoWithText } from '../uapi/errno.ts';
import type { EmuEvent, EventBus } from './events.ts';

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** What a trace shows besides the lines themselves. */
export interface TraceOptions {
  /** Prefix each line with the seconds since the trace started (`--trace-time`). */
  readonly time?: boolean;
  /** Prefix each call with `[pid P]` (`--trace-pid`). */
  readonly pid?: boolean;
  /** Only these call names and event kinds (`--trace-filter`); undefined for everything. */
  readonly filter?: TraceFilter;
}

/** Every name `--trace-filter` takes besides call names: groups and event kinds. */
export const EVENT_KINDS = ['dma', 'iommu-fault', 'unsafe-dma', 'irq', 'log'] as const;

export interface TraceFilter {
  readonly calls: ReadonlySet<string> | 'all' | 'none';
  readonly events: ReadonlySet<string> | 'all' | 'none';
}

/**
 * `calls,events`, `ioctl,mmio,dma`: `calls` is every call, `events` every device event and log
 * line; any other word is a call name (`ioctl`, `close`, ...) or an event kind. A string on error.
 */
export function parseTraceFilter(text: string): TraceFilter | string {
  const words = text
    .split(',')
    .map((w) => w.trim())
    .filter((w) => w !== '');
  if (words.length === 0) return 'an empty filter';
  let calls: Set<string> | 'all' | 'none' = 'none';
  let events: Set<string> | 'all' | 'none' = 'none';
  for (const word of words) {
    if (word === 'calls') calls = 'all';
    else if (word === 'events') events = 'all';
    else if ((EVENT_KINDS as readonly string[]).includes(word)) {
      if (events !== 'all') events = new Set([...(events === 'none' ? [] : events), word]);
    } else if (/^[a-z_0-9]+$/.test(word)) {
      if (calls !== 'all') calls = new Set([...(calls === 'none' ? [] : calls), word]);
    } else return `"${word}" is neither a call name nor an event kind`;
  }
  return { calls, events };
}

function passes(filter: TraceFilter | undefined, event: EmuEvent): boolean {
  if (filter === undefined) return true;
  const set = event.kind === 'syscall' ? filter.calls : filter.events;
  if (set === 'all' || set === 'none') return set === 'all';
  return set.has(event.kind === 'syscall' ? event.call : event.kind);
}

/**
 * One line stays one line: newlines, other control characters and backslashes in what a line
 * quotes (a path, a log message with a stack) are escaped as C does.
 */
export function escapeLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it escapes
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    if (c === '\r') return '\\r';
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

/** ` = 0`, ` = -1 EEXIST (File exists)`, ` = 0x7f0000000000`. */
export function formatResult(ret: number, shown?: string): string {
  if (ret < 0) return `-1 ${errnoWithText(ret)}`;
  return shown ?? String(ret);
}

/** One line for an event, without a trailing newline or prefixes. */
export function formatEvent(event: EmuEvent): string {
  switch (event.kind) {
    case 'syscall':
      return `${event.call}(${event.detail}) = ${formatResult(event.ret, event.shown)}`;
    case 'dma': {
      const verb = event.dir === 'read' ? 'reads' : 'writes';
      if (event.path === 'direct') {
        return `[dma] ${event.device} ${verb} ${event.length} bytes at PA ${hex(event.addr)} (no IOMMU)`;
      }
      const pa = event.pa === undefined ? '' : ` -> PA ${hex(event.pa)}`;
      return `[dma] ${event.device} ${verb} ${event.length} bytes at IOVA ${hex(event.addr)}${pa}`;
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

/** The event as one JSON object: u64 values as hex strings, the text line beside the fields. */
export function eventJson(event: EmuEvent, seconds?: number): string {
  const fields: Record<string, unknown> = {};
  if (seconds !== undefined) fields.time = Number(seconds.toFixed(6));
  for (const [k, v] of Object.entries(event)) {
    if (v !== undefined) fields[k] = typeof v === 'bigint' ? hex(v) : v;
  }
  if (event.kind === 'syscall' && event.ret < 0) fields.errno = errnoWithText(event.ret);
  fields.text = formatEvent(event);
  return JSON.stringify(fields);
}

/** The boot log (kernel.dmesg: `warn: message`) as the log events it was. */
export function bootLogEvents(dmesg: readonly string[]): EmuEvent[] {
  return dmesg.map((line) => {
    const m = /^(info|warn|error|bug): (.*)$/s.exec(line);
    return m === null
      ? { kind: 'log', level: 'info', message: line }
      : { kind: 'log', level: m[1] as 'info' | 'warn' | 'error' | 'bug', message: m[2]! };
  });
}

/**
 * Writes every event (the boot log first) as a text line, or a JSON line with `json`, to
 * `write` until the returned function is called.
 */
export function attachTrace(
  events: EventBus,
  bootLog: readonly string[],
  write: (line: string) => void,
  options: TraceOptions & { readonly json?: boolean } = {},
): () => void {
  const start = performance.now();
  const emit = (event: EmuEvent): void => {
    if (!passes(options.filter, event)) return;
    const seconds = options.time === true ? (performance.now() - start) / 1000 : undefined;
    if (options.json === true) {
      write(`${eventJson(event, seconds)}\n`);
      return;
    }
    let line = formatEvent(event);
    if (options.pid === true && event.kind === 'syscall') line = `[pid ${event.pid}] ${line}`;
    if (seconds !== undefined) line = `${seconds.toFixed(6).padStart(11)} ${line}`;
    write(`${escapeLine(line)}\n`);
  };
  for (const event of bootLogEvents(bootLog)) emit(event);
  return events.subscribe(emit);
}
