//! Every label and annotation key kbridge and the agent put on or look for on cluster
//! objects, in one place: what a session writes is what `kbridge restore`, the in-cluster
//! restorer and the isolation router read, so a key has exactly one spelling.
//!
//! All of kbridge's own keys start with [`ANNOTATION_PREFIX`]; objects kbridge creates also
//! carry the common [`LABEL_MANAGED_BY`]` = `[`MANAGED_BY_KBRIDGE`].

/// Prefix of every kbridge label and annotation.
pub const ANNOTATION_PREFIX: &str = "kbridge.dev/";

/// `app.kubernetes.io/managed-by` (value [`MANAGED_BY_KBRIDGE`]) on everything isolation
/// creates.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`] on kbridge's objects.
pub const MANAGED_BY_KBRIDGE: &str = "kbridge";

// The restore record (`super::restore`), on the swapped workload.

/// Session id that holds the workload.
pub const ANNOTATION_SESSION: &str = "kbridge.dev/session";
/// Who started the session (`user@host`), for `kbridge status` and polite refusals.
pub const ANNOTATION_OWNER: &str = "kbridge.dev/owner";
/// RFC 3339 start time of the session.
pub const ANNOTATION_STARTED: &str = "kbridge.dev/started";
/// The original container, as JSON, exactly as it was in the pod template.
pub const ANNOTATION_ORIGINAL_CONTAINER: &str = "kbridge.dev/original-container";
/// The agent container as kbridge put it in the pod template, as JSON: restore compares
/// it with the current container to undo only kbridge's own changes
/// ([`super::restore_merge`]). Sessions of kbridge before 0.1.1 did not write it.
pub const ANNOTATION_AGENT_CONTAINER: &str = "kbridge.dev/agent-container";
/// On a bare Pod kbridge recreated with the agent: the original Pod, as JSON, ready to create
/// again (see [`super::restore::recreatable_pod`]).
pub const ANNOTATION_ORIGINAL_POD: &str = "kbridge.dev/original-pod";

// Isolation (`docs/architecture.md`, "Isolation"): the isolated Service's record (`super::isolation_record`), the
// clone, its pods, the router and the Ingress copies.

/// On an isolated Service: its selector before kbridge pointed it at the router (JSON object).
pub const ANNOTATION_ORIGINAL_SELECTOR: &str = "kbridge.dev/original-selector";
/// On an isolated Service: the sessions isolating it (JSON object: route name → session id).
pub const ANNOTATION_SESSIONS: &str = "kbridge.dev/isolated-sessions";
/// On a clone's pods: the Service whose router routes to them.
pub const LABEL_ROUTE_FOR: &str = "kbridge.dev/route-for";
/// On a clone's pods: the route name (`kubernetes-route-as` value, Host prefix).
pub const LABEL_ROUTE_AS: &str = "kbridge.dev/route-as";
/// On a clone and Ingress copies: the session (as a label value). The same key as
/// [`ANNOTATION_SESSION`], used as a label.
pub const LABEL_SESSION: &str = ANNOTATION_SESSION;
/// On the router's objects and pods: the Service it fronts.
pub const LABEL_ROUTER_FOR: &str = "kbridge.dev/router-for";
/// On a clone: what it copies (`deployment/todo-api`).
pub const ANNOTATION_CLONE_OF: &str = "kbridge.dev/clone-of";
/// On a clone: who runs it (`user@host`).
pub const ANNOTATION_CLONE_OWNER: &str = "kbridge.dev/isolated-by";
/// On an Ingress copy: the Ingress it copies.
pub const ANNOTATION_COPY_OF: &str = "kbridge.dev/copy-of";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_kbridges_and_distinct() {
        // The swapped workload's annotations are listed once, in the restore contract.
        let keys: Vec<&str> = crate::contract::restore::ALL_ANNOTATIONS
            .iter()
            .copied()
            .chain([
                ANNOTATION_ORIGINAL_SELECTOR,
                ANNOTATION_SESSIONS,
                LABEL_ROUTE_FOR,
                LABEL_ROUTE_AS,
                // LABEL_SESSION is ANNOTATION_SESSION on purpose: one key, label and annotation.
                LABEL_ROUTER_FOR,
                ANNOTATION_CLONE_OF,
                ANNOTATION_CLONE_OWNER,
                ANNOTATION_COPY_OF,
            ])
            .collect();
        let distinct: std::collections::BTreeSet<&str> = keys.iter().copied().collect();
        assert_eq!(distinct.len(), keys.len(), "two keys are spelled alike");
        for key in keys {
            assert!(key.starts_with(ANNOTATION_PREFIX), "{key}");
        }
    }
}
