//! Phase 2, take over: the workload's traffic is handed to kbridge's agent, one of two
//! ways. Without isolation the whole workload is swapped ([`swap`]: its Lease taken, the
//! target container replaced by the agent, the in-cluster restorer started); with
//! `isolateAs` only this session's requests come here ([`isolate`]: the shared router and
//! a one-replica clone running the agent). Each change's undo step is recorded first.

use super::progress::{notice, step};
use super::Prepared;
use crate::session::cluster::errors::ClusterError;
use crate::session::cluster::isolation;
use crate::session::cluster::lease;
use crate::session::cluster::restorer;
use crate::session::cluster::target::{label_selector, ResolvedTarget, WorkloadKind};
use crate::session::cluster::tunnels::PortMap;
use crate::session::cluster::undo::ClusterStep;
use crate::session::cluster::workload::{self, SwapPlan};
use crate::session::{EventSink, Guardian, SessionError};
use kbridge_config::local_process::Feature;
use kbridge_config::{BridgeSettings, IsolateAs, PortMapping};
use std::time::Duration;

/// How long agent pods (and an isolation's router and clone) may take to become ready.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// The workload as taken over.
pub(super) struct TakenOver {
    /// What the agents run as: the workload itself, or an isolation's clone.
    pub target: ResolvedTarget,
    /// Container port → local port.
    pub ports: PortMap,
    /// The Lease the session holds (not for an isolated session, which shares the workload).
    pub lease: Option<String>,
    /// An isolated session's route name; its outbound requests carry it too.
    pub route_as: Option<String>,
    /// The agent's settings, shared by both ways of taking over.
    pub plan: SwapPlan,
}

/// Takes the workload over as `settings` ask.
pub(super) async fn take_over(
    session: &str,
    prepared: &Prepared,
    settings: &BridgeSettings,
    events: &EventSink,
    guardian: &Guardian,
) -> Result<TakenOver, SessionError> {
    let mut takeover = Takeover {
        prepared,
        guardian,
        events,
        plan: SwapPlan {
            session: session.to_string(),
            owner: owner(),
            agent_image: super::agent_image(settings.agent_image.as_deref()),
            token_secret: prepared.secret_name.clone(),
            idle_restore_secs: idle_restore_secs(settings),
            kept: Default::default(),
        },
    };
    let route_as: Option<String> = match &settings.isolate_as {
        None | Some(IsolateAs::Generate(false)) => None,
        Some(IsolateAs::Name(name)) => Some(name.clone()),
        Some(_) => Some(isolation::generated_name(&user())),
    };
    let (target, ports, lease) = match &route_as {
        None => {
            takeover
                .swap(settings.container.as_deref(), &settings.ports)
                .await?
        }
        Some(route_as) => takeover.isolate(route_as, &settings.ports).await?,
    };
    Ok(TakenOver {
        target,
        ports,
        lease,
        route_as,
        plan: takeover.plan,
    })
}

