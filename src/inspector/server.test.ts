import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CAP_SYS_RAWIO } from '../host/credentials.ts';
import { createEmulator, type Emulator } from '../index.ts';
import { EduReg } from '../platform/edu.ts';
import * as ioctl from '../uapi/ioctl.ts';
import * as u from '../uapi/iommufd.ts';
import * as v from '../uapi/vfio.ts';
import { type Inspector, isLoopbackHost, parseInspectAddress, startInspector } from './server.ts';
import type { EventState, InspectorState, WalkState } from './state-types.ts';

const FIXED = u.IOMMU_IOAS_MAP_FIXED_IOVA | u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE;
const HEX = /^0x[0-9a-f]+$/;
const CONFIG = 7n << 40n;

function u64(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'] ?? '', body }),
        );
      })
      .on('error', reject);
  });
}

async function getJson<T>(url: string): Promise<T> {
  const res = await get(url);
  assert.equal(res.status, 200, res.body);
  assert.match(res.type, /^application\/json/);
  return JSON.parse(res.body) as T;
}

/** Every value under `value` whose key ends in one of the u64 field names is a hex string. */
function assertU64Hex(value: unknown, where: string): number {
  const U64_KEYS = new Set([
    'iova',
    'last',
    'start',
    'va',
    'pa',
    'npages',
    'pinnedPages',
    'pins',
    'frames',
    'hugeBlocks',
    'mappedBytes',
    'tablePages',
    'iovaAlignment',
    'userPage',
    'pageTable',
    'bytes',
  ]);
  let seen = 0;
  if (Array.isArray(value)) {
    value.forEach((x, i) => {
      seen += assertU64Hex(x, `${where}[${i}]`);
    });
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, x] of Object.entries(value)) {
      const scalar = typeof x !== 'object' || x === null;
      if (U64_KEYS.has(k) && x !== null && scalar && !(k === 'pins' && where.includes('extents'))) {
        assert.equal(typeof x, 'string', `${where}.${k} is ${JSON.stringify(x)}`);
        assert.match(x as string, HEX, `${where}.${k}`);
        seen++;
      } else {
        seen += assertU64Hex(x, `${where}.${k}`);
      }
    }
  }
  return seen;
}

describe('inspector address (--inspect[=HOST:PORT])', () => {
  it('defaults to 127.0.0.1 and a free port, and takes PORT, HOST, HOST:PORT, [V6]:PORT', () => {
    assert.deepEqual(parseInspectAddress(true), { host: '127.0.0.1', port: 0 });
    assert.deepEqual(parseInspectAddress('9229'), { host: '127.0.0.1', port: 9229 });
    assert.deepEqual(parseInspectAddress('0.0.0.0:80'), { host: '0.0.0.0', port: 80 });
    assert.deepEqual(parseInspectAddress('localhost'), { host: 'localhost', port: 0 });
    assert.deepEqual(parseInspectAddress('[::1]:8080'), { host: '::1', port: 8080 });
    assert.equal(typeof parseInspectAddress('70000'), 'string');
    assert.equal(typeof parseInspectAddress('host:port'), 'string');
    assert.equal(typeof parseInspectAddress('a b'), 'string');
  });
});

describe('inspector host check (DNS rebinding)', () => {
  it('takes loopback names with or without a port, and nothing else', () => {
    for (const host of ['127.0.0.1:8080', '127.0.0.1', 'localhost:1', '[::1]:9229', '127.1.2.3:80'])
      assert.ok(isLoopbackHost(host), host);
    for (const host of [
      undefined,
      'evil.example:8080',
      '127.0.0.1.evil.example',
      '10.0.0.1:80',
      '',
    ])
      assert.ok(!isLoopbackHost(host), String(host));
  });
});

