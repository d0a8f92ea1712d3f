//! Which metadata endpoints a session reaches through the agent, and which variables point
//! at them: read from the pod's environment (an SDK variable naming an endpoint), plus the
//! cloud metadata address when `enableFeatures: [ManagedIdentity]` asks for it. Pure: no
//! sockets here (`docs/identity.md` has the variables and why each one).

use std::collections::BTreeMap;

/// The link-local address of the cloud metadata servers (Azure IMDS, the GKE metadata
/// server, AWS IMDS): what `ManagedIdentity` reaches when the pod names no endpoint.
pub const METADATA_ADDRESS: &str = "169.254.169.254";
/// Its port.
pub const METADATA_PORT: u16 = 80;

/// How a variable's value names an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A URL, `http://HOST[:PORT][/PATH]`: the scheme and path are kept.
    Url,
    /// `HOST[:PORT]`, port 80 when absent (Google's `GCE_METADATA_HOST`).
    HostPort,
}

/// SDK variables that name an identity endpoint, and the form of their values.
///
/// - `AWS_CONTAINER_CREDENTIALS_FULL_URI`: EKS Pod Identity (`http://169.254.170.23/v1/credentials`)
///   and other container credential endpoints; the SDKs accept a loopback host over http.
/// - `AWS_EC2_METADATA_SERVICE_ENDPOINT`: AWS IMDS.
/// - `AZURE_POD_IDENTITY_AUTHORITY_HOST`: the Azure SDKs' override of the IMDS host.
/// - `IDENTITY_ENDPOINT`, `IMDS_ENDPOINT`, `MSI_ENDPOINT`: Azure's other managed identity
///   sources (App Service, Arc, Cloud Shell), rewritten when the pod has them.
/// - `GCE_METADATA_HOST` (and its old name `GCE_METADATA_ROOT`), `GCE_METADATA_IP`: the
///   Google libraries' metadata server.
pub const ENDPOINT_VARIABLES: [(&str, Form); 9] = [
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", Form::Url),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", Form::Url),
    ("AZURE_POD_IDENTITY_AUTHORITY_HOST", Form::Url),
    ("IDENTITY_ENDPOINT", Form::Url),
    ("IMDS_ENDPOINT", Form::Url),
    ("MSI_ENDPOINT", Form::Url),
    ("GCE_METADATA_HOST", Form::HostPort),
    ("GCE_METADATA_ROOT", Form::HostPort),
    ("GCE_METADATA_IP", Form::HostPort),
];

/// What `ManagedIdentity` sets when the pod's environment does not: every SDK's way to
/// the metadata address.
pub const MANAGED_IDENTITY_VARIABLES: [(&str, Form); 4] = [
    ("AZURE_POD_IDENTITY_AUTHORITY_HOST", Form::Url),
    ("GCE_METADATA_HOST", Form::HostPort),
    ("GCE_METADATA_IP", Form::HostPort),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", Form::Url),
];

/// An endpoint the agent dials from the pod's network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Host name or address, as the pod names it.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A variable to point at a local address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// Variable name.
    pub name: String,
    /// The endpoint its value names.
    pub endpoint: Endpoint,
    /// How the value is written.
    pub form: Form,
    /// What surrounds the endpoint in the value: `(scheme + "://", path)` for a URL.
    pub around: (String, String),
    /// The pod's value; `None` when `ManagedIdentity` adds the variable.
    pub pod_value: Option<String>,
}

impl Rewrite {
    /// The value pointing at `local` (`ADDRESS:PORT`).
    pub fn value_at(&self, local: &str) -> String {
        format!("{}{local}{}", self.around.0, self.around.1)
    }
}

/// A variable left as the pod has it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Variable name.
    pub name: String,
    /// Why it was not rewritten.
    pub reason: String,
}

/// What the session does for identity endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Variables to rewrite, each with its endpoint.
    pub rewrites: Vec<Rewrite>,
    /// Variables kept, with why.
    pub kept: Vec<Kept>,
}

