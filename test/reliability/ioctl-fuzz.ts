/**
 * A bounded, seeded ioctl fuzzer for the kernel model, shared by `npm test` (a few hundred calls)
 * and `npm run soak` (a million). A run is a list of plain steps (fast-check generates and shrinks
 * it) played by a few simulated processes against one emulated kernel: every ioctl of every file
 * kind with structs whose fields are drawn from values that matter (object ids, the processes' own
 * buffers, page-sized lengths, the ends of each range), opens, closes, dups, forks, exits, edu
 * register writes that start DMA (to IOVAs, to physical addresses GET_PA gave, to anywhere), and
 * waits for the devices. After every step: no emulator bug and no errno the kernel cannot return;
 * every few steps the invariants; at the end, once every process has exited, nothing left.
 */
import fc from 'fast-check';
import type { Kernel } from '../../src/boot/kernel.ts';
import { checkInvariants } from '../../src/check/invariants.ts';
import { CAP_IPC_LOCK, CAP_SYS_RAWIO } from '../../src/host/credentials.ts';
import type { SimProcess } from '../../src/host/sim-process.ts';
import { createEmulator } from '../../src/index.ts';
import { EduReg } from '../../src/platform/edu.ts';
import { ALL_COMMANDS, type IoctlCommand } from '../../src/uapi/commands.ts';
import { Errno, errnoName } from '../../src/uapi/errno.ts';
import { writeFields } from '../../src/uapi/struct.ts';

/** Paths a step may open (index = step.path). */
export const FUZZ_PATHS = [
  '/dev/iommu',
  '/dev/iommu',
  '/dev/vfio/vfio',
  '/dev/vfio/devices/vfio0',
  '/dev/vfio/devices/vfio1',
  '/dev/vfio/devices/noiommu-vfio2',
  '/dev/vfio/0',
  '/dev/vfio/noiommu-2',
  '/sys/bus/pci/devices/0000:00:04.0/config',
] as const;

/** What an ioctl on the emulated files may answer: anything else is a foreign errno. */
const KERNEL_ERRNOS: ReadonlySet<number> = new Set(
  (
    [
      'EPERM',
      'ENOENT',
      'ENXIO',
      'E2BIG',
      'EBADF',
      'EBADFD',
      'EAGAIN',
      'ENOMEM',
      'EACCES',
      'EFAULT',
      'EBUSY',
      'EEXIST',
      'ENODEV',
      'EINVAL',
      'ENOSPC',
      'ENOTTY',
      'ERANGE',
      'EOVERFLOW',
      'EOPNOTSUPP',
      'EADDRINUSE',
      'EMSGSIZE',
      'ESPIPE',
      'EDEADLK',
    ] as const
  ).map((name) => -Errno[name]),
);

/** One action of one process. Plain data, so fast-check can shrink a failing run. */
export type Step =
  | { readonly kind: 'open'; readonly proc: number; readonly path: number }
  | { readonly kind: 'close'; readonly proc: number; readonly fd: number }
  | { readonly kind: 'dup'; readonly proc: number; readonly fd: number }
  | { readonly kind: 'fork'; readonly proc: number }
  | { readonly kind: 'exit'; readonly proc: number }
  | {
      readonly kind: 'ioctl';
      readonly proc: number;
      readonly fd: number;
      readonly cmd: number;
      /** One value choice per field, in field order (drawn from `Pool`). */
      readonly values: readonly number[];
      readonly raw: readonly bigint[];
      /** 0: the struct's own size; 1: its minimum; 2: raw[0] & 0xff; 3: a page. */
      readonly sizeMode: number;
    }
  | {
      readonly kind: 'dma';
      readonly proc: number;
      readonly fd: number;
      /** Where the RAM side points: 0 an IOVA it mapped, 1 a PA GET_PA gave, 2 anywhere. */
      readonly target: number;
      readonly raw: bigint;
      readonly toRam: boolean;
      readonly length: number;
    }
  | { readonly kind: 'wait' };

const PROCS = 3;
const FD_SLOTS = 12;
const BUFFER_PAGES = 32n;
const PAGE = 0x1000n;

/** Raw 64-bit values worth trying: the ends of each width, page edges, and noise. */
const rawValue = fc.oneof(
  fc.constantFrom(
    0n,
    1n,
    2n,
    3n,
    0xfffn,
    0x1000n,
    0x2000n,
    0x200000n,
    0x100000n,
    0x40000000n,
    0x7fffffffn,
    0xffffffffn,
    0x100000000n,
    (1n << 48n) - 0x1000n,
    (1n << 63n) - 1n,
    (1n << 64n) - 0x1000n,
    (1n << 64n) - 1n,
  ),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);

