//! `kbridge::session::cluster`: the outbound route-header rewriter.

/// Stands in for `kbridge::session::cluster::isolation`, whose only item the rewriter uses
/// is this constant (the rest of that module needs a cluster client). A compile-time check
/// in `lib.rs` holds it to the product's text.
pub mod isolation {
    /// `kbridge::session::cluster::isolation::ROUTE_HEADER`.
    pub const ROUTE_HEADER: &str = "kubernetes-route-as";
}

#[path = "../../adapter/src/session/cluster/route_header.rs"]
pub mod route_header;