describe('inspector server', () => {
  let emu: Emulator;
  let inspector: Inspector;
  let pageDir: string;
  /** What the driver below set up. */
  const ids = { iommuIoas: 0, noiommuIoas: 0, noiommuDevid: 0, hwpt: 0 };
  let bufVa = 0n;

  before(async () => {
    pageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'inspector-page-'));
    fs.writeFileSync(path.join(pageDir, 'index.html'), '<!doctype html><title>t</title>');
    fs.writeFileSync(path.join(os.tmpdir(), 'inspector-secret.txt'), 'secret');
    emu = createEmulator({ enableUnsafeNoiommuMode: true });
    inspector = await startInspector(emu.kernel, {
      address: { host: '127.0.0.1', port: 0 },
      pageDir,
      program: { command: ['test'], state: 'running', exitStatus: null },
    });
    const proc = emu.spawn();
    proc.setCapability(CAP_SYS_RAWIO, true);
    const iommufd = proc.open('/dev/iommu');
    // vfio0 behind the IOMMU, attached to an IOAS with one 8 KiB mapping at IOVA 0x100000.
    const dev0 = proc.open('/dev/vfio/devices/vfio0');
    proc.ioctlStruct(dev0, ioctl.VFIO_DEVICE_BIND_IOMMUFD, v.vfioDeviceBindIommufd, { iommufd });
    ids.iommuIoas = proc.ioctlStruct(
      iommufd,
      ioctl.IOMMU_IOAS_ALLOC,
      u.iommuIoasAlloc,
      {},
    ).out.out_ioas_id;
    ids.hwpt = proc.ioctlStruct(
      dev0,
      ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      v.vfioDeviceAttachIommufdPt,
      {
        pt_id: ids.iommuIoas,
      },
    ).out.pt_id;
    const buf0 = proc.alloc(8192n);
    const map0 = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: ids.iommuIoas,
      flags: FIXED,
      user_va: buf0,
      length: 8192n,
      iova: 0x100000n,
    });
    assert.equal(map0.ret, 0);
    // noiommu-vfio2, with IOVA = VA, then a DMA through edu from the buffer's PA.
    const dev2 = proc.open('/dev/vfio/devices/noiommu-vfio2');
    ids.noiommuDevid = proc.ioctlStruct(
      dev2,
      ioctl.VFIO_DEVICE_BIND_IOMMUFD,
      v.vfioDeviceBindIommufd,
      {
        iommufd,
      },
    ).out.out_devid;
    ids.noiommuIoas = proc.ioctlStruct(
      iommufd,
      ioctl.IOMMU_IOAS_ALLOC,
      u.iommuIoasAlloc,
      {},
    ).out.out_ioas_id;
    proc.ioctlStruct(dev2, ioctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT, v.vfioDeviceAttachIommufdPt, {
      pt_id: ids.noiommuIoas,
    });
    bufVa = proc.memory.mmap(16384n);
    const map2 = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_MAP, u.iommuIoasMap, {
      ioas_id: ids.noiommuIoas,
      flags: FIXED,
      user_va: bufVa,
      length: 16384n,
      iova: bufVa,
    });
    assert.equal(map2.ret, 0);
    const pa = proc.ioctlStruct(iommufd, ioctl.IOMMU_IOAS_NOIOMMU_GET_PA, u.iommuIoasNoiommuGetPa, {
      ioas_id: ids.noiommuIoas,
      iova: bufVa,
      length: 4096n,
    }).out.out_phys;
    const cmd = proc.pread(dev2, 2, CONFIG + 4n) as Uint8Array;
    proc.pwrite(dev2, new Uint8Array([cmd[0]! | 0x6, cmd[1]!]), CONFIG + 4n);
    proc.pwrite(dev2, u64(pa), EduReg.DMA_SRC);
    proc.pwrite(dev2, u64(0x40000n), EduReg.DMA_DST);
    proc.pwrite(dev2, u64(256n), EduReg.DMA_COUNT);
    proc.pwrite(dev2, u64(1n), EduReg.DMA_CMD);
    await emu.kernel.machine.whenIdle();
    // The same device reading a PA no pin covers (unsafe DMA), and vfio0 reading an IOVA its
    // domain does not map (an IOMMU fault).
    proc.pwrite(dev2, u64(0x5000n), EduReg.DMA_SRC);
    proc.pwrite(dev2, u64(1n), EduReg.DMA_CMD);
    await emu.kernel.machine.whenIdle();
    const cmd0 = proc.pread(dev0, 2, CONFIG + 4n) as Uint8Array;
    proc.pwrite(dev0, new Uint8Array([cmd0[0]! | 0x6, cmd0[1]!]), CONFIG + 4n);
    proc.pwrite(dev0, u64(0x900000n), EduReg.DMA_SRC);
    proc.pwrite(dev0, u64(0x40000n), EduReg.DMA_DST);
    proc.pwrite(dev0, u64(64n), EduReg.DMA_COUNT);
    proc.pwrite(dev0, u64(1n), EduReg.DMA_CMD);
    await emu.kernel.machine.whenIdle();
  });

  after(async () => {
    await inspector.close();
    fs.rmSync(pageDir, { recursive: true, force: true });
  });

  it('GET /api/state: contexts, objects with both refcounts, the references between them', async () => {
    const state = await getJson<InspectorState>(`${inspector.url}api/state`);
    assert.equal(state.version, 1);
    assert.deepEqual(state.program, { command: ['test'], state: 'running', exitStatus: null });
    assert.ok(state.seq > 0);
    assert.equal(state.contexts.length, 1);
    const ctx = state.contexts[0]!;
    assert.equal(ctx.key, 'ctx:0');
    const byId = new Map(ctx.objects.map((o) => [o.id, o]));
    const ioas = byId.get(ids.iommuIoas)!;
    assert.equal(ioas.type, 'ioas');
    // The table's reference plus the HWPT's.
    assert.equal(ioas.users, 2);
    assert.equal(ioas.shorttermUsers, 1);
    const hwpt = byId.get(ids.hwpt)!;
    assert.equal(hwpt.type, 'hwpt-paging');
    assert.ok(hwpt.refs.some((r) => r.to === `obj:0:${ids.iommuIoas}` && r.label === 'ioas'));
    const domainRef = hwpt.refs.find((r) => r.label === 'domain');
    assert.ok(domainRef !== undefined);
    assert.ok(state.domains.some((d) => d.key === domainRef.to && d.kind === 'paging'));
    const device = ctx.objects.find((o) => o.type === 'device' && o.refs.length > 0)!;
    assert.ok(device.refs.some((r) => r.to === hwpt.key && r.label === 'attached'));
  });

  it('GET /api/state: each IOAS map, the devices (no-IOMMU ones unsafe), pins, all u64 as hex', async () => {
    const state = await getJson<InspectorState>(`${inspector.url}api/state`);
    const ctx = state.contexts[0]!;
    const ioas = ctx.ioas.find((i) => i.id === ids.iommuIoas)!;
    assert.deepEqual(
      ioas.areas.map((a) => [a.iova, a.last, a.prot, a.filled]),
      [['0x100000', '0x101fff', 'rw', true]],
    );
    // The MSI window of the IOMMU device is reserved.
    assert.ok(ioas.reserved.some((r) => r.start === '0xfee00000' && r.last === '0xfeefffff'));
    const noiommu = ctx.ioas.find((i) => i.id === ids.noiommuIoas)!;
    assert.equal(noiommu.areas[0]!.iova, `0x${bufVa.toString(16)}`);
    assert.equal(noiommu.areas[0]!.va, `0x${bufVa.toString(16)}`);

    const dev2 = state.devices.find((d) => d.bdf === '0000:00:06.0')!;
    assert.equal(dev2.unsafe, true);
    assert.equal(dev2.iommu, null);
    assert.equal(dev2.vfio, '/dev/vfio/devices/noiommu-vfio2');
    assert.deepEqual(dev2.bound, { context: 0, devid: ids.noiommuDevid });
    assert.equal(dev2.attached, true);
    const dev0 = state.devices.find((d) => d.bdf === '0000:00:04.0')!;
    assert.equal(dev0.unsafe, false);
    assert.equal(dev0.iommu, 'dmar0');
    assert.equal(state.devices.find((d) => d.bdf === '0000:00:05.0')!.bound, null);

    // 2 pages for vfio0's map, 4 for the no-IOMMU one, each pinned once.
    assert.equal(state.pinned.pinnedPages, '0x6');
    assert.equal(state.pinned.pins, '0x6');
    const extents = state.pinned.mms.flatMap((m) => m.extents);
    assert.equal(
      extents.reduce((n, e) => n + Number(e.npages), 0),
      6,
    );
    assert.ok(extents.every((e) => e.pins === 1));
    assert.ok(state.unsafeNoiommuMode);
    assert.notEqual(state.tainted, 0);
    assert.ok(assertU64Hex(state, 'state') > 20);
  });

  it('GET /api/walk: the IOVA level by level down to the pinned page it maps', async () => {
    const state = await getJson<InspectorState>(`${inspector.url}api/state`);
    const ioas = state.contexts[0]!.ioas.find((i) => i.id === ids.noiommuIoas)!;
    const domain = state.domains.find((d) => d.id === ioas.domains[0])!;
    assert.equal(domain.kind, 'noiommu');
    assert.equal(domain.levels, 6);
    const iova = bufVa + 0x1234n;
    const walk = await getJson<WalkState>(
      `${inspector.url}api/walk?domain=${domain.id}&iova=0x${iova.toString(16)}`,
    );
    assert.equal(walk.steps.length, 6);
    assert.deepEqual(
      walk.steps.map((s) => s.level),
      [5, 4, 3, 2, 1, 0],
    );
    assert.ok(walk.steps.every((s) => s.present));
    assert.ok(walk.steps.at(-1)!.leaf);
    assert.equal(walk.result.kind, 'leaf');
    const pa = BigInt((walk.result as { pa: string }).pa);
    assert.equal(pa, emu.kernel.machine.domains.get(domain.id)!.iovaToPhys(iova));
    assert.deepEqual(walk.frame, {
      mm: walk.frame!.mm,
      va: `0x${(bufVa + 0x1000n).toString(16)}`,
      pins: 1,
    });
    // An IOVA outside the mapping stops at the first empty entry.
    const miss = await getJson<WalkState>(
      `${inspector.url}api/walk?domain=${domain.id}&iova=0x1000`,
    );
    assert.equal(miss.result.kind, 'not-present');
    assert.equal(miss.frame, null);
    // vfio0's domain is its IOMMU unit's: 4 levels; 0x100000 maps, 0x900000 (the fault) does not.
    const paging = state.domains.find(
      (d) => d.id === state.contexts[0]!.ioas.find((i) => i.id === ids.iommuIoas)!.domains[0],
    )!;
    assert.equal(paging.kind, 'paging');
    assert.equal(paging.unit, 'dmar0');
    assert.equal(paging.levels, 4);
    const hit = await getJson<WalkState>(
      `${inspector.url}api/walk?domain=${paging.id}&iova=0x100000`,
    );
    assert.equal(hit.steps.length, 4);
    assert.equal(hit.result.kind, 'leaf');
    assert.equal(hit.frame?.pins, 1);
    const fault = await getJson<WalkState>(
      `${inspector.url}api/walk?domain=${paging.id}&iova=0x900000`,
    );
    assert.equal(fault.result.kind, 'not-present');
  });

  it('GET /api/walk refuses a bad IOVA (400) and an unknown domain (404)', async () => {
    assert.equal((await get(`${inspector.url}api/walk?domain=1&iova=zz`)).status, 400);
    assert.equal(
      (await get(`${inspector.url}api/walk?domain=1&iova=0x10000000000000000`)).status,
      400,
    );
    assert.equal((await get(`${inspector.url}api/walk?domain=999&iova=0x0`)).status, 404);
  });

  it('serves the page, and nothing outside its directory', async () => {
    const page = await get(inspector.url);
    assert.equal(page.status, 200);
    assert.match(page.type, /^text\/html/);
    assert.equal((await get(`${inspector.url}..%2finspector-secret.txt`)).status, 404);
    assert.equal((await get(`${inspector.url}nothing.js`)).status, 404);
    // A request to another name (a rebinding site's) is refused.
    const rebound = await new Promise<number>((resolve, reject) => {
      http
        .get(`${inspector.url}api/state`, { headers: { host: 'evil.example' } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject);
    });
    assert.equal(rebound, 403);
    // A live run has no record to step through.
    assert.equal((await get(`${inspector.url}api/record`)).status, 404);
    const step = await fetch(`${inspector.url}api/step?to=1`, { method: 'POST' });
    assert.equal(step.status, 404);
  });

  it('GET /api/events: the backlog, then every new event, DMA with the call that caused it', async () => {
    const received: { event: string; data: unknown }[] = [];
    const req = http.get(`${inspector.url}api/events`);
    const res = await new Promise<http.IncomingMessage>((resolve) => req.on('response', resolve));
    assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
    let buffer = '';
    const waitFor = (pred: () => boolean) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (pred()) {
            res.off('data', onData);
            resolve();
          }
        };
        const onData = (chunk: Buffer) => {
          buffer += chunk.toString('utf8');
          let end = buffer.indexOf('\n\n');
          while (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event !== undefined && data !== undefined)
              received.push({ event, data: JSON.parse(data) });
            end = buffer.indexOf('\n\n');
          }
          check();
        };
        res.on('data', onData);
        check();
      });
    const emu2 = (e: { event: string }) => e.event === 'emu';
    await waitFor(() => received.some((e) => emu2(e) && (e.data as EventState).kind === 'dma'));
    assert.deepEqual(received[0], {
      event: 'program',
      data: { command: ['test'], state: 'running', exitStatus: null },
    });
    const events = received.filter(emu2).map((e) => e.data as EventState);
    // The boot log comes first: the taint the no-IOMMU device brought.
    assert.equal(events[0]!.kind, 'log');
    assert.match(events[0]!.text, /taint/);
    const dma = events.find((e) => e.kind === 'dma')!;
    assert.equal(dma.device, '0000:00:06.0');
    assert.match(String(dma.addr), HEX);
    assert.ok(dma.cause !== undefined && dma.cause < dma.seq);
    const unsafe = events.find((e) => e.kind === 'unsafe-dma')!;
    assert.equal(unsafe.device, '0000:00:06.0');
    assert.equal(unsafe.pa, '0x5000');
    const fault = events.find((e) => e.kind === 'iommu-fault')!;
    assert.equal(fault.device, '0000:00:04.0');
    assert.equal(fault.iova, '0x900000');
    assert.match(fault.text, /^\[iommu-fault\] 0000:00:04\.0 read at IOVA 0x900000: not-present/);
    assert.ok(fault.cause !== undefined && fault.cause < fault.seq);
    assert.ok(events.every((e, i) => i === 0 || e.seq > events[i - 1]!.seq));

    // A new call arrives live, and so does the program's exit.
    const before = received.length;
    const proc = emu.spawn();
    const fd = proc.open('/dev/iommu');
    proc.ioctlStruct(fd, ioctl.IOMMU_IOAS_ALLOC, u.iommuIoasAlloc, {});
    inspector.setProgram({ command: ['test'], state: 'exited', exitStatus: 3 });
    await waitFor(() => received.slice(before).some((e) => e.event === 'program'));
    const live = received.slice(before);
    assert.ok(
      live.some((e) => emu2(e) && /IOMMU_IOAS_ALLOC/.test((e.data as EventState).text)),
      JSON.stringify(live),
    );
    assert.deepEqual(live.at(-1)!.data, { command: ['test'], state: 'exited', exitStatus: 3 });
    req.destroy();
  });
});

