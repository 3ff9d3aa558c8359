/**
 * For tests of calls that go on over several turns of the event loop: an ioctl made as a served
 * client's call is (by a task that may yield), and the wait for its answer with something done
 * on every other turn meanwhile.
 */
import { withFailNth } from '../fault/fault.ts';
import { isBlocked, type MaybeBlocked } from '../host/file.ts';
import type { SimProcess } from '../host/sim-process.ts';
import { type Decoded, encodeStruct, type FieldTable, type StructSpec } from '../uapi/struct.ts';

/** The ioctl `cmd` on `fd` with `fields` at `arg`, by a task of `proc` that may yield. */
export function served<F extends FieldTable>(
  proc: SimProcess,
  fd: number,
  cmd: number,
  spec: StructSpec<F>,
  fields: Partial<Decoded<F>>,
  arg = proc.alloc(BigInt(spec.size)),
): MaybeBlocked {
  const task = { ...proc.task(), yields: true };
  const file = task.fds.fileOf(fd)!;
  proc.memory.write(arg, encodeStruct(spec, fields));
  return withFailNth(proc.failNth, () => file.fops.ioctl!(file, task, cmd, arg)) as MaybeBlocked;
}

/** The call's result, with `during` run on every other turn of the event loop meanwhile. */
export async function settle(
  value: MaybeBlocked,
  during: (turn: number) => void = () => {},
): Promise<{ ret: number; turns: number }> {
  if (!isBlocked(value)) return { ret: value, turns: 0 };
  let turns = 0;
  let done = false;
  const other = (): void => {
    if (done) return;
    during(turns++);
    setImmediate(other);
  };
  setImmediate(other);
  const ret = await value.blocked;
  done = true;
  return { ret, turns };
}
