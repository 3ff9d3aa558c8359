/**
 * The built-in sweep scenarios. Each drives a fresh kernel through the uAPI the way a program
 * would, arms fail-nth where the selftest's fail_nth_enable() would, and stops at the first call
 * that fails. Functional checks (`ctx.check`) only state facts that hold whatever was injected
 * earlier, as long as the calls they depend on succeeded.
 */
import { CAP_FULL_SET, CAP_IPC_LOCK, CAP_SYS_RAWIO } from '../host/credentials.ts';
import { Errno } from '../uapi/errno.ts';
import * as u from '../uapi/iommufd.ts';
import { FIXED, IommufdOps, RW, VfioDeviceOps } from './_ops.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';

const PAGE = u.PAGE_SIZE;

/** Opens /dev/iommu in `proc`, through ctx.ok. */
function openIommufd(ctx: ScenarioContext, proc: ReturnType<ScenarioContext['spawn']>): IommufdOps {
  return new IommufdOps(proc, ctx.ok(proc.open('/dev/iommu'), 'open /dev/iommu'));
}

/** Opens a VFIO cdev and binds it to `iommufd`; returns the ops and the device id. */
function openAndBind(
  ctx: ScenarioContext,
  ops: IommufdOps,
  path: string,
): { dev: VfioDeviceOps; devid: number } {
  const dev = new VfioDeviceOps(ops.proc, ctx.ok(ops.proc.open(path), `open ${path}`));
  const bind = dev.bind(ops.fd);
  ctx.ok(bind.ret, `bind ${path}`);
  ctx.check(bind.devid > 0, `bind ${path} returned device id ${bind.devid}`);
  return { dev, devid: bind.devid };
}

function ioasAlloc(ctx: ScenarioContext, ops: IommufdOps): number {
  const r = ops.ioasAlloc();
  ctx.ok(r.ret, 'IOAS_ALLOC');
  return r.id;
}

/** IOAS basics, like the selftest's basic_fail_nth.basic: no device, nothing pinned. */
export const ioasBasics: Scenario = {
  name: 'ioas-basics',
  description: 'open, IOAS alloc, IOVA_RANGES, ALLOW_IOVAS, MAP fixed/auto, COPY, UNMAP, DESTROY',
  run(ctx) {
    const proc = ctx.spawn();
    const buf = proc.alloc(16n * PAGE);
    ctx.failNthEnable(proc);
    const ops = openIommufd(ctx, proc);
    const ioas = ioasAlloc(ctx, ops);
    const ranges = ops.iovaRanges(ioas, 4);
    ctx.ok(ranges.ret, 'IOVA_RANGES');
    ctx.check(ranges.count === 1 && ranges.ranges[0]?.start === 0n, 'one range from 0');
    ctx.ok(
      ops.allowIovas(ioas, [
        { start: 0x10000n, last: 0x7fffffn },
        { start: 0x1000000n, last: 0x1ffffffn },
      ]),
      'ALLOW_IOVAS',
    );
    const auto = ops.map(ioas, buf, 8n * PAGE, RW);
    ctx.ok(auto.ret, 'MAP auto');
    ctx.check(
      auto.iova >= 0x10000n && auto.iova + 8n * PAGE - 1n <= 0x7fffffn,
      'auto IOVA allowed',
    );
    ctx.ok(ops.map(ioas, buf + 8n * PAGE, 8n * PAGE, FIXED, 0x40000000n).ret, 'MAP fixed');
    const ioas2 = ioasAlloc(ctx, ops);
    ctx.ok(ops.copy(ioas, auto.iova, ioas2, 8n * PAGE, FIXED, 0x100000n).ret, 'COPY fixed');
    const copied = ops.copy(ioas, 0x40000000n, ioas2, 4n * PAGE, RW);
    ctx.ok(copied.ret, 'COPY auto');
    const opt = ops.option(u.IOMMU_OPTION_HUGE_PAGES, u.IOMMU_OPTION_OP_SET, ioas2, 0n);
    ctx.ok(opt.ret, 'OPTION huge pages off');
    const un = ops.unmap(ioas, 0x40000000n, 8n * PAGE);
    ctx.ok(un.ret, 'UNMAP fixed');
    ctx.check(un.length === 8n * PAGE, `UNMAP reported ${un.length} bytes`);
    ctx.fails(ops.destroy(ioas + ioas2 + 100), Errno.ENOENT, 'DESTROY of no object');
    const all = ops.unmap(ioas2, 0n, u.ULONG_MAX);
    ctx.ok(all.ret, 'UNMAP all');
    ctx.check(all.length === 12n * PAGE, `UNMAP all reported ${all.length} bytes`);
    ctx.ok(ops.destroy(ioas2), 'DESTROY ioas2');
    ctx.ok(ops.destroy(ioas), 'DESTROY ioas');
    ctx.ok(proc.close(ops.fd), 'close');
  },
};

