/**
 * "kbridge: Configure": asks kbridge for the services of the current context
 * (`kbridge targets --output json`), lets the user pick one, a local port and a debugger,
 * and builds the launch.json entry. The cluster is only ever read through kbridge, so
 * this module knows no Kubernetes API; the UI and the process runner are injected so
 * tests drive it without VS Code.
 */
import { execFile } from 'node:child_process';

/** One port of a Service, as `kbridge targets` prints it. */
export interface ServicePort {
  name?: string;
  port: number;
  /**
   * The container port. `kbridge targets` resolves a named one through the pods' container
   * ports (keeping the name as `targetPortName`); a name stays when no pod runs yet.
   */
  targetPort?: number | string;
  targetPortName?: string;
}

/** One Service, as `kbridge targets --output json` prints it. */
export interface Target {
  namespace: string;
  service: string;
  ports: ServicePort[];
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export type Runner = (command: string, args: string[]) => Promise<RunResult>;

/** Runs a command to completion, collecting its output; never rejects on a non-zero exit. */
export const runProcess: Runner = (command, args) =>
  new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      // A spawn failure (ENOENT, EACCES) has a string code and no exit status.
      if (error && typeof (error as NodeJS.ErrnoException).code === 'string') {
        reject(new Error(`could not run ${command}: ${error.message}`));
        return;
      }
      const code = error ? ((error as { code?: number }).code ?? 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });

export interface TargetScope {
  context?: string;
  namespace?: string;
  /** Every namespace's Services (`--all-namespaces`). */
  allNamespaces?: boolean;
}

/** The exact command Configure runs; `kbridge targets` owns the cluster access. */
export function targetsArgs(scope: TargetScope = {}): string[] {
  const args = ['targets', '--output', 'json'];
  if (scope.context) args.push('--context', scope.context);
  if (scope.namespace) args.push('--namespace', scope.namespace);
  if (scope.allNamespaces && !scope.namespace) args.push('--all-namespaces');
  return args;
}

/** Parses and checks `kbridge targets --output json`, naming what is wrong. */
export function parseTargets(stdout: string): Target[] {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch (e) {
    throw new Error(`\`kbridge targets --output json\` printed something that is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(value)) throw new Error('`kbridge targets --output json` did not print a JSON array');
  return value.map((item, i) => {
    const where = `\`kbridge targets\` entry ${i}`;
    if (typeof item !== 'object' || item === null) throw new Error(`${where} is not an object`);
    const { namespace, service, ports } = item as Record<string, unknown>;
    if (typeof namespace !== 'string' || typeof service !== 'string') {
      throw new Error(`${where} lacks a string \`namespace\` or \`service\``);
    }
    if (!Array.isArray(ports)) throw new Error(`${where} (${service}) lacks a \`ports\` array`);
    for (const p of ports) {
      if (typeof p !== 'object' || p === null || typeof (p as ServicePort).port !== 'number') {
        throw new Error(`${where} (${service}) has a port without a numeric \`port\``);
      }
    }
    return { namespace, service, ports: ports as ServicePort[] };
  });
}

/** Lists the services through kbridge; a failing kbridge is reported with its own words. */
export async function listTargets(kbridge: string, run: Runner, scope: TargetScope = {}): Promise<Target[]> {
  const args = targetsArgs(scope);
  const result = await run(kbridge, args);
  if (result.code !== 0) {
    const detail = result.stderr.trim() || result.stdout.trim() || `exit code ${result.code}`;
    throw new Error(`\`kbridge ${args.join(' ')}\` failed: ${detail}`);
  }
  return parseTargets(result.stdout);
}

/** The local port to suggest: the container port, where the app usually listens. */
export function suggestedLocalPort(port: ServicePort): number {
  return typeof port.targetPort === 'number' ? port.targetPort : port.port;
}

export function describePort(port: ServicePort): string {
  const target = port.targetPort === undefined ? '' : ` → ${port.targetPort}`;
  return `${port.name ? `${port.name} ` : ''}${port.port}${target}`;
}

type Config = { [key: string]: unknown };

/**
 * The launch.json entry: the preset's initial configuration (from package.json, so the
 * snippets and Configure agree) with a name and the `bridge` block for the target.
 */
export function launchEntry(base: Config, target: Target, port: ServicePort | undefined, local: number): Config {
  let ports: unknown[];
  if (target.ports.length <= 1 || port === undefined) {
    // One port: `[local]` maps the container's only port (as the README says).
    ports = [local];
  } else if (typeof port.targetPort === 'string') {
    throw new Error(
      `port ${describePort(port)} of service ${target.service} targets the named container port ` +
        `'${port.targetPort}'; write \`"ports": [{"remote": <container port number>, "local": ${local}}]\` by hand`
    );
  } else {
    ports = [{ remote: port.targetPort ?? port.port, local }];
  }
  const { bridge: _ignored, ...rest } = base;
  return {
    ...rest,
    name: `${target.service} (kbridge, ${String(base.debugger)})`,
    bridge: { namespace: target.namespace, service: target.service, ports },
  };
}

/** Adds the entry to launch.json's configurations, replacing one of the same name. */
export function mergeConfigurations(existing: Config[], entry: Config): Config[] {
  const index = existing.findIndex((c) => c.name === entry.name);
  if (index === -1) return [...existing, entry];
  const copy = existing.slice();
  copy[index] = entry;
  return copy;
}

/** The questions Configure asks; `undefined` from any of them means the user cancelled. */
export interface ConfigureUi {
  pickTarget(targets: Target[]): Promise<Target | undefined>;
  /** Only asked when the service has several ports. */
  pickPort(target: Target): Promise<ServicePort | undefined>;
  askLocalPort(suggested: number, target: Target): Promise<number | undefined>;
  pickDebugger(presets: string[]): Promise<string | undefined>;
}

export interface ConfigureDeps {
  kbridge: string;
  run: Runner;
  ui: ConfigureUi;
  /** `initialConfigurations` from package.json: one base entry per preset. */
  baseConfigurations: Config[];
  scope?: TargetScope;
}

/** Runs the whole dialogue; resolves to the entry to write, or undefined if cancelled. */
export async function configure(deps: ConfigureDeps): Promise<Config | undefined> {
  let targets = await listTargets(deps.kbridge, deps.run, deps.scope);
  if (targets.length === 0 && !deps.scope?.namespace) {
    // The context's namespace (often `default`) has none: offer every namespace's.
    targets = await listTargets(deps.kbridge, deps.run, { ...deps.scope, allNamespaces: true });
  }
  if (targets.length === 0) {
    throw new Error(
      'kbridge found no services in any namespace of the current context; check `kubectl config current-context`'
    );
  }
  const target = await deps.ui.pickTarget(targets);
  if (!target) return undefined;
  let port: ServicePort | undefined = target.ports[0];
  if (target.ports.length > 1) {
    port = await deps.ui.pickPort(target);
    if (!port) return undefined;
  }
  const local = await deps.ui.askLocalPort(port ? suggestedLocalPort(port) : 8080, target);
  if (local === undefined) return undefined;
  const presets = deps.baseConfigurations.map((c) => c.debugger).filter((d): d is string => typeof d === 'string');
  const preset = await deps.ui.pickDebugger(presets);
  if (!preset) return undefined;
  const base = deps.baseConfigurations.find((c) => c.debugger === preset);
  if (!base) throw new Error(`no initial configuration for debugger ${preset}`);
  return launchEntry(base, target, port, local);
}
