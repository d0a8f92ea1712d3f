//! The commands of the `kbridge` binary that are more than a call into the library.

pub mod bridged;
pub mod child;
pub mod diagnostics;
pub mod doctor;
pub mod restore;
pub mod status;
pub mod targets;
