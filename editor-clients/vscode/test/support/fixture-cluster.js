/**
 * The fixture cluster (`kube-fixture serve --demo`) for the extension's cluster tests and
 * the real-VS-Code tests in ../../ui-test: where the built binaries are, why a test must
 * be skipped, starting and stopping the cluster, and a scratch directory that outlives it.
 */
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const KBRIDGE = process.env.KBRIDGE_BIN
  ? path.resolve(process.env.KBRIDGE_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'kbridge');
const FIXTURE = path.join(path.dirname(KBRIDGE), 'kube-fixture');
const AGENT = path.join(path.dirname(KBRIDGE), 'kbridge-agent');

/** The built kbridge (KBRIDGE_BIN, else the workspace's debug build); throws saying how to build it. */
function kbridgeBinary() {
  if (!fs.existsSync(KBRIDGE)) {
    throw new Error(`kbridge binary not found at ${KBRIDGE}: run \`cargo build -p kbridge\` first, or set KBRIDGE_BIN`);
  }
  return KBRIDGE;
}

/** Why the cluster tests cannot run here, or `false` when they can. */
function whySkip() {
  if (process.getuid && process.getuid() !== 0) return 'the fixture cluster needs root';
  for (const bin of [KBRIDGE, FIXTURE, AGENT]) {
    if (!fs.existsSync(bin)) return `${bin} is not built (cargo build --workspace --bins)`;
  }
  return false;
}

/** `promise`, or a rejection naming `what` once `ms` have passed. */
function withTimeout(promise, what, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A loopback port nobody listens on right now. */
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
async function startCluster(stateDir, readyTimeoutMs = 120000) {
  const child = spawn(FIXTURE, ['serve', '--demo', '--state-dir', stateDir, '--agent-bin', AGENT], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const ready = new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('ready ')) resolve(line.slice(6).trim());
    });
    child.on('exit', (code) => reject(new Error(`kube-fixture exited with ${code} before it was ready`)));
  });
  await withTimeout(ready, 'kube-fixture to be ready', readyTimeoutMs);
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

module.exports = { REPO_ROOT, KBRIDGE, FIXTURE, AGENT, kbridgeBinary, whySkip, withTimeout, freePort, startCluster, scratch };
