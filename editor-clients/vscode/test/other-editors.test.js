/**
 * The Zed, JetBrains (LSP4IJ) and Emacs (dape) examples in editor-clients/, checked with
 * the tools this package already has (ajv, DebugClient): every launch configuration they
 * send is valid against kbridge's launch schema, every kbridge command line they run uses
 * subcommands and flags that exist, and the JetBrains debugpy template runs end to end in
 * kbridge's TCP mode the way LSP4IJ starts it (free port, wait for the trace line).
 * Helix and Neovim have their own tests (helix/test_languages.py, nvim/test/run.sh).
 */
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const Ajv2020 = require('ajv/dist/2020').default;
const { DebugClient } = require('@vscode/debugadapter-testsupport');
const fixture = require('./support/fixture-cluster.js');

const CLIENTS = path.resolve(__dirname, '..', '..');
const REPO_ROOT = path.resolve(CLIENTS, '..');
const SCHEMA_PATH = path.join(REPO_ROOT, 'config-schema', 'schema', 'launch.json');
const schema = JSON.parse(fs.readFileSync(SCHEMA_PATH, 'utf8'));
const PRESETS = schema.$defs.Preset.oneOf.map((o) => o.const);
const ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false });
const validate = ajv.compile(schema);
const STEP_TIMEOUT_MS = 60000;
const freePort = fixture.freePort;
const withTimeout = (promise, what, ms = STEP_TIMEOUT_MS) => fixture.withTimeout(promise, what, ms);

function kbridgeBinary() {
  const bin = process.env.KBRIDGE_BIN
    ? path.resolve(process.env.KBRIDGE_BIN)
    : path.join(REPO_ROOT, 'target', 'debug', 'kbridge');
  if (!fs.existsSync(bin)) throw new Error(`kbridge binary not found at ${bin}: run \`cargo build -p kbridge\` first`);
  return bin;
}

function assertValid(config, what) {
  assert.ok(validate(config), `${what} does not match launch.json: ${ajv.errorsText(validate.errors)}`);
}

/** Fails unless `kbridge ARGS` names a real subcommand with real flags and a real preset. */
function assertCommandLine(argv, what) {
  assert.equal(path.basename(argv[0]), 'kbridge', `${what}: runs ${argv[0]}, not kbridge`);
  const bin = kbridgeBinary();
  const top = execFileSync(bin, ['--help'], { encoding: 'utf8' });
  const commands = top.split('Commands:')[1].split('\n\n')[0].split('\n').map((l) => l.trim().split(/\s+/)[0]);
  assert.ok(commands.includes(argv[1]), `${what}: \`kbridge ${argv[1]}\` is not a subcommand (${commands})`);
  const sub = execFileSync(bin, [argv[1], '--help'], { encoding: 'utf8' });
  for (const flag of argv.filter((a) => a.startsWith('--'))) {
    assert.match(sub, new RegExp(`(^|\\s)${flag}[\\s=]`), `${what}: \`kbridge ${argv[1]} ${flag}\` does not exist`);
  }
  const i = argv.indexOf('--debugger');
  if (i !== -1) assert.ok(PRESETS.includes(argv[i + 1]), `${what}: --debugger ${argv[i + 1]} is not a preset`);
}

/** Substitutes `${name}` (VS Code/LSP4IJ style) from vars; unknown names fail. */
function substitute(value, vars) {
  return JSON.parse(
    JSON.stringify(value).replace(/\$\{(\w+)\}|\$(ZED_\w+)/g, (whole, a, b) => {
      const name = a ?? b;
      if (!(name in vars)) throw new Error(`unknown variable ${whole}`);
      return vars[name];
    })
  );
}

// ---- Zed -------------------------------------------------------------------------------

const ZED_KEYS = ['label', 'adapter', 'build', 'tcp_connection'];

test('Zed: .zed/debug.json scenarios use the extension\'s adapter and are valid kbridge launches', () => {
  const text = fs.readFileSync(path.join(CLIENTS, 'zed', '.zed', 'debug.json'), 'utf8');
  // Zed reads debug.json leniently (comments allowed); these are whole-line comments only.
  const scenarios = JSON.parse(text.replace(/^\s*\/\/.*$/gm, ''));
  const manifest = fs.readFileSync(path.join(CLIENTS, 'zed', 'extension', 'extension.toml'), 'utf8');
  const adapters = [...manifest.matchAll(/^\[debug_adapters\.([\w-]+)\]/gm)].map((m) => m[1]);
  assert.ok(scenarios.length >= 3);
  for (const scenario of scenarios) {
    assert.ok(adapters.includes(scenario.adapter), `${scenario.label}: adapter ${scenario.adapter} not in extension.toml`);
    const config = Object.fromEntries(Object.entries(scenario).filter(([k]) => !ZED_KEYS.includes(k)));
    assertValid(substitute(config, { ZED_WORKTREE_ROOT: '/ws' }), `Zed scenario "${scenario.label}"`);
    assert.ok(PRESETS.includes(config.debugger));
  }
});