const proc = fc.nat(PROCS - 1);
const fdSlot = fc.nat(FD_SLOTS - 1);

const ioctlStep: fc.Arbitrary<Step> = fc.record({
  kind: fc.constant('ioctl' as const),
  proc,
  fd: fdSlot,
  cmd: fc.nat(ALL_COMMANDS.length + 1),
  values: fc.array(fc.nat(15), { minLength: 16, maxLength: 16 }),
  raw: fc.array(rawValue, { minLength: 4, maxLength: 4 }),
  sizeMode: fc.nat(7),
});

/** A step of a fuzz run: mostly ioctls, with the file and process churn around them. */
export const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 12, arbitrary: ioctlStep },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('open' as const),
      proc,
      path: fc.nat(FUZZ_PATHS.length - 1),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('close' as const), proc, fd: fdSlot }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dup' as const), proc, fd: fdSlot }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fork' as const), proc }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('exit' as const), proc }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('dma' as const),
      proc,
      fd: fdSlot,
      target: fc.nat(2),
      raw: rawValue,
      toRam: fc.boolean(),
      length: fc.constantFrom(8, 64, 4096),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'wait' as const }) },
);

/** One simulated process of a run: its fd slots, its buffer, and what it learnt. */
interface Actor {
  proc: SimProcess;
  readonly slots: (number | undefined)[];
  readonly buffer: bigint;
}

/** What a run found; empty `problems` when the kernel held up. */
export interface FuzzResult {
  readonly calls: number;
  readonly problems: string[];
  /** How often each result came back, by name (`0`, `EINVAL`, ...). */
  readonly results: Map<string, number>;
}

/**
 * Plays `steps` against a fresh kernel. `checkEvery` steps (and at the end) the invariants are
 * checked. Returns the problems found (the first few) rather than throwing, so a soak can count.
 */
export async function playSteps(steps: readonly Step[], checkEvery = 10): Promise<FuzzResult> {
  const emu = createEmulator({ enableUnsafeNoiommuMode: true });
  const kernel = emu.kernel;
  const problems: string[] = [];
  const results = new Map<string, number>();
  const bugs: string[] = [];
  const stop = kernel.events.subscribe(
    (e) => {
      if (e.kind === 'log' && e.level === 'bug') bugs.push(e.message);
    },
    ['log'],
  );
  const spawn = (i: number): Actor => {
    // One root, one without the raw-I/O and locking capabilities and a small memlock limit.
    const p = emu.spawn(i === 1 ? { memlockLimit: 64n * 1024n } : {});
    if (i === 1) {
      p.setCapability(CAP_SYS_RAWIO, false);
      p.setCapability(CAP_IPC_LOCK, false);
    }
    return {
      proc: p,
      slots: new Array(FD_SLOTS).fill(undefined),
      buffer: p.alloc(BUFFER_PAGES * PAGE),
    };
  };
  const actors: Actor[] = [];
  for (let i = 0; i < PROCS; i++) actors.push(spawn(i));
  // Every process starts with every file open, so that the run's ioctls reach real objects.
  for (const a of actors) {
    for (const path of FUZZ_PATHS) {
      const fd = a.proc.open(path);
      if (fd >= 0) place(a, fd);
    }
  }
  const physAddrs: bigint[] = [];
  let calls = 0;
  try {
    for (const [n, s] of steps.entries()) {
      const before = bugs.length;
      const what = await playStep(kernel, actors, s, physAddrs, spawn);
      if (what !== undefined) {
        calls++;
        const name = what.ret >= 0 ? '0' : errnoName(what.ret);
        results.set(name, (results.get(name) ?? 0) + 1);
        if (what.ret < 0 && !KERNEL_ERRNOS.has(what.ret))
          problems.push(`step ${n} ${what.call}: foreign errno ${name}`);
      }
      if (bugs.length > before)
        problems.push(`step ${n} ${JSON.stringify(s, big)}: ${bugs.at(-1)}`);
      if ((n + 1) % checkEvery === 0) {
        await kernel.machine.whenIdle();
        for (const v of checkInvariants(kernel)) problems.push(`after step ${n}: ${v}`);
      }
      if (problems.length >= 5) break;
    }
    for (const a of actors) a.proc.exit();
    await kernel.machine.whenIdle();
    for (const v of checkInvariants(kernel)) problems.push(`at the end: ${v}`);
    for (const leak of kernel.leaks()) problems.push(`leak: ${leak}`);
    const frames = kernel.machine.phys.stats().framesInUse;
    if (frames !== 0n) problems.push(`leak: ${frames} frames in use`);
  } finally {
    stop();
    kernel.shutdown();
  }
  return { calls, problems, results };
}

