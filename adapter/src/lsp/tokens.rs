//! The tokens inside configuration values — `$(volumeMounts:NAME)`,
//! `$(services:SVC[.NS][:PORTS])`, `$(externalEndpoints:HOST:PORTS)` in
//! `KubernetesLocalProcessConfig.yaml`, `${volumes.NAME[|PATH]}` and `${services.[NS.]SVC}` in
//! `azds-local.env` — found with their byte spans, and what each becomes in a session.
//! Whether a token is valid is `kbridge-config`'s to say (`config-schema/src/local_process.rs`,
//! `config-schema/src/azds_env.rs`); this module only locates them.

use super::cluster::Snapshot;
use std::ops::Range;

/// The two token syntaxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `$(kind:argument)`, `KubernetesLocalProcessConfig.yaml`.
    Config,
    /// `${kind.argument}`, `azds-local.env`.
    AzdsEnv,
}

impl Syntax {
    /// The token kinds, as documented.
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Syntax::Config => &["volumeMounts", "services", "externalEndpoints"],
            Syntax::AzdsEnv => &["volumes", "services"],
        }
    }

    /// `$(` or `${`.
    pub fn open(self) -> &'static str {
        match self {
            Syntax::Config => "$(",
            Syntax::AzdsEnv => "${",
        }
    }

    fn close(self) -> char {
        match self {
            Syntax::Config => ')',
            Syntax::AzdsEnv => '}',
        }
    }

    /// What separates the kind from its argument.
    pub fn separator(self) -> char {
        match self {
            Syntax::Config => ':',
            Syntax::AzdsEnv => '.',
        }
    }
}

/// One token in a value, spans relative to the value's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    /// The whole token, `$(` to `)` (to the end of the value when unclosed).
    pub span: Range<usize>,
    /// The kind as written (`services`); empty when no separator follows.
    pub kind: &'a str,
    /// Where the kind is.
    pub kind_span: Range<usize>,
    /// What follows the separator.
    pub argument: &'a str,
    /// Whether the closing bracket is there.
    pub closed: bool,
}

impl Token<'_> {
    /// The kind as the docs spell it, matched without regard to case as kbridge does.
    pub fn known_kind(&self, syntax: Syntax) -> Option<&'static str> {
        syntax
            .kinds()
            .iter()
            .copied()
            .find(|k| k.eq_ignore_ascii_case(self.kind))
    }
}

/// The tokens of `value`, in order.
pub fn tokens(value: &str, syntax: Syntax) -> Vec<Token<'_>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = value[from..].find(syntax.open()) {
        let start = from + at;
        let body_start = start + 2;
        let (body_end, end, closed) = match value[body_start..].find(syntax.close()) {
            Some(i) => (body_start + i, body_start + i + 1, true),
            None => (value.len(), value.len(), false),
        };
        let body = &value[body_start..body_end];
        let (kind, argument) = body.split_once(syntax.separator()).unwrap_or((body, ""));
        found.push(Token {
            span: start..end,
            kind,
            kind_span: body_start..body_start + kind.len(),
            argument,
            closed,
        });
        from = end.max(start + 2);
    }
    found
}

/// The token whose span holds `offset` of the value.
pub fn token_at(value: &str, syntax: Syntax, offset: usize) -> Option<Token<'_>> {
    tokens(value, syntax)
        .into_iter()
        .find(|t| t.span.start <= offset && offset <= t.span.end)
}

/// What a token becomes when a session starts, in Markdown.
pub fn explain(token: &Token<'_>, syntax: Syntax, cluster: &Snapshot) -> String {
    let Some(kind) = token.known_kind(syntax) else {
        return format!(
            "`{}` is not a token kind kbridge knows; use {}",
            token.kind,
            super::schema::quoted_list(syntax.kinds().iter().copied())
        );
    };
    match kind {
        "services" => explain_service(token.argument, syntax, cluster),
        "volumeMounts" | "volumes" => explain_volume(token.argument, cluster),
        _ => explain_external(token.argument),
    }
}

