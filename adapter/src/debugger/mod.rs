//! The real debug adapters: how each preset is found and started, how it wants its
//! environment, and what it answers to `initialize`.

pub mod capabilities;
pub mod presets;
pub mod process;

pub use presets::{resolve, AdapterSpec, DebuggerError};
pub use process::{AdapterProcess, AdapterStreams};