/// `bridge.idleRestoreSeconds`, else `KBRIDGE_IDLE_RESTORE_SECS`, else 60.
fn idle_restore_secs(settings: &BridgeSettings) -> u64 {
    settings
        .idle_restore_seconds
        .or_else(|| {
            std::env::var("KBRIDGE_IDLE_RESTORE_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(60)
}

/// What taking the workload over needs: what phase 1 found, the guardian to record each
/// change with before making it, and the swap plan shared by both ways of taking over.
struct Takeover<'a> {
    prepared: &'a Prepared,
    guardian: &'a Guardian,
    events: &'a EventSink,
    plan: SwapPlan,
}

type Taken = (ResolvedTarget, PortMap, Option<String>);

impl Takeover<'_> {
    async fn record(&self, step: ClusterStep) -> Result<(), SessionError> {
        self.guardian.record(step.into()).await
    }

    /// The whole workload: its Lease taken (a stale holder restored first), the target
    /// container swapped for the agent, the in-cluster restorer started.
    async fn swap(
        &mut self,
        container: Option<&str>,
        port_mappings: &[PortMapping],
    ) -> Result<Taken, SessionError> {
        let (cluster, at, events) = (&self.prepared.cluster, &self.prepared.at, self.events);
        let session = &self.plan.session;
        let mut target = self.prepared.target.clone();
        // Exclusive use: a live holder is refused (by the annotations check in the swap),
        // a stale one — its session is gone — is restored first.
        let lease = lease::lease_name(target.kind.name(), &target.name);
        match lease::holder(cluster, &lease).await? {
            lease::Holder::Stale { session: gone } => {
                step(
                    events,
                    format!("session {gone} holding {} is gone (its lease expired); restoring the workload first", target.workload()),
                );
                workload::restore(cluster, target.kind, &target.name, Some(&gone)).await?;
                // What we resolved was the gone session's agent; the real container is back now.
                target = isolation::resolve_target(cluster, &self.prepared.target_spec, container)
                    .await?;
            }
            lease::Holder::Alive { session: other } if &other != session => {
                return Err(ClusterError::Conflict(lease::in_use(
                    &target.workload(),
                    &other,
                    &cluster.namespace,
                ))
                .into());
            }
            _ => {}
        }
        // Checked before anything changes: a bad mapping must not cost a rollout.
        let ports = port_map(&target, port_mappings)?;
        let (kept, lines) = super::features::kept_handlers(self.features(), &target.container);
        for line in lines {
            notice(events, format!("enableFeatures {line}"));
        }
        self.plan.kept = kept;
        self.record(at.delete("lease", &lease)).await?;
        lease::acquire(cluster, &lease, session, &target.workload()).await?;
        self.record(ClusterStep::RestoreWorkload {
            at: at.clone(),
            kind: target.kind.name().into(),
            name: target.name.clone(),
            session: session.clone(),
        })
        .await?;
        step(
            events,
            format!(
                "replacing container '{}' of {} with the kbridge agent",
                target.container.name,
                target.workload()
            ),
        );
        workload::swap(cluster, &target, &self.plan).await?;
        if restorer_enabled() {
            // Created after the swap: a restorer that finds no session annotation ends at once.
            let restorer = restorer::RestorerPlan {
                session: session.clone(),
                kind: target.kind,
                name: target.name.clone(),
                agent_selector: if target.kind == WorkloadKind::Pod {
                    String::new()
                } else {
                    label_selector(&target.selector)
                },
                image: self.plan.agent_image.clone(),
                idle_restore_secs: self.plan.idle_restore_secs,
                lease: lease.clone(),
            };
            self.record_restorer().await?;
            restorer::create(cluster, &restorer, &self.prepared.secret).await?;
        }
        Ok((target, ports, Some(lease)))
    }

    /// Only this session's requests: the original workload keeps serving, a one-replica
    /// clone runs the agent, the shared router sends requests routed as `route_as` to it.
    /// Returns the clone as the target the rest of the session works on.
    async fn isolate(
        &self,
        route_as: &str,
        port_mappings: &[PortMapping],
    ) -> Result<Taken, SessionError> {
        let (cluster, at, events) = (&self.prepared.cluster, &self.prepared.at, self.events);
        let (session, target) = (&self.plan.session, &self.prepared.target);
        let ports = port_map(target, port_mappings)?;
        if self
            .features()
            .iter()
            .any(|f| matches!(f, Feature::Probes | Feature::LifecycleHooks))
        {
            notice(events, "enableFeatures Probes and LifecycleHooks do not apply with isolateAs: the clone takes only the requests routed to this session and is not among the Service's endpoints (the router is), so its agent keeps its own health and no hooks");
        }
        let service = isolation::fronting_service(cluster, target).await?;
        self.record(ClusterStep::LeaveIsolation {
            at: at.clone(),
            service: service.clone(),
            route_as: route_as.to_string(),
            session: session.clone(),
        })
        .await?;
        step(
            events,
            format!(
                "isolating service {service} as '{route_as}': starting the router and a clone of {} with the kbridge agent",
                target.workload()
            ),
        );
        let joined = isolation::join(
            cluster,
            target,
            route_as,
            &isolation::IsolationPlan {
                session: session.clone(),
                owner: self.plan.owner.clone(),
                agent_image: self.plan.agent_image.clone(),
                token_secret: self.plan.token_secret.clone(),
                idle_restore_secs: self.plan.idle_restore_secs,
                ready_timeout: READY_TIMEOUT,
            },
        )
        .await?;
        if restorer_enabled() {
            // Created after the join: a restorer that finds the route gone ends at once.
            // Orphaned, it takes this session's route off the Service (the last one out
            // puts the Service back) and deletes the Secret, and so the clone.
            let restorer = restorer::IsolationRestorerPlan {
                session: session.clone(),
                service: joined.service.clone(),
                route_as: joined.route_as.clone(),
                agent_selector: label_selector(&joined.clone_selector),
                image: self.plan.agent_image.clone(),
                idle_restore_secs: self.plan.idle_restore_secs,
            };
            self.record_restorer().await?;
            restorer::create_for_isolation(cluster, &restorer, &self.prepared.secret).await?;
        }
        notice(events, joined.summary());
        // Isolated sessions share the workload: no Lease to hold.
        Ok((joined.clone_target(target), ports, None))
    }

    /// `enableFeatures` of the config file, if any.
    fn features(&self) -> &[Feature] {
        self.prepared
            .config_file
            .as_ref()
            .map(|c| c.enable_features.as_slice())
            .unwrap_or_default()
    }

    /// Records the deletion of the restorer's objects, then says it starts.
    async fn record_restorer(&self) -> Result<(), SessionError> {
        let name = restorer::restorer_name(&self.plan.session);
        for kind in ["serviceaccount", "role", "rolebinding", "job"] {
            self.record(self.prepared.at.delete(kind, &name)).await?;
        }
        step(self.events, "starting the in-cluster restorer");
        Ok(())
    }
}

/// Maps container ports to local ports from `bridge.ports`.
fn port_map(target: &ResolvedTarget, ports: &[PortMapping]) -> Result<PortMap, ClusterError> {
    let container_ports: Vec<u16> = target.ports().iter().map(|p| p.port).collect();
    let mut map: PortMap = container_ports.iter().map(|p| (*p, *p)).collect();
    for mapping in ports {
        match *mapping {
            PortMapping::Mapped { remote, local } => {
                map.insert(remote, local);
            }
            PortMapping::Local(local) => match container_ports.as_slice() {
                [only] => {
                    map.insert(*only, local);
                }
                _ => return Err(ambiguous_local_port(target, &container_ports, local)),
            },
        }
    }
    Ok(map)
}

/// A bare local port is ambiguous when the container has several ports; the error shows
/// the explicit mapping in each form a user may be writing: the JSON `bridge` block, and
/// the `LOCAL:REMOTE` string of flat `bridge.ports` keys (Helix) and `--ports`.
fn ambiguous_local_port(
    target: &ResolvedTarget,
    container_ports: &[u16],
    local: u16,
) -> ClusterError {
    let remote = container_ports.first().copied().unwrap_or(80);
    let listed = container_ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    ClusterError::InvalidTarget(format!(
        "container '{}' has {} ports ({listed}); say which one local port {local} replaces: \
         \"ports\": [{{\"remote\": {remote}, \"local\": {local}}}] in the bridge block, or \
         \"{local}:{remote}\" in \"bridge.ports\" or --ports",
        target.container.name,
        container_ports.len(),
    ))
}

/// The in-cluster restorer runs unless `KBRIDGE_RESTORER=off` (for clusters where a session
/// may not create Roles; the guardian and `kbridge restore` remain).
fn restorer_enabled() -> bool {
    !matches!(
        std::env::var("KBRIDGE_RESTORER").as_deref(),
        Ok("off" | "0" | "false")
    )
}

/// `user@host`, as the workload's annotations name the session's owner.
fn owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{}@{host}", user())
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "someone".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort};

    fn target_with_ports(ports: &[i32]) -> ResolvedTarget {
        ResolvedTarget {
            namespace: "todo".into(),
            kind: WorkloadKind::Deployment,
            name: "todo-api".into(),
            container: Container {
                name: "api".into(),
                ports: Some(
                    ports
                        .iter()
                        .map(|&p| ContainerPort {
                            container_port: p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            },
            service: None,
            pods: Vec::new(),
            pod_spec: Default::default(),
            selector: Default::default(),
            replicas: 1,
        }
    }

    #[test]
    fn a_bare_local_port_replaces_the_only_container_port() {
        let map =
            port_map(&target_with_ports(&[8080]), &[PortMapping::Local(9000)]).expect("one port");
        assert_eq!(map, PortMap::from([(8080, 9000)]));
    }

    #[test]
    fn explicit_mappings_apply_and_other_ports_keep_their_number() {
        let map = port_map(
            &target_with_ports(&[8080, 9090]),
            &[PortMapping::Mapped {
                remote: 9090,
                local: 7000,
            }],
        )
        .expect("mapped");
        assert_eq!(map, PortMap::from([(8080, 8080), (9090, 7000)]));
    }

    #[test]
    fn an_ambiguous_local_port_shows_the_mapping_in_every_form() {
        let err = port_map(
            &target_with_ports(&[8080, 9090]),
            &[PortMapping::Local(5000)],
        )
        .expect_err("ambiguous");
        let text = err.to_string();
        assert!(text.contains("has 2 ports (8080, 9090)"), "{text}");
        assert!(
            text.contains(r#""ports": [{"remote": 8080, "local": 5000}]"#),
            "{text}"
        );
        assert!(
            text.contains(r#""5000:8080" in "bridge.ports" or --ports"#),
            "{text}"
        );
    }
}
