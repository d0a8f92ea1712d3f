//! The server loop: JSON-RPC messages in `Content-Length` frames (the framing DAP uses
//! too, so `adapter/src/dap/codec.rs` reads and writes them), the lifecycle
//! (`initialize` … `shutdown`, `exit`), the open documents, and requests dispatched to
//! diagnostics, completion and hover. Nothing the client sends can stop the server: a
//! malformed frame or message is logged and skipped, a request with bad parameters gets
//! an error response, an unknown request `MethodNotFound`.

use super::cluster::{ClusterData, Scope};
use super::documents::{DocumentKind, Documents};
use super::{code_actions, completion, diagnostics, hover, scope};
use crate::dap::codec::{Frame, FrameReader, FrameWriter};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification,
    PublishDiagnostics,
};
use lsp_types::request::{
    CodeActionRequest, Completion, HoverRequest, Initialize, Request, Shutdown,
};
use lsp_types::{
    CodeActionProviderCapability, CompletionOptions, CompletionResponse, HoverProviderCapability,
    InitializeResult, PublishDiagnosticsParams, ServerCapabilities, ServerInfo,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions, Uri,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// JSON-RPC and LSP error codes the server answers with.
mod code {
    pub const INVALID_PARAMS: i64 = -32602;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const SERVER_NOT_INITIALIZED: i64 = -32002;
}

/// How the session with the client ended, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit` after `shutdown`: exit code 0.
    Clean,
    /// `exit` without `shutdown`, or the input closed: exit code 1, as the protocol says.
    WithoutShutdown,
}

/// What ends the server other than `exit`.
#[derive(Debug, thiserror::Error)]
pub enum LspError {
    /// Reading from or writing to the client failed.
    #[error("cannot talk to the editor: {0}")]
    Io(#[from] std::io::Error),
}

/// A message the server could not use; logged (and answered, for requests).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The body is not JSON.
    #[error("message is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but neither a request, a notification nor a response.
    #[error("message has no `method` and no `id`: {0}")]
    NotAMessage(String),
    /// The parameters of `method` do not have the protocol's shape.
    #[error("bad parameters for {method}: {source}")]
    InvalidParams {
        /// The method.
        method: String,
        /// What serde found.
        source: serde_json::Error,
    },
}

/// Where the lifecycle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Uninitialized,
    Running,
    ShutDown,
}

/// The server's state between messages.
pub struct Server {
    state: State,
    documents: Documents,
    cluster: Arc<dyn ClusterData>,
    /// The scope of each open config file (`scope::for_config_file`), by URI.
    scopes: HashMap<String, Scope>,
}

/// What handling one message produced.
#[derive(Debug, Default)]
pub struct Handled {
    /// Messages to send, in order.
    pub out: Vec<Json>,
    /// Set when the client said `exit`.
    pub exit: Option<Exit>,
}

/// Serves the client on `input`/`output` until `exit` or the end of the input.
pub async fn serve(
    input: impl AsyncRead + Unpin,
    output: impl AsyncWrite + Unpin,
    cluster: Arc<dyn ClusterData>,
) -> Result<Exit, LspError> {
    let mut reader = FrameReader::for_protocol(input, "LSP");
    let mut writer = FrameWriter::new(output);
    let mut changes = cluster.changes();
    let mut server = Server::new(cluster);
    loop {
        let frame = tokio::select! {
            frame = reader.next_frame() => frame?,
            Some(()) = cluster_changed(&mut changes) => {
                for message in server.republish() {
                    writer.send(&serde_json::to_vec(&message).unwrap_or_default()).await?;
                }
                continue;
            }
        };
        let body = match frame {
            None => return Ok(server.exit_on_end()),
            Some(Frame::Error(error)) => {
                tracing::warn!(%error, "skipped bytes");
                continue;
            }
            Some(Frame::Body(body)) => body,
        };
        let handled = server.handle(&body);
        for message in handled.out {
            writer
                .send(&serde_json::to_vec(&message).unwrap_or_default())
                .await?;
        }
        if let Some(exit) = handled.exit {
            return Ok(exit);
        }
    }
}

