//! Typed kbridge configuration: the `"type": "bridge"` launch configuration an editor
//! sends, and `KubernetesLocalProcessConfig.yaml`, with validation errors that name the
//! offending key and the allowed values, and the JSON Schemas generated from the types.

pub mod azds_env;
pub mod debugger;
pub mod env;
pub mod error;
pub mod flat;
pub mod launch;
pub mod local_process;
pub mod schema;

pub use debugger::{CustomDebugger, DebuggerChoice, EnvFormat, Preset, Transport};
pub use env::EnvVars;
pub use error::ConfigError;
pub use flat::FlatKey;
pub use launch::{
    BridgeSettings, HostsMode, IsolateAs, LaunchConfig, PortMapping, RequestKind, Target,
};
