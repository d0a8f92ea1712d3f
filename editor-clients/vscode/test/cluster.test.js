/**
 * The debugpy snippet bridged to a real (fixture) cluster, as a user would use it: the
 * snippet from package.json with the user's answers at its tab stops (namespace `todo`,
 * service `todo-api`, a local port), VS Code's variables substituted, the extension's
 * provider and factory, and VS Code's DebugClient driving `kbridge dap` to a breakpoint in
 * a program that must see the pod's environment (its Secret, its plain env, the
 * rewritten service variables). Disconnecting must put the Deployment back.
 *
 * A second test runs "kbridge: Configure" against the same kind of cluster through the
 * real `kbridge targets`, once kbridge has that subcommand (skipped until then).
 *
 * Needs root (the fixture runs pods in network namespaces) and `kube-fixture` and
 * `kbridge-agent` built next to kbridge (`cargo build --workspace --bins`); skipped
 * otherwise, with the reason.
 */
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { DebugClient } = require('@vscode/debugadapter-testsupport');
const { adapterCommand, locateKbridge } = require('../out/src/adapter.js');
const { applySettings } = require('../out/src/defaults.js');
const { configure, runProcess } = require('../out/src/configure.js');
const { expandSnippet, resolveVariables } = require('./support/snippet.js');

const PACKAGE_DIR = path.resolve(__dirname, '..');
const REPO_ROOT = path.resolve(PACKAGE_DIR, '..', '..');
const KBRIDGE = process.env.KBRIDGE_BIN
  ? path.resolve(process.env.KBRIDGE_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'kbridge');
const FIXTURE = path.join(path.dirname(KBRIDGE), 'kube-fixture');
const AGENT = path.join(path.dirname(KBRIDGE), 'kbridge-agent');
const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'));
const SNIPPETS = manifest.contributes.debuggers.find((d) => d.type === 'bridge').configurationSnippets;
const STEP_TIMEOUT_MS = 120000;

// The developer's service: reads what the pod would give it.
const PROBE = `import os

api_key = os.environ.get("API_KEY", "<unset>")
log_level = os.environ.get("LOG_LEVEL", "<unset>")
stats_host = os.environ.get("STATS_API_SERVICE_HOST", "<unset>")
grpc_resolver = os.environ.get("GRPC_DNS_RESOLVER", "<unset>")
print("probe", api_key, log_level, stats_host, grpc_resolver)  # BREAK
`;

function whySkip() {
  if (process.getuid && process.getuid() !== 0) return 'the fixture cluster needs root';
  for (const bin of [KBRIDGE, FIXTURE, AGENT]) {
    if (!fs.existsSync(bin)) return `${bin} is not built (cargo build --workspace --bins)`;
  }
  return false;
}

function withTimeout(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** `kube-fixture serve --demo`; resolves once it prints `ready <url>`. */
async function startCluster(stateDir) {
  const child = spawn(FIXTURE, ['serve', '--demo', '--state-dir', stateDir, '--agent-bin', AGENT], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const ready = new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('ready ')) resolve(line.slice(6).trim());
    });
    child.on('exit', (code) => reject(new Error(`kube-fixture exited with ${code} before it was ready`)));
  });
  await withTimeout(ready, 'kube-fixture to be ready');
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.on('exit', resolve));
    child.kill('SIGTERM'); // lets it stop its pods and remove namespaces and links
    await withTimeout(exited, 'kube-fixture to stop', 60000);
  };
  return { kubeconfig: path.join(stateDir, 'kubeconfig'), stop };
}

/**
 * A temporary directory for a test, with its cluster: at the end the cluster is stopped
 * first (its pods write under the directory until then), then the directory removed.
 * node:test runs `after` hooks in the order they were added, so this is one hook.
 */
