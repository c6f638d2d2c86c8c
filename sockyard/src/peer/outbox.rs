//! The connection task's side of a handle: taking queued frames for a batched write, close
//! requests, replies to the server's invokes, and marking the connection closed.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use super::ConnectionHandle;
use crate::error::ApiError;
use crate::protocol::CallId;

/// What to send when asked to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

/// What one drain moved into the write buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Drained {
    /// Frames moved.
    pub(crate) frames: usize,
    /// Whether frames are still queued (the write buffer reached its high-water mark).
    pub(crate) more: bool,
}

impl ConnectionHandle {
    /// Registers the connection task's waker for pushes and close requests.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.shared.waker.register(waker);
    }

    /// Moves queued frames into `out` until it holds `high_water` bytes.
    pub(crate) fn drain_into(&self, out: &mut Vec<u8>, high_water: usize) -> Drained {
        let mut state = self.lock();
        let mut frames = 0;
        while out.len() < high_water {
            let Some(frame) = state.frames.pop_front() else {
                break;
            };
            state.queued_bytes -= frame.len();
            out.extend_from_slice(&frame);
            frames += 1;
        }
        let more = !state.frames.is_empty();
        if !more && state.frames.capacity() > 64 {
            state.frames = VecDeque::new();
        }
        Drained { frames, more }
    }

    /// Whether a push overflowed the queue.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Takes a pending close request.
    pub(crate) fn take_close_request(&self) -> Option<CloseRequest> {
        self.lock().close.take()
    }

    /// Delivers the client's reply to a server-initiated invoke. Unknown ids (e.g. after a
    /// timeout) are ignored.
    pub(crate) fn resolve(&self, cid: CallId, result: Result<Option<Value>, ApiError>) {
        let sender = self.lock().awaiting.remove(&cid);
        if let Some(sender) = sender {
            let _ = sender.send(result);
        }
    }

    /// Marks the connection closed: later pushes fail and waiting invokes end with `Closed`.
    pub(crate) fn mark_closed(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.frames = VecDeque::new();
        state.queued_bytes = 0;
        state.awaiting = HashMap::new();
    }
}