/// Resolves when the cluster data changed; never when there is no source of changes.
async fn cluster_changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match changes {
        Some(receiver) => match receiver.changed().await {
            Ok(()) => Some(()),
            Err(_) => {
                *changes = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

impl Server {
    /// A server before `initialize`.
    pub fn new(cluster: Arc<dyn ClusterData>) -> Server {
        Server {
            state: State::Uninitialized,
            documents: Documents::default(),
            cluster,
            scopes: HashMap::new(),
        }
    }

    /// The exit when the input ends without `exit`.
    pub fn exit_on_end(&self) -> Exit {
        tracing::info!("the editor closed the connection");
        Exit::WithoutShutdown
    }

    /// Handles one message body.
    pub fn handle(&mut self, body: &[u8]) -> Handled {
        let message: Json = match serde_json::from_slice(body) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(error = %MessageError::NotJson(error), "skipped");
                return Handled::default();
            }
        };
        let method = message
            .get("method")
            .and_then(Json::as_str)
            .map(str::to_string);
        let id = message
            .get("id")
            .filter(|id| id.is_number() || id.is_string())
            .cloned();
        let params = message.get("params").cloned().unwrap_or(Json::Null);
        match (method, id) {
            (Some(method), Some(id)) => Handled {
                out: vec![self.request(&method, id, params)],
                exit: None,
            },
            (Some(method), None) => self.notification(&method, params),
            (None, Some(_)) => Handled::default(), // A response: the server sends no requests.
            (None, None) => {
                let error = MessageError::NotAMessage(truncated(&message));
                tracing::warn!(%error, "skipped");
                Handled::default()
            }
        }
    }

    fn request(&mut self, method: &str, id: Json, params: Json) -> Json {
        let result = match (self.state, method) {
            (State::Uninitialized, Initialize::METHOD) => {
                self.state = State::Running;
                Ok(serde_json::to_value(initialize_result()).unwrap_or_default())
            }
            (State::Uninitialized, _) => Err((
                code::SERVER_NOT_INITIALIZED,
                "the server is not initialized yet".to_string(),
            )),
            (State::ShutDown, _) => {
                Err((code::INVALID_REQUEST, "the server is shut down".to_string()))
            }
            (State::Running, Initialize::METHOD) => Err((
                code::INVALID_REQUEST,
                "initialize was already sent".to_string(),
            )),
            (State::Running, Shutdown::METHOD) => {
                self.state = State::ShutDown;
                Ok(Json::Null)
            }
            (State::Running, Completion::METHOD) => {
                self.with_params::<Completion>(params, |s, p| s.completion(p))
            }
            (State::Running, HoverRequest::METHOD) => {
                self.with_params::<HoverRequest>(params, |s, p| s.hover(p))
            }
            (State::Running, CodeActionRequest::METHOD) => {
                self.with_params::<CodeActionRequest>(params, |s, p| s.code_actions(p))
            }
            (State::Running, _) => Err((
                code::METHOD_NOT_FOUND,
                format!("kbridge lsp does not handle {method}"),
            )),
        };
        match result {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => {
                tracing::info!(method, code, %message, "request refused");
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        }
    }

    /// Reads the request's parameters and runs `handler`, or says why they are unusable.
    fn with_params<R: Request>(
        &mut self,
        params: Json,
        handler: impl FnOnce(&mut Server, R::Params) -> Json,
    ) -> Result<Json, (i64, String)>
    where
        R::Params: DeserializeOwned,
    {
        match parse::<R::Params>(R::METHOD, params) {
            Ok(params) => Ok(handler(self, params)),
            Err(error) => Err((code::INVALID_PARAMS, error.to_string())),
        }
    }

    fn notification(&mut self, method: &str, params: Json) -> Handled {
        if method == "exit" {
            let exit = if self.state == State::ShutDown {
                Exit::Clean
            } else {
                Exit::WithoutShutdown
            };
            return Handled {
                out: Vec::new(),
                exit: Some(exit),
            };
        }
        if self.state != State::Running {
            return Handled::default();
        }
        let out = match method {
            DidOpenTextDocument::METHOD => self.open(params),
            DidChangeTextDocument::METHOD => self.change(params),
            DidCloseTextDocument::METHOD => self.close(params),
            _ => Vec::new(), // `initialized`, `$/…` and the rest need nothing.
        };
        Handled { out, exit: None }
    }

    fn open(&mut self, params: Json) -> Vec<Json> {
        let Some(params) = parse_logged::<<DidOpenTextDocument as Notification>::Params>(
            DidOpenTextDocument::METHOD,
            params,
        ) else {
            return Vec::new();
        };
        let document = params.text_document;
        if !self
            .documents
            .open(&document.uri, document.version, document.text)
        {
            return Vec::new();
        }
        self.rescope();
        self.publish(&document.uri).into_iter().collect()
    }

    fn change(&mut self, params: Json) -> Vec<Json> {
        let Some(params) = parse_logged::<<DidChangeTextDocument as Notification>::Params>(
            DidChangeTextDocument::METHOD,
            params,
        ) else {
            return Vec::new();
        };
        let uri = params.text_document.uri;
        let Some(document) = self.documents.get_mut(&uri) else {
            return Vec::new();
        };
        document.apply(params.text_document.version, params.content_changes);
        if document.kind == DocumentKind::LaunchJson {
            self.rescope();
        }
        self.publish(&uri).into_iter().collect()
    }

    fn close(&mut self, params: Json) -> Vec<Json> {
        let Some(params) = parse_logged::<<DidCloseTextDocument as Notification>::Params>(
            DidCloseTextDocument::METHOD,
            params,
        ) else {
            return Vec::new();
        };
        let uri = params.text_document.uri;
        if !self.documents.close(&uri) {
            return Vec::new();
        }
        self.rescope();
        // Clear what was shown for it.
        vec![publish_message(PublishDiagnosticsParams::new(
            uri,
            Vec::new(),
            None,
        ))]
    }

    /// Works out again which scope each open document is about (a document was opened
    /// or closed, or a `launch.json` changed), and asks the cluster data for each.
    fn rescope(&mut self) {
        let mut scopes = HashMap::new();
        for uri in self.documents.uris() {
            let Some(document) = self.documents.get(&uri) else {
                continue;
            };
            if document.kind == DocumentKind::LaunchJson {
                for configuration in scope::bridge_configurations(&document.text) {
                    self.cluster.refresh(&configuration.scope);
                }
                continue;
            }
            let documents = &self.documents;
            let open = |path: &std::path::Path| {
                let uri: Uri = format!("file://{}", path.display()).parse().ok()?;
                Some(documents.get(&uri)?.text.clone())
            };
            let found = scope::file_path(uri.as_str())
                .map(|path| scope::for_config_file(&path, &open))
                .unwrap_or_default();
            self.cluster.refresh(&found);
            scopes.insert(uri.as_str().to_string(), found);
        }
        self.scopes = scopes;
    }

    /// The scope of the document at `uri` at byte `offset`.
    fn scope_at(&self, uri: &Uri, offset: usize) -> Scope {
        match self.documents.get(uri) {
            Some(document) if document.kind == DocumentKind::LaunchJson => {
                scope::in_launch_json(&document.text, offset)
            }
            _ => self.scopes.get(uri.as_str()).cloned().unwrap_or_default(),
        }
    }

    /// The diagnostics of the document at `uri`, as a notification.
    fn publish(&self, uri: &Uri) -> Option<Json> {
        let document = self.documents.get(uri)?;
        let cluster = &self.cluster;
        let own = self.scope_at(uri, 0);
        let found = diagnostics::diagnostics(document, &own, &|scope| cluster.snapshot(scope));
        Some(publish_message(PublishDiagnosticsParams::new(
            uri.clone(),
            found,
            Some(document.version),
        )))
    }

    /// Diagnostics of every open document again (the cluster data changed).
    pub fn republish(&self) -> Vec<Json> {
        self.documents
            .uris()
            .filter_map(|uri| self.publish(&uri))
            .collect()
    }

    fn completion(&mut self, params: lsp_types::CompletionParams) -> Json {
        let at = params.text_document_position;
        let Some(document) = self.documents.get(&at.text_document.uri) else {
            return Json::Null;
        };
        let offset = document.index.offset(&document.text, at.position);
        let snapshot = self
            .cluster
            .snapshot(&self.scope_at(&at.text_document.uri, offset));
        let items = completion::complete(document, offset, &snapshot);
        serde_json::to_value(CompletionResponse::Array(items)).unwrap_or_default()
    }

    fn hover(&mut self, params: lsp_types::HoverParams) -> Json {
        let at = params.text_document_position_params;
        let Some(document) = self.documents.get(&at.text_document.uri) else {
            return Json::Null;
        };
        let offset = document.index.offset(&document.text, at.position);
        let snapshot = self
            .cluster
            .snapshot(&self.scope_at(&at.text_document.uri, offset));
        serde_json::to_value(hover::hover(document, offset, &snapshot)).unwrap_or_default()
    }
}

impl Server {
    fn code_actions(&mut self, params: lsp_types::CodeActionParams) -> Json {
        let uri = params.text_document.uri;
        let Some(document) = self.documents.get(&uri) else {
            return json!([]);
        };
        let start = document.index.offset(&document.text, params.range.start);
        let end = document.index.offset(&document.text, params.range.end);
        let actions = code_actions::actions(&uri, document, start..end.max(start));
        serde_json::to_value(actions).unwrap_or_else(|_| json!([]))
    }
}

/// What the server can do, as `initialize` answers.
pub fn initialize_result() -> InitializeResult {
    InitializeResult {
        capabilities: ServerCapabilities {
            text_document_sync: Some(TextDocumentSyncCapability::Options(
                TextDocumentSyncOptions {
                    open_close: Some(true),
                    change: Some(TextDocumentSyncKind::INCREMENTAL),
                    ..TextDocumentSyncOptions::default()
                },
            )),
            completion_provider: Some(CompletionOptions {
                trigger_characters: Some(
                    completion::TRIGGER_CHARACTERS
                        .iter()
                        .map(|c| c.to_string())
                        .collect(),
                ),
                ..CompletionOptions::default()
            }),
            hover_provider: Some(HoverProviderCapability::Simple(true)),
            code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
            ..ServerCapabilities::default()
        },
        server_info: Some(ServerInfo {
            name: "kbridge".to_string(),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
        }),
    }
}

fn publish_message(params: PublishDiagnosticsParams) -> Json {
    json!({"jsonrpc": "2.0", "method": PublishDiagnostics::METHOD, "params": params})
}

fn parse<T: DeserializeOwned>(method: &str, params: Json) -> Result<T, MessageError> {
    serde_json::from_value(params).map_err(|source| MessageError::InvalidParams {
        method: method.to_string(),
        source,
    })
}

/// Parameters of a notification, which cannot be answered: a problem is only logged.
fn parse_logged<T: DeserializeOwned>(method: &str, params: Json) -> Option<T> {
    parse(method, params)
        .map_err(|error| tracing::warn!(%error, "notification skipped"))
        .ok()
}

fn truncated(message: &Json) -> String {
    let text = message.to_string();
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsp::cluster::NoCluster;

    fn send(server: &mut Server, message: Json) -> Handled {
        server.handle(&serde_json::to_vec(&message).expect("json"))
    }

    #[test]
    fn lifecycle_and_errors_never_stop_the_server() {
        let mut server = Server::new(Arc::new(NoCluster));
        let early = send(
            &mut server,
            json!({"jsonrpc": "2.0", "id": 1, "method": "textDocument/hover", "params": {}}),
        );
        assert_eq!(early.out[0]["error"]["code"], code::SERVER_NOT_INITIALIZED);
        assert!(server.handle(b"{not json").out.is_empty());
        assert!(send(&mut server, json!({"jsonrpc": "2.0"})).out.is_empty());
        let init = send(
            &mut server,
            json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"capabilities": {}}}),
        );
        assert_eq!(init.out[0]["result"]["capabilities"]["hoverProvider"], true);
        let unknown = send(
            &mut server,
            json!({"jsonrpc": "2.0", "id": "x", "method": "textDocument/rename", "params": {}}),
        );
        assert_eq!(unknown.out[0]["error"]["code"], code::METHOD_NOT_FOUND);
        assert_eq!(unknown.out[0]["id"], "x");
        let bad = send(
            &mut server,
            json!({"jsonrpc": "2.0", "id": 3, "method": "textDocument/completion", "params": {"nope": 1}}),
        );
        assert_eq!(bad.out[0]["error"]["code"], code::INVALID_PARAMS);
        assert!(send(
            &mut server,
            json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": 7})
        )
        .out
        .is_empty());
        let opened = send(
            &mut server,
            json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": "file:///w/KubernetesLocalProcessConfig.yaml", "languageId": "yaml", "version": 1, "text": "volumeMount: []\n"}}}),
        );
        let diagnostics = &opened.out[0]["params"]["diagnostics"];
        assert_eq!(
            diagnostics[0]["range"]["end"]["character"], 11,
            "{diagnostics}"
        );
        let changed = send(
            &mut server,
            json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": {"uri": "file:///w/KubernetesLocalProcessConfig.yaml", "version": 2},
            "contentChanges": [{"range": {"start": {"line": 0, "character": 11}, "end": {"line": 0, "character": 11}}, "text": "s"}]}}),
        );
        assert_eq!(changed.out[0]["params"]["diagnostics"], json!([]));
        assert_eq!(
            send(
                &mut server,
                json!({"jsonrpc": "2.0", "id": 4, "method": "shutdown"})
            )
            .out[0]["result"],
            Json::Null
        );
        let after = send(
            &mut server,
            json!({"jsonrpc": "2.0", "id": 5, "method": "textDocument/hover", "params": {}}),
        );
        assert_eq!(after.out[0]["error"]["code"], code::INVALID_REQUEST);
        assert_eq!(
            send(&mut server, json!({"jsonrpc": "2.0", "method": "exit"})).exit,
            Some(Exit::Clean)
        );
    }
}
