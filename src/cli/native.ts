/**
 * The package on disk: where it is, its version, and the native parts (the LD_PRELOAD shim and
 * the fd addon) built from its C sources with the machine's gcc.
 *
 * In a development checkout (src/ is there) the native parts are built in native/build, as
 * `make -C native` does. In an installed package they are built once per user and version into
 * $XDG_CACHE_HOME/iommufd-emu/<version>/ (~/.cache by default): the package directory may be
 * read-only (a global install, a store) and is shared by every user of it. The cache directory
 * must be the user's own and writable by nobody else, because whatever shim is found there is
 * preloaded into the user's programs.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SHIM_NAME = 'libiommufd-emu-shim.so';
export const ADDON_NAME = 'iommufd-emu-fd.node';
export const GUARD_NAME = 'iommufd-emu-guard';
export const FAULTIN_NAME = 'iommufd-emu-faultin';

/** What went wrong with the package's files, worded for the user; the CLI prints it. */
export class PackageError extends Error {
  override readonly name = 'PackageError';
}

/** The package's root (holding package.json and native/Makefile), found upward from here. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (
      fs.existsSync(path.join(dir, 'native', 'Makefile')) &&
      fs.existsSync(path.join(dir, 'package.json'))
    )
      return dir;
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new PackageError('cannot find the iommufd-emu package (its native/Makefile)');
    dir = parent;
  }
}

/** The version in the package's package.json. */
export function packageVersion(): string {
  const text = fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8');
  const version = (JSON.parse(text) as { version?: unknown }).version;
  return typeof version === 'string' ? version : '0.0.0';
}

/** Whether the package is a development checkout (its TypeScript sources are there). */
function isCheckout(root: string): boolean {
  return fs.existsSync(path.join(root, 'src', 'cli', 'main.ts'));
}

/** The per-user cache directory for this version's native parts. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache');
  return path.join(base, 'iommufd-emu', packageVersion());
}

/** mkdir -p dir (new parts mode 0700), then refuse it unless it is ours and only ours to write. */
function privateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  const uid = process.getuid?.() ?? st.uid;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new PackageError(
      `${dir} is not a directory of yours that only you can write: not building the shim there (remove it, or set XDG_CACHE_HOME)`,
    );
  }
}

/** Whether output is missing or older than any of inputs. */
function outdated(output: string, inputs: readonly string[]): boolean {
  if (!fs.existsSync(output)) return true;
  const built = fs.statSync(output).mtimeMs;
  return inputs.some((f) => fs.existsSync(f) && fs.statSync(f).mtimeMs > built);
}

/**
 * Where the native parts are: the shim and the guard (always) and the fd addon (when Node's
 * headers were there).
 */
export interface NativeParts {
  readonly shim: string;
  /** The launcher that keeps programs off the host's iommufd and VFIO nodes (guard.c). */
  readonly guard: string;
  /** What the server starts to fault a client's page in through its userfaultfd (faultin.c). */
  readonly faultin: string;
  readonly addon: string | undefined;
}

function make(native: string, build: string): void {
  // stdout stays clean (serve prints the environment there); make's messages go to stderr.
  const made = spawnSync('make', ['-s', '-C', native, `BUILD=${build}`], {
    stdio: ['ignore', 2, 2],
  });
  if (made.error !== undefined) {
    throw new PackageError(
      `building the shim needs make and gcc, and make cannot be run (${made.error.message})`,
    );
  }
  if (
    made.status !== 0 ||
    !fs.existsSync(path.join(build, SHIM_NAME)) ||
    !fs.existsSync(path.join(build, GUARD_NAME)) ||
    !fs.existsSync(path.join(build, FAULTIN_NAME))
  )
    throw new PackageError(`building the shim failed (make -C ${native}): it needs gcc and make`);
}

/**
 * Builds into a fresh directory beside build and renames the results into place, so that two
 * first runs at once never preload a half-written shim.
 */
function buildIntoCache(native: string, build: string): void {
  privateDir(build);
  const scratch = fs.mkdtempSync(path.join(build, '.build-'));
  try {
    make(native, scratch);
    for (const name of [ADDON_NAME, GUARD_NAME, FAULTIN_NAME, SHIM_NAME]) {
      const made = path.join(scratch, name);
      if (fs.existsSync(made)) fs.renameSync(made, path.join(build, name));
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * The native parts, (re)built first if the shim or the addon is missing or older than its sources
 * (a shim from before a protocol change cannot talk to this server).
 */
export function ensureNative(say: (text: string) => void): NativeParts {
  const root = packageRoot();
  const native = path.join(root, 'native');
  const checkout = isCheckout(root);
  const build = checkout ? path.join(native, 'build') : cacheDir();
  const shim = path.join(build, SHIM_NAME);
  const addon = path.join(build, ADDON_NAME);
  const guard = path.join(build, GUARD_NAME);
  const faultin = path.join(build, FAULTIN_NAME);
  // The shim's units: every .c and .h in native/shim (not its tests).
  const shimDir = path.join(native, 'shim');
  const shimSources = fs
    .readdirSync(shimDir)
    .filter((f) => f.endsWith('.c') || f.endsWith('.h'))
    .map((f) => path.join(shimDir, f));
  const shimStale = outdated(shim, shimSources);
  if (
    shimStale ||
    outdated(guard, [path.join(native, 'guard', 'guard.c')]) ||
    outdated(faultin, [path.join(native, 'faultin', 'faultin.c')]) ||
    outdated(addon, [path.join(native, 'addon', 'fd.c')])
  ) {
    // Without Node's headers the addon is skipped (the Makefile says so); the shim is required.
    if (shimStale) say(`building the shim in ${build}\n`);
    if (checkout) make(native, build);
    else buildIntoCache(native, build);
  } else if (!checkout) {
    privateDir(build);
  }
  return { shim, guard, faultin, addon: fs.existsSync(addon) ? addon : undefined };
}
