/**
 * The server's view of a client's credentials: the user namespace read from /proc against the
 * emulator's own, whatever the shim reported, and the trace lines for grants and other namespaces.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, test } from 'node:test';
import { CAP_FULL_SET, CAP_SYS_RAWIO, copyCredentials } from '../host/credentials.ts';
import { type EmuEvent, EventBus } from '../trace/events.ts';
import { ClientCredentials } from './client-creds.ts';
import type { WireCreds } from './protocol.ts';

/** A pid above pid_max: no such process. */
const NO_SUCH_PID = 0x7fffffff;
const RAWIO = 1n << BigInt(CAP_SYS_RAWIO);

function wire(pid: number, over: Partial<WireCreds> = {}): WireCreds {
  return {
    pid,
    tid: pid,
    uid: 0,
    euid: 0,
    gid: 0,
    egid: 0,
    capEff: CAP_FULL_SET,
    memlock: 1n << 20n,
    mmCookie: 1n,
    ...over,
  };
}

function logged(): { events: EventBus; lines: string[] } {
  const events = new EventBus();
  const lines: string[] = [];
  events.subscribe((e: EmuEvent) => {
    if (e.kind === 'log') lines.push(`${e.level}: ${e.message}`);
  });
  return { events, lines };
}

/** A process that made a user namespace of its own (unshare -r), once it is in it. */
async function nestedProcess(): Promise<ChildProcess | string> {
  const probe = spawnSync('unshare', ['-r', 'true'], { encoding: 'utf8' });
  if (probe.error !== undefined) return `unshare: ${probe.error.message}`;
  if (probe.status !== 0) return `user namespaces unavailable: ${probe.stderr.trim()}`;
  const child = spawn('unshare', ['-r', 'sleep', '30'], { stdio: 'ignore' });
  const ours = fs.readlinkSync('/proc/self/ns/user');
  for (let i = 0; i < 200; i++) {
    try {
      if (fs.readlinkSync(`/proc/${child.pid}/ns/user`) !== ours) return child;
    } catch {
      // Not started yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  child.kill('SIGKILL');
  return 'the unshare child never left our user namespace';
}

describe('ClientCredentials', () => {
  test("a client in the emulator's user namespace brings what the shim reported", () => {
    const { events, lines } = logged();
    const cc = new ClientCredentials(events, 0n);
    const creds = cc.of(wire(process.pid, { uid: 1234, capEff: RAWIO }));
    assert.equal(creds.userNs, 'initial');
    assert.equal(creds.capEff, RAWIO);
    assert.equal(creds.uid, 1234);
    assert.equal(creds.grantedCaps, 0n);
    assert.equal(creds.memlockLimit, 1n << 20n);
    assert.deepEqual(lines, []);
  });

  test('root of a user namespace of its own holds nothing; its uid is the outside one', async (t) => {
    const child = await nestedProcess();
    if (typeof child === 'string') return t.skip(child);
    try {
      const { events, lines } = logged();
      const cc = new ClientCredentials(events, 0n);
      // What the shim inside would report: uid 0, a full effective set.
      const creds = cc.of(wire(child.pid!, { uid: 0, capEff: CAP_FULL_SET }));
      assert.equal(creds.userNs, 'other');
      assert.equal(creds.capEff, 0n);
      assert.equal(creds.uid, process.getuid?.());
      cc.of(wire(child.pid!));
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, /^info: pid \d+: in a user namespace other than the emulator's/);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a process whose namespace cannot be read holds nothing, and is reported once', () => {
    const { events, lines } = logged();
    const cc = new ClientCredentials(events, 0n);
    const creds = cc.of(wire(NO_SUCH_PID, { uid: 0 }));
    assert.equal(creds.userNs, 'other');
    assert.equal(creds.capEff, 0n);
    assert.equal(creds.uid, 65534);
    cc.of(wire(NO_SUCH_PID));
    assert.equal(lines.filter((l) => l.startsWith('warn:')).length, 1, lines.join('\n'));
  });

  test('the namespace is read when a field that depends on it is first read, once', () => {
    const { events, lines } = logged();
    const cc = new ClientCredentials(events, 0n);
    // A process that is gone: reading its namespace fails, which the warning shows.
    const creds = cc.of(wire(NO_SUCH_PID, { uid: 0 }));
    assert.equal(creds.pid, NO_SUCH_PID);
    assert.equal(creds.memlockLimit, 1n << 20n);
    assert.deepEqual(lines, [], 'nothing read yet');
    assert.equal(creds.capEff, 0n);
    assert.equal(lines.length, 1, lines.join('\n'));
    // A copy (an open file's f_cred) holds the values, not the getters.
    const copy = copyCredentials(creds);
    assert.equal(Object.getOwnPropertyDescriptor(copy, 'capEff')?.value, 0n);
    assert.equal(copy.userNs, 'other');
    assert.equal(copy.uid, 65534);
    assert.equal(lines.length, 1, 'resolved once per call');
  });

  test('a grant is given to every client and named once per program (pid and exec)', () => {
    const { events, lines } = logged();
    const cc = new ClientCredentials(events, RAWIO);
    const creds = cc.of(wire(process.pid, { capEff: 0n }));
    assert.equal(creds.userNs, 'initial');
    assert.equal(creds.grantedCaps, RAWIO);
    cc.of(wire(process.pid, { capEff: 0n }));
    assert.deepEqual(lines, [
      `info: pid ${process.pid}: capabilities granted by the emulator (--cap): CAP_SYS_RAWIO; the task itself lacks: CAP_SYS_RAWIO`,
    ]);
    // After an exec (a new address space) the program holds its full set itself.
    cc.of(wire(process.pid, { mmCookie: 2n }));
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /the task itself lacks: none$/);
  });
});
