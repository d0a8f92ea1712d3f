/**
 * "kbridge: Configure" without VS Code: a stand-in `kbridge` script answers
 * `kbridge targets --output json`, scripted answers play the user, and the entry written
 * must be the preset's initial configuration plus the chosen target.
 */
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const {
  configure,
  launchEntry,
  listTargets,
  mergeConfigurations,
  parseTargets,
  runProcess,
  targetsArgs,
} = require('../out/src/configure.js');
const { fakeKbridge } = require('./support/fake-kbridge.js');

const manifest = require(path.resolve(__dirname, '..', 'package.json'));
const BASES = manifest.contributes.debuggers.find((d) => d.type === 'bridge').initialConfigurations;
const TARGETS = [
  { namespace: 'todo', service: 'todo-api', ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  {
    namespace: 'todo',
    service: 'stats-api',
    ports: [
      { name: 'http', port: 80, targetPort: 9090 },
      { name: 'grpc', port: 50051, targetPort: 50051 },
    ],
  },
];

function scriptedUi({ service, portName, localPort, preset }) {
  const asked = [];
  return {
    asked,
    async pickTarget(targets) {
      asked.push(['target', targets.map((t) => t.service)]);
      return targets.find((t) => t.service === service);
    },
    async pickPort(target) {
      asked.push(['port', target.service]);
      return target.ports.find((p) => p.name === portName);
    },
    async askLocalPort(suggested) {
      asked.push(['local', suggested]);
      return localPort ?? suggested;
    },
    async pickDebugger(presets) {
      asked.push(['debugger', presets]);
      return preset;
    },
  };
}

test('Configure runs exactly `kbridge targets --output json`', () => {
  assert.deepEqual(targetsArgs(), ['targets', '--output', 'json']);
  assert.deepEqual(targetsArgs({ context: 'kind-dev', namespace: 'todo' }), [
    'targets', '--output', 'json', '--context', 'kind-dev', '--namespace', 'todo',
  ]);
  assert.deepEqual(targetsArgs({ allNamespaces: true }), ['targets', '--output', 'json', '--all-namespaces']);
});

test('with no services in the context\'s namespace, Configure offers every namespace\'s', async () => {
  const calls = [];
  const run = async (_command, args) => {
    calls.push(args);
    const all = args.includes('--all-namespaces');
    return { code: 0, stdout: JSON.stringify(all ? TARGETS : []), stderr: '' };
  };
  const ui = scriptedUi({ service: 'todo-api', preset: 'debugpy' });
  const entry = await configure({ kbridge: 'kbridge', run, ui, baseConfigurations: BASES });
  assert.deepEqual(calls, [
    ['targets', '--output', 'json'],
    ['targets', '--output', 'json', '--all-namespaces'],
  ]);
  assert.deepEqual(entry.bridge, { namespace: 'todo', service: 'todo-api', ports: [8080] });
  assert.deepEqual(ui.asked[0], ['target', ['todo-api', 'stats-api']]);
  assert.deepEqual(ui.asked[1], ['local', 8080]);
});

test('a named targetPort resolved by kbridge is proposed as the local port', async () => {
  const resolved = [
    { namespace: 'todo', service: 'todo-api', ports: [{ name: 'http', port: 80, targetPort: 8080, targetPortName: 'http' }] },
  ];
  const run = async () => ({ code: 0, stdout: JSON.stringify(resolved), stderr: '' });
  const ui = scriptedUi({ service: 'todo-api', preset: 'debugpy' });
  await configure({ kbridge: 'kbridge', run, ui, baseConfigurations: BASES });
  assert.deepEqual(ui.asked[1], ['local', 8080]);
});

test('Configure writes the expected entry for a one-port service (stubbed kbridge)', async (t) => {
  const kb = fakeKbridge(JSON.stringify(TARGETS));
  t.after(kb.cleanup);
  const ui = scriptedUi({ service: 'todo-api', preset: 'debugpy' });
  const entry = await configure({ kbridge: kb.file, run: runProcess, ui, baseConfigurations: BASES });
  assert.deepEqual(entry, {
    type: 'bridge',
    request: 'launch',
    name: 'todo-api (kbridge, debugpy)',
    debugger: 'debugpy',
    program: '${workspaceFolder}/app.py',
    cwd: '${workspaceFolder}',
    console: 'internalConsole',
    bridge: { namespace: 'todo', service: 'todo-api', ports: [8080] },
  });
  // The local port suggested is the container port; the debugger list is the five presets.
  assert.deepEqual(ui.asked[1], ['local', 8080]);
  assert.deepEqual(ui.asked[2], ['debugger', ['debugpy', 'lldb-dap', 'dlv', 'js-debug', 'netcoredbg']]);
});

test('Configure maps the chosen port of a several-port service as {remote, local}', async (t) => {
  const kb = fakeKbridge(JSON.stringify(TARGETS));
  t.after(kb.cleanup);
  const ui = scriptedUi({ service: 'stats-api', portName: 'grpc', localPort: 6000, preset: 'dlv' });
  const entry = await configure({ kbridge: kb.file, run: runProcess, ui, baseConfigurations: BASES });
  assert.equal(entry.name, 'stats-api (kbridge, dlv)');
  assert.equal(entry.mode, 'debug');
  assert.deepEqual(entry.bridge, { namespace: 'todo', service: 'stats-api', ports: [{ remote: 50051, local: 6000 }] });
});

test('Configure stops without writing when the user cancels', async (t) => {
  const kb = fakeKbridge(JSON.stringify(TARGETS));
  t.after(kb.cleanup);
  const ui = scriptedUi({ service: 'todo-api', preset: undefined });
  assert.equal(await configure({ kbridge: kb.file, run: runProcess, ui, baseConfigurations: BASES }), undefined);
});

test('a failing kbridge is reported with its own message', async (t) => {
  const kb = fakeKbridge('', { exitCode: 1, stderr: "error: context 'nope' not found in kubeconfig" });
  t.after(kb.cleanup);
  await assert.rejects(listTargets(kb.file, runProcess), /kbridge targets --output json` failed: error: context 'nope'/);
});

test('an empty cluster and malformed answers give clear errors', async (t) => {
  const kb = fakeKbridge('[]');
  t.after(kb.cleanup);
  await assert.rejects(
    configure({ kbridge: kb.file, run: runProcess, ui: scriptedUi({}), baseConfigurations: BASES }),
    /no services/
  );
  assert.throws(() => parseTargets('not json'), /not JSON/);
  assert.throws(() => parseTargets('{}'), /JSON array/);
  assert.throws(() => parseTargets('[{"namespace":"a"}]'), /`service`/);
  assert.throws(() => parseTargets('[{"namespace":"a","service":"b","ports":[{"name":"x"}]}]'), /numeric `port`/);
});

test('a named targetPort on a several-port service asks for a hand edit instead of guessing', () => {
  const target = {
    namespace: 'n',
    service: 's',
    ports: [
      { name: 'a', port: 80, targetPort: 'web' },
      { name: 'b', port: 81, targetPort: 81 },
    ],
  };
  assert.throws(() => launchEntry(BASES[0], target, target.ports[0], 3000), /named container port 'web'/);
});

test('the entry replaces one of the same name and is otherwise appended', () => {
  const a = { name: 'a', type: 'python' };
  const b1 = { name: 'b', v: 1 };
  const b2 = { name: 'b', v: 2 };
  assert.deepEqual(mergeConfigurations([a], b1), [a, b1]);
  assert.deepEqual(mergeConfigurations([a, b1], b2), [a, b2]);
});