impl Plan {
    /// The distinct endpoints, each to get one local address.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut all: Vec<Endpoint> = self.rewrites.iter().map(|r| r.endpoint.clone()).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// Reads the pod's environment; with `managed_identity`, adds the metadata address for
/// the variables the pod does not set. `skip` names variables another layer owns (the
/// config file's `env`, which wins over the pod's).
pub fn plan(pod_env: &BTreeMap<String, String>, managed_identity: bool, skip: &[&str]) -> Plan {
    let mut plan = Plan::default();
    for (name, form) in ENDPOINT_VARIABLES {
        let Some(value) = pod_env.get(name) else {
            continue;
        };
        if skip.contains(&name) {
            continue;
        }
        match parse(value, form) {
            Ok((endpoint, around)) => plan.rewrites.push(Rewrite {
                name: name.to_string(),
                endpoint,
                form,
                around,
                pod_value: Some(value.clone()),
            }),
            Err(reason) => plan.kept.push(Kept {
                name: name.to_string(),
                reason,
            }),
        }
    }
    if managed_identity {
        let metadata = Endpoint {
            host: METADATA_ADDRESS.into(),
            port: METADATA_PORT,
        };
        for (name, form) in MANAGED_IDENTITY_VARIABLES {
            if pod_env.contains_key(name) || skip.contains(&name) {
                continue;
            }
            let around = match form {
                Form::Url => ("http://".to_string(), String::new()),
                Form::HostPort => (String::new(), String::new()),
            };
            plan.rewrites.push(Rewrite {
                name: name.to_string(),
                endpoint: metadata.clone(),
                form,
                around,
                pod_value: None,
            });
        }
    }
    plan
}

/// The endpoint in `value` and what surrounds it, or why it cannot be reached locally.
fn parse(value: &str, form: Form) -> Result<(Endpoint, (String, String)), String> {
    let value = value.trim();
    match form {
        Form::HostPort => {
            let endpoint = host_port(value).ok_or_else(|| not_an_endpoint(value))?;
            Ok((endpoint, (String::new(), String::new())))
        }
        Form::Url => {
            let (scheme, rest) = value
                .split_once("://")
                .ok_or_else(|| not_an_endpoint(value))?;
            if !scheme.eq_ignore_ascii_case("http") {
                return Err(format!(
                    "{scheme}:// is kept: a certificate names the pod's host, so the endpoint cannot be given a local address"
                ));
            }
            let split = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(split);
            if authority.contains('@') {
                return Err("a URL with credentials in it is kept as it is".into());
            }
            let endpoint = host_port(authority).ok_or_else(|| not_an_endpoint(value))?;
            Ok((endpoint, (format!("{scheme}://"), path.to_string())))
        }
    }
}

fn not_an_endpoint(value: &str) -> String {
    format!("`{value}` names no host the agent can dial")
}

/// `HOST[:PORT]` (IPv6 in brackets), port 80 when absent.
fn host_port(text: &str) -> Option<Endpoint> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        (host.to_string(), port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().ok()?),
            None => (text.to_string(), 80),
        }
    };
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    plain.then_some(Endpoint { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn eks_pod_identity_uri_keeps_its_path() {
        let plan = plan(
            &env(&[
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://169.254.170.23/v1/credentials",
                ),
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/x"),
            ]),
            false,
            &[],
        );
        assert_eq!(plan.rewrites.len(), 1);
        let rewrite = &plan.rewrites[0];
        assert_eq!(
            rewrite.endpoint,
            Endpoint {
                host: "169.254.170.23".into(),
                port: 80
            }
        );
        assert_eq!(
            rewrite.value_at("127.1.0.9:80"),
            "http://127.1.0.9:80/v1/credentials"
        );
    }

    #[test]
    fn google_host_port_and_shared_endpoints() {
        let plan = plan(
            &env(&[
                ("GCE_METADATA_HOST", "127.0.0.1:8099"),
                ("GCE_METADATA_IP", "127.0.0.1:8099"),
            ]),
            false,
            &[],
        );
        assert_eq!(plan.rewrites.len(), 2);
        assert_eq!(plan.endpoints().len(), 1, "one local address for both");
        assert_eq!(
            plan.rewrites[0].value_at("127.1.0.3:8099"),
            "127.1.0.3:8099"
        );
    }

    #[test]
    fn https_and_garbage_are_kept_with_a_reason() {
        let plan = plan(
            &env(&[
                ("IDENTITY_ENDPOINT", "https://example.net/msi/token"),
                ("MSI_ENDPOINT", "not a url"),
                ("GCE_METADATA_HOST", "host:notaport"),
            ]),
            false,
            &[],
        );
        assert!(plan.rewrites.is_empty());
        assert_eq!(plan.kept.len(), 3);
        assert!(plan.kept.iter().any(|k| k.reason.contains("certificate")));
    }

    #[test]
    fn managed_identity_adds_the_metadata_address_where_the_pod_is_silent() {
        let plan = plan(
            &env(&[("GCE_METADATA_HOST", "metadata.google.internal")]),
            true,
            &["AWS_EC2_METADATA_SERVICE_ENDPOINT"],
        );
        let names: Vec<&str> = plan.rewrites.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "GCE_METADATA_HOST",
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                "GCE_METADATA_IP"
            ]
        );
        let azure = &plan.rewrites[1];
        assert_eq!(azure.endpoint.to_string(), "169.254.169.254:80");
        assert_eq!(azure.value_at("127.1.0.2:80"), "http://127.1.0.2:80");
        assert_eq!(plan.endpoints().len(), 2);
        assert!(super::plan(&BTreeMap::new(), false, &[])
            .rewrites
            .is_empty());
    }

    #[test]
    fn bracketed_ipv6_and_queries() {
        let plan = plan(
            &env(&[(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://[fd00:ec2::23]/v1/credentials?x=1",
            )]),
            false,
            &[],
        );
        assert_eq!(plan.rewrites[0].endpoint.host, "fd00:ec2::23");
        assert_eq!(
            plan.rewrites[0].value_at("127.1.0.1:80"),
            "http://127.1.0.1:80/v1/credentials?x=1"
        );
    }
}
