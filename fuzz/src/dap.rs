//! `kbridge::dap`: Content-Length framing, the envelope peek and in-place edits.

#[path = "../../adapter/src/dap/codec.rs"]
pub mod codec;
#[path = "../../adapter/src/dap/envelope.rs"]
pub mod envelope;
#[path = "../../adapter/src/dap/splice.rs"]
pub mod splice;
