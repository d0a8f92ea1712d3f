/**
 * A small hand-written stand-in for the `vscode` module, NOT VS Code: just the API surface
 * extension.ts uses, recording what the extension registers, shows and writes. Tests
 * install it with `installVscodeStub()` before requiring out/src/extension.js. Scripted
 * answers (`answers.quickPick`, `answers.inputBox`) play the user.
 */
'use strict';

const Module = require('node:module');

function createVscodeStub({ settings = {}, folders = [{ name: 'ws', uri: { fsPath: '/ws' } }] } = {}) {
  const record = {
    factories: {},
    providers: {},
    commands: {},
    errors: [],
    infos: [],
    executed: [],
    launchWrites: [],
    launchConfigurations: [],
  };
  const answers = { quickPick: [], inputBox: [] };

  class DebugAdapterExecutable {
    constructor(command, args, options) {
      this.command = command;
      this.args = args;
      this.options = options;
    }
  }

  const vscode = {
    DebugAdapterExecutable,
    ConfigurationTarget: { Global: 1, Workspace: 2, WorkspaceFolder: 3 },
    workspace: {
      workspaceFolders: folders,
      getConfiguration(section) {
        if (section === 'launch') {
          return {
            get: (key) => (key === 'configurations' ? record.launchConfigurations : undefined),
            update: async (key, value, target) => {
              record.launchWrites.push({ key, value, target });
              if (key === 'configurations') record.launchConfigurations = value;
            },
          };
        }
        return {
          get: (key, fallback) => {
            const full = `${section}.${key}`;
            return full in settings ? settings[full] : fallback;
          },
        };
      },
    },
    window: {
      showErrorMessage: async (message, ...items) => {
        record.errors.push({ message, items });
        return undefined;
      },
      showInformationMessage: async (message) => {
        record.infos.push(message);
        return undefined;
      },
      showQuickPick: async (items, options) => {
        const choose = answers.quickPick.shift();
        if (!choose) throw new Error(`unexpected quick pick: ${options && options.title}`);
        return choose(await items, options);
      },
      showInputBox: async (options) => {
        const answer = answers.inputBox.shift();
        if (!answer) throw new Error(`unexpected input box: ${options && options.title}`);
        return answer(options);
      },
      showWorkspaceFolderPick: async () => folders[0],
    },
    commands: {
      registerCommand(id, callback) {
        record.commands[id] = callback;
        return { dispose() {} };
      },
      executeCommand: async (...args) => {
        record.executed.push(args);
      },
    },
    debug: {
      registerDebugAdapterDescriptorFactory(type, factory) {
        record.factories[type] = factory;
        return { dispose() {} };
      },
      registerDebugConfigurationProvider(type, provider) {
        record.providers[type] = provider;
        return { dispose() {} };
      },
    },
  };
  return { vscode, record, answers };
}

/** Makes `require('vscode')` return the stub; returns a function that undoes it. */
function installVscodeStub(stub) {
  const original = Module._load;
  Module._load = function load(request, ...rest) {
    if (request === 'vscode') return stub;
    return original.call(this, request, ...rest);
  };
  return () => {
    Module._load = original;
  };
}

module.exports = { createVscodeStub, installVscodeStub };