/**
 * A device behind the IOMMU: bind, attach (auto domain, pinning), map with pinning, an explicit
 * HWPT, replace between two IOASes, a second device sharing the auto domain, detach, close.
 * The process lacks CAP_IPC_LOCK, so pinned pages are charged to RLIMIT_MEMLOCK.
 */
export const iommuDeviceFlow: Scenario = {
  name: 'iommu-device-flow',
  description: 'bind, attach, map with pinning, HWPT_ALLOC, replace between IOASes, detach, close',
  run(ctx) {
    const proc = ctx.spawn({ capEff: CAP_FULL_SET & ~(1n << BigInt(CAP_IPC_LOCK)) });
    const buf = proc.alloc(32n * PAGE);
    ctx.failNthEnable(proc);
    const ops = openIommufd(ctx, proc);
    const a = openAndBind(ctx, ops, '/dev/vfio/devices/vfio0');
    ctx.ok(ops.hwInfo(a.devid), 'GET_HW_INFO');
    const ioasA = ioasAlloc(ctx, ops);
    const ioasB = ioasAlloc(ctx, ops);
    ctx.ok(ops.map(ioasA, buf, 8n * PAGE, FIXED, 0x100000n).ret, 'MAP A before attach');
    const att = a.dev.attach(ioasA);
    ctx.ok(att.ret, 'ATTACH vfio0 to IOAS A');
    ctx.check(att.ptId !== ioasA, 'attach to an IOAS returns the auto HWPT');
    const auto = ops.map(ioasA, buf + 8n * PAGE, 4n * PAGE, RW);
    ctx.ok(auto.ret, 'MAP A auto, pinned');
    ctx.ok(ops.map(ioasB, buf + 16n * PAGE, 8n * PAGE, FIXED, 0x200000n).ret, 'MAP B');
    const hwpt = ops.hwptAlloc(a.devid, ioasB);
    ctx.ok(hwpt.ret, 'HWPT_ALLOC on IOAS B');
    ctx.ok(a.dev.attach(hwpt.id).ret, 'replace vfio0 -> HWPT on B');
    ctx.ok(a.dev.attach(ioasA).ret, 'replace vfio0 -> IOAS A');
    const b = openAndBind(ctx, ops, '/dev/vfio/devices/vfio1');
    const attB = b.dev.attach(ioasA);
    ctx.ok(attB.ret, 'ATTACH vfio1 to IOAS A');
    ctx.ok(ops.copy(ioasA, 0x100000n, ioasB, 8n * PAGE, RW).ret, 'COPY A -> B');
    ctx.fails(ops.destroy(ioasA), Errno.EBUSY, 'DESTROY of an IOAS in use');
    const un = ops.unmap(ioasA, 0x100000n, 8n * PAGE);
    ctx.ok(un.ret, 'UNMAP A');
    ctx.check(un.length === 8n * PAGE, `UNMAP reported ${un.length} bytes`);
    ctx.ok(b.dev.detach(), 'DETACH vfio1');
    ctx.ok(a.dev.detach(), 'DETACH vfio0');
    ctx.ok(ops.destroy(hwpt.id), 'DESTROY HWPT');
    ctx.ok(proc.close(b.dev.fd), 'close vfio1');
    ctx.ok(proc.close(a.dev.fd), 'close vfio0');
    ctx.ok(proc.close(ops.fd), 'close iommufd');
  },
};

/**
 * THE no-IOMMU flow: a device with no IOMMU, bound and attached to an IOAS (a software
 * no-IOMMU domain), memory mapped at IOVA = VA, the physical addresses walked with
 * IOMMU_IOAS_NOIOMMU_GET_PA and checked against the pinned frames, then unmap, detach, close.
 */