function big(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `0x${value.toString(16)}` : value;
}

async function playStep(
  kernel: Kernel,
  actors: Actor[],
  s: Step,
  physAddrs: bigint[],
  spawn: (i: number) => Actor,
): Promise<{ call: string; ret: number } | undefined> {
  if (s.kind === 'wait') {
    await kernel.machine.whenIdle();
    return undefined;
  }
  const actor = actors[s.proc]!;
  const p = actor.proc;
  switch (s.kind) {
    case 'open': {
      const path = FUZZ_PATHS[s.path]!;
      const fd = p.open(path);
      if (fd >= 0) place(actor, fd);
      return { call: `open(${path})`, ret: fd };
    }
    case 'close': {
      const fd = actor.slots[s.fd];
      if (fd === undefined) return undefined;
      actor.slots[s.fd] = undefined;
      if (!actor.slots.includes(fd)) return { call: 'close', ret: p.close(fd) };
      return undefined;
    }
    case 'dup': {
      const fd = actor.slots[s.fd];
      if (fd === undefined) return undefined;
      const copy = p.dup(fd);
      if (copy >= 0) place(actor, copy);
      return { call: 'dup', ret: copy };
    }
    case 'fork': {
      // The child replaces the next process, which exits first (as a shell's job would).
      const slot = (s.proc + 1) % actors.length;
      actors[slot]!.proc.exit();
      const child = p.fork();
      actors[slot] = { proc: child, slots: [...actor.slots], buffer: actor.buffer };
      return undefined;
    }
    case 'exit':
      p.exit();
      actors[s.proc] = spawn(s.proc);
      return undefined;
    case 'ioctl':
      return ioctlOf(actor, s, physAddrs);
    case 'dma':
      return dmaOf(actor, s, physAddrs);
  }
}

function place(actor: Actor, fd: number): void {
  const free = actor.slots.indexOf(undefined);
  actor.slots[free < 0 ? fd % FD_SLOTS : free] = fd;
}

/** A field's value: an fd of the process, an id, a buffer address, a length, or raw bits. */
function fieldValue(actor: Actor, choice: number, raw: readonly bigint[], i: number): bigint {
  const r = raw[i % raw.length]!;
  switch (choice) {
    case 0:
    case 1:
      return BigInt(actor.slots[(i + choice) % FD_SLOTS] ?? -1) & 0xffffffffn;
    case 2:
    case 3:
    case 4:
      return BigInt(choice - 1 + (i % 3)); // object ids 1..5: a kernel hands them out from 1
    case 5:
    case 6:
      return actor.buffer + (r % BUFFER_PAGES) * PAGE; // a page of the caller's buffer
    case 7:
      return actor.buffer + (r % (BUFFER_PAGES * PAGE));
    case 8:
    case 9:
      return (1n + (r % 8n)) * PAGE; // a length of a few pages
    case 10:
      return 0x100000n + (r % 16n) * PAGE; // the IOVAs the others use
    case 11:
      return 0n;
    default:
      return r;
  }
}

function commandOf(index: number): IoctlCommand | undefined {
  return ALL_COMMANDS[index];
}

