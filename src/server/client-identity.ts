/**
 * Who a client is, from the kernel rather than from the client. The shim reports its pid, tid,
 * uids, gids, capabilities and memlock limit in every request (struct emu_creds); anyone can
 * connect to the socket and write any of that. So the server takes the peer's pid, uid and gid
 * from SO_PEERCRED (recorded by the kernel at connect(), read through the fd addon) and checks
 * every claim against it and against /proc:
 *
 * - the pid must be the peer's (a transport or object connection is made by the process itself;
 *   a fork child makes its own), the tid one of its threads, fixed for a transport after HELLO;
 * - uids, gids and capabilities that differ from the peer's are read from the thread's
 *   /proc status: a claim can only lower what the thread holds (claim & actual);
 * - the memlock limit is the lower of the claim and /proc/<pid>/limits (read when pinning);
 * - a file (an object connection's socket) a client names must be one it holds an fd on.
 *
 * Memory (/proc/<pid>/mem), eventfds (pidfd_getfd) and fds (/proc/<pid>/task/<tid>/fd) are then
 * only ever the peer's own.
 */
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { fdAddon } from './fd-addon.ts';
import type { WireCreds } from './protocol.ts';

/** The process at the other end of a connection, as the kernel saw it connect. */
export interface PeerIdentity {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** RLIM_INFINITY as the shim reports it. */
const RLIM_INFINITY = (1n << 64n) - 1n;

/** The fd of a connected socket (libuv's pipe handle exposes it on Unix). */
function socketFd(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * The peer of a freshly accepted connection: its identity, 'unverifiable' when the fd addon is
 * not built (claims are then taken as they come, and the server says so once), or why it could
 * not be read.
 */
export function peerIdentity(socket: net.Socket): PeerIdentity | 'unverifiable' | string {
  const addon = fdAddon();
  if (addon === undefined) return 'unverifiable';
  const fd = socketFd(socket);
  if (fd === undefined) return 'no fd for the connection';
  const cred = addon.peercred(fd);
  if (typeof cred === 'number') return `SO_PEERCRED failed (errno ${-cred})`;
  const [pid, uid, gid] = cred;
  if (pid <= 0) return 'the peer has no pid in our namespace';
  return { pid, uid, gid };
}

/** Whether thread `tid` belongs to process `pid`. */
export function isThreadOf(pid: number, tid: number): boolean {
  if (!Number.isInteger(tid) || tid <= 0) return false;
  try {
    fs.statSync(`/proc/${pid}/task/${tid}`);
    return true;
  } catch {
    return false;
  }
}

interface ThreadStatus {
  readonly uid: number;
  readonly euid: number;
  readonly gid: number;
  readonly egid: number;
  readonly capEff: bigint;
}

/** The ids and effective capabilities of a thread, from /proc/<pid>/task/<tid>/status. */
function threadStatus(pid: number, tid: number): ThreadStatus | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const uids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(text);
  const gids = /^Gid:\s+(\d+)\s+(\d+)/m.exec(text);
  const caps = /^CapEff:\s+([0-9a-f]+)/m.exec(text);
  if (uids === null || gids === null || caps === null) return undefined;
  return {
    uid: Number(uids[1]),
    euid: Number(uids[2]),
    gid: Number(gids[1]),
    egid: Number(gids[2]),
    capEff: BigInt(`0x${caps[1]}`),
  };
}

/** The soft RLIMIT_MEMLOCK of a process, from /proc/<pid>/limits; undefined if unreadable. */
export function memlockLimitOf(pid: number): bigint | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
  } catch {
    return undefined;
  }
  const m = /^Max locked memory\s+(\S+)/m.exec(text);
  if (m === null) return undefined;
  return m[1] === 'unlimited' ? RLIM_INFINITY : BigInt(m[1]!);
}

/** A claim already checked on one connection, and what it was found to be. */
export interface CheckedClaim {
  readonly claim: WireCreds;
  readonly creds: WireCreds;
}

function sameIds(a: WireCreds, b: WireCreds): boolean {
  return (
    a.uid === b.uid &&
    a.euid === b.euid &&
    a.gid === b.gid &&
    a.egid === b.egid &&
    a.capEff === b.capEff
  );
}

/**
 * The credentials a request may act with: the claim checked against the peer (see above), or
 * why it is refused. `last` is the previous result on the same connection: an unchanged claim
 * is not read from /proc again (a thread's claims change only when it changes its ids or
 * capabilities).
 */
export function checkClaim(
  peer: PeerIdentity,
  claim: WireCreds,
  last: CheckedClaim | undefined,
): CheckedClaim | string {
  if (claim.pid !== peer.pid) return `claims pid ${claim.pid} but is pid ${peer.pid}`;
  if (last !== undefined && last.claim.tid === claim.tid && sameIds(last.claim, claim)) {
    return last.claim === claim
      ? last
      : { claim, creds: { ...last.creds, memlock: claim.memlock, mmCookie: claim.mmCookie } };
  }
  if (!isThreadOf(peer.pid, claim.tid))
    return `claims tid ${claim.tid}, not a thread of pid ${peer.pid}`;
  const plain =
    claim.capEff === 0n &&
    claim.uid === peer.uid &&
    claim.euid === peer.uid &&
    claim.gid === peer.gid &&
    claim.egid === peer.gid;
  if (plain) return { claim, creds: claim };
  const actual = threadStatus(peer.pid, claim.tid);
  if (actual === undefined) return `cannot read the status of thread ${claim.tid}`;
  return {
    claim,
    creds: {
      ...claim,
      uid: actual.uid,
      euid: actual.euid,
      gid: actual.gid,
      egid: actual.egid,
      capEff: claim.capEff & actual.capEff,
    },
  };
}

/**
 * Whether process `pid` holds an fd on the socket whose inode is `ino` (socket:[ino]). `fd` is
 * where the caller says it is (the shim sends the fd number with most requests): looked at
 * first, so the usual check is one readlink; otherwise, or if it is not there, every fd is.
 */
export function holdsSocket(pid: number, ino: bigint, fd?: number): boolean {
  const dir = `/proc/${pid}/fd`;
  const want = `socket:[${ino}]`;
  if (fd !== undefined && Number.isInteger(fd) && fd >= 0 && linkOf(`${dir}/${fd}`) === want) {
    return true;
  }
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return false;
  }
  return names.some((name) => linkOf(`${dir}/${name}`) === want);
}

function linkOf(file: string): string | undefined {
  try {
    return fs.readlinkSync(file);
  } catch {
    return undefined; // closed meanwhile
  }
}
