/**
 * NOTE: a call on an emulated fd that the server does not otherwise see (dup, munmap) or whose
 * result only the shim knows (the address mmap returned). The shim sends them only while the
 * server traces (HELLO's NOTES), for the trace alone: nothing here changes any state, except
 * VMA_CLOSE, always sent, which ends one mapping of an iommufd region (decision 231).
 */

import type { IommufdCtx } from '../../iommufd/context.ts';
import { iommufdFops } from '../../iommufd/main.ts';
import { type ServerState, trace } from '../call.ts';
import type { Connection } from '../connection.ts';
import { describeMmap, fdLabel, requestFd } from '../describe.ts';
import { DupCall, decodeNote, NoteKind, type Request } from '../protocol.ts';

const DUP_NAMES: Record<number, string> = {
  [DupCall.DUP]: 'dup',
  [DupCall.DUP2]: 'dup2',
  [DupCall.DUP3]: 'dup3',
  [DupCall.F_DUPFD]: 'fcntl',
  [DupCall.F_DUPFD_CLOEXEC]: 'fcntl',
};
const O_CLOEXEC = 0o2000000;

export function note(s: ServerState, conn: Connection, req: Request): void {
  const args = decodeNote(req.payload);
  if (args === undefined) {
    s.protocolError(conn, 'NOTE without its args');
    return;
  }
  conn.reply(req, 0);
  const object = s.files.get(req.obj);
  const path = object?.path ?? s.files.pathOf(req.obj);
  if (path === undefined) return;
  const label = fdLabel(requestFd(req), path);
  const result = BigInt.asIntN(64, req.a1);
  const ret = result < 0n ? Number(result) : 0;
  const [a0, a1, a2, a3] = args as [bigint, bigint, bigint, bigint];
  if (req.a0lo === NoteKind.VMA_CLOSE) {
    if (object === undefined || object.file.fops !== iommufdFops) return;
    const memory = s.memories.forCall(req.creds);
    const mm = memory.mm;
    memory.done();
    s.kernel.iommufd.unmapped(object.file.privateData as IommufdCtx, mm, a0);
    return;
  }
  switch (req.a0lo) {
    case NoteKind.DUP: {
      const call = DUP_NAMES[Number(a0)];
      if (call === undefined) return;
      const asked = Number(BigInt.asIntN(64, a1));
      let detail = label;
      if (a0 === BigInt(DupCall.DUP2)) detail += `, ${asked}`;
      if (a0 === BigInt(DupCall.DUP3))
        detail += `, ${asked}, ${(Number(a2) & O_CLOEXEC) !== 0 ? 'O_CLOEXEC' : Number(a2)}`;
      if (a0 === BigInt(DupCall.F_DUPFD)) detail += `, F_DUPFD, ${asked}`;
      if (a0 === BigInt(DupCall.F_DUPFD_CLOEXEC)) detail += `, F_DUPFD_CLOEXEC, ${asked}`;
      trace(s, req.creds, call, detail, result < 0n ? ret : Number(result));
      return;
    }
    case NoteKind.MMAP: {
      if (object === undefined) return;
      const prot = Number(a2 & 0xffffffffn);
      const flags = Number(a2 >> 32n);
      const detail = describeMmap(label, object.file, a0, a1, prot, flags, a3);
      trace(
        s,
        req.creds,
        'mmap',
        detail,
        ret,
        result < 0n ? undefined : `0x${result.toString(16)}`,
      );
      return;
    }
    case NoteKind.MUNMAP:
      trace(s, req.creds, 'munmap', `0x${a0.toString(16)}, ${a1}`, ret);
      return;
  }
}
