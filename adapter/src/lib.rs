//! kbridge: run and debug one service of a Kubernetes application on your machine while
//! it stays wired into the cluster, delivered as a Debug Adapter Protocol proxy.
//!
//! The binary is a thin command line over these modules: [`cli`] (the command line, and
//! the commands kbridge runs itself with), [`dap`] (the wire), [`debugger`] (real
//! adapters), [`env`] (the debuggee's environment), [`proxy`] (`kbridge dap`),
//! [`session`] (the bridge session and its crash-proof teardown) and [`lsp`] (`kbridge lsp`,
//! the language server for the bridge configuration); [`platform`] holds what differs
//! between the systems kbridge runs on (`docs/portability.md`).

pub mod cli;
pub mod dap;
pub mod debugger;
pub mod env;
pub mod error_kind;
pub mod image;
pub mod ipc;
pub mod jsonc;
pub mod logging;
pub mod lsp;
pub mod platform;
pub mod proxy;
pub mod session;
