//! The cluster session (DESIGN §5): the pieces that make a local process look like it
//! runs in the pod. Built in steps; the parts here are the ones that need no cluster:
//! local addresses for Services, their environment variables and hosts entries.

pub mod addresses;
pub mod connection;
pub mod errors;
pub mod hosts;
pub mod lease;
pub mod outbound;
pub mod rollout;
pub mod service_links;
pub mod session;
pub mod target;
pub mod tunnels;
pub mod workload;