export const noiommuFlow: Scenario = {
  name: 'noiommu-flow',
  description: 'no-IOMMU cdev: bind, IOAS alloc, attach, MAP IOVA=VA, GET_PA walk, unmap, detach',
  kernelOptions: { enableUnsafeNoiommuMode: true },
  run(ctx) {
    const proc = ctx.spawn();
    const length = 4n * PAGE;
    const buf = proc.alloc(length);
    ctx.failNthEnable(proc);
    const devfd = ctx.ok(proc.open('/dev/vfio/devices/noiommu-vfio2'), 'open noiommu-vfio2');
    const ops = openIommufd(ctx, proc);
    const dev = new VfioDeviceOps(proc, devfd);
    const bind = dev.bind(ops.fd);
    ctx.ok(bind.ret, 'BIND noiommu-vfio2');
    const ioas = ioasAlloc(ctx, ops);
    ctx.ok(dev.attach(ioas).ret, 'ATTACH to the IOAS');
    ctx.ok(ops.map(ioas, buf, length, FIXED, buf).ret, 'MAP IOVA=VA');
    let iova = buf;
    while (iova < buf + length) {
      const pa = ops.getPa(ioas, iova, buf + length - iova);
      ctx.ok(pa.ret, `GET_PA 0x${iova.toString(16)}`);
      const pfn = ctx.kernel.machine.pinned.lookup(proc.memory.mm, iova);
      ctx.check(
        pfn !== undefined && pa.phys === pfn * PAGE + (iova % PAGE),
        `GET_PA 0x${iova.toString(16)} = 0x${pa.phys.toString(16)} is not the pinned frame`,
      );
      ctx.check(pa.length > 0n && pa.length <= buf + length - iova, 'GET_PA length in range');
      iova += pa.length;
    }
    const un = ops.unmap(ioas, buf, length);
    ctx.ok(un.ret, 'UNMAP');
    ctx.check(un.length === length, `UNMAP reported ${un.length} bytes`);
    ctx.fails(ops.getPa(ioas, buf, 1n).ret, Errno.ENOENT, 'GET_PA after unmap');
    ctx.ok(dev.detach(), 'DETACH');
    ctx.ok(ops.destroy(ioas), 'DESTROY IOAS');
    ctx.ok(proc.close(devfd), 'close device');
    ctx.ok(proc.close(ops.fd), 'close iommufd');
  },
};

/**
 * Two domains on one IOAS (an IOMMU device and a no-IOMMU device), so every fill and unfill
 * goes to both; COPY into a second IOAS that shares the pinned pages; replace the no-IOMMU
 * device onto it.
 */
export const mixedDomains: Scenario = {
  name: 'mixed-domains',
  description: 'IOMMU + no-IOMMU domains on one IOAS, COPY sharing pins, replace, GET_PA',
  kernelOptions: { enableUnsafeNoiommuMode: true },
  run(ctx) {
    const proc = ctx.spawn({ capEff: CAP_FULL_SET & ~(1n << BigInt(CAP_IPC_LOCK)) });
    proc.setCapability(CAP_SYS_RAWIO, true);
    const buf = proc.alloc(16n * PAGE);
    ctx.failNthEnable(proc);
    const ops = openIommufd(ctx, proc);
    const a = openAndBind(ctx, ops, '/dev/vfio/devices/vfio0');
    const n = openAndBind(ctx, ops, '/dev/vfio/devices/noiommu-vfio2');
    const ioas = ioasAlloc(ctx, ops);
    const ioas2 = ioasAlloc(ctx, ops);
    ctx.ok(ops.map(ioas, buf, 8n * PAGE, FIXED, 0x100000n).ret, 'MAP before attach');
    ctx.ok(a.dev.attach(ioas).ret, 'ATTACH vfio0');
    ctx.ok(n.dev.attach(ioas).ret, 'ATTACH noiommu-vfio2 (second domain)');
    ctx.ok(ops.map(ioas, buf + 8n * PAGE, 4n * PAGE, FIXED, 0x200000n).ret, 'MAP into two domains');
    // The pages are stored in the IOMMU domain, the first one: GET_PA does not trust it.
    ctx.fails(ops.getPa(ioas, 0x200000n, PAGE).ret, Errno.EOPNOTSUPP, 'GET_PA, IOMMU storage');
    ctx.ok(ops.copy(ioas, 0x100000n, ioas2, 8n * PAGE, FIXED, 0x300000n).ret, 'COPY');
    ctx.ok(n.dev.attach(ioas2).ret, 'replace noiommu-vfio2 -> IOAS 2');
    const pa = ops.getPa(ioas2, 0x300000n, PAGE);
    ctx.ok(pa.ret, 'GET_PA on IOAS 2');
    const pfn = ctx.kernel.machine.pinned.lookup(proc.memory.mm, buf);
    ctx.check(pfn !== undefined && pa.phys === pfn * PAGE, 'GET_PA is the pinned frame');
    const all = ops.unmap(ioas, 0n, u.ULONG_MAX);
    ctx.ok(all.ret, 'UNMAP all');
    ctx.check(all.length === 12n * PAGE, `UNMAP all reported ${all.length} bytes`);
    ctx.ok(a.dev.detach(), 'DETACH vfio0');
    ctx.ok(n.dev.detach(), 'DETACH noiommu-vfio2');
    ctx.ok(proc.close(n.dev.fd), 'close noiommu-vfio2');
    ctx.ok(proc.close(a.dev.fd), 'close vfio0');
    ctx.ok(proc.close(ops.fd), 'close iommufd');
  },
};

/** Every built-in scenario, by name. */
export const SCENARIOS: readonly Scenario[] = [
  ioasBasics,
  iommuDeviceFlow,
  noiommuFlow,
  mixedDomains,
];

/** A built-in scenario by name. */
export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
