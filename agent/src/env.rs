//! Which of the agent's environment variables Kubernetes gave the container, i.e. what kbridge
//! replicates to the local process.
//!
//! Choice: the agent reports its whole environment *minus* what the container runtime or kbridge
//! itself added. The runtime adds `PATH`, `HOME`, `HOSTNAME` and `TERM`; kbridge adds `KBRIDGE_*`.
//! Names kbridge lists in `KBRIDGE_ENV_KEEP` (the original container's explicit `env` names) are
//! kept even when they collide with those, because the original spec really set them. This covers
//! `envFrom` and service links, whose names kbridge cannot know without reading every ConfigMap.

use std::collections::{BTreeMap, BTreeSet};

/// Variables container runtimes add on their own; never Kubernetes' intent for the app.
pub const RUNTIME_VARIABLES: &[&str] = &["PATH", "HOME", "HOSTNAME", "TERM"];
/// Prefix of the variables kbridge sets on the agent for itself.
pub const KBRIDGE_PREFIX: &str = "KBRIDGE_";
/// Never reported, whatever `KBRIDGE_ENV_KEEP` says.
pub const SECRET_VARIABLES: &[&str] = &["KBRIDGE_SESSION_TOKEN"];

/// Filters `all` down to what Kubernetes gave the container.
pub fn kubernetes_env(
    all: &[(String, String)],
    keep: &BTreeSet<String>,
    exclude: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    all.iter()
        .filter(|(k, _)| !SECRET_VARIABLES.contains(&k.as_str()))
        .filter(|(k, _)| {
            keep.contains(k)
                || !(RUNTIME_VARIABLES.contains(&k.as_str())
                    || k.starts_with(KBRIDGE_PREFIX)
                    || exclude.contains(k))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_runtime_and_kbridge_variables_but_keeps_explicit_ones() {
        let all: Vec<(String, String)> = [
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("HOSTNAME", "pod-1"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("STATS_API_SERVICE_PORT", "80"),
            ("KBRIDGE_SESSION_TOKEN", "secret"),
            ("KBRIDGE_AGENT_PORTS", "80"),
            ("LOG_LEVEL", "debug"),
            ("NOISE", "x"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let keep: BTreeSet<String> =
            ["HOME".to_string(), "KBRIDGE_SESSION_TOKEN".to_string()].into();
        let exclude: BTreeSet<String> = ["NOISE".to_string()].into();
        let env = kubernetes_env(&all, &keep, &exclude);
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "HOME",
                "KUBERNETES_SERVICE_HOST",
                "LOG_LEVEL",
                "STATS_API_SERVICE_PORT"
            ]
        );
    }
}
