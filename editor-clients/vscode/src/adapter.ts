/**
 * Finds the `kbridge` executable and builds the command VS Code runs as the debug adapter:
 * `kbridge dap --debugger <preset>`. Pure (file-system access is injected) so tests run
 * without VS Code; extension.ts wraps the result in a `DebugAdapterExecutable`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** What the adapter command needs from the configuration being launched. */
export interface LaunchLike {
  debugger?: unknown;
  [key: string]: unknown;
}

export interface AdapterCommand {
  command: string;
  args: string[];
  /** Working directory for kbridge and so for the real adapter it starts. */
  cwd?: string;
}

/** How to get kbridge, shown whenever it cannot be found. */
export const INSTALL_HINT =
  'Install the kbridge extension for your platform (it bundles kbridge), or install kbridge ' +
  'with `cargo install --locked kbridge` (`cargo install --path adapter` from a kbridge ' +
  'checkout) or from a release binary, then put it on PATH or set `kbridge.path`.';

/**
 * Where a platform-specific .vsix keeps its kbridge, relative to the extension's root
 * (scripts/package-platform.sh puts it there).
 */
export const BUNDLED_DIR = 'bin';

/** The kbridge a platform-specific .vsix bundles, inside the extension at `extensionPath`. */
export function bundledKbridge(extensionPath: string, platform: NodeJS.Platform = process.platform): string {
  return path.join(extensionPath, BUNDLED_DIR, platform === 'win32' ? 'kbridge.exe' : 'kbridge');
}

export class KbridgeNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KbridgeNotFoundError';
  }
}

export interface LocateOptions {
  /** The `kbridge.path` setting; empty or unset means "the bundled kbridge, else PATH". */
  settingPath?: string;
  /** The extension's root directory: a platform-specific .vsix has kbridge in its `bin/`. */
  extensionPath?: string;
  /** The PATH to search (process.env.PATH in the extension). */
  envPath?: string;
  platform?: NodeJS.Platform;
  /** Whether a path is an executable file; injected for tests. */
  isExecutable?: (file: string) => boolean;
}

export function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/**
 * The kbridge to run, first match wins:
 * 1. the `kbridge.path` setting, if set (and then it must exist: a deliberate choice, such as
 *    a kbridge built from source, wins over the bundled one);
 * 2. the kbridge bundled in a platform-specific .vsix (`<extension>/bin/kbridge`), the same
 *    version as the extension;
 * 3. the first `kbridge` on PATH (the universal .vsix bundles none).
 */
export function locateKbridge(options: LocateOptions = {}): string {
  const isExec = options.isExecutable ?? isExecutableFile;
  const platform = options.platform ?? process.platform;
  const setting = options.settingPath?.trim();
  if (setting) {
    const file = expandHome(setting);
    // A wrong explicit setting is an error, not a reason to silently run another kbridge.
    if (!isExec(file)) {
      throw new KbridgeNotFoundError(
        `kbridge not found at \`${file}\` (from the setting \`kbridge.path\`). ${INSTALL_HINT}`
      );
    }
    return file;
  }
  if (options.extensionPath) {
    const bundled = bundledKbridge(options.extensionPath, platform);
    if (isExec(bundled)) return bundled;
  }
  const names = platform === 'win32' ? ['kbridge.exe', 'kbridge.cmd', 'kbridge'] : ['kbridge'];
  const dirs = (options.envPath ?? '').split(platform === 'win32' ? ';' : ':').filter(Boolean);
  for (const dir of dirs) {
    for (const name of names) {
      const candidate = path.join(dir, name);
      if (isExec(candidate)) return candidate;
    }
  }
  throw new KbridgeNotFoundError(
    `kbridge was not found: \`kbridge.path\` is not set, this extension bundles no kbridge, and there is no \`kbridge\` on PATH. ${INSTALL_HINT}`
  );
}

/**
 * The adapter command for one configuration. A preset name is passed as `--debugger` so
 * kbridge starts the real adapter at `initialize` and VS Code sees its real capabilities;
 * a custom `debugger` object is left to kbridge, which reads it at `launch`.
 */
export function adapterCommand(kbridge: string, config: LaunchLike, folder?: string): AdapterCommand {
  const args = ['dap'];
  if (typeof config.debugger === 'string' && config.debugger !== '') {
    args.push('--debugger', config.debugger);
  }
  // kbridge starts the real adapter at `initialize`, before it sees `cwd`, and adapters
  // inherit its directory: Delve runs `go build` there (outside the module it fails with
  // "cannot find main module"). So start kbridge in the configuration's `cwd`, else the
  // workspace folder, as the Go extension does for `dlv dap`.
  const cwd = typeof config.cwd === 'string' && path.isAbsolute(config.cwd) ? config.cwd : folder;
  return cwd ? { command: kbridge, args, cwd } : { command: kbridge, args };
}