function scratch(t, prefix) {
  const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  const owned = { tmp, cluster: null };
  t.after(async () => {
    if (owned.cluster) await owned.cluster.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  return owned;
}

async function variableValue(dc, frameId, name) {
  const scopes = await dc.scopesRequest({ frameId });
  for (const scope of scopes.body.scopes) {
    if (scope.expensive) continue;
    const vars = await dc.variablesRequest({ variablesReference: scope.variablesReference });
    const found = vars.body.variables.find((v) => v.name === name);
    if (found) return found.value;
  }
  assert.fail(`variable ${name} not found in any scope of frame ${frameId}`);
}

test('VS Code snippet "debugpy" bridged to todo-api on the fixture cluster: pod env at a breakpoint, restored on disconnect', { skip: whySkip(), timeout: 400000 }, async (t) => {
  const owned = scratch(t, 'kbridge-vscode-cluster-');
  const tmp = owned.tmp;
  const ws = path.join(tmp, 'ws');
  fs.mkdirSync(ws);
  const source = path.join(ws, 'app.py');
  fs.writeFileSync(source, PROBE);
  const cluster = await startCluster(path.join(tmp, 'cluster'));
  owned.cluster = cluster;
  const kubectl = (...args) => execFileSync('kubectl', ['--kubeconfig', cluster.kubeconfig, '-n', 'todo', ...args], { encoding: 'utf8' });
  const templateBefore = JSON.parse(kubectl('get', 'deployment', 'todo-api', '-o', 'json')).spec.template;

  // The user inserts the snippet and types at its tab stops; VS Code substitutes variables.
  const snippet = SNIPPETS.find((s) => s.body.debugger === 'debugpy');
  const localPort = await freePort();
  const written = expandSnippet(snippet.body, { 2: 'todo', 3: 'todo-api', 4: String(localPort) });
  assert.deepEqual(written.bridge, { namespace: 'todo', service: 'todo-api', ports: [localPort] });
  const config = applySettings(
    resolveVariables(written, { workspaceFolder: ws, file: source }),
    { disconnectAfterDebugging: true }
  );

  const { command, args, cwd } = adapterCommand(locateKbridge({ settingPath: KBRIDGE }), config, ws);
  // KUBECONFIG as the user's shell would have it; TMPDIR keeps this session's state apart.
  const env = { ...process.env, KUBECONFIG: cluster.kubeconfig, TMPDIR: tmp };
  const child = spawn(command, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr = [];
  child.stderr.on('data', (chunk) => stderr.push(chunk));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  const dc = new DebugClient('unused', 'unused', 'bridge');
  dc.defaultTimeout = STEP_TIMEOUT_MS;
  const output = [];
  dc.on('output', (e) => output.push(e.body.output));
  dc.connect(child.stdout, child.stdin);
  const line = PROBE.split('\n').findIndex((l) => l.includes('BREAK')) + 1;
  const [, , stackTrace] = await withTimeout(
    dc.hitBreakpoint(config, { path: source, line }),
    `the breakpoint (kbridge output: ${output.join('')} stderr: ${Buffer.concat(stderr)})`
  );
  const frame = stackTrace.body.stackFrames[0].id;
  assert.equal(await variableValue(dc, frame, 'api_key'), "'s3cr3t-from-cluster'", "the pod's Secret env var");
  assert.equal(await variableValue(dc, frame, 'log_level'), "'info'", "the pod's plain env var");
  assert.match(await variableValue(dc, frame, 'stats_host'), /^'127\.\d+\.\d+\.\d+'$/, 'stats-api rewritten to a local endpoint');
  assert.equal(await variableValue(dc, frame, 'grpc_resolver'), "'native'");
  assert.match(output.join(''), /bridged deployment\/todo-api/);

  const threads = await dc.threadsRequest();
  const terminated = dc.waitForEvent('terminated');
  await dc.continueRequest({ threadId: threads.body.threads[0].id });
  await withTimeout(terminated, 'the terminated event');
  await withTimeout(dc.disconnectRequest({ restart: false, terminateDebuggee: true }), 'the disconnect response');
  child.stdin.end();
  const { code, signal } = await withTimeout(exited, 'kbridge to exit');
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, Buffer.concat(stderr).toString());
  assert.deepEqual(
    JSON.parse(kubectl('get', 'deployment', 'todo-api', '-o', 'json')).spec.template,
    templateBefore,
    'the pod template is exactly as it was'
  );
});

function targetsSkip() {
  const base = whySkip();
  if (base) return base;
  const help = execFileSync(KBRIDGE, ['--help'], { encoding: 'utf8' });
  return /^\s+targets\s/m.test(help) ? false : '`kbridge targets` is not in this kbridge build yet (Configure is tested with a stand-in)';
}

test('Configure lists the fixture cluster\'s services through the real `kbridge targets`', { skip: targetsSkip(), timeout: 200000 }, async (t) => {
  const owned = scratch(t, 'kbridge-vscode-targets-');
  const cluster = await startCluster(path.join(owned.tmp, 'cluster'));
  owned.cluster = cluster;
  const bases = manifest.contributes.debuggers.find((d) => d.type === 'bridge').initialConfigurations;
  // The extension runs kbridge with VS Code's environment; KUBECONFIG points at the fixture.
  const run = (command, args) => {
    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = cluster.kubeconfig;
    return runProcess(command, args).finally(() => {
      process.env.KUBECONFIG = saved;
    });
  };
  let listed = [];
  const entry = await configure({
    kbridge: KBRIDGE,
    run,
    baseConfigurations: bases,
    scope: { namespace: 'todo' },
    ui: {
      pickTarget: async (targets) => {
        listed = targets.map((x) => x.service);
        return targets.find((x) => x.service === 'todo-api');
      },
      pickPort: async (target) => target.ports[0],
      askLocalPort: async () => 3000,
      pickDebugger: async () => 'debugpy',
    },
  });
  assert.ok(listed.includes('todo-api') && listed.includes('stats-api'), `listed: ${listed}`);
  assert.equal(entry.bridge.service, 'todo-api');
  assert.equal(entry.bridge.namespace, 'todo');
});
