/**
 * Whether the shim can serve a program, read from its ELF file before it starts.
 *
 * The shim reaches a program through LD_PRELOAD, that is through the dynamic linker and the libc
 * calls it wraps. A statically linked program (static-pie too) has no dynamic linker, a Go
 * program makes its system calls itself (cgo or not), and a program for another architecture
 * cannot load an x86-64 shim: none of their calls would reach the emulator, so `exec` refuses
 * them with a message (exit 126) rather than let them talk to the host's devices. The guard
 * (native/guard/guard.c) covers what this cannot see: raw system calls in a dynamically linked
 * program, and programs started later by the one checked here.
 *
 * A script (`#!`) is judged by its interpreter; `#!/usr/bin/env NAME` only as far as env itself.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type ProgramCheck =
  /** Found, and an ELF the shim can serve (or not an ELF at all: the kernel decides). */
  | { readonly kind: 'served'; readonly path: string }
  | { readonly kind: 'missing' }
  /** Found but not runnable by us (no execute permission, a directory). */
  | { readonly kind: 'not-runnable'; readonly path: string; readonly why: string }
  /** An ELF the shim cannot reach. */
  | { readonly kind: 'refused'; readonly path: string; readonly why: string };

const EM_X86_64 = 62;
const PT_INTERP = 3;
const PT_NOTE = 4;
/** The note Go's linker writes in every binary (owner "Go", type 4: its build id). */
const GO_NOTE_TYPE = 4;
/** Sections only Go's toolchain makes. */
const GO_SECTIONS = new Set(['.go.buildinfo', '.note.go.buildid', '.gopclntab']);
/** How many `#!` interpreters deep to follow. */
const MAX_SCRIPT_DEPTH = 4;

const MACHINES: Readonly<Record<number, string>> = {
  3: 'i386',
  8: 'MIPS',
  20: 'PowerPC',
  21: 'PowerPC 64',
  22: 'S/390',
  40: 'ARM',
  183: 'AArch64',
  243: 'RISC-V',
  258: 'LoongArch',
};

