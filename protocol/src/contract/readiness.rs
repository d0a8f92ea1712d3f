//! The readiness check kbridge asks of the agent with `enableFeatures: [Probes]`
//! (`docs/identity.md`, "Probes and lifecycle hooks"): the container's readiness probe,
//! carried out by the agent against the local process through the session, so readiness
//! follows the developer's process. kbridge writes it as JSON into the agent container's
//! [`READINESS_ENV`]; the kubelet asks the agent's health port at [`READINESS_PATH`].

use serde::{Deserialize, Serialize};

/// The agent container's variable holding the [`LocalReadiness`] as JSON.
pub const READINESS_ENV: &str = "KBRIDGE_READINESS";

/// The path of the agent's health port that answers the local process's readiness.
pub const READINESS_PATH: &str = "/readyz/local";

/// The container's readiness probe as the agent carries it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalReadiness {
    /// The container port probed (kbridge maps it to the local port as any request).
    pub port: u16,
    /// An HTTP GET, answered 200–399 when ready; `None`: a TCP connection the local process
    /// accepts is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
}

/// An HTTP GET readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// Request path (with its query), `/` by default.
    pub path: String,
    /// Extra request headers, in order (the probe's `httpHeaders`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json() {
        let check = LocalReadiness {
            port: 8080,
            http: Some(HttpCheck {
                path: "/ready?full=1".into(),
                headers: vec![("X-Probe".into(), "kubelet".into())],
            }),
        };
        let text = serde_json::to_string(&check).expect("json");
        assert_eq!(
            serde_json::from_str::<LocalReadiness>(&text).expect("parse"),
            check
        );
        let tcp: LocalReadiness = serde_json::from_str(r#"{"port": 5432}"#).expect("parse");
        assert_eq!(tcp.http, None);
    }
}
