/**
 * OPEN: the first and only request on a new object connection. The path is walked by the kernel
 * model's VFS; a directory is answered EISDIR, which tells the shim to open it in the testbed.
 */
import * as fs from 'node:fs';
import type { Task } from '../../host/task.ts';
import { isDirectoryFile, S_IFMT, S_IFREG } from '../../host/vfs.ts';
import { Errno } from '../../uapi/errno.ts';
import { checkResult, guarded, type ServerState, taskOf, trace } from '../call.ts';
import type { OpenObject } from '../client-fds.ts';
import type { Connection, ReplyExtra } from '../connection.ts';
import { openFlags, quotePath } from '../describe.ts';
import { decodeCString, encodeRdev, FD_UNKNOWN, type Request, RW_MAX } from '../protocol.ts';

const { O_WRONLY } = fs.constants;

export function open(s: ServerState, conn: Connection, req: Request): void {
  const path = decodeCString(req.payload);
  if (path === undefined) {
    s.protocolError(conn, 'OPEN without a path');
    return;
  }
  const why = s.files.unusableInode(conn, req.a1, req.obj);
  if (why !== undefined) {
    s.protocolError(conn, `OPEN ${why}`);
    return;
  }
  conn.kind = 'object';
  const flags = req.a0lo;
  const memory = s.memories.forCall(req.creds);
  const task = taskOf(s, req.creds, memory);
  let ret: number;
  let extra: ReplyExtra = {};
  let snapshot: Uint8Array | undefined;
  const opened = guarded(s, `open ${path}`, req.creds, () => s.kernel.vfs.open(task, path, flags));
  if (typeof opened === 'object' && isDirectoryFile(opened.file)) {
    // Directories are the testbed's: the shim opens them there (readdir, fchdir, openat).
    opened.file.put();
    ret = -Errno.EISDIR;
  } else if (typeof opened === 'object') {
    const { file, stat } = opened;
    // Named as /proc/<pid>/fd names it: the path with its links resolved.
    const object = s.files.add(file, opened.path, stat.mode, req.a1, req.creds);
    conn.object = object;
    ret = object.id;
    extra = { v0: BigInt(object.mode), v1: encodeRdev(file.rdev) };
    snapshot = snapshotOf(s, object, flags, task);
  } else {
    ret = checkResult(s, `open ${path}`, opened, -1);
  }
  memory.done();
  // A directory is opened in the testbed by the shim (EISDIR here): not a call on a file.
  if (s.kernel.events.wants('syscall') && ret !== -Errno.EISDIR) {
    const fd = req.obj;
    const shown = ret > 0 && fd !== FD_UNKNOWN ? fd : ret;
    trace(s, req.creds, 'open', `${quotePath(path)}, ${openFlags(flags)}`, shown);
  }
  conn.reply(req, ret, extra);
  if (snapshot !== undefined) {
    // After the reply: what a read that bypasses the shim finds, then end of file.
    conn.send(snapshot);
    conn.socket.end();
  }
}

/**
 * The contents of a text file (sysfs attribute, debugfs knob, fail-nth) opened for reading,
 * as of the open: the server sends them down the object connection and half-closes it, so that
 * glibc's stdio reading the fd with its internal read() (`sed < /sys/...`, fgets(stdin)),
 * which the shim cannot see, gets them and then EOF, as from the file. The shim's own reads
 * never look there.
 */
function snapshotOf(
  s: ServerState,
  object: OpenObject,
  flags: number,
  task: Task,
): Uint8Array | undefined {
  const { file } = object;
  const { fops } = file;
  const read = fops.read;
  if ((object.mode & S_IFMT) !== S_IFREG || (flags & 3) === O_WRONLY || read === undefined) {
    return undefined;
  }
  // A text attribute only: reading /proc/<pid>/pagemap has effects (it holds pages resident).
  if (file.kind !== 'sysfs') return undefined;
  const data = guarded(s, `read on ${object.path}`, object.creds, () =>
    read.call(fops, file, task, RW_MAX, 0n),
  );
  return data instanceof Uint8Array ? data : undefined;
}