test('Zed: the extension\'s adapter schema is kbridge\'s launch schema, unchanged', () => {
  const copy = fs.readFileSync(path.join(CLIENTS, 'zed', 'extension', 'debug_adapter_schemas', 'kbridge.json'), 'utf8');
  assert.equal(copy, fs.readFileSync(SCHEMA_PATH, 'utf8'), 'run: cp config-schema/schema/launch.json editor-clients/zed/extension/debug_adapter_schemas/kbridge.json');
});

// ---- JetBrains (LSP4IJ) -----------------------------------------------------------------

const JETBRAINS = path.join(CLIENTS, 'jetbrains');
const templates = fs
  .readdirSync(JETBRAINS)
  .filter((d) => fs.existsSync(path.join(JETBRAINS, d, 'template.json')))
  .map((dir) => ({
    dir,
    template: JSON.parse(fs.readFileSync(path.join(JETBRAINS, dir, 'template.json'), 'utf8')),
    launch: JSON.parse(fs.readFileSync(path.join(JETBRAINS, dir, 'launch.json'), 'utf8')),
  }));

test('JetBrains: every LSP4IJ template runs a real kbridge command and a valid launch', () => {
  assert.deepEqual(templates.map((t) => t.dir).sort(), ['kbridge-debugpy', 'kbridge-dlv', 'kbridge-lldb-dap']);
  for (const { dir, template, launch } of templates) {
    assert.equal(template.id, dir);
    const argv = template.programArgs.default.split(/\s+/);
    assertCommandLine(argv.map((a) => a.replace('${port}', '0')), `${dir}/template.json`);
    assert.equal(argv[argv.indexOf('--debugger') + 1], launch.debugger, `${dir}: template and launch.json disagree`);
    assertValid(substitute(launch, { file: '/ws/app.py', workspaceFolder: '/ws' }), `${dir}/launch.json`);
  }
});

test('JetBrains: the debugpy template runs end to end as LSP4IJ starts it (TCP, trace line)', { timeout: 180000 }, async (t) => {
  const { template, launch } = templates.find((x) => x.dir === 'kbridge-debugpy');
  const ws = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'kbridge-jetbrains-')));
  t.after(() => fs.rmSync(ws, { recursive: true, force: true }));
  const program = path.join(ws, 'app.py');
  fs.copyFileSync(path.join(REPO_ROOT, 'tests', 'programs', 'env_probe.py'), program);

  // LSP4IJ: replace ${port} with a free port, start the command, wait for waitForTrace.
  const port = await freePort();
  const argv = template.programArgs.default.replace('${port}', String(port)).split(/\s+/);
  const child = spawn(kbridgeBinary(), argv.slice(1), { cwd: ws, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  // waitForTrace is literal text with ${address} and ${port} placeholders.
  const trace = new RegExp(
    '^' +
      template.waitForTrace
        .split(/(\$\{address\}|\$\{port\})/)
        .map((part) =>
          part === '${address}'
            ? '(?<address>[^:\\s]+)'
            : part === '${port}'
              ? '(?<port>\\d+)'
              : part.replace(/[.*+?^$(){}|[\]\\]/g, '\\$&')
        )
        .join('') +
      '$'
  );
  const ready = new Promise((resolve) => {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const m = trace.exec(line.trim());
      if (m) resolve(m.groups);
    });
  });
  const groups = await withTimeout(ready, `the trace "${template.waitForTrace}"`);
  assert.equal(Number(groups.port), port);

  const dc = new DebugClient('unused', 'unused', 'bridge');
  dc.defaultTimeout = STEP_TIMEOUT_MS;
  await withTimeout(dc.start(port), 'a connection to kbridge');
  const output = [];
  dc.on('output', (e) => output.push(e.body.output));
  const config = substitute(launch, { file: program, workspaceFolder: ws });
  delete config.bridge.service; // locally: the cluster path is proven by cluster.test.js
  const terminated = dc.waitForEvent('terminated');
  await withTimeout(Promise.all([dc.configurationSequence(), dc.launch(config)]), 'the launch');
  await withTimeout(terminated, 'the terminated event');
  assert.match(output.join(''), /probe <unset> native <unset>/);
  await withTimeout(dc.stop(), 'the disconnect response');
  // LSP4IJ stops the server process at the end; kbridge must exit cleanly on SIGTERM.
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.kill('SIGTERM');
  assert.deepEqual(await withTimeout(exited, 'kbridge to exit after SIGTERM'), { code: 0, signal: null });
});

