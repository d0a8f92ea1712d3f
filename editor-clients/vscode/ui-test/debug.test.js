/**
 * The kbridge extension in real VS Code (code-server's workbench in headless Chromium),
 * driven the way a user drives it:
 *
 * 1. locally: open the folder, open app.py, F9 on a line, F5 with a `bridge` launch
 *    configuration, "Paused on breakpoint", the Variables view, an expression in the
 *    Debug Console, F5 to continue to the next stop, Shift+F5 to stop;
 * 2. bridged to todo-api on the fixture cluster: "kbridge: Configure" from the command
 *    palette writes the launch.json entry (service picked from the cluster's list, the
 *    named target port offered as its container port), then the same path with the pod's
 *    Secret in the Variables view and stats-api reached by its cluster name from the Debug
 *    Console; after Stop the Deployment's pod template is exactly as before.
 *
 * A failing step leaves a screenshot and the Debug Console's text in the artifacts
 * directory (KBRIDGE_TEST_ARTIFACTS, default target/test-artifacts/vscode-ui).
 * Needs ./install.sh run (code-server), Chromium, the .vsix packaged, and for the bridged
 * test root and the workspace binaries; each test says why when it is skipped.
 */
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { isDeepStrictEqual } = require('node:util');
const fixture = require('../test/support/fixture-cluster.js');
const { startCodeServer, whyNoCodeServer } = require('./support/code-server.js');
const { Workbench, whyNoChromium } = require('./support/workbench.js');

const { KBRIDGE, REPO_ROOT, freePort, scratch, startCluster } = fixture;
const ARTIFACTS = process.env.KBRIDGE_TEST_ARTIFACTS
  ? path.resolve(process.env.KBRIDGE_TEST_ARTIFACTS)
  : path.join(REPO_ROOT, 'target', 'test-artifacts', 'vscode-ui');

// The developer's service: stops twice on the BREAK line, so Continue has somewhere to go.
const LOCAL_APP = `import os

user_var = os.environ.get("KBRIDGE_TEST_VAR", "<unset>")
for visit in range(1, 3):
    print("probe", visit, user_var)  # BREAK
`;

const CLUSTER_APP = `import os

api_key = os.environ.get("API_KEY", "<unset>")
log_level = os.environ.get("LOG_LEVEL", "<unset>")
for visit in range(1, 3):
    print("probe", visit, api_key, log_level)  # BREAK
`;

function breakLine(source) {
  return source.split('\n').findIndex((line) => line.includes('BREAK')) + 1;
}

function skipReason({ cluster }) {
  const reason = whyNoCodeServer() || whyNoChromium() || (!fs.existsSync(KBRIDGE) && `${KBRIDGE} is not built`);
  if (reason) return reason;
  return cluster ? fixture.whySkip() : false;
}

/** A workspace folder with app.py (and launch.json when given) under the test's scratch dir. */
function workspace(tmp, app, launch) {
  const ws = path.join(tmp, 'ws');
  fs.mkdirSync(path.join(ws, '.vscode'), { recursive: true });
  fs.writeFileSync(path.join(ws, 'app.py'), app);
  if (launch) fs.writeFileSync(path.join(ws, '.vscode', 'launch.json'), JSON.stringify(launch, null, 2));
  return ws;
}

/**
 * Runs `steps` with VS Code open on `ws`; on failure keeps a screenshot. VS Code is closed
 * before this returns, so the scratch directory (removed by an `after` hook) is unused.
 */
async function inVsCode(t, { tmp, ws, env }, steps) {
  const server = await startCodeServer({ home: path.join(tmp, 'vscode'), env, settings: { 'kbridge.path': KBRIDGE } });
  let workbench;
  try {
    workbench = await Workbench.open(server.url, ws);
    await steps(workbench);
  } catch (error) {
    const name = t.name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
    if (workbench) error.message += `\n  screenshot: ${await workbench.keepEvidence(ARTIFACTS, name)}`;
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.copyFileSync(server.logFile, path.join(ARTIFACTS, `${name}.code-server.log`));
    throw error;
  } finally {
    if (workbench) await workbench.close();
    await server.stop();
  }
}

/** The user's path from F9 to the first stop: open the file, the line, F9, F5. */
async function runToBreakpoint(workbench, app, pausedTimeout) {
  await workbench.openFile('app.py');
  await workbench.goToLine(breakLine(app));
  await workbench.toggleBreakpoint();
  await workbench.press('F5');
  await workbench.waitPausedOnBreakpoint(pausedTimeout);
}

/** F5 to the loop's second stop, then Shift+F5; waits for the session to end. */
async function continueThenStop(workbench) {
  await workbench.press('F5');
  await workbench.variable('visit', '2');
  await workbench.waitPausedOnBreakpoint();
  await workbench.press('Shift+F5');
  await workbench.waitSessionEnded();
}

