/**
 * The inspector's HTTP server (node:http): the page `npm run build` made (dist/web/inspector), the
 * state as JSON and the event bus as Server-Sent Events.
 *
 *   GET /                       the page (index.html and its assets)
 *   GET /api/state              InspectorState (state-types.ts)
 *   GET /api/walk?domain=ID&iova=0x...   WalkState: one IOVA through one domain's table
 *   GET /api/events             text/event-stream: `emu` events (EventState, the backlog first,
 *                               or only those after Last-Event-ID) and `program` (ProgramState);
 *                               stepping through a record, `replay` (ReplayState) at each step
 *   GET /api/record             stepping through a record: its calls and events (RecordState)
 *   POST /api/step?to=N         stepping through a record: the state after call N (0: before any)
 *
 * It listens on 127.0.0.1 unless told otherwise (and then answers only requests addressed to a
 * loopback name) and never changes the emulated kernel of a live
 * run: everything it serves is read from it. The one POST moves a replay, and only a request from
 * the page itself (no Origin, or the server's own) may make it.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Kernel } from '../boot/kernel.ts';
import { EventLog } from './event-log.ts';
import { ReplayStepper } from './replay-stepper.ts';
import { inspectorState, walkState } from './state.ts';
import type { EventState, ProgramState } from './state-types.ts';

export interface InspectorAddress {
  readonly host: string;
  /** 0 for a free port the system picks. */
  readonly port: number;
}

export const DEFAULT_INSPECTOR_HOST = '127.0.0.1';

/**
 * `--inspect`'s value: nothing (127.0.0.1, a free port), `PORT`, `HOST`, `HOST:PORT` or
 * `[IPV6]:PORT`; a message for anything else.
 */
export function parseInspectAddress(value: string | true): InspectorAddress | string {
  if (value === true || value === '') return { host: DEFAULT_INSPECTOR_HOST, port: 0 };
  const bad = `--inspect=${value}: expected PORT, HOST or HOST:PORT (e.g. 127.0.0.1:9229)`;
  const port = (text: string): number | undefined => {
    if (!/^\d{1,5}$/.test(text)) return undefined;
    const n = Number(text);
    return n <= 65535 ? n : undefined;
  };
  if (/^\d+$/.test(value)) {
    const p = port(value);
    return p === undefined ? bad : { host: DEFAULT_INSPECTOR_HOST, port: p };
  }
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(value);
  if (v6 !== null) {
    const p = v6[2] === undefined ? 0 : port(v6[2]);
    return p === undefined ? bad : { host: v6[1]!, port: p };
  }
  const m = /^([A-Za-z0-9.-]+)(?::(\d+))?$/.exec(value);
  if (m === null) return bad;
  const p = m[2] === undefined ? 0 : port(m[2]);
  return p === undefined ? bad : { host: m[1]!, port: p };
}

export interface InspectorOptions {
  readonly address: InspectorAddress;
  /** The built page (dist/web/inspector); when it has no index.html, `/` says how to build it. */
  readonly pageDir: string;
  readonly program: ProgramState;
}

export interface Inspector {
  /** `http://HOST:PORT/`. */
  readonly url: string;
  /** Tells the page the program's new state (exited, with its status). */
  setProgram(program: ProgramState): void;
  close(): Promise<void>;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.ico': 'image/x-icon',
};

/** How often an idle event stream gets a comment line, so proxies and browsers keep it open. */
const HEARTBEAT_MS = 15_000;

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** A file under pageDir, never outside it (`..` and absolute paths are refused). */
function sendPage(res: http.ServerResponse, pageDir: string, urlPath: string): void {
  const rel = urlPath === '/' ? 'index.html' : decodeURIComponent(urlPath).replace(/^\/+/, '');
  const file = path.resolve(pageDir, rel);
  if (!file.startsWith(path.resolve(pageDir) + path.sep)) {
    sendJson(res, 404, { error: 'not found' });
    return;
  }
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch {
    if (rel === 'index.html') {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(
        `The inspector's page is not built (no ${file}): run \`npm run build\`.\nThe API answers: /api/state, /api/events.\n`,
      );
      return;
    }
    sendJson(res, 404, { error: 'not found' });
    return;
  }
  res.writeHead(200, {
    'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream',
    'content-length': data.length,
    // Vite names assets by their content: they never change under one name.
    'cache-control': rel.startsWith('assets/') ? 'max-age=31536000, immutable' : 'no-cache',
  });
  res.end(data);
}

