//! `kbridge::session::cluster`: the outbound route-header rewriter.
//! Its route header comes from `kbridge-protocol`'s contract, a dependency of this crate.

#[path = "../../adapter/src/session/cluster/route_header.rs"]
pub mod route_header;
