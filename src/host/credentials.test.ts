/**
 * capable() as the kernel's ns_capable(&init_user_ns, cap): the capability names, the emulator's
 * grant, and a SimProcess in a user namespace of its own opening the no-IOMMU cdev.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createEmulator } from '../index.ts';
import { Errno } from '../uapi/errno.ts';
import {
  CAP_FULL_SET,
  CAP_IPC_LOCK,
  CAP_LAST_CAP,
  CAP_SYS_RAWIO,
  type Credentials,
  capable,
  capName,
  capSetNames,
  capsAddedByGrant,
  type NamespacedCaps,
  parseCapSet,
} from './credentials.ts';

const NOIOMMU_NODE = '/dev/vfio/devices/noiommu-vfio2';
const bit = (cap: number): bigint => 1n << BigInt(cap);

function creds(caps: NamespacedCaps, grantedCaps = 0n): Credentials {
  return {
    ...caps,
    pid: 1,
    tid: 1,
    uid: 0,
    grantedCaps,
    memlockLimit: 0n,
    fsIds: () => ({ fsuid: 0, fsgid: 0, groups: [] }),
  };
}

describe('capability names', () => {
  test('numbers and names of capability.h', () => {
    assert.equal(capName(0), 'CAP_CHOWN');
    assert.equal(capName(CAP_SYS_RAWIO), 'CAP_SYS_RAWIO');
    assert.equal(capName(CAP_LAST_CAP), 'CAP_CHECKPOINT_RESTORE');
    assert.equal(capName(CAP_LAST_CAP + 1), `cap_${CAP_LAST_CAP + 1}`);
    assert.equal(capSetNames(0n), 'none');
    assert.equal(capSetNames(bit(CAP_IPC_LOCK) | bit(CAP_SYS_RAWIO)), 'CAP_IPC_LOCK,CAP_SYS_RAWIO');
  });

  test('parseCapSet takes what capsh and setpriv take', () => {
    assert.equal(parseCapSet('CAP_SYS_RAWIO'), bit(CAP_SYS_RAWIO));
    assert.equal(parseCapSet('sys_rawio'), bit(CAP_SYS_RAWIO));
    assert.equal(
      parseCapSet('cap_ipc_lock, CAP_SYS_RAWIO'),
      bit(CAP_IPC_LOCK) | bit(CAP_SYS_RAWIO),
    );
    assert.equal(parseCapSet('all'), CAP_FULL_SET);
    assert.deepEqual(parseCapSet('CAP_SYS_RAWIO,cap_nope'), { unknown: 'cap_nope' });
    for (let cap = 0; cap <= CAP_LAST_CAP; cap++) assert.equal(parseCapSet(capName(cap)), bit(cap));
  });
});

describe('capable()', () => {
  test('the effective set counts in the initial user namespace only', () => {
    assert.equal(capable(creds({ userNs: 'initial', capEff: CAP_FULL_SET }), CAP_SYS_RAWIO), true);
    assert.equal(capable(creds({ userNs: 'initial', capEff: 0n }), CAP_SYS_RAWIO), false);
    assert.equal(capable(creds({ userNs: 'other', capEff: 0n }), CAP_SYS_RAWIO), false);
  });

  test("the emulator's grant adds to the task's own set, in any namespace", () => {
    const grant = bit(CAP_SYS_RAWIO);
    const other = creds({ userNs: 'other', capEff: 0n }, grant);
    assert.equal(capable(other, CAP_SYS_RAWIO), true);
    assert.equal(capable(other, CAP_IPC_LOCK), false);
    assert.equal(capsAddedByGrant(other), grant);
    assert.equal(capsAddedByGrant(creds({ userNs: 'initial', capEff: CAP_FULL_SET }, grant)), 0n);
  });
});

describe('SimProcess credentials', () => {
  test('root of another user namespace gets EPERM on the no-IOMMU cdev; a grant opens it', () => {
    const emu = createEmulator({ enableUnsafeNoiommuMode: true });
    const nested = emu.spawn({ userNs: 'other' });
    assert.equal(nested.capEff, CAP_FULL_SET, 'the process keeps its own full set');
    assert.equal(nested.open(NOIOMMU_NODE), -Errno.EPERM);
    const granted = emu.spawn({ userNs: 'other', grantedCaps: bit(CAP_SYS_RAWIO) });
    const fd = granted.open(NOIOMMU_NODE);
    assert.ok(fd >= 0, `open: ${fd}`);
    // A fork child keeps both the namespace and the grant.
    const child = nested.fork();
    assert.equal(child.open(NOIOMMU_NODE), -Errno.EPERM);
    assert.equal(granted.close(fd), 0);
    // The default platform gives the node to the user running the emulator (0600).
    const invoking = process.getuid?.() ?? 0;
    const unprivileged = emu.spawn({ uid: invoking, capEff: 0n, grantedCaps: bit(CAP_SYS_RAWIO) });
    const fd2 = unprivileged.open(NOIOMMU_NODE);
    assert.ok(fd2 >= 0, `open: ${fd2}`);
    assert.equal(unprivileged.close(fd2), 0);
    assert.equal(emu.spawn().open(NOIOMMU_NODE) >= 0, true);
  });
});
