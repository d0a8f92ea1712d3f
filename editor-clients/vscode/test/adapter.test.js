/** The adapter factory's pure part: finding kbridge and the command line it runs. */
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { adapterCommand, bundledKbridge, locateKbridge, KbridgeNotFoundError } = require('../out/src/adapter.js');

test('a preset becomes `kbridge dap --debugger <preset>`', () => {
  for (const preset of ['debugpy', 'lldb-dap', 'dlv', 'js-debug', 'netcoredbg', 'codelldb']) {
    assert.deepEqual(adapterCommand('/opt/kbridge', { type: 'bridge', debugger: preset }), {
      command: '/opt/kbridge',
      args: ['dap', '--debugger', preset],
    });
  }
});

test('a custom or missing debugger is left to kbridge: plain `kbridge dap`', () => {
  const custom = { command: 'my-adapter', type: 'mine' };
  assert.deepEqual(adapterCommand('kb', { debugger: custom }).args, ['dap']);
  assert.deepEqual(adapterCommand('kb', {}).args, ['dap']);
});

test('kbridge starts in the configuration\'s cwd, else the workspace folder', () => {
  assert.equal(adapterCommand('kb', { debugger: 'dlv', cwd: '/ws/svc' }, '/ws').cwd, '/ws/svc');
  assert.equal(adapterCommand('kb', { debugger: 'dlv', cwd: 'relative' }, '/ws').cwd, '/ws');
  assert.equal(adapterCommand('kb', { debugger: 'dlv' }, '/ws').cwd, '/ws');
  assert.equal(adapterCommand('kb', { debugger: 'dlv' }).cwd, undefined);
});

test('kbridge.path wins over PATH; PATH is searched in order', () => {
  const exec = new Set(['/set/kbridge', '/b/kbridge', '/c/kbridge']);
  const isExecutable = (f) => exec.has(f);
  assert.equal(locateKbridge({ settingPath: '/set/kbridge', envPath: '/b:/c', isExecutable }), '/set/kbridge');
  assert.equal(locateKbridge({ settingPath: '', envPath: '/a:/b:/c', isExecutable }), '/b/kbridge');
});

test('a real executable on a real PATH is found', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbridge-path-'));
  const file = path.join(dir, 'kbridge');
  fs.writeFileSync(file, '#!/bin/sh\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'not-exec'), '');
  try {
    assert.equal(locateKbridge({ envPath: `/nonexistent:${dir}` }), file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('missing kbridge: a clear error naming the setting and the install command', () => {
  assert.throws(
    () => locateKbridge({ envPath: '/nonexistent', isExecutable: () => false }),
    (e) =>
      e instanceof KbridgeNotFoundError &&
      /kbridge\.path/.test(e.message) &&
      /no `kbridge` on PATH/.test(e.message) &&
      /cargo install --path adapter/.test(e.message) &&
      /release/.test(e.message)
  );
});

test('a wrong kbridge.path is an error, not a fallback to PATH', () => {
  assert.throws(
    () => locateKbridge({ settingPath: '/wrong/kbridge', envPath: '/b', isExecutable: (f) => f === '/b/kbridge' }),
    (e) => e instanceof KbridgeNotFoundError && e.message.includes('/wrong/kbridge') && /kbridge\.path/.test(e.message)
  );
});

test('the bundled kbridge (platform .vsix) wins over PATH', () => {
  const exec = new Set(['/ext/bin/kbridge', '/b/kbridge']);
  const isExecutable = (f) => exec.has(f);
  assert.equal(locateKbridge({ extensionPath: '/ext', envPath: '/b', isExecutable }), '/ext/bin/kbridge');
  assert.equal(locateKbridge({ settingPath: '  ', extensionPath: '/ext', envPath: '/b', isExecutable }), '/ext/bin/kbridge');
});

test('an explicit kbridge.path wins over the bundled kbridge', () => {
  const exec = new Set(['/set/kbridge', '/ext/bin/kbridge']);
  const isExecutable = (f) => exec.has(f);
  assert.equal(
    locateKbridge({ settingPath: '/set/kbridge', extensionPath: '/ext', envPath: '', isExecutable }),
    '/set/kbridge'
  );
  // Even when the setting is wrong: an error naming it, not the bundled kbridge.
  assert.throws(
    () => locateKbridge({ settingPath: '/wrong/kbridge', extensionPath: '/ext', isExecutable }),
    (e) => e instanceof KbridgeNotFoundError && e.message.includes('/wrong/kbridge')
  );
});

test('no bundled kbridge (universal .vsix): PATH is searched', () => {
  const isExecutable = (f) => f === '/b/kbridge';
  assert.equal(locateKbridge({ extensionPath: '/ext', envPath: '/a:/b', isExecutable }), '/b/kbridge');
  assert.throws(
    () => locateKbridge({ extensionPath: '/ext', envPath: '/a', isExecutable: () => false }),
    (e) => e instanceof KbridgeNotFoundError && /bundles no kbridge/.test(e.message) && /platform/.test(e.message)
  );
});

test('the bundled kbridge is bin/kbridge, bin/kbridge.exe on Windows', () => {
  assert.equal(bundledKbridge('/ext', 'linux'), path.join('/ext', 'bin', 'kbridge'));
  assert.equal(bundledKbridge('/ext', 'darwin'), path.join('/ext', 'bin', 'kbridge'));
  assert.equal(bundledKbridge('/ext', 'win32'), path.join('/ext', 'bin', 'kbridge.exe'));
  const exec = new Set([path.join('/ext', 'bin', 'kbridge.exe')]);
  assert.equal(
    locateKbridge({ extensionPath: '/ext', platform: 'win32', envPath: '', isExecutable: (f) => exec.has(f) }),
    path.join('/ext', 'bin', 'kbridge.exe')
  );
});

test('a real bundled executable is found with an empty PATH', () => {
  const ext = fs.mkdtempSync(path.join(os.tmpdir(), 'kbridge-ext-'));
  fs.mkdirSync(path.join(ext, 'bin'));
  const file = path.join(ext, 'bin', 'kbridge');
  fs.writeFileSync(file, '#!/bin/sh\n', { mode: 0o755 });
  try {
    assert.equal(locateKbridge({ extensionPath: ext, envPath: '' }), file);
  } finally {
    fs.rmSync(ext, { recursive: true, force: true });
  }
});
