/**
 * The native fd addon (native/addon/fd.c): pidfd_getfd for clients' eventfds, SO_PEERCRED for
 * clients' identity, and an eventfd signal that never blocks. Loaded once, from where the CLI
 * built it or from native/build above this module; undefined when it was not built (no Node
 * headers on the machine).
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface FdAddon {
  /** A duplicate of fd `fd` of process `pid` (pidfd_getfd), or -errno. */
  getfd(pid: number, fd: number): number;
  /** [pid, uid, gid] of the peer of an AF_UNIX socket (SO_PEERCRED), or -errno. */
  peercred(fd: number): [number, number, number] | number;
  /** Adds 1 to an eventfd without blocking: 0, -EAGAIN at the maximum (saturated), or -errno. */
  signal(fd: number): number;
}

let addon: FdAddon | null | undefined;
/** Where the CLI built the addon (an installed package builds it in a per-user cache). */
let addonFile: string | undefined;

/** Load the fd addon from file rather than from native/build (call before serving). */
export function useFdAddon(file: string): void {
  addonFile = file;
  addon = undefined;
}

/** The addon, or undefined if it is not built. */
export function fdAddon(): FdAddon | undefined {
  if (addon !== undefined) return addon ?? undefined;
  addon = null;
  const require = createRequire(import.meta.url);
  if (addonFile !== undefined) {
    addon = require(addonFile) as FdAddon;
    return addon;
  }
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'native', 'build', 'iommufd-emu-fd.node');
    if (fs.existsSync(candidate)) {
      addon = require(candidate) as FdAddon;
      return addon;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}
