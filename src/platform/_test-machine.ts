/**
 * The machine fixture of the platform tests: a Machine whose events are collected, a process's
 * memory to pin from, and the steps iommufd would take to give a device a domain over it (pin,
 * allocate a domain of dmar0, map the pinned runs). Internal to the tests; not exported from the
 * package.
 */
import assert from 'node:assert/strict';
import type { EmuEvent } from '../trace/events.ts';
import { TestUserMemory } from './_test-user-memory.ts';
import { allocDomain, type IommuDomain } from './iommu.ts';
import { Machine } from './machine.ts';
import type { PinnedRun } from './pinned-pages.ts';
import type { PlatformConfig } from './platform-config.ts';
import { PAGE_SIZE } from './sizes.ts';

/** Where the tests map the process's memory, and where they map it in a domain. */
export const VA = 0x7f0000000000n;
export const IOVA = 0x1000000n;

export interface MachineRig {
  readonly machine: Machine;
  readonly events: EmuEvent[];
  readonly mem: TestUserMemory;
}

const machines: Machine[] = [];

/** A machine of `platform` (the default one if none), its events, and an empty process memory. */
export function machineRig(platform?: PlatformConfig): MachineRig {
  const machine = new Machine(platform);
  machines.push(machine);
  const events: EmuEvent[] = [];
  machine.events.subscribe((e) => events.push(e));
  return { machine, events, mem: new TestUserMemory() };
}

/** Shuts down every machine made since the last call: each test file calls it in `afterEach`. */
export function shutdownMachines(): void {
  for (const m of machines.splice(0)) m.shutdown();
}

export function pin(
  machine: Machine,
  mem: TestUserMemory,
  va: bigint,
  npages: bigint,
  write = true,
): PinnedRun[] {
  const runs = machine.pinned.pin(mem, va, npages, write);
  assert.ok(Array.isArray(runs), `pin failed with errno ${runs}`);
  return runs;
}

/** What iommufd will do: map each pinned run at the matching IOVA. */
export function mapRuns(
  domain: IommuDomain,
  runs: readonly PinnedRun[],
  va: bigint,
  iova: bigint,
  prot: number,
): void {
  for (const run of runs) {
    const rc = domain.map(iova + (run.va - va), run.pfn << 12n, run.npages * PAGE_SIZE, prot);
    assert.equal(rc, 0);
  }
}

/** A paging domain of dmar0. */
export function newDomain(machine: Machine): IommuDomain {
  const d = allocDomain(machine.iommus.get('dmar0')!);
  assert.ok(typeof d !== 'number');
  return d;
}
