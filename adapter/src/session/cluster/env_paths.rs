//! Environment values that are paths into the container's volumes
//! (`CONFIG_PATH=/etc/app/conf.yaml` with a ConfigMap mounted at `/etc/app`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE` in a projected token volume): the files are downloaded
//! into the session's private directory and the values rewritten to the local copies.
//!
//! Three steps, each small: [`mounts_of`] reads the container's mounts and what backs them
//! from the pod spec; [`plan`] matches each value to the mount it lies under (the deepest
//! one, as the container's mount table would) and decides what to download; [`fetch`] runs
//! the downloads through an agent and keeps the rewrites whose files arrived. Projected
//! service-account tokens among them are kept fresh by `token_refresh.rs` next door.

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
use kbridge_config::local_process::{LocalProcessConfig, VolumeMount};
use kbridge_protocol::AgentClient;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// What backs a mounted volume, as far as downloading goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// Files the API server holds (configMap, secret, downwardAPI, projected): small, so
    /// the whole mount is downloaded.
    ApiFiles {
        /// Files of projected `serviceAccountToken` sources, relative to the volume.
        tokens: Vec<String>,
    },
    /// Anything else (emptyDir, persistentVolumeClaim, hostPath, CSI, …): possibly large,
    /// so only the path a variable names is downloaded.
    Data,
}

/// One volume mount of the target container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMount {
    /// The volume's name.
    pub volume: String,
    /// Where the container sees it, without a trailing `/`.
    pub mount_path: String,
    /// The part of the volume mounted there (`subPath`), if not all of it.
    pub sub_path: Option<String>,
    /// What backs it.
    pub backing: Backing,
}

impl ContainerMount {
    /// In-pod paths of the projected token files this mount shows.
    fn token_paths(&self) -> Vec<String> {
        let Backing::ApiFiles { tokens } = &self.backing else {
            return Vec::new();
        };
        tokens
            .iter()
            .filter_map(|token| {
                let shown = match self.sub_path.as_deref() {
                    None => Some(token.as_str()),
                    Some(sub) if sub == token => Some(""),
                    Some(sub) => token.strip_prefix(sub)?.strip_prefix('/'),
                };
                shown.map(|rest| join_pod_path(&self.mount_path, rest))
            })
            .collect()
    }
}

/// The target container's mounts, with what backs each (from the pod spec's `volumes`).
pub fn mounts_of(container: &Container, pod_spec: &PodSpec) -> Vec<ContainerMount> {
    let volumes = pod_spec.volumes.as_deref().unwrap_or_default();
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let mount_path = m.mount_path.trim_end_matches('/');
            // A mount at `/` would make every absolute value "a path into a volume".
            (!mount_path.is_empty()).then(|| ContainerMount {
                volume: m.name.clone(),
                mount_path: mount_path.to_string(),
                sub_path: m.sub_path.clone().filter(|s| !s.is_empty()),
                backing: volumes
                    .iter()
                    .find(|v| v.name == m.name)
                    .map_or(Backing::Data, backing_of),
            })
        })
        .collect()
}

fn backing_of(volume: &Volume) -> Backing {
    if let Some(projected) = &volume.projected {
        let tokens = projected
            .sources
            .iter()
            .flatten()
            .filter_map(|s| s.service_account_token.as_ref())
            .map(|t| t.path.clone())
            .collect();
        return Backing::ApiFiles { tokens };
    }
    if volume.config_map.is_some() || volume.secret.is_some() || volume.downward_api.is_some() {
        return Backing::ApiFiles { tokens: Vec::new() };
    }
    Backing::Data
}

/// A variable whose value now points at a local copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvPath {
    /// The variable.
    pub name: String,
    /// Its value in the pod.
    pub pod_path: String,
    /// Its value here.
    pub local_path: PathBuf,
    /// The volume the path lies in.
    pub volume: String,
    /// Whether the file is a projected service-account token kept fresh for the session.
    pub refreshed: bool,
}

/// A variable left as the pod has it, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptPath {
    /// The variable.
    pub name: String,
    /// Its value (a path in the pod).
    pub pod_path: String,
    /// Why it was not rewritten.
    pub reason: String,
}

/// What to download for one or more variables: an in-pod path and the variables that
/// need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// Absolute path in the pod (a whole mount, or the one path a variable names).
    pub pod_path: String,
    /// The volume it belongs to.
    pub volume: String,
}