test('real VS Code, local session: F9, F5, Variables, Debug Console, continue, stop', { skip: skipReason({ cluster: false }), timeout: 300000 }, async (t) => {
  const { tmp } = scratch(t, 'kbridge-vscode-ui-local-');
  const ws = workspace(tmp, LOCAL_APP, {
    version: '0.2.0',
    configurations: [
      {
        type: 'bridge',
        request: 'launch',
        name: 'app.py (kbridge, local)',
        debugger: 'debugpy',
        program: '${workspaceFolder}/app.py',
        env: { KBRIDGE_TEST_VAR: 'from-real-vscode' },
      },
    ],
  });
  await inVsCode(t, { tmp, ws, env: { TMPDIR: tmp } }, async (workbench) => {
    await runToBreakpoint(workbench, LOCAL_APP);
    assert.equal(await workbench.variable('user_var', "'from-real-vscode'"), "user_var = 'from-real-vscode'");
    assert.equal(await workbench.variable('visit', '\\d+'), 'visit = 1');
    await workbench.evaluate('user_var.upper() + "!"', /'FROM-REAL-VSCODE!'/);
    await continueThenStop(workbench);
  });
});

test('real VS Code, bridged: Configure writes launch.json, F5 reaches the pod\'s env and stats-api, Stop restores todo-api', { skip: skipReason({ cluster: true }), timeout: 600000 }, async (t) => {
  const owned = scratch(t, 'kbridge-vscode-ui-cluster-');
  const { tmp } = owned;
  const ws = workspace(tmp, CLUSTER_APP);
  const cluster = await startCluster(path.join(tmp, 'cluster'));
  owned.cluster = cluster;
  const kubectl = (...args) =>
    execFileSync('kubectl', ['--kubeconfig', cluster.kubeconfig, '-n', 'todo', ...args], { encoding: 'utf8' });
  const template = () => JSON.parse(kubectl('get', 'deployment', 'todo-api', '-o', 'json')).spec.template;
  const templateBefore = template();
  const localPort = await freePort();

  await inVsCode(t, { tmp, ws, env: { KUBECONFIG: cluster.kubeconfig, TMPDIR: tmp } }, async (workbench) => {
    // kbridge: Configure — the service from the cluster's list (the kubeconfig's namespace
    // has none, so every namespace's are offered), the local port, the debugger.
    await workbench.runCommand('kbridge: Configure');
    await workbench.quickInputTitled(/service to debug locally/, 'the service question');
    await workbench.quickInput('todo-api', 'the service list', { choose: /todo-api\s*todo/ });
    await workbench.quickInputTitled(/local port your todo-api listens on/, 'the local port question');
    const suggested = await workbench.page.locator('.quick-input-widget .quick-input-box input').first().inputValue();
    assert.equal(suggested, '8080', "the suggestion is the container port behind the named targetPort 'http'");
    await workbench.quickInput(String(localPort), 'the local port question', { replace: true });
    await workbench.quickInputTitled(/kbridge: debugger/, 'the debugger question');
    await workbench.quickInput('debugpy', 'the debugger list', { choose: /debugpy/ });
    await workbench.notification(/added ".*" to launch\.json/, 'the confirmation');

    const launch = JSON.parse(fs.readFileSync(path.join(ws, '.vscode', 'launch.json'), 'utf8'));
    const entry = launch.configurations.find((c) => c.type === 'bridge');
    assert.ok(entry, `a bridge entry in ${JSON.stringify(launch)}`);
    assert.deepEqual(entry.bridge, { namespace: 'todo', service: 'todo-api', ports: [localPort] });
    assert.equal(entry.debugger, 'debugpy');

    // The bridged session takes the cluster side too: allow for the agent's rollout.
    await runToBreakpoint(workbench, CLUSTER_APP, 180000);
    assert.equal(await workbench.variable('api_key', "'s3cr3t-from-cluster'"), "api_key = 's3cr3t-from-cluster'");
    assert.equal(await workbench.variable('log_level', "'info'"), "log_level = 'info'");
    await workbench.evaluate(
      "__import__('urllib.request').request.urlopen('http://stats-api/stats', timeout=10).read().decode()",
      /stats-api-[a-z0-9-]+/
    );
    await continueThenStop(workbench);
  });

  // Stop ended the session; kbridge puts the Deployment back as it found it.
  const deadline = Date.now() + 60000;
  let now = template();
  while (!isDeepStrictEqual(now, templateBefore) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    now = template();
  }
  assert.deepEqual(now, templateBefore, 'the pod template is exactly as it was');
});
