/**
 * The linux-x64 platform .vsix (scripts/package-platform.sh) carries a working kbridge that
 * the extension uses without PATH: packaged with the workspace's kbridge, unpacked as
 * VS Code installs it (an `extension/` directory, file modes kept), then the unpacked
 * extension's own locateKbridge and factory (against the vscode stub) pick bin/kbridge
 * with an empty PATH, and that binary runs `--version`.
 *
 * Needs `cargo build -p kbridge` (or KBRIDGE_BIN) and `unzip`; runs on Linux x86_64 only,
 * the one platform whose binary this machine builds and runs.
 */
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createVscodeStub, installVscodeStub } = require('./support/vscode-stub.js');
const { kbridgeBinary } = require('./support/fixture-cluster.js');

const PACKAGE_DIR = path.resolve(__dirname, '..');
const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'));

/** Packages the linux-x64 .vsix and unpacks it into a fresh directory; returns both paths. */
function packageAndUnpack(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbridge-vsix-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const vsix = path.join(dir, 'kbridge-linux-x64.vsix');
  execFileSync('bash', [path.join(PACKAGE_DIR, 'scripts', 'package-platform.sh'), 'linux-x64', kbridgeBinary(), vsix], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const unpacked = path.join(dir, 'unpacked');
  // Info-ZIP's unzip keeps the Unix modes stored in the archive, as VS Code's installer does.
  execFileSync('unzip', ['-q', vsix, '-d', unpacked]);
  return { vsix, extension: path.join(unpacked, 'extension'), unpacked };
}

/** Activates the unpacked extension.js against the vscode stub, as VS Code would. */
function activateUnpacked(extensionRoot) {
  const entry = path.join(extensionRoot, 'out', 'src', 'extension.js');
  // The language client needs the real `vscode` module; the stub runs the debug side only.
  const stub = createVscodeStub({ settings: { 'kbridge.lsp.enabled': false } });
  const uninstall = installVscodeStub(stub.vscode);
  try {
    const extension = require(entry);
    const context = { subscriptions: [], extensionPath: extensionRoot, extension: { packageJSON: manifest } };
    extension.activate(context);
    return stub;
  } finally {
    uninstall();
  }
}

const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';

test(
  'the linux-x64 .vsix bundles a working kbridge that the extension runs without PATH',
  { skip: onLinuxX64 ? false : 'the linux-x64 binary runs only on Linux x86_64', timeout: 180000 },
  (t) => {
    const { extension, unpacked } = packageAndUnpack(t);
    const vsixManifest = fs.readFileSync(path.join(unpacked, 'extension.vsixmanifest'), 'utf8');
    assert.match(vsixManifest, /TargetPlatform="linux-x64"/);

    // The language client ships with its dependencies and resolves from the extension's code.
    const client = require.resolve('vscode-languageclient/node', { paths: [path.join(extension, 'out', 'src')] });
    assert.ok(client.startsWith(path.join(extension, 'node_modules')), client);

    const bundled = path.join(extension, 'bin', 'kbridge');
    assert.ok(fs.statSync(bundled).mode & 0o100, 'bin/kbridge is executable once unpacked');
    assert.ok(!fs.existsSync(path.join(PACKAGE_DIR, 'bin')), 'the packaging script removes its bin/');

    // The unpacked extension's own code, not this checkout's.
    const adapter = require(path.join(extension, 'out', 'src', 'adapter.js'));
    assert.equal(adapter.locateKbridge({ extensionPath: extension, envPath: '' }), bundled);

    const saved = process.env.PATH;
    process.env.PATH = '';
    let descriptor;
    try {
      const stub = activateUnpacked(extension);
      descriptor = stub.record.factories.bridge.createDebugAdapterDescriptor({
        configuration: { type: 'bridge', request: 'launch', name: 'x', debugger: 'debugpy' },
        workspaceFolder: { uri: { fsPath: '/ws' } },
      });
    } finally {
      process.env.PATH = saved;
    }
    assert.equal(descriptor.command, bundled);
    assert.deepEqual(descriptor.args, ['dap', '--debugger', 'debugpy']);

    const version = execFileSync(bundled, ['--version'], { env: { PATH: '' }, encoding: 'utf8' });
    assert.match(version, new RegExp(`^kbridge ${manifest.version.replace(/\./g, '\\.')}\\b`));
    assert.match(version, new RegExp(`ghcr\\.io/kbridge/agent:${manifest.version.replace(/\./g, '\\.')}`));
  }
);
