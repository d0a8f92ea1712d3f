//! What kbridge and the pods it runs agree on without a message: the agent's ports, the
//! key of the session token in the session's Secret, and the HTTP header that names the
//! isolated session a request is for.

/// The agent's control port: kbridge port-forwards to it and runs the wire protocol over it.
pub const CONTROL_PORT: u16 = 7311;

/// The agent's (and the router's) health port: `/healthz` for kubelet probes, `/status`.
pub const HEALTH_PORT: u16 = 7312;

/// The key of the session token in the session's Secret; the agent gets it as
/// `KBRIDGE_SESSION_TOKEN`.
pub const TOKEN_KEY: &str = "token";

/// The request header the isolation router routes on, and that kbridge adds to an isolated
/// session's outbound HTTP/1 requests.
pub const ROUTE_HEADER: &str = "kubernetes-route-as";