/// What the rewrites need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Variables to rewrite, if their download arrives.
    pub rewrites: Vec<EnvPath>,
    /// Paths to download, each once.
    pub downloads: Vec<Download>,
    /// Variables left as they are.
    pub kept: Vec<KeptPath>,
    /// Token files: (in-pod path, local path).
    pub tokens: Vec<(String, PathBuf)>,
}

/// What the config file says about env paths, and what it already downloaded.
pub struct Choices<'a> {
    /// `KubernetesLocalProcessConfig.yaml`, if the session has one.
    pub config: Option<&'a LocalProcessConfig>,
    /// Volumes the config file downloaded, by name (a value into one of them is rewritten
    /// into that copy instead of downloading again).
    pub downloaded: &'a BTreeMap<String, PathBuf>,
    /// Where automatic downloads go: `/etc/app` lands at `ROOT/etc/app`.
    pub root: &'a Path,
}

impl Choices<'_> {
    /// Why `name` keeps the pod's value, if the config file says so.
    fn kept_variable(&self, name: &str) -> Option<String> {
        let config = self.config?;
        config
            .env
            .iter()
            .any(|e| e.name == name && e.keeps_pod_path())
            .then(|| "`rewritePath: false` in the config file".to_string())
    }

    /// Why values into `volume` keep the pod's path, if the config file says so.
    fn kept_volume(&self, volume: &str) -> Option<String> {
        let config = self.config?;
        config
            .volume_mounts
            .iter()
            .find(|m: &&VolumeMount| {
                m.rewrite_env_paths == Some(false) && super::config_file::wildcard(&m.name, volume)
            })
            .map(|m| format!("`rewriteEnvPaths: false` on volume `{}`", m.name))
    }
}

/// Matches the pod's variables to the mounts their values lie under.
pub fn plan(
    pod_env: &BTreeMap<String, String>,
    mounts: &[ContainerMount],
    choices: &Choices<'_>,
) -> Plan {
    let mut plan = Plan::default();
    let mut downloads = BTreeSet::new();
    for (name, value) in pod_env {
        let Some(mount) = mount_under(value, mounts) else {
            continue;
        };
        let pod_path = value.trim_end_matches('/').to_string();
        let reason = choices
            .kept_variable(name)
            .or_else(|| choices.kept_volume(&mount.volume));
        if let Some(reason) = reason {
            plan.kept.push(KeptPath {
                name: name.clone(),
                pod_path,
                reason,
            });
            continue;
        }
        let rest = pod_path[mount.mount_path.len()..].trim_start_matches('/');
        let local_path = match reusable_copy(mount, mounts, choices.downloaded) {
            Some(copy) => join_local(copy, rest),
            None => {
                let wanted = match mount.backing {
                    Backing::ApiFiles { .. } => mount.mount_path.clone(),
                    Backing::Data => pod_path.clone(),
                };
                if downloads.insert(wanted.clone()) {
                    plan.downloads.push(Download {
                        pod_path: wanted,
                        volume: mount.volume.clone(),
                    });
                }
                join_local(choices.root, pod_path.trim_start_matches('/'))
            }
        };
        let token_root = local_path.clone();
        let tokens: Vec<(String, PathBuf)> = mount
            .token_paths()
            .into_iter()
            .filter(|t| is_under(t, &pod_path))
            .map(|t| {
                let below = t[pod_path.len()..].trim_start_matches('/').to_string();
                (t, join_local(&token_root, &below))
            })
            .collect();
        for token in &tokens {
            if !plan.tokens.contains(token) {
                plan.tokens.push(token.clone());
            }
        }
        plan.rewrites.push(EnvPath {
            name: name.clone(),
            pod_path,
            local_path,
            volume: mount.volume.clone(),
            refreshed: !tokens.is_empty(),
        });
    }
    plan
}

/// The mount `value` lies under: the deepest whose path is `value` or a parent of it.
/// Values that are not plain absolute paths (relative, `..`, lists like `a:b`) match none.
fn mount_under<'m>(value: &str, mounts: &'m [ContainerMount]) -> Option<&'m ContainerMount> {
    let plain = value.starts_with('/')
        && !value.contains(':')
        && !value.contains(char::is_whitespace)
        && Path::new(value)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain {
        return None;
    }
    let value = value.trim_end_matches('/');
    mounts
        .iter()
        .filter(|m| is_under(value, &m.mount_path))
        .max_by_key(|m| m.mount_path.len())
}

