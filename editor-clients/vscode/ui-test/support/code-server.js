/**
 * Real VS Code for the tests: the npm package `code-server` (VS Code's own workbench and
 * extension host, served to a browser) with the packaged kbridge.vsix installed, and
 * nothing else — no marketplace, telemetry, update checks or workspace trust prompts.
 *
 * Each test gets its own user data, extensions and config directories under its scratch
 * directory, so nothing is read from or written to the user's home.
 */
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { freePort, withTimeout } = require('../../test/support/fixture-cluster.js');

const UI_TEST_DIR = path.resolve(__dirname, '..');
const CODE_SERVER = path.join(UI_TEST_DIR, 'node_modules', '.bin', 'code-server');
const VSIX = path.resolve(UI_TEST_DIR, '..', 'kbridge.vsix');

/** Why real VS Code cannot run here, or `false` when it can. */
function whyNoCodeServer() {
  if (!fs.existsSync(CODE_SERVER)) return `code-server is not installed: run ${path.join(UI_TEST_DIR, 'install.sh')}`;
  if (!fs.existsSync(VSIX)) return `${VSIX} is not built: run \`npm run package\` in editor-clients/vscode`;
  return false;
}

/**
 * The user settings a fresh install gets, plus the test's: what a user who only
 * installed kbridge would have, with the noise that needs the internet turned off.
 */
function userSettings(extra) {
  return {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.enableExperiments': false,
    'security.workspace.trust.enabled': false,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    // Ports the debuggee opens would otherwise pop "open in browser" notifications.
    'remote.autoForwardPorts': false,
    ...extra,
  };
}

/** code-server's environment: the marketplace off, all its state under `home`. */
function serverEnv(home, env) {
  return {
    ...process.env,
    ...env,
    EXTENSIONS_GALLERY: '{}',
    XDG_CONFIG_HOME: path.join(home, 'config'),
    XDG_DATA_HOME: path.join(home, 'data'),
  };
}

function commonArgs(home) {
  return [
    '--config', path.join(home, 'config.yaml'),
    '--user-data-dir', path.join(home, 'user-data'),
    '--extensions-dir', path.join(home, 'extensions'),
  ];
}

/**
 * Installs kbridge.vsix and starts code-server on a free loopback port.
 * `home` is a fresh directory; `env` is added to code-server's environment (the extension
 * host, and so kbridge, inherit it: KUBECONFIG, TMPDIR); `settings` to the user settings.
 */
async function startCodeServer({ home, env = {}, settings = {} }) {
  fs.mkdirSync(path.join(home, 'user-data', 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(home, 'user-data', 'User', 'settings.json'),
    JSON.stringify(userSettings(settings), null, 2)
  );
  const environment = serverEnv(home, env);
  execFileSync(CODE_SERVER, [...commonArgs(home), '--install-extension', VSIX], {
    env: environment,
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  const port = await freePort();
  const log = fs.openSync(path.join(home, 'code-server.log'), 'a');
  const child = spawn(
    CODE_SERVER,
    [
      ...commonArgs(home),
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${port}`,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
    ],
    { env: environment, stdio: ['ignore', 'pipe', log] }
  );
  const listening = new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      fs.writeSync(log, `${line}\n`);
      if (line.includes('HTTP server listening on')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`code-server exited with ${code} before listening; see ${home}/code-server.log`)));
  });
  await withTimeout(listening, 'code-server to listen', 60000);

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.on('exit', resolve));
    child.kill('SIGTERM');
    await withTimeout(exited, 'code-server to stop', 20000).catch(() => child.kill('SIGKILL'));
    fs.closeSync(log);
  };
  return { url: `http://127.0.0.1:${port}`, stop, logFile: path.join(home, 'code-server.log') };
}

module.exports = { whyNoCodeServer, startCodeServer, VSIX };
