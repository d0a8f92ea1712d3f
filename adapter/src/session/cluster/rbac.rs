//! The identity kbridge gives the pods it runs with API access of their own (the isolation
//! router, the in-cluster restorer): a ServiceAccount, a Role with exactly the rules they
//! need, and a RoleBinding between the two, all three with one name and one metadata.

use super::connection::Cluster;
use super::errors::ClusterError;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ObjectMeta};

/// A ServiceAccount, its Role and the RoleBinding between them.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The pods' identity (its token mounted).
    pub account: ServiceAccount,
    /// What it may do.
    pub role: Role,
    /// Binds the two.
    pub binding: RoleBinding,
}

impl Identity {
    /// The three objects named and labelled by `meta` (its `name` and `namespace` are the
    /// ServiceAccount's the binding names), the Role allowing `rules`.
    pub fn new(meta: &ObjectMeta, rules: Vec<PolicyRule>) -> Identity {
        let name = meta.name.clone().unwrap_or_default();
        Identity {
            account: ServiceAccount {
                metadata: meta.clone(),
                automount_service_account_token: Some(true),
                ..Default::default()
            },
            role: Role {
                metadata: meta.clone(),
                rules: Some(rules),
            },
            binding: RoleBinding {
                metadata: meta.clone(),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: name.clone(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name,
                    namespace: meta.namespace.clone(),
                    ..Default::default()
                }]),
            },
        }
    }

    /// Creates the three; those that exist already (a retried step) are left as they are.
    pub async fn create(&self, cluster: &Cluster) -> Result<(), ClusterError> {
        cluster.create_or_keep(&self.account).await?;
        cluster.create_or_keep(&self.role).await?;
        cluster.create_or_keep(&self.binding).await
    }

    /// Deletes the three named `name` (binding first); those already gone are fine.
    pub async fn delete(cluster: &Cluster, name: &str) -> Result<(), ClusterError> {
        let params = DeleteParams::background();
        cluster
            .delete_if_exists::<RoleBinding>(name, &params)
            .await?;
        cluster.delete_if_exists::<Role>(name, &params).await?;
        cluster
            .delete_if_exists::<ServiceAccount>(name, &params)
            .await?;
        Ok(())
    }
}

/// A rule allowing `verbs` on `resource` of API group `group` (`""` for the core group),
/// only on the objects `names` when there are any.
pub fn rule(group: &str, resource: &str, names: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        resource_names: (!names.is_empty()).then(|| names.iter().map(|n| n.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_grants_the_role_to_the_account() {
        let meta = ObjectMeta {
            name: Some("kbridge-restorer-s1".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        };
        let identity = Identity::new(&meta, vec![rule("", "pods", &[], &["list"])]);
        assert_eq!(identity.binding.role_ref.name, "kbridge-restorer-s1");
        let subject = &identity.binding.subjects.as_ref().expect("subjects")[0];
        assert_eq!(
            (subject.name.as_str(), subject.namespace.as_deref()),
            ("kbridge-restorer-s1", Some("shop"))
        );
        assert_eq!(identity.account.automount_service_account_token, Some(true));
        let rules = identity.role.rules.expect("rules");
        assert_eq!(rules[0].resource_names, None);
        assert_eq!(rules[0].api_groups.as_deref(), Some(&[String::new()][..]));
    }
}