fn explain_service(argument: &str, syntax: Syntax, cluster: &Snapshot) -> String {
    let (name, namespace, ports) = match syntax {
        Syntax::Config => {
            let (service, ports) = argument.split_once(':').unwrap_or((argument, ""));
            let (name, namespace) = service.split_once('.').unwrap_or((service, ""));
            (name, namespace, ports)
        }
        // `${services.NS.SVC}` puts the namespace first.
        Syntax::AzdsEnv => match argument.split_once('.') {
            Some((namespace, name)) => (name, namespace, ""),
            None => (argument, "", ""),
        },
    };
    let mut text = format!(
        "**Service `{name}`**{}: becomes the local address kbridge gives the Service in this \
         session, e.g. `127.1.0.x` (an address in 127.1.0.0/16); connections to {} on it are \
         carried to the Service in the cluster.",
        if namespace.is_empty() {
            " of the session's namespace".to_string()
        } else {
            format!(" in namespace `{namespace}`")
        },
        if ports.is_empty() {
            "all of its ports".to_string()
        } else {
            format!("ports {ports}")
        }
    );
    let known = cluster.services.as_ref().and_then(|services| {
        services
            .iter()
            .find(|s| s.name == name && (namespace.is_empty() || s.namespace == namespace))
    });
    for forwarded in cluster
        .session_services
        .iter()
        .filter(|s| s.name == name && (namespace.is_empty() || s.namespace == namespace))
    {
        let ports: Vec<String> = forwarded
            .ports
            .iter()
            .map(|(service, local)| format!("`{}:{local}` (port {service})", forwarded.address))
            .collect();
        text.push_str(&format!(
            "\n\nIn live session `{}`: **`{}`** — {}.",
            forwarded.session,
            forwarded.address,
            if ports.is_empty() {
                "all ports".to_string()
            } else {
                ports.join(", ")
            }
        ));
    }
    if let Some(service) = known {
        let ports: Vec<String> = service
            .ports
            .iter()
            .map(|(port, port_name)| match port_name {
                Some(n) => format!("{port} ({n})"),
                None => port.to_string(),
            })
            .collect();
        text.push_str(&format!("\n\nIn the cluster: ports {}.", ports.join(", ")));
    }
    text
}

fn explain_volume(argument: &str, cluster: &Snapshot) -> String {
    let name = argument.split_once('|').map_or(argument, |(name, _)| name);
    let mut text = format!(
        "**Volume `{name}`**: becomes the local directory the volume is downloaded to for the \
         session — the `localPath` of its `volumeMounts` entry, else a directory under the \
         session's private 0700 directory, removed at the end."
    );
    if let Some(volume) = cluster
        .volumes
        .as_ref()
        .and_then(|vs| vs.iter().find(|v| v.name == name))
    {
        text.push_str(&format!(
            "\n\nIn the container: mounted at `{}`, from {}.",
            volume.mount_path, volume.source
        ));
    }
    text
}

fn explain_external(argument: &str) -> String {
    let (host, ports) = argument.split_once(':').unwrap_or((argument, ""));
    format!(
        "**External endpoint `{host}`**: stays `{host}`; the name resolves locally to an \
         address whose ports {ports} are carried through the cluster, so the local process \
         reaches it as the pod does."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_with_their_spans() {
        let value = "http://$(services:api.todo:80)/x $(Secrets:y) $(volumeMounts:";
        let found = tokens(value, Syntax::Config);
        assert_eq!(found.len(), 3);
        assert_eq!(&value[found[0].span.clone()], "$(services:api.todo:80)");
        assert_eq!(found[0].argument, "api.todo:80");
        assert_eq!(found[1].known_kind(Syntax::Config), None);
        assert_eq!(&value[found[1].kind_span.clone()], "Secrets");
        assert!(!found[2].closed && found[2].argument.is_empty());
        let env = tokens("${volumes.cfg|/tmp/c}/a ${services.ns.db}", Syntax::AzdsEnv);
        assert_eq!(env[0].known_kind(Syntax::AzdsEnv), Some("volumes"));
        assert_eq!(env[1].argument, "ns.db");
    }

    #[test]
    fn explanations_say_what_a_token_becomes() {
        let token = token_at("$(services:stats-api)", Syntax::Config, 5).expect("token");
        let text = explain(&token, Syntax::Config, &Snapshot::default());
        assert!(
            text.contains("Service `stats-api`") && text.contains("127.1.0.x"),
            "{text}"
        );
        let live = Snapshot {
            session_services: vec![crate::lsp::cluster::SessionService {
                name: "stats-api".into(),
                namespace: "todo".into(),
                address: "127.1.0.3".into(),
                ports: vec![(80, 80)],
                session: "s-1".into(),
            }],
            ..Snapshot::default()
        };
        let text = explain(&token, Syntax::Config, &live);
        assert!(
            text.contains("**`127.1.0.3`**") && text.contains("`127.1.0.3:80`"),
            "{text}"
        );
        let token = token_at("${services.ns.db}", Syntax::AzdsEnv, 3).expect("token");
        let text = explain(&token, Syntax::AzdsEnv, &Snapshot::default());
        assert!(text.contains("`db`** in namespace `ns`"), "{text}");
    }
}
