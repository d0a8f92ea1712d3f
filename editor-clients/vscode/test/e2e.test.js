/**
 * End to end, as VS Code would do it: the configuration comes verbatim from this
 * extension's `configurationSnippets` in package.json (placeholders at their defaults,
 * then `${workspaceFolder}` substituted), passes through the extension's own provider
 * (settings) and factory (`kbridge dap --debugger <preset>` over stdio), and VS Code's
 * DebugClient (@vscode/debugadapter-testsupport) drives the real kbridge and the real
 * debugger to a breakpoint in a probe program, reads the environment kbridge injected, and
 * runs to a clean end.
 *
 * One deliberate change to the snippet: `bridge.service` (the cluster target) is removed,
 * so these run without a cluster and prove each debugger's part of its snippet; the rest
 * of `bridge` (namespace, ports, disconnectAfterDebugging) stays and goes through kbridge's
 * config parser. cluster.test.js runs the debugpy snippet with its target against the
 * fixture cluster. Set KBRIDGE_BIN to test another binary.
 */
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { DebugClient } = require('@vscode/debugadapter-testsupport');
const { adapterCommand, locateKbridge } = require('../out/src/adapter.js');
const { applySettings } = require('../out/src/defaults.js');
const { expandSnippet, resolveVariables } = require('./support/snippet.js');
const fixture = require('./support/fixture-cluster.js');

/** The factory's own lookup, with kbridge.path set as a user would. */
const kbridgeBinary = () => locateKbridge({ settingPath: fixture.kbridgeBinary() });

const PACKAGE_DIR = path.resolve(__dirname, '..');
const REPO_ROOT = path.resolve(PACKAGE_DIR, '..', '..');
const PROGRAMS = path.join(REPO_ROOT, 'tests', 'programs');
const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'));
const SNIPPETS = manifest.contributes.debuggers.find((d) => d.type === 'bridge').configurationSnippets;
const STEP_TIMEOUT_MS = 60000;

