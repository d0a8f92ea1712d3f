/**
 * The VS Code side of the `bridge` debug type: a thin layer that wires the pure modules
 * (adapter.ts, defaults.ts, configure.ts) to VS Code's API. It registers the adapter
 * factory (`kbridge dap --debugger <preset>`), a configuration provider that applies the
 * settings, and the "kbridge: Configure" command.
 */
import * as vscode from 'vscode';
import { adapterCommand, KbridgeNotFoundError, locateKbridge } from './adapter';
import { applySettings } from './defaults';
import { configure, ConfigureUi, describePort, mergeConfigurations, runProcess, Target } from './configure';
import { startLanguageClient } from './lsp';

type Config = { [key: string]: unknown };

/** The extension's root directory (set at activation): a platform .vsix has kbridge in `bin/`. */
let extensionPath: string | undefined;

function findKbridge(): string {
  const settingPath = vscode.workspace.getConfiguration('kbridge').get<string>('path');
  return locateKbridge({ settingPath, extensionPath, envPath: process.env.PATH });
}

/** Shows why kbridge cannot run, with a way to fix it; never fails silently. */
function reportMissing(error: KbridgeNotFoundError): void {
  void vscode.window.showErrorMessage(error.message, 'Open Settings').then((choice) => {
    if (choice) void vscode.commands.executeCommand('workbench.action.openSettings', 'kbridge.path');
  });
}

const factory: vscode.DebugAdapterDescriptorFactory = {
  createDebugAdapterDescriptor(session) {
    let kbridge: string;
    try {
      kbridge = findKbridge();
    } catch (error) {
      if (error instanceof KbridgeNotFoundError) reportMissing(error);
      // Throwing stops the session; VS Code also shows the message in its own error.
      throw error;
    }
    const { command, args, cwd } = adapterCommand(
      kbridge,
      session.configuration,
      session.workspaceFolder?.uri.fsPath
    );
    return new vscode.DebugAdapterExecutable(command, args, cwd ? { cwd } : undefined);
  },
};

const provider: vscode.DebugConfigurationProvider = {
  resolveDebugConfiguration(_folder, config) {
    // F5 without a launch.json: returning null makes VS Code open launch.json instead.
    if (!config.type && !config.request && !config.name) return null;
    const disconnectAfterDebugging = vscode.workspace
      .getConfiguration('kbridge')
      .get<boolean>('disconnectAfterDebugging', true);
    return applySettings(config, { disconnectAfterDebugging }) as vscode.DebugConfiguration;
  },
};

const quickPickUi: ConfigureUi = {
  async pickTarget(targets: Target[]) {
    const picked = await vscode.window.showQuickPick(
      targets.map((target) => ({
        label: target.service,
        description: target.namespace,
        detail: target.ports.map(describePort).join(', '),
        target,
      })),
      { title: 'kbridge: service to debug locally', matchOnDescription: true }
    );
    return picked?.target;
  },
  async pickPort(target) {
    const picked = await vscode.window.showQuickPick(
      target.ports.map((port) => ({ label: describePort(port), port })),
      { title: `kbridge: which port of ${target.service} should reach this machine?` }
    );
    return picked?.port;
  },
  async askLocalPort(suggested, target) {
    const answer = await vscode.window.showInputBox({
      title: `kbridge: local port your ${target.service} listens on`,
      value: String(suggested),
      validateInput: (text) =>
        /^\d+$/.test(text) && Number(text) > 0 && Number(text) < 65536 ? undefined : 'a port number, 1-65535',
    });
    return answer === undefined ? undefined : Number(answer);
  },
  async pickDebugger(presets) {
    return vscode.window.showQuickPick(presets, { title: 'kbridge: debugger' });
  },
};

async function configureCommand(context: vscode.ExtensionContext): Promise<void> {
  const folder =
    vscode.workspace.workspaceFolders?.length === 1
      ? vscode.workspace.workspaceFolders[0]
      : await vscode.window.showWorkspaceFolderPick({ placeHolder: 'kbridge: folder whose launch.json to edit' });
  if (!folder) {
    void vscode.window.showErrorMessage('kbridge: Configure needs an open folder to write launch.json into.');
    return;
  }
  try {
    const debuggers = context.extension.packageJSON.contributes.debuggers as Config[];
    const bridge = debuggers.find((d) => d.type === 'bridge');
    const entry = await configure({
      kbridge: findKbridge(),
      run: runProcess,
      ui: quickPickUi,
      baseConfigurations: (bridge?.initialConfigurations as Config[]) ?? [],
    });
    if (!entry) return;
    const launch = vscode.workspace.getConfiguration('launch', folder.uri);
    const existing = launch.get<Config[]>('configurations') ?? [];
    await launch.update(
      'configurations',
      mergeConfigurations(existing, entry),
      vscode.ConfigurationTarget.WorkspaceFolder
    );
    void vscode.window.showInformationMessage(`kbridge: added "${String(entry.name)}" to launch.json`);
  } catch (error) {
    if (error instanceof KbridgeNotFoundError) reportMissing(error);
    else void vscode.window.showErrorMessage(`kbridge: ${(error as Error).message}`);
  }
}

export function activate(context: vscode.ExtensionContext): void {
  extensionPath = context.extensionPath;
  context.subscriptions.push(
    vscode.debug.registerDebugAdapterDescriptorFactory('bridge', factory),
    vscode.debug.registerDebugConfigurationProvider('bridge', provider),
    vscode.commands.registerCommand('kbridge.configure', () => configureCommand(context))
  );
  startLsp(context);
}

/** Starts `kbridge lsp` for the bridge files unless `kbridge.lsp.enabled` is off. */
function startLsp(context: vscode.ExtensionContext): void {
  if (!vscode.workspace.getConfiguration('kbridge').get<boolean>('lsp.enabled', true)) return;
  let kbridge: string;
  try {
    kbridge = findKbridge();
  } catch (error) {
    // No kbridge: the debug side reports it with a way to fix it when it is used.
    if (error instanceof KbridgeNotFoundError) return;
    throw error;
  }
  try {
    const client = startLanguageClient(kbridge);
    context.subscriptions.push({ dispose: () => void client.stop() });
  } catch (error) {
    // The debug side keeps working; say why the language features are missing.
    void vscode.window.showErrorMessage(`kbridge lsp could not start: ${String(error)}`);
  }
}

export function deactivate(): void {
  // Nothing to undo: kbridge's guardian tears sessions down even when VS Code kills it.
}
