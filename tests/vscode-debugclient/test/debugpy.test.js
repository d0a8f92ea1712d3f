// Drives `kbridge dap --port 0 --debugger debugpy` with VS Code's own DebugClient test harness.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { DebugClient } = require('@vscode/debugadapter-testsupport');

const PACKAGE_DIR = path.resolve(__dirname, '..');
const REPO_ROOT = path.resolve(PACKAGE_DIR, '..', '..');
// debugpy reports frame paths after resolving symlinks; compare against the same form.
const PROGRAM = fs.realpathSync(path.join(REPO_ROOT, 'tests', 'programs', 'env_probe.py'));
// DebugClient disables its own timeouts when connected over TCP, so every wait here has one.
const STEP_TIMEOUT_MS = 30000;

function kbridgeBinary() {
  const bin = process.env.KBRIDGE_BIN
    ? path.resolve(process.env.KBRIDGE_BIN)
    : path.join(PACKAGE_DIR, '..', '..', 'target', 'debug', 'kbridge');
  if (!fs.existsSync(bin)) {
    throw new Error(
      `kbridge binary not found at ${bin}: run \`cargo build -p kbridge\` in the repository ` +
        'root first, or point KBRIDGE_BIN at a built binary'
    );
  }
  return bin;
}

function breakLine(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const index = lines.findIndex((line) => line.includes('BREAK'));
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

/** Starts kbridge and resolves with the child and the port from its `listening on` line. */
function startKbridge(bin) {
  const child = spawn(bin, ['dap', '--port', '0', '--debugger', 'debugpy'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = [];
  child.stderr.on('data', (chunk) => stderr.push(chunk));
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal, stderr: Buffer.concat(stderr).toString() }));
  });
  const port = new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const match = /^kbridge: listening on 127\.0\.0\.1:(\d+)$/.exec(line.trim());
      if (match) resolve(Number(match[1]));
    });
    child.on('error', reject);
    exited.then(({ code, signal, stderr: text }) =>
      reject(new Error(`kbridge exited (code ${code}, signal ${signal}) before listening:\n${text}`))
    );
  });
  return { child, exited, port: withTimeout(port, 'the kbridge listening line') };
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

test('debugpy through kbridge: breakpoint, injected env, clean exit', { timeout: 180000 }, async (t) => {
  const bin = kbridgeBinary();
  const line = breakLine(PROGRAM);
  const kbridge = startKbridge(bin);
  t.after(() => {
    if (kbridge.child.exitCode === null && kbridge.child.signalCode === null) kbridge.child.kill('SIGKILL');
  });
  const port = await kbridge.port;

  // Runtime and executable are unused in server mode; the debug type is what initialize announces.
  const dc = new DebugClient('unused', 'unused', 'bridge');
  dc.defaultTimeout = STEP_TIMEOUT_MS;
  await withTimeout(dc.start(port), `a connection to kbridge on port ${port}`);

  const launchArgs = {
    type: 'bridge',
    request: 'launch',
    name: 'env_probe (vscode DebugClient)',
    debugger: 'debugpy',
    program: PROGRAM,
    console: 'internalConsole',
    env: { KBRIDGE_TEST_VAR: 'from-vscode-client' },
  };
  const [, , stackTrace] = await withTimeout(
    dc.hitBreakpoint(launchArgs, { path: PROGRAM, line }),
    `the breakpoint at ${PROGRAM}:${line}`
  );
  const frame = stackTrace.body.stackFrames[0];

  assert.equal(await withTimeout(variableValue(dc, frame.id, 'user_var'), 'user_var'), "'from-vscode-client'");
  assert.equal(await withTimeout(variableValue(dc, frame.id, 'grpc_resolver'), 'grpc_resolver'), "'native'");

  const threads = await withTimeout(dc.threadsRequest(), 'threads');
  const threadId = threads.body.threads[0].id;
  const terminated = dc.waitForEvent('terminated');
  await withTimeout(dc.continueRequest({ threadId }), 'the continue response');
  await withTimeout(terminated, 'the terminated event');
  await withTimeout(dc.stop(), 'the disconnect response');

  kbridge.child.kill('SIGTERM');
  const { code, signal, stderr } = await withTimeout(kbridge.exited, 'kbridge to exit after SIGTERM');
  assert.equal(signal, null, `kbridge died of signal ${signal}:\n${stderr}`);
  assert.equal(code, 0, `kbridge exited with code ${code}:\n${stderr}`);
});
