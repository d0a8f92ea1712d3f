/**
 * The language client for `kbridge lsp` (docs/lsp.md in the kbridge repository):
 * diagnostics, completion, hover and code actions in KubernetesLocalProcessConfig.yaml,
 * azds-local.env and .vscode/launch.json, with live data from the current kubeconfig's
 * cluster. vscode-languageclient starts `kbridge lsp` on stdio and speaks LSP with it.
 *
 * The client library is loaded when the client starts (not at import), through a loader
 * tests can replace: it needs the real `vscode` module.
 */

/** The files the server reads; it ignores any other. */
export const DOCUMENT_SELECTOR = [
  { scheme: 'file', pattern: '**/*KubernetesLocalProcessConfig.yaml' },
  { scheme: 'file', pattern: '**/azds-local.env' },
  { scheme: 'file', pattern: '**/.vscode/launch.json' },
];

/** What vscode-languageclient/node's `LanguageClient` is used as. */
export interface Client {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The part of vscode-languageclient/node used here. */
export interface ClientModule {
  LanguageClient: new (
    id: string,
    name: string,
    serverOptions: { command: string; args: string[] },
    clientOptions: { documentSelector: typeof DOCUMENT_SELECTOR }
  ) => Client;
}

let loadClientModule: () => ClientModule = () =>
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('vscode-languageclient/node') as ClientModule;

/** Replaces how the client library is loaded (tests); returns the previous loader. */
export function setClientLoader(loader: () => ClientModule): () => ClientModule {
  const previous = loadClientModule;
  loadClientModule = loader;
  return previous;
}

/** The server's command line: `kbridge lsp` (stdio). */
export function serverOptions(kbridge: string): { command: string; args: string[] } {
  return { command: kbridge, args: ['lsp'] };
}

/** Starts `kbridge lsp` for the bridge files; the client, to stop when deactivated. */
export function startLanguageClient(kbridge: string): Client {
  const { LanguageClient } = loadClientModule();
  const client = new LanguageClient('kbridge', 'kbridge lsp', serverOptions(kbridge), {
    documentSelector: DOCUMENT_SELECTOR,
  });
  // start() rejects when the server cannot run; the client shows that in its output.
  client.start().catch(() => undefined);
  return client;
}
