//! `kbridge::proxy`: the reader that turns frames into checked messages.

#[path = "../../adapter/src/proxy/reader.rs"]
pub mod reader;
