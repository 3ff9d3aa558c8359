/**
 * copy_from_user / copy_to_user for the calling task. Each is a fault-injection site, like the
 * kernel's fail_usercopy.
 */
import { shouldFail } from '../fault/fault.ts';
import { type Decoded, decodeStruct, type FieldTable, type StructSpec } from '../uapi/struct.ts';
import type { MaybeBlocked } from './file.ts';
import { afterWalk, type LongWalk, walkNow } from './resched.ts';
import type { Task } from './task.ts';

/** The bytes at [addr, addr+length) of the caller, or undefined for EFAULT. */
export function copyFromUser(task: Task, addr: bigint, length: number): Uint8Array | undefined {
  if (shouldFail('copy-from-user')) return undefined;
  if (length === 0) return new Uint8Array(0);
  return task.memory.read(addr, length);
}

/** Writes data at addr in the caller; false for EFAULT. */
export function copyToUser(task: Task, addr: bigint, data: Uint8Array): boolean {
  if (shouldFail('copy-to-user')) return false;
  if (data.length === 0) return true;
  return task.memory.write(addr, data);
}

const PAGE = 4096;
/**
 * At most this much is zeroed per write, or checked per read: clearing never allocates what
 * userspace asked for, and a walk over gigabytes is a few thousand system calls.
 */
const CLEAR_CHUNK = 256 * PAGE;
const ZEROES = new Uint8Array(CLEAR_CHUNK);

/** The bytes from `at` to the end of its page, or to `end` if that comes first. */
function upTo(at: bigint, end: bigint, boundary: number): number {
  const left = boundary - Number(at % BigInt(PAGE));
  return end - at < BigInt(left) ? Number(end - at) : left;
}

/**
 * clear_user(): zeroes [addr, addr+length) of the caller; false for EFAULT, with everything
 * before the first inaccessible page zeroed, as the kernel's fault handling leaves it. Not an
 * injection site (fail_usercopy does not cover clear_user). Runs to its end at once; a handler
 * that may clear gigabytes uses clearUserThen.
 */
export function clearUser(task: Task, addr: bigint, length: number): boolean {
  return walkNow(clearWalk(task, addr, length));
}

/**
 * clear_user() and then `then` with its result (false for EFAULT), letting other callers run
 * between slices of a long clear (resched.ts). The kernel's clear_user neither reschedules nor
 * looks at signals itself; its callers' loops do, so the call still cannot be interrupted.
 */
export function clearUserThen(
  task: Task,
  addr: bigint,
  length: number,
  then: (ok: boolean) => MaybeBlocked,
): MaybeBlocked {
  return afterWalk(task, clearWalk(task, addr, length), then);
}

function* clearWalk(task: Task, addr: bigint, length: number): LongWalk<boolean> {
  const end = addr + BigInt(length);
  for (let at = addr; at < end; ) {
    // Chunks end on page boundaries; a chunk that faults is redone page by page.
    const n = upTo(at, end, CLEAR_CHUNK);
    if (!task.memory.write(at, ZEROES.subarray(0, n))) return clearUntilFault(task, at, n);
    at += BigInt(n);
    yield n;
  }
  return true;
}

/** Zeroes page by page from addr up to the first page that faults: always EFAULT (false). */
function clearUntilFault(task: Task, addr: bigint, length: number): false {
  const end = addr + BigInt(length);
  for (let at = addr; at < end; ) {
    const n = upTo(at, end, PAGE);
    if (!task.memory.write(at, ZEROES.subarray(0, n))) return false;
    at += BigInt(n);
  }
  return false;
}

/**
 * get_user(): the bytes at [addr, addr+length) (at most 8), or undefined for EFAULT. Not an
 * injection site: fail_usercopy covers copy_from_user() and strncpy_from_user(), not get_user().
 */
export function getUser(task: Task, addr: bigint, length: 1 | 2 | 4 | 8): Uint8Array | undefined {
  return task.memory.read(addr, length);
}

/**
 * check_zeroed_user: 1 if all zero, 0 if not, undefined for EFAULT. Not an injection site: the
 * kernel reads with unsafe_get_user() here, which fail_usercopy does not cover. Runs to its end
 * at once; copy_struct_from_user() of a size userspace chose uses checkZeroedUserThen.
 */
export function checkZeroedUser(task: Task, addr: bigint, length: number): 0 | 1 | undefined {
  return walkNow(zeroedWalk(task, addr, length));
}

/**
 * check_zeroed_user() and then `then` with its result, letting other callers run between slices
 * of a long check (resched.ts). Like the kernel's, the check is not interrupted by signals.
 */
export function checkZeroedUserThen(
  task: Task,
  addr: bigint,
  length: number,
  then: (zeroed: 0 | 1 | undefined) => MaybeBlocked,
): MaybeBlocked {
  return afterWalk(task, zeroedWalk(task, addr, length), then);
}

function* zeroedWalk(task: Task, addr: bigint, length: number): LongWalk<0 | 1 | undefined> {
  for (let done = 0; done < length; done += CLEAR_CHUNK) {
    const n = Math.min(CLEAR_CHUNK, length - done);
    const bytes = task.memory.read(addr + BigInt(done), n);
    if (bytes === undefined) return undefined;
    // A memcmp against zeroes, not a callback per byte.
    if (Buffer.compare(bytes, ZEROES.subarray(0, n)) !== 0) return 0;
    yield n;
  }
  return 1;
}

/**
 * `copy_from_user(&s, arg, minsz)` into a zeroed struct, as VFIO handlers do: the mandatory part
 * of `spec` decoded, optional fields 0. undefined for EFAULT.
 */
export function copyStructMinsz<F extends FieldTable>(
  task: Task,
  arg: bigint,
  spec: StructSpec<F>,
): Decoded<F> | undefined {
  const bytes = copyFromUser(task, arg, spec.minSize);
  if (bytes === undefined) return undefined;
  const buf = new Uint8Array(spec.size);
  buf.set(bytes);
  return decodeStruct(spec, buf);
}
