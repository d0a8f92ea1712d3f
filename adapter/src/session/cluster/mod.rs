//! The cluster session: the pieces that make a local process look like it runs in the
//! pod — connection and target resolution, the workload swap and its Lease, agent rollout
//! and tunnels, outbound Services with their variables and hosts entries — put together
//! by the phases in [`setup`] into a [`live::ClusterSession`]; the cluster's undo steps
//! are in [`undo`]. Every API call goes through `connection::Cluster`'s helpers and error
//! classification (`errors`); pods are waited for by `pod_wait`. `docs/architecture.md`
//! has the whole picture.

pub mod addresses;
pub mod config_file;
pub mod connection;
pub mod drift;
pub mod env_paths;
pub mod errors;
pub mod identity;
pub mod isolation;
pub mod lease;
pub mod live;
pub mod outbound;
pub mod pod_security;
pub mod pod_wait;
pub mod rbac;
pub mod reachability;
pub mod restorer;
pub mod rollout;
pub mod route_header;
pub mod service_links;
pub mod settle;
pub mod setup;
pub mod target;
pub mod token_refresh;
pub mod tunnels;
pub mod undo;
pub mod workload;
