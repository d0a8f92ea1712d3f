/**
 * extension.ts wired to a hand-written stand-in for the `vscode` module (test/support/
 * vscode-stub.js; not VS Code itself): what activate() registers, the adapter descriptor
 * the factory returns, the setting applied at launch, the error shown when kbridge is
 * missing, and the launch.json entry the Configure command writes.
 */
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createVscodeStub, installVscodeStub } = require('./support/vscode-stub.js');
const { fakeKbridge } = require('./support/fake-kbridge.js');

const EXTENSION = path.resolve(__dirname, '..', 'out', 'src', 'extension.js');
const manifest = require(path.resolve(__dirname, '..', 'package.json'));
const lsp = require(path.resolve(__dirname, '..', 'out', 'src', 'lsp.js'));

// vscode-languageclient needs the real `vscode` module: a recording stand-in for it.
const clients = [];
lsp.setClientLoader(() => ({
  LanguageClient: class {
    constructor(id, name, serverOptions, clientOptions) {
      Object.assign(this, { id, name, serverOptions, clientOptions, started: false, stopped: false });
      clients.push(this);
    }
    async start() {
      this.started = true;
    }
    async stop() {
      this.stopped = true;
    }
  },
}));

/** Loads extension.js against a fresh stub and activates it. */
function activate(options) {
  const stub = createVscodeStub(options);
  const uninstall = installVscodeStub(stub.vscode);
  delete require.cache[EXTENSION];
  try {
    const extension = require(EXTENSION);
    const context = { subscriptions: [], extension: { packageJSON: manifest } };
    extension.activate(context);
    return { ...stub, context };
  } finally {
    uninstall();
  }
}

test('activate registers the bridge factory, provider and the Configure command', () => {
  const { record, context } = activate({ settings: { 'kbridge.lsp.enabled': false } });
  assert.ok(record.factories.bridge);
  assert.ok(record.providers.bridge);
  assert.ok(record.commands['kbridge.configure']);
  assert.equal(context.subscriptions.length, 3);
});

test('activate starts `kbridge lsp` for the bridge files, stopped with the extension', (t) => {
  const kb = fakeKbridge('[]');
  t.after(kb.cleanup);
  clients.length = 0;
  const { context } = activate({ settings: { 'kbridge.path': kb.file } });
  assert.equal(clients.length, 1);
  const client = clients[0];
  assert.equal(client.id, 'kbridge');
  assert.deepEqual(client.serverOptions, { command: kb.file, args: ['lsp'] });
  assert.ok(client.started);
  assert.equal(context.subscriptions.length, 4);
  context.subscriptions[3].dispose();
  assert.ok(client.stopped);
  // The selector is the server's file names (VS Code matches `**` across dot folders).
  const { minimatch } = require('minimatch');
  const matches = (file) => client.clientOptions.documentSelector.some((s) => s.scheme === 'file' && minimatch(file, s.pattern, { dot: true }));
  for (const file of ['/w/api/KubernetesLocalProcessConfig.yaml', '/w/api/dev.KubernetesLocalProcessConfig.yaml', '/w/azds-local.env', '/w/.vscode/launch.json']) {
    assert.ok(matches(file), file);
  }
  for (const file of ['/w/other.yaml', '/w/package.json', '/w/.env']) {
    assert.ok(!matches(file), file);
  }
});

test('kbridge.lsp.enabled off, or no kbridge: no language client, no error', () => {
  clients.length = 0;
  activate({ settings: { 'kbridge.lsp.enabled': false } });
  const { record } = activate({ settings: { 'kbridge.path': '/nonexistent/kbridge' } });
  assert.equal(clients.length, 0);
  assert.deepEqual(record.errors, []);
});

test('the factory runs `kbridge dap --debugger <preset>` from kbridge.path', (t) => {
  const kb = fakeKbridge('[]');
  t.after(kb.cleanup);
  const { record, vscode } = activate({ settings: { 'kbridge.path': kb.file } });
  const descriptor = record.factories.bridge.createDebugAdapterDescriptor({
    configuration: { type: 'bridge', request: 'launch', name: 'x', debugger: 'lldb-dap' },
    workspaceFolder: { uri: { fsPath: '/ws' } },
  });
  assert.ok(descriptor instanceof vscode.DebugAdapterExecutable);
  assert.equal(descriptor.command, kb.file);
  assert.deepEqual(descriptor.args, ['dap', '--debugger', 'lldb-dap']);
  assert.deepEqual(descriptor.options, { cwd: '/ws' });
});