/** program as spawn would find it: a path when it has a slash, else the first match in PATH. */
export function resolveProgram(program: string, env: NodeJS.ProcessEnv): string | undefined {
  if (program.includes('/')) return fs.existsSync(program) ? path.resolve(program) : undefined;
  for (const dir of (env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const candidate = path.resolve(dir === '' ? '.' : dir, program);
    try {
      const st = fs.statSync(candidate);
      if (st.isFile()) {
        fs.accessSync(candidate, fs.constants.X_OK);
        return candidate;
      }
    } catch {
      // not here, or not runnable: the next directory (as execvp does)
    }
  }
  return undefined;
}

/** Finds program and tells whether the shim can serve it. */
export function checkProgram(program: string, env: NodeJS.ProcessEnv): ProgramCheck {
  const found = resolveProgram(program, env);
  if (found === undefined) return { kind: 'missing' };
  try {
    if (fs.statSync(found).isDirectory())
      return { kind: 'not-runnable', path: found, why: 'is a directory' };
    fs.accessSync(found, fs.constants.X_OK);
  } catch {
    return { kind: 'not-runnable', path: found, why: 'permission denied' };
  }
  const why = whyNotServed(found, 0);
  return why === undefined
    ? { kind: 'served', path: found }
    : { kind: 'refused', path: found, why };
}

/** Why the shim cannot serve the program in file, or undefined when it can. */
export function whyNotServed(file: string, depth: number): string | undefined {
  let elf: ElfFacts | string | undefined;
  try {
    elf = readElfOrScript(file);
  } catch {
    return undefined; // unreadable but executable: the kernel will say
  }
  if (typeof elf === 'string') {
    if (depth >= MAX_SCRIPT_DEPTH || !elf.startsWith('/')) return undefined;
    const inner = whyNotServed(elf, depth + 1);
    return inner === undefined ? undefined : `its interpreter ${elf} ${inner}`;
  }
  if (elf === undefined) return undefined;
  if (elf.machine !== EM_X86_64 || !elf.is64) {
    const name = MACHINES[elf.machine] ?? `machine ${elf.machine}`;
    return `is a ${elf.is64 ? '64' : '32'}-bit ${name} program, and the shim is an x86-64 library`;
  }
  if (elf.isGo)
    return 'is a Go program: Go makes its system calls itself, so LD_PRELOAD cannot reach them';
  if (!elf.hasInterp)
    return 'is statically linked: it loads no shared library, so LD_PRELOAD cannot reach its calls';
  return undefined;
}

interface ElfFacts {
  readonly is64: boolean;
  readonly machine: number;
  readonly hasInterp: boolean;
  readonly isGo: boolean;
}

/** Reads length bytes at offset of an open file (fewer at its end). */
type Reader = (offset: number, length: number) => Buffer;

/**
 * The few facts of an ELF file this check needs, a script's interpreter (a string), or undefined
 * when the file is neither. Reads only the headers and notes, not the whole file.
 */
function readElfOrScript(file: string): ElfFacts | string | undefined {
  const fd = fs.openSync(file, 'r');
  try {
    const read: Reader = (offset, length) => {
      const buf = Buffer.alloc(Math.max(0, Math.min(length, 1 << 20)));
      const n = fs.readSync(fd, buf, 0, buf.length, offset);
      return buf.subarray(0, n);
    };
    const head = read(0, 256);
    if (head.subarray(0, 2).toString('latin1') === '#!') {
      const eol = head.indexOf(0x0a);
      const line = head.subarray(2, eol < 0 ? head.length : eol).toString('utf8');
      return line.trim().split(/[ \t]/)[0] ?? '';
    }
    return readElf(head, read);
  } finally {
    fs.closeSync(fd);
  }
}

function readElf(head: Buffer, read: Reader): ElfFacts | undefined {
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const is64 = head[4] === 2;
  const littleEndian = head[5] === 1;
  const machine = littleEndian ? head.readUInt16LE(18) : head.readUInt16BE(18);
  // Anything but a little-endian ELF64 is refused on its machine alone.
  if (!is64 || !littleEndian) return { is64, machine, hasInterp: true, isGo: false };
  const phoff = Number(head.readBigUInt64LE(32));
  const phentsize = head.readUInt16LE(54);
  const phnum = head.readUInt16LE(56);
  const phdrs = read(phoff, phnum * phentsize);
  let hasInterp = false;
  let isGo = false;
  for (let at = 0; at + 56 <= phdrs.length; at += phentsize) {
    const type = phdrs.readUInt32LE(at);
    if (type === PT_INTERP) hasInterp = true;
    if (type === PT_NOTE) {
      const offset = Number(phdrs.readBigUInt64LE(at + 8));
      const size = Number(phdrs.readBigUInt64LE(at + 32));
      if (hasGoNote(read(offset, size))) isGo = true;
    }
  }
  if (!isGo) isGo = hasGoSection(head, read);
  return { is64, machine, hasInterp, isGo };
}

/** Whether notes (the contents of a PT_NOTE segment) include Go's build id note. */
function hasGoNote(notes: Buffer): boolean {
  let at = 0;
  while (at + 12 <= notes.length) {
    const namesz = notes.readUInt32LE(at);
    const descsz = notes.readUInt32LE(at + 4);
    const type = notes.readUInt32LE(at + 8);
    const name = notes.subarray(at + 12, at + 12 + namesz).toString('latin1');
    if (name === 'Go\0' && type === GO_NOTE_TYPE) return true;
    at += 12 + align4(namesz) + align4(descsz);
  }
  return false;
}

/** Whether a section header names one of Go's sections (a stripped binary may have none). */
function hasGoSection(head: Buffer, read: Reader): boolean {
  const shoff = Number(head.readBigUInt64LE(40));
  const shentsize = head.readUInt16LE(58);
  const shnum = head.readUInt16LE(60);
  const shstrndx = head.readUInt16LE(62);
  if (shoff === 0 || shentsize < 64 || shstrndx >= shnum) return false;
  const shdrs = read(shoff, shnum * shentsize);
  const strtab = shstrndx * shentsize;
  if (strtab + 64 > shdrs.length) return false;
  const names = read(
    Number(shdrs.readBigUInt64LE(strtab + 24)),
    Number(shdrs.readBigUInt64LE(strtab + 32)),
  );
  for (let at = 0; at + 64 <= shdrs.length; at += shentsize) {
    const nameAt = shdrs.readUInt32LE(at);
    const nul = names.indexOf(0, nameAt);
    if (nameAt >= names.length || nul < 0) continue;
    if (GO_SECTIONS.has(names.subarray(nameAt, nul).toString('latin1'))) return true;
  }
  return false;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