function onPath(name) {
  return (process.env.PATH || '').split(':').some((dir) => {
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function lldbDapOnPath() {
  if (onPath('lldb-dap')) return true;
  return (process.env.PATH || '').split(':').some((dir) => {
    try {
      return fs.readdirSync(dir).some((f) => /^lldb-dap-\d+$/.test(f));
    } catch {
      return false;
    }
  });
}

function breakLine(file) {
  const index = fs.readFileSync(file, 'utf8').split('\n').findIndex((line) => line.includes('BREAK'));
  assert.notEqual(index, -1, `no line containing BREAK in ${file}`);
  return index + 1;
}

function withTimeout(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
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

/** Per preset: whether it can run here, how to lay out the workspace, where to stop. */
const CASES = {
  debugpy: {
    available: () => true,
    // The snippet's default program is ${workspaceFolder}/app.py.
    prepare(ws) {
      fs.copyFileSync(path.join(PROGRAMS, 'env_probe.py'), path.join(ws, 'app.py'));
      return { source: path.join(ws, 'app.py'), vars: ['user_var', 'grpc_resolver'] };
    },
    unset: /^'<unset>'$/,
  },
  'lldb-dap': {
    available: () => onPath('gcc') && lldbDapOnPath(),
    // The snippet's default program is ${workspaceFolder}/target/debug/app.
    prepare(ws) {
      const source = path.join(ws, 'env_probe.c');
      fs.copyFileSync(path.join(PROGRAMS, 'env_probe.c'), source);
      fs.mkdirSync(path.join(ws, 'target', 'debug'), { recursive: true });
      execFileSync('gcc', ['-g', '-O0', '-o', path.join(ws, 'target', 'debug', 'app'), source]);
      return { source, vars: ['user_var', 'grpc_resolver'] };
    },
    unset: /^(0x)?0+$|NULL|nullptr/i, // getenv() returned NULL
  },
  dlv: {
    available: () => onPath('dlv') && onPath('go'),
    // The snippet's default program is the workspace folder itself (a Go main package).
    prepare(ws) {
      for (const f of ['go.mod', 'main.go']) fs.copyFileSync(path.join(PROGRAMS, 'go', f), path.join(ws, f));
      return { source: path.join(ws, 'main.go'), vars: ['userVar', 'grpcResolver'] };
    },
    unset: /^""$/,
  },
};

/** The launch configuration VS Code would send for this snippet in workspace `ws`. */
function configurationFromSnippet(preset, ws, file) {
  const snippet = SNIPPETS.find((s) => s.body.debugger === preset);
  assert.ok(snippet, `no snippet for ${preset} in package.json`);
  const written = expandSnippet(snippet.body); // what launch.json holds after inserting it
  const resolved = resolveVariables(written, {
    workspaceFolder: ws,
    workspaceFolderBasename: path.basename(ws),
    file,
    userHome: os.homedir(),
    pathSeparator: path.sep,
  });
  // The one change (see the file comment): debug locally, no cluster target.
  assert.equal(typeof resolved.bridge.service, 'string');
  delete resolved.bridge.service;
  // The extension's provider, with the default setting, as at every launch.
  return applySettings(resolved, { disconnectAfterDebugging: true });
}

for (const [preset, spec] of Object.entries(CASES)) {
  const skip = spec.available() ? false : `${preset} or its toolchain is not installed`;
  test(`VS Code snippet "${preset}" through kbridge: breakpoint, injected env, clean exit`, { skip, timeout: 240000 }, async (t) => {
    const bin = kbridgeBinary();
    const ws = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `kbridge-ws-${preset}-`)));
    t.after(() => fs.rmSync(ws, { recursive: true, force: true }));
    const { source, vars } = spec.prepare(ws);
    const config = configurationFromSnippet(preset, ws, source);
    assert.equal(config.type, 'bridge');
    assert.equal(config.debugger, preset);
    assert.equal(config.bridge.disconnectAfterDebugging, true);

    // Exactly what the DebugAdapterDescriptorFactory hands VS Code, run over stdio as VS Code does.
    const { command, args, cwd } = adapterCommand(bin, config, ws);
    assert.deepEqual(args, ['dap', '--debugger', preset]);
    assert.equal(cwd, ws);
    const child = spawn(command, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const stderr = [];
    child.stderr.on('data', (chunk) => stderr.push(chunk));
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });

    const dc = new DebugClient('unused', 'unused', 'bridge');
    dc.defaultTimeout = STEP_TIMEOUT_MS;
    dc.connect(child.stdout, child.stdin);

    const line = breakLine(source);
    const [, , stackTrace] = await withTimeout(
      dc.hitBreakpoint(config, { path: source, line }),
      `the breakpoint at ${source}:${line} (kbridge stderr: ${Buffer.concat(stderr)})`
    );
    const frame = stackTrace.body.stackFrames[0];
    const [userVar, grpcVar] = vars;
    // Not set anywhere: kbridge adds nothing the user did not ask for (the probe's default)...
    assert.match(await withTimeout(variableValue(dc, frame.id, userVar), userVar), spec.unset);
    // ...except its own default layer, GRPC_DNS_RESOLVER=native (docs/architecture.md, "The debuggee's environment").
    assert.match(await withTimeout(variableValue(dc, frame.id, grpcVar), grpcVar), /native/);

    const threads = await withTimeout(dc.threadsRequest(), 'threads');
    const terminated = dc.waitForEvent('terminated');
    await withTimeout(dc.continueRequest({ threadId: threads.body.threads[0].id }), 'the continue response');
    await withTimeout(terminated, 'the terminated event');
    await withTimeout(dc.disconnectRequest({}), 'the disconnect response');
    // VS Code closes the adapter's stdio after the disconnect answer; kbridge must end cleanly.
    child.stdin.end();
    const { code, signal } = await withTimeout(exited, 'kbridge to exit after its input closed');
    assert.equal(signal, null, `kbridge died of signal ${signal}:\n${Buffer.concat(stderr)}`);
    assert.equal(code, 0, `kbridge exited with code ${code}:\n${Buffer.concat(stderr)}`);
  });
}
