//! The Debug Adapter Protocol on the wire: `Content-Length` framing, a cheap look at
//! each message's envelope, in-place edits of top-level fields, and the few messages
//! the proxy writes itself. Message bodies stay bytes so that nothing the proxy does
//! not understand is lost.

pub mod codec;
pub mod envelope;
pub mod outgoing;
pub mod splice;

pub use codec::{FrameError, FrameReader, FrameWriter};
pub use envelope::{Envelope, MessageKind};
