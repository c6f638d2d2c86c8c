//! The WebSocket layer Sockyard owns itself: framing, reassembly and the upgrade handshake.
//!
//! Owning this layer (instead of a general-purpose WebSocket crate) is what lets a connection hold
//! no read or write buffer while idle and write every queued frame with one system call.

pub mod frame;
pub mod handshake;
pub mod reader;

pub use frame::{FrameError, OpCode, Role};
pub use reader::{Message, MessageReader};