test('without kbridge the factory shows an error with the install command and fails', () => {
  const saved = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    const { record } = activate();
    assert.throws(
      () => record.factories.bridge.createDebugAdapterDescriptor({ configuration: { debugger: 'debugpy' } }),
      /cargo install --path adapter/
    );
    assert.equal(record.errors.length, 1);
    assert.match(record.errors[0].message, /cargo install --path adapter/);
    assert.deepEqual(record.errors[0].items, ['Open Settings']);
  } finally {
    process.env.PATH = saved;
  }
});

test('kbridge.disconnectAfterDebugging fills in bridge.disconnectAfterDebugging', () => {
  const { record } = activate({ settings: { 'kbridge.disconnectAfterDebugging': false } });
  const provider = record.providers.bridge;
  const withBridge = { type: 'bridge', request: 'launch', name: 'x', bridge: { service: 's' } };
  assert.deepEqual(provider.resolveDebugConfiguration(undefined, withBridge).bridge, {
    service: 's',
    disconnectAfterDebugging: false,
  });
  // The configuration's own value wins; no bridge block means nothing to keep.
  const explicit = { ...withBridge, bridge: { service: 's', disconnectAfterDebugging: true } };
  assert.equal(provider.resolveDebugConfiguration(undefined, explicit).bridge.disconnectAfterDebugging, true);
  const local = { type: 'bridge', request: 'launch', name: 'y' };
  assert.deepEqual(provider.resolveDebugConfiguration(undefined, local), local);
  // F5 with no launch.json: null asks VS Code to open launch.json.
  assert.equal(provider.resolveDebugConfiguration(undefined, {}), null);
});

test('the Configure command writes the expected launch.json entry (stubbed kbridge)', async (t) => {
  const kb = fakeKbridge(
    JSON.stringify([{ namespace: 'todo', service: 'todo-api', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }])
  );
  t.after(kb.cleanup);
  const { record, answers } = activate({ settings: { 'kbridge.path': kb.file } });
  record.launchConfigurations = [{ type: 'python', request: 'launch', name: 'plain' }];
  answers.quickPick.push((items) => items.find((i) => i.label === 'todo-api'));
  answers.inputBox.push((options) => {
    assert.equal(options.value, '8080');
    assert.equal(options.validateInput('70000'), 'a port number, 1-65535');
    return '3000';
  });
  answers.quickPick.push((items) => items.find((i) => i === 'debugpy'));
  await record.commands['kbridge.configure']();
  assert.deepEqual(record.errors, []);
  assert.equal(record.launchWrites.length, 1);
  assert.equal(record.launchWrites[0].target, 3); // ConfigurationTarget.WorkspaceFolder
  assert.deepEqual(record.launchConfigurations, [
    { type: 'python', request: 'launch', name: 'plain' },
    {
      type: 'bridge',
      request: 'launch',
      name: 'todo-api (kbridge, debugpy)',
      debugger: 'debugpy',
      program: '${workspaceFolder}/app.py',
      cwd: '${workspaceFolder}',
      console: 'internalConsole',
      bridge: { namespace: 'todo', service: 'todo-api', ports: [3000] },
    },
  ]);
  assert.match(record.infos[0], /added "todo-api \(kbridge, debugpy\)"/);
});

test('the Configure command shows kbridge\'s error instead of failing silently', async (t) => {
  const kb = fakeKbridge('', { exitCode: 1, stderr: 'error: no kubeconfig found; set KUBECONFIG' });
  t.after(kb.cleanup);
  const { record } = activate({ settings: { 'kbridge.path': kb.file } });
  await record.commands['kbridge.configure']();
  assert.equal(record.launchWrites.length, 0);
  assert.match(record.errors[0].message, /no kubeconfig found/);
});

test('a language client that cannot load is reported; debugging still works', (t) => {
  const kb = fakeKbridge('[]');
  t.after(kb.cleanup);
  const previous = lsp.setClientLoader(() => {
    throw new Error('no vscode-languageclient');
  });
  t.after(() => lsp.setClientLoader(previous));
  const { record } = activate({ settings: { 'kbridge.path': kb.file } });
  assert.ok(record.factories.bridge);
  assert.equal(record.errors.length, 1);
  assert.match(record.errors[0].message, /kbridge lsp could not start: Error: no vscode-languageclient/);
});
