/**
 * The `bridge` contribution in package.json against kbridge's launch schema
 * (config-schema/schema/launch.json): attributes regenerate identically, every initial
 * configuration and snippet is a valid launch configuration, and the required presets
 * are all there.
 */
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const Ajv2020 = require('ajv/dist/2020').default;
const { configurationAttributes, presetNames } = require('../out/src/attributes.js');
const { expandSnippet } = require('./support/snippet.js');

const PACKAGE_DIR = path.resolve(__dirname, '..');
const SCHEMA_PATH = path.resolve(PACKAGE_DIR, '..', '..', 'config-schema', 'schema', 'launch.json');
const schema = JSON.parse(fs.readFileSync(SCHEMA_PATH, 'utf8'));
const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'));
const bridge = manifest.contributes.debuggers.find((d) => d.type === 'bridge');
const REQUIRED_PRESETS = ['debugpy', 'lldb-dap', 'dlv', 'js-debug', 'netcoredbg'];

// Ajv in its default strict mode rejects keywords it does not know; schemars' `format`
// values (uint16, uint64) are only informative.
const ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false });
const validate = ajv.compile(schema);

function assertValid(config, what) {
  const ok = validate(config);
  assert.ok(ok, `${what} does not match launch.json: ${ajv.errorsText(validate.errors)}`);
}

// VS Code lets a user set breakpoints only in languages some installed extension lists
// under `contributes.breakpoints`; with kbridge alone, F9 in a .py file would do nothing.
test('breakpoints are enabled in every language the bridge debugger serves', () => {
  const enabled = (manifest.contributes.breakpoints || []).map((b) => b.language);
  assert.deepEqual([...enabled].sort(), [...bridge.languages].sort());
});

test('configurationAttributes are exactly what the schema generates (run `npm run generate` if not)', () => {
  assert.deepEqual(bridge.configurationAttributes, configurationAttributes(schema));
});

test('configurationAttributes offer every preset of the schema for `debugger`', () => {
  for (const request of ['launch', 'attach']) {
    const choice = bridge.configurationAttributes[request].properties.debugger;
    const presetOption = choice.anyOf.find((o) => Array.isArray(o.enum));
    assert.deepEqual(presetOption.enum, presetNames(schema));
    assert.equal(presetOption.enumDescriptions.length, presetOption.enum.length);
    // Inlined: nothing may point into $defs, which VS Code's merged schema does not have.
    assert.doesNotMatch(JSON.stringify(bridge.configurationAttributes), /\$ref|\$defs/);
  }
});

test('initialConfigurations: one valid `bridge` launch per required preset', () => {
  const presets = bridge.initialConfigurations.map((c) => c.debugger);
  assert.deepEqual([...presets].sort(), [...REQUIRED_PRESETS].sort());
  for (const config of bridge.initialConfigurations) {
    assert.equal(config.type, 'bridge');
    assert.ok(presetNames(schema).includes(config.debugger));
    assertValid(config, `initial configuration "${config.name}"`);
  }
});

test('configurationSnippets: one per required preset, valid after expansion, same as the initial configuration', () => {
  const presets = bridge.configurationSnippets.map((s) => s.body.debugger);
  assert.deepEqual([...presets].sort(), [...REQUIRED_PRESETS].sort());
  for (const snippet of bridge.configurationSnippets) {
    assert.match(snippet.label, /^kbridge: /);
    const config = expandSnippet(snippet.body);
    assertValid(config, `snippet "${snippet.label}"`);
    // Snippets and initial configurations must not disagree on defaults; only the name differs.
    const initial = bridge.initialConfigurations.find((c) => c.debugger === config.debugger);
    const { name: _a, ...fromSnippet } = config;
    const { name: _b, ...fromInitial } = initial;
    assert.deepEqual(fromSnippet, fromInitial, `snippet "${snippet.label}" differs from its initial configuration`);
  }
});

test('the command, settings and activation the extension relies on are contributed', () => {
  const command = manifest.contributes.commands.find((c) => c.command === 'kbridge.configure');
  assert.equal(`${command.category}: ${command.title}`, 'kbridge: Configure');
  const props = manifest.contributes.configuration.properties;
  assert.equal(props['kbridge.path'].type, 'string');
  assert.equal(props['kbridge.disconnectAfterDebugging'].type, 'boolean');
  assert.equal(props['kbridge.disconnectAfterDebugging'].default, true);
  assert.ok(manifest.activationEvents.includes('onDebugResolve:bridge'));
  assert.ok(manifest.activationEvents.includes('onCommand:kbridge.configure'));
});