describe('inspector event causes', () => {
  it('ties a device event to the latest store on that device, not to a later load or call', async () => {
    const emu = createEmulator({ enableUnsafeNoiommuMode: true });
    const inspector = await startInspector(emu.kernel, {
      address: { host: '127.0.0.1', port: 0 },
      pageDir: os.tmpdir(),
      program: { command: [], state: 'serving', exitStatus: null },
    });
    const bus = emu.kernel.events;
    const call = (name: string, detail: string) =>
      bus.publish({ kind: 'syscall', pid: 1, tid: 1, call: name, detail, ret: 0 });
    call('mmio', '4</dev/vfio/devices/noiommu-vfio2>, BAR0+0x98, 8, w, 0x1');
    call('mmio', '4</dev/vfio/devices/noiommu-vfio2>, BAR0+0x98, 4, r');
    call('mmio', '5</dev/vfio/devices/vfio0>, BAR0+0x98, 8, w, 0x1');
    call('close', '3</dev/iommu>');
    bus.publish({
      kind: 'dma',
      device: '0000:00:06.0',
      dir: 'read',
      addr: 0x1000n,
      length: 4,
      path: 'direct',
    });
    bus.publish({ kind: 'irq', device: '0000:00:05.0', irq: 'MSI', detail: 'x' });
    const state = await getJson<InspectorState>(`${inspector.url}api/state`);
    const res = await new Promise<string>((resolve) => {
      const req = http.get(`${inspector.url}api/events`, (r) => {
        let text = '';
        r.on('data', (c: Buffer) => {
          text += c.toString();
          if (text.includes('"kind":"irq"')) {
            req.destroy();
            resolve(text);
          }
        });
      });
    });
    const events = [...res.matchAll(/^data: (\{.*"seq".*\})$/gm)].map(
      (m) => JSON.parse(m[1]!) as EventState,
    );
    const first = events.find((e) => e.kind === 'syscall')!.seq;
    assert.equal(events.find((e) => e.kind === 'dma')!.cause, first);
    // No store ever reached vfio1: the latest call stands in.
    assert.equal(events.find((e) => e.kind === 'irq')!.cause, first + 3);
    assert.equal(state.seq, events.at(-1)!.seq);
    await inspector.close();
  });
});