/**
 * Whether a host (a Host header, with or without its port) names this machine's loopback. A page
 * of another site can make a browser send requests to a name that it points at 127.0.0.1 (DNS
 * rebinding); such requests carry that name, so an inspector listening on loopback answers
 * only requests to a loopback name.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '::1' || /^127(\.\d{1,3}){3}$/.test(name);
}

function sseMessage(event: string, data: unknown, id?: number): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Starts the inspector for a live kernel, or for a recorded run stepped through; resolves once it
 * listens.
 */
export function startInspector(
  target: Kernel | ReplayStepper,
  options: InspectorOptions,
): Promise<Inspector> {
  const stepper = target instanceof ReplayStepper ? target : undefined;
  const log = target instanceof ReplayStepper ? undefined : new EventLog(target);
  const kernel = (): Kernel => (target instanceof ReplayStepper ? target.kernel : target);
  const loopback = isLoopbackHost(options.address.host);
  let program = options.program;
  const streams = new Set<http.ServerResponse>();

  const openStream = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    const after = Number(req.headers['last-event-id'] ?? 0) || 0;
    let text = `retry: 1000\n\n${sseMessage('program', program)}`;
    if (stepper !== undefined) text += sseMessage('replay', stepper.state());
    for (const event of log?.backlog() ?? []) {
      if (event.seq > after) text += sseMessage('emu', event, event.seq);
    }
    res.write(text);
    streams.add(res);
    const stop = log?.listen((event: EventState) => {
      res.write(sseMessage('emu', event, event.seq));
    });
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    res.on('close', () => {
      stop?.();
      clearInterval(heartbeat);
      streams.delete(res);
    });
  };

  const step = (req: http.IncomingMessage, res: http.ServerResponse, url: URL): void => {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host}`) {
      sendJson(res, 403, { error: 'a step comes from the inspector page only' });
      return;
    }
    const to = url.searchParams.get('to') ?? '';
    if (stepper === undefined || !/^\d{1,9}$/.test(to)) {
      sendJson(res, stepper === undefined ? 404 : 400, {
        error: stepper === undefined ? 'not replaying a record' : 'expected ?to=N',
      });
      return;
    }
    stepper.goTo(Number(to)).then(
      (state) => {
        for (const stream of streams) stream.write(sseMessage('replay', state));
        sendJson(res, 200, state);
      },
      (err: unknown) => sendJson(res, 500, { error: String(err) }),
    );
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (loopback && !isLoopbackHost(req.headers.host)) {
      sendJson(res, 403, {
        error: 'a loopback inspector answers only requests to a loopback name',
      });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://inspector');
    if (req.method === 'POST' && url.pathname === '/api/step') {
      step(req, res, url);
      return;
    }
    if (url.pathname === '/api/step') {
      res.writeHead(405, { allow: 'POST' });
      res.end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' });
      res.end();
      return;
    }
    switch (url.pathname) {
      case '/api/state': {
        const replay = stepper?.state() ?? null;
        sendJson(
          res,
          200,
          inspectorState(kernel(), program, replay?.line ?? log?.seq ?? 0, replay),
        );
        return;
      }
      case '/api/record':
        if (stepper === undefined) sendJson(res, 404, { error: 'not replaying a record' });
        else sendJson(res, 200, stepper.recordState());
        return;
      case '/api/walk': {
        const domain = Number(url.searchParams.get('domain'));
        const iovaText = url.searchParams.get('iova') ?? '';
        if (!Number.isInteger(domain) || !/^(0x[0-9a-fA-F]{1,16}|\d{1,20})$/.test(iovaText)) {
          sendJson(res, 400, { error: 'expected ?domain=ID&iova=0x...' });
          return;
        }
        const iova = BigInt(iovaText);
        if (iova >= 1n << 64n) {
          sendJson(res, 400, { error: 'the IOVA does not fit 64 bits' });
          return;
        }
        const walk = walkState(kernel(), domain, iova);
        if (walk === undefined) sendJson(res, 404, { error: `no live domain ${domain}` });
        else sendJson(res, 200, walk);
        return;
      }
      case '/api/events':
        openStream(req, res);
        return;
      default:
        sendPage(res, options.pageDir, url.pathname);
    }
  };

  const server = http.createServer(handle);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.address.port, options.address.host, () => {
      server.off('error', reject);
      const address = server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      resolve({
        url: `http://${host}:${address.port}/`,
        setProgram(next: ProgramState): void {
          program = next;
          for (const res of streams) res.write(sseMessage('program', program));
        },
        close(): Promise<void> {
          log?.close();
          for (const res of streams) res.end();
          return new Promise((done) => {
            server.close(() => done());
            server.closeAllConnections();
          });
        },
      });
    });
  });
}