/// Whether `path` is `dir` or lies below it.
fn is_under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// The copy of `mount`'s volume the config file already made, when that copy is exactly
/// this mount (the volume mounted once, without `subPath`).
fn reusable_copy<'d>(
    mount: &ContainerMount,
    mounts: &[ContainerMount],
    downloaded: &'d BTreeMap<String, PathBuf>,
) -> Option<&'d PathBuf> {
    let once = mounts.iter().filter(|m| m.volume == mount.volume).count() == 1;
    (once && mount.sub_path.is_none())
        .then(|| downloaded.get(&mount.volume))
        .flatten()
}

fn join_local(base: &Path, rest: &str) -> PathBuf {
    if rest.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rest)
    }
}

fn join_pod_path(base: &str, rest: &str) -> String {
    if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{rest}")
    }
}

/// What [`fetch`] ended with.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Rewrites whose files arrived.
    pub rewrites: Vec<EnvPath>,
    /// Variables left as they are (the plan's, and those whose download failed).
    pub kept: Vec<KeptPath>,
    /// Token files to keep fresh: (in-pod path, local path).
    pub tokens: Vec<(String, PathBuf)>,
}

/// Downloads what the plan needs into `root` (created 0700) through `agent`. A download
/// that fails keeps its variables' pod values, with the reason, instead of failing the
/// session: these rewrites are a convenience nobody asked for explicitly. Token files are
/// made 0600.
pub async fn fetch(
    plan: Plan,
    agent: &AgentClient,
    root: &Path,
    mut progress: impl FnMut(String),
) -> Fetched {
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for download in &plan.downloads {
        progress(format!(
            "downloading {} (volume {}) for the environment",
            download.pod_path, download.volume
        ));
        if let Err(error) = agent
            .download(std::slice::from_ref(&download.pod_path), root)
            .await
        {
            tracing::warn!(path = %download.pod_path, %error, "cannot download for an env path");
            failed.insert(download.pod_path.clone(), error.to_string());
        }
    }
    let failure_of = |path: &str| {
        failed
            .iter()
            .find(|(d, _)| is_under(path, d))
            .map(|(_, e)| e.clone())
    };
    let mut fetched = Fetched {
        kept: plan.kept,
        ..Fetched::default()
    };
    for rewrite in plan.rewrites {
        match failure_of(&rewrite.pod_path) {
            Some(error) => fetched.kept.push(KeptPath {
                reason: format!("cannot download it: {error}"),
                name: rewrite.name,
                pod_path: rewrite.pod_path,
            }),
            None => fetched.rewrites.push(rewrite),
        }
    }
    for (pod_path, local) in plan.tokens {
        if failure_of(&pod_path).is_some() {
            continue;
        }
        if let Err(error) = super::token_refresh::make_private(&local) {
            tracing::warn!(path = %local.display(), %error, "cannot make a token file 0600");
        }
        fetched.tokens.push((pod_path, local));
    }
    fetched
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbridge_config::local_process::LocalProcessConfig;

    fn mount(volume: &str, path: &str, backing: Backing) -> ContainerMount {
        ContainerMount {
            volume: volume.into(),
            mount_path: path.into(),
            sub_path: None,
            backing,
        }
    }

    fn files() -> Backing {
        Backing::ApiFiles { tokens: Vec::new() }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn mounts() -> Vec<ContainerMount> {
        vec![
            mount("app-config", "/etc/app", files()),
            mount("app-secrets", "/etc/app/secrets", files()),
            mount(
                "aws-iam-token",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount",
                Backing::ApiFiles {
                    tokens: vec!["token".into()],
                },
            ),
            mount("data", "/data", Backing::Data),
        ]
    }

    const ROOT: &str = "/tmp/s/mounts";

    fn plan_for(pod_env: &BTreeMap<String, String>, config: Option<&LocalProcessConfig>) -> Plan {
        let downloaded = BTreeMap::new();
        let choices = Choices {
            config,
            downloaded: &downloaded,
            root: Path::new(ROOT),
        };
        plan(pod_env, &mounts(), &choices)
    }

    #[test]
    fn a_value_under_a_mount_is_rewritten_to_its_copy_and_the_deepest_mount_wins() {
        let plan = plan_for(
            &env(&[
                ("CONFIG_PATH", "/etc/app/conf.yaml"),
                ("DB_PASSWORD_FILE", "/etc/app/secrets/db"),
                ("APP_DIR", "/etc/app/"),
                ("NOT_A_MOUNT", "/etc/application/x"),
                ("RELATIVE", "etc/app/x"),
                ("LIST", "/etc/app/a:/etc/app/b"),
                ("ESCAPES", "/etc/app/../passwd"),
                ("WORDS", "hello"),
            ]),
            None,
        );
        let rewritten: Vec<(&str, &Path, &str)> = plan
            .rewrites
            .iter()
            .map(|r| (r.name.as_str(), r.local_path.as_path(), r.volume.as_str()))
            .collect();
        assert_eq!(
            rewritten,
            [
                ("APP_DIR", Path::new("/tmp/s/mounts/etc/app"), "app-config"),
                (
                    "CONFIG_PATH",
                    Path::new("/tmp/s/mounts/etc/app/conf.yaml"),
                    "app-config"
                ),
                (
                    "DB_PASSWORD_FILE",
                    Path::new("/tmp/s/mounts/etc/app/secrets/db"),
                    "app-secrets"
                ),
            ]
        );
        let downloads: Vec<&str> = plan.downloads.iter().map(|d| d.pod_path.as_str()).collect();
        assert_eq!(
            downloads,
            ["/etc/app", "/etc/app/secrets"],
            "each mount once"
        );
        assert!(plan.tokens.is_empty());
    }

    #[test]
    fn a_data_volume_downloads_only_the_named_path() {
        let plan = plan_for(&env(&[("MODEL", "/data/models/small.bin")]), None);
        assert_eq!(
            plan.downloads,
            [Download {
                pod_path: "/data/models/small.bin".into(),
                volume: "data".into()
            }]
        );
    }

    #[test]
    fn a_projected_token_is_marked_for_refresh_at_its_local_path() {
        let plan = plan_for(
            &env(&[(
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            )]),
            None,
        );
        assert!(plan.rewrites[0].refreshed);
        assert_eq!(
            plan.tokens,
            [(
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token".to_string(),
                PathBuf::from(
                    "/tmp/s/mounts/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
                )
            )]
        );
    }

    #[test]
    fn a_sub_path_mount_shows_only_its_part_of_the_volume() {
        let single = ContainerMount {
            sub_path: Some("token".into()),
            ..mount(
                "tok",
                "/run/token",
                Backing::ApiFiles {
                    tokens: vec!["token".into()],
                },
            )
        };
        assert_eq!(single.token_paths(), ["/run/token"]);
        let dir = ContainerMount {
            sub_path: Some("aws".into()),
            ..mount(
                "tok",
                "/run/aws",
                Backing::ApiFiles {
                    tokens: vec!["aws/token".into(), "gcp/token".into()],
                },
            )
        };
        assert_eq!(dir.token_paths(), ["/run/aws/token"]);
    }

    #[test]
    fn the_config_file_keeps_a_variable_or_a_volume_as_the_pod_has_it() {
        let config = LocalProcessConfig::parse(
            "volumeMounts:\n  - name: aws-*\n    rewriteEnvPaths: false\nenv:\n  - name: CONFIG_PATH\n    rewritePath: false\n",
            "K.yaml",
        )
        .expect("valid");
        let plan = plan_for(
            &env(&[
                ("CONFIG_PATH", "/etc/app/conf.yaml"),
                ("OTHER_CONFIG", "/etc/app/other.yaml"),
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
                ),
            ]),
            Some(&config),
        );
        let kept: Vec<(&str, &str)> = plan
            .kept
            .iter()
            .map(|k| (k.name.as_str(), k.reason.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "`rewriteEnvPaths: false` on volume `aws-*`"
                ),
                ("CONFIG_PATH", "`rewritePath: false` in the config file"),
            ]
        );
        assert_eq!(plan.rewrites.len(), 1);
        assert!(plan.tokens.is_empty());
    }

    #[test]
    fn a_volume_the_config_file_downloaded_is_reused() {
        let downloaded = BTreeMap::from([("app-config".to_string(), PathBuf::from("/opt/cfg"))]);
        let choices = Choices {
            config: None,
            downloaded: &downloaded,
            root: Path::new(ROOT),
        };
        let plan = plan(
            &env(&[("CONFIG_PATH", "/etc/app/conf.yaml")]),
            &mounts(),
            &choices,
        );
        assert_eq!(
            plan.rewrites[0].local_path,
            PathBuf::from("/opt/cfg/conf.yaml")
        );
        assert!(plan.downloads.is_empty());
    }
}
