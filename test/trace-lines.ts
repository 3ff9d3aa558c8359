/**
 * What a complete trace is (docs/trace.md): every line a decoded call or a known event kind.
 * conformance.test.ts runs every program traced and fails on any line this finds wrong: a raw
 * ioctl number (unknown ones must be split as _IOC(...)), a call the trace does not name, a result it does not decode, an errno without
 * its name and text, an unnamed region or mapping flag.
 */

/** Every call the trace names (docs/trace.md). */
export const TRACED_CALLS = new Set([
  'open',
  'close',
  'dup',
  'dup2',
  'dup3',
  'fcntl',
  'ioctl',
  'read',
  'write',
  'pread',
  'pwrite',
  'poll',
  'mmap',
  'munmap',
  'mmio',
  'opendir',
  'scandir',
  'readlink',
  'realpath',
  'chdir',
]);

/** Calls on a path the shim answers from its copy of sysfs (docs/trace.md). */
const PATH_CALLS = new Set(['opendir', 'scandir', 'readlink', 'realpath', 'chdir']);

const EVENT_PREFIXES = [
  '[dma] ',
  '[iommu-fault] ',
  '[UNSAFE DMA] ',
  '[irq] ',
  '[info] ',
  '[warn] ',
];
const CALL = /^([a-z0-9]+)\((.*)\) = (.*)$/;
const RESULT = /^(\d+|0x[0-9a-f]+|-1 E[A-Z0-9]+ \([A-Z][^()]*\))$/;

/** What is wrong with one line, or undefined when it is a decoded call or a known event. */
export function lineProblem(line: string): string | undefined {
  if (line.startsWith('[')) {
    if (line.startsWith('[error] ') || line.startsWith('[bug] ')) return 'the emulator logged it';
    return EVENT_PREFIXES.some((p) => line.startsWith(p)) ? undefined : 'an unknown event kind';
  }
  const m = CALL.exec(line);
  if (m === null) return 'neither a call nor an event';
  const [, call, args, result] = m as unknown as [string, string, string, string];
  if (!TRACED_CALLS.has(call)) return `a call the trace does not name: ${call}`;
  // A load wider than 8 bytes (a vector move) shows its bytes as a string, as a read does.
  const wideLoad = call === 'mmio' && /^"(?:\\x[0-9a-f]{2}|[^"\\])*"(?:\.\.\.)?$/.test(result);
  // The shim serves these from its copy of sysfs after telling the server: no result to show.
  const unknown = PATH_CALLS.has(call) && result === '?';
  if (!RESULT.test(result) && !wideLoad && !unknown) return `an undecoded result: ${result}`;
  if (/\berrno \d+/.test(line)) return 'an errno without a name';
  if (/\bregion\d+\+/.test(args)) return 'a region without a name';
  if (call === 'ioctl') {
    // A number no uAPI header names is split as strace splits it: _IOC(dir, type, nr, size).
    const command =
      /^(?:\d+<[^>]*>|\/[^,]*), (_IOC\(_IOC_[A-Z_|]+, 0x[0-9a-f]+, 0x[0-9a-f]+, \d+\)|[^,{]+)/.exec(
        args,
      )?.[1];
    if (command === undefined || !/^([A-Z][A-Z0-9_]+|_IOC\(.*\))$/.test(command)) {
      return `an ioctl not decoded by name: ${command ?? args}`;
    }
  }
  if (call === 'mmap' && !/, (PROT_[A-Z_|]+), (MAP_[A-Z_|]+), /.test(args)) {
    return 'mmap protection or flags not named';
  }
  if (/\bflags 0x|\bprot 0x/.test(args)) return 'a raw argument';
  return undefined;
}

/** Every wrong line of a trace, with its number; empty when the whole trace decodes. */
export function traceProblems(text: string): string[] {
  const problems: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    const problem = lineProblem(line);
    if (problem !== undefined) problems.push(`line ${i + 1}: ${problem}: ${line}`);
  });
  return problems;
}