// ---- Emacs (dape) -----------------------------------------------------------------------

function emacsAvailable() {
  try {
    execFileSync('emacs', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('Emacs: every kbridge-* dape-configs entry runs a real kbridge command and a valid launch', { skip: emacsAvailable() ? false : 'emacs is not installed (apt-get install emacs-nox)' }, () => {
  const emacsDir = path.join(CLIENTS, 'emacs');
  const out = execFileSync('emacs', ['--batch', '-Q', '-L', emacsDir, '-L', path.join(emacsDir, 'test'), '-l', path.join(emacsDir, 'test', 'print-configs.el')], { encoding: 'utf8' });
  const entries = JSON.parse(out.trim().split('\n').pop());
  assert.deepEqual(entries.map((e) => e.name).sort(), PRESETS.map((p) => `kbridge-${p}`).sort());
  for (const entry of entries) {
    assertCommandLine([entry.command, ...entry.commandArgs], entry.name);
    // A missing kbridge must be reported by dape, not fail silently.
    assert.equal(entry.ensure, 'dape-ensure-command');
    const launch = JSON.parse(entry.launch);
    assert.equal(entry.commandArgs[entry.commandArgs.indexOf('--debugger') + 1], launch.debugger);
    // dape calls these functions when it starts a session.
    const resolved = JSON.parse(
      JSON.stringify(launch).replace(/"dape-cwd"/g, '"/ws"').replace(/"dape-buffer-default"/g, '"/ws/app.py"')
    );
    assertValid(resolved, `dape entry ${entry.name}`);
  }
});

test('Emacs: kbridge-eglot.el gives the bridge files modes of their own, served by a real `kbridge lsp`', { skip: emacsAvailable() ? false : 'emacs is not installed (apt-get install emacs-nox)' }, () => {
  const emacsDir = path.join(CLIENTS, 'emacs');
  const out = execFileSync('emacs', ['--batch', '-Q', '-L', emacsDir, '-L', path.join(emacsDir, 'test'), '-l', path.join(emacsDir, 'test', 'print-eglot.el')], { encoding: 'utf8' });
  const files = JSON.parse(out.trim().split('\n').pop());
  const expected = {
    '/w/api/KubernetesLocalProcessConfig.yaml': 'kbridge-config-mode',
    '/w/api/azds-local.env': 'kbridge-azds-env-mode',
    '/w/.vscode/launch.json': 'kbridge-launch-json-mode',
  };
  for (const [file, mode] of Object.entries(expected)) {
    assert.equal(files[file].mode, mode, file);
    // The mode really is defined and switches the buffer to itself.
    assert.equal(files[file].derived, mode, file);
    assertCommandLine(files[file].server, `eglot server for ${file}`);
    assert.deepEqual(files[file].server, ['kbridge', 'lsp'], file);
  }
  // Other YAML and JSON files keep their modes (and their own servers).
  assert.notEqual(files['/w/package.json'].mode, 'kbridge-launch-json-mode');
  assert.equal(files['/w/other.yaml'].mode, null);
  // The command answers LSP as eglot starts it: initialize, then shutdown and exit.
  const frame = (m) => { const b = JSON.stringify(m); return `Content-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`; };
  const input = [
    frame({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { processId: null, rootUri: null, capabilities: {} } }),
    frame({ jsonrpc: '2.0', id: 2, method: 'shutdown' }),
    frame({ jsonrpc: '2.0', method: 'exit' }),
  ].join('');
  const answer = execFileSync(kbridgeBinary(), ['lsp'], { input, encoding: 'utf8', env: { ...process.env, KUBECONFIG: '/nonexistent/kubeconfig' } });
  assert.match(answer, /"codeActionProvider":true/);
  assert.match(answer, /"name":"kbridge"/);
});

test('Zed: the extension registers the `kbridge` language server for YAML and JSON, running a real `kbridge lsp`', () => {
  const manifestText = fs.readFileSync(path.join(CLIENTS, 'zed', 'extension', 'extension.toml'), 'utf8');
  const section = manifestText.split('[language_servers.kbridge]')[1];
  assert.ok(section, 'extension.toml has no [language_servers.kbridge]');
  const languages = JSON.parse(section.match(/^languages\s*=\s*(\[.*\])$/m)[1]);
  assert.deepEqual(languages, ['YAML', 'JSON', 'JSONC']);
  // src/lib.rs builds `kbridge lsp` (its unit test checks the arguments).
  const lib = fs.readFileSync(path.join(CLIENTS, 'zed', 'extension', 'src', 'lib.rs'), 'utf8');
  assert.match(lib, /fn language_server_command/);
  assert.match(lib, /vec!\["lsp"\.to_string\(\)\]/);
  assertCommandLine(['kbridge', 'lsp'], 'Zed language server');
});
