//! The agent image without a Docker engine: built in memory as `agent/Dockerfile`
//! describes it ([`agent_image`], checked statically linked by [`elf`]) and pushed to any
//! registry through the OCI distribution API ([`registry`] over [`transport`], logging
//! in per [`auth`] with the credentials `docker login`/`podman login` leave,
//! [`credentials`]). `kbridge agent push` builds and pushes ([`push`]); `kbridge doctor`
//! checks the configured image resolves ([`push::resolve`]). See docs/agent-image.md.

pub mod agent_image;
pub mod auth;
pub mod credentials;
pub mod elf;
pub mod push;
pub mod reference;
pub mod registry;
pub mod transport;
