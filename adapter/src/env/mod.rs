//! The debuggee's environment, built from layers in the precedence described in
//! `docs/architecture.md` ("The debuggee's environment") and written in the form each
//! adapter wants.

pub mod dotenv;

use kbridge_config::{EnvFormat, EnvVars};

/// gRPC C-core's c-ares resolver ignores hosts-file entries and stalls for minutes on
/// names only the hosts file knows; the native resolver reads it.
pub const GRPC_DNS_RESOLVER: (&str, &str) = ("GRPC_DNS_RESOLVER", "native");

/// The layers that make up the debuggee's environment, lowest precedence first when
/// merged: kbridge defaults < pod < config file < envFile < the user's `env`.
#[derive(Debug, Default, Clone)]
pub struct EnvLayers {
    /// Replicated from the pod, service links rewritten to local endpoints.
    pub pod: EnvVars,
    /// From `KubernetesLocalProcessConfig.yaml`.
    pub config_file: EnvVars,
    /// From the launch configuration's `envFile`.
    pub env_file: EnvVars,
    /// The launch configuration's own `env`.
    pub user: EnvVars,
}

impl EnvLayers {
    /// The merged environment.
    pub fn merged(&self) -> EnvVars {
        let mut env = EnvVars::new();
        env.set(GRPC_DNS_RESOLVER.0, Some(GRPC_DNS_RESOLVER.1.to_string()));
        for layer in [&self.pod, &self.config_file, &self.env_file, &self.user] {
            env.overlay(layer);
        }
        env
    }
}

/// `env` in the adapter's format.
pub fn to_adapter_format(env: &EnvVars, format: EnvFormat) -> serde_json::Value {
    match format {
        EnvFormat::Object => env.to_object(),
        EnvFormat::List => env.to_list(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(value: serde_json::Value) -> EnvVars {
        EnvVars::from_json(&value).expect("test env")
    }

    #[test]
    fn precedence_user_over_file_over_config_over_pod_over_default() {
        let layers = EnvLayers {
            pod: vars(json!({"A": "pod", "B": "pod", "C": "pod", "D": "pod"})),
            config_file: vars(json!({"B": "config", "C": "config", "D": "config"})),
            env_file: vars(json!({"C": "envfile", "D": "envfile"})),
            user: vars(json!({"D": "user", "GRPC_DNS_RESOLVER": "ares"})),
        };
        let merged = layers.merged();
        assert_eq!(merged.get("A"), Some(Some("pod")));
        assert_eq!(merged.get("B"), Some(Some("config")));
        assert_eq!(merged.get("C"), Some(Some("envfile")));
        assert_eq!(merged.get("D"), Some(Some("user")));
        assert_eq!(merged.get("GRPC_DNS_RESOLVER"), Some(Some("ares")));
        assert_eq!(
            EnvLayers::default().merged().get("GRPC_DNS_RESOLVER"),
            Some(Some("native"))
        );
    }
}