function ioctlOf(
  actor: Actor,
  s: Extract<Step, { kind: 'ioctl' }>,
  physAddrs: bigint[],
): { call: string; ret: number } | undefined {
  const fd = actor.slots[s.fd];
  if (fd === undefined) return undefined;
  const p = actor.proc;
  const command = commandOf(s.cmd);
  if (command === undefined) {
    // A number no file knows (or a neighbour of one): ENOTTY.
    const cmd = Number(s.raw[0]! & 0xffffffffn);
    return { call: `ioctl(${cmd})`, ret: p.ioctl(fd, cmd, actor.buffer) };
  }
  const spec = command.spec;
  if (spec === undefined) {
    // By value (an IOMMU type, an index) or a pointer (a name, an fd): both kinds of argument.
    const arg = fieldValue(actor, s.values[0]!, s.raw, 0);
    if (command.name === 'VFIO_GROUP_GET_DEVICE_FD') {
      const names = ['0000:00:04.0', '0000:00:05.0', '0000:00:06.0', 'nonsense'];
      const name = names[s.values[1]! % names.length]!;
      p.memory.write(actor.buffer, new TextEncoder().encode(`${name}\0`));
      const ret = p.ioctl(fd, command.cmd, actor.buffer);
      if (ret >= 0) place(actor, ret);
      return { call: command.name, ret };
    }
    if (command.name === 'VFIO_GROUP_SET_CONTAINER') {
      const target = actor.slots[s.values[1]! % FD_SLOTS] ?? -1;
      const b = new Uint8Array(4);
      new DataView(b.buffer).setInt32(0, target, true);
      p.memory.write(actor.buffer, b);
      return { call: command.name, ret: p.ioctl(fd, command.cmd, actor.buffer) };
    }
    return { call: command.name, ret: p.ioctl(fd, command.cmd, arg) };
  }
  const sizes = [spec.size, spec.minSize, Number(s.raw[0]! & 0xffn), 4096];
  const size = sizes[s.sizeMode % sizes.length]!;
  const bytes = new Uint8Array(Math.max(size, spec.size, 8));
  const fields = Object.entries(spec.fields);
  const value: Record<string, bigint | number> = {};
  for (const [i, [name, field]] of fields.entries()) {
    let v = fieldValue(actor, s.values[i % s.values.length]!, s.raw, i);
    if (name === 'size' || name === 'argsz') v = BigInt(size);
    if (name.startsWith('__reserved') && s.values[i % s.values.length]! < 12) v = 0n;
    if (name === 'flags' && s.values[i % s.values.length]! < 8) v &= 0xfn;
    const width =
      field.type === 'u64' ? 64n : field.type === 'u8' ? 8n : field.type === 'u16' ? 16n : 32n;
    v &= (1n << width) - 1n;
    if (field.type === 's32' && v >= 1n << 31n) v -= 1n << 32n;
    value[name] = field.type === 'u64' ? v : Number(v);
  }
  writeFields(spec, bytes, value as never);
  const va = p.scratchArea();
  p.memory.write(va, bytes.subarray(0, Math.min(size, bytes.length)));
  const ret = p.ioctl(fd, command.cmd, va);
  if (ret > 0 && command.createsFd !== undefined) place(actor, ret);
  if (ret === 0 && command.name === 'IOMMU_IOAS_NOIOMMU_GET_PA') {
    const out = p.memory.read(va + 32n, 8);
    if (out !== undefined)
      physAddrs.push(new DataView(out.buffer, out.byteOffset).getBigUint64(0, true));
    if (physAddrs.length > 64) physAddrs.shift();
  }
  return { call: command.name, ret };
}

/** Programs an edu DMA through a device fd's BAR0 (region 0 at offset 0). */
function dmaOf(
  actor: Actor,
  s: Extract<Step, { kind: 'dma' }>,
  physAddrs: bigint[],
): { call: string; ret: number } | undefined {
  const fd = actor.slots[s.fd];
  if (fd === undefined) return undefined;
  const p = actor.proc;
  const u64 = (v: bigint): Uint8Array => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v & ((1n << 64n) - 1n), true);
    return b;
  };
  const ram =
    s.target === 0
      ? 0x100000n + (s.raw % 16n) * PAGE
      : s.target === 1 && physAddrs.length > 0
        ? physAddrs[Number(s.raw % BigInt(physAddrs.length))]!
        : s.raw;
  // Bus mastering on (config space at region 7), then the DMA registers.
  const cmd = p.pread(fd, 2, 7n << 40n);
  if (typeof cmd === 'number') return { call: 'pread(config)', ret: cmd };
  p.pwrite(fd, new Uint8Array([cmd[0]! | 0x6, cmd[1]!]), (7n << 40n) + 4n);
  const buf = 0x40000n;
  const writes: [bigint, bigint][] = [
    [EduReg.DMA_SRC, s.toRam ? buf : ram],
    [EduReg.DMA_DST, s.toRam ? ram : buf],
    [EduReg.DMA_COUNT, BigInt(s.length)],
    [EduReg.DMA_CMD, s.toRam ? 3n : 1n],
  ];
  for (const [off, v] of writes) {
    const ret = p.pwrite(fd, u64(v), off);
    if (ret < 0) return { call: 'pwrite(edu)', ret };
  }
  return { call: 'pwrite(edu)', ret: 0 };
}

/** fast-check's runner over playSteps: `runs` runs of up to `length` steps from `seed`. */
export async function fuzz(options: {
  readonly seed: number;
  readonly runs: number;
  readonly length: number;
  readonly checkEvery?: number;
  readonly onRun?: (result: FuzzResult) => void;
}): Promise<void> {
  await fc.assert(
    fc.asyncProperty(
      fc.array(step, {
        minLength: Math.ceil(options.length / 2),
        maxLength: options.length,
        size: 'max',
      }),
      async (steps) => {
        const result = await playSteps(steps, options.checkEvery);
        options.onRun?.(result);
        if (result.problems.length > 0) throw new Error(result.problems.join('\n'));
      },
    ),
    { seed: options.seed, numRuns: options.runs, endOnFailure: false },
  );
}
