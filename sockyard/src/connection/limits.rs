//! `[limits]`: every bound Sockyard enforces, with its default — the per-connection bounds a
//! connection enforces, and the admission and HTTP bounds the server applies.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::peer::QueueLimits;

/// `[limits]`: every bound Sockyard enforces, with its default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Limits {
    /// Largest inbound WebSocket message in bytes (one frame or the sum of its fragments). A
    /// larger one closes the connection with 1009. Default 1048576 (1 MiB).
    pub max_message_bytes: usize,
    /// Packets processed per second per connection (a batch of N counts N). Beyond this,
    /// processing pauses until the budget refills, and reading stops once
    /// `inbound_queue_bytes` are waiting: nothing is dropped, TCP pushes back on the client.
    /// Bursts up to one second's worth are allowed. Default 10000.
    pub max_messages_per_second: u32,
    /// Frames that other tasks (publishes, server pushes) may queue for one connection. When
    /// full, the connection is closed with 4400 as a slow consumer. Default 65536: the byte
    /// budget below is what bounds memory; this only guards against floods of tiny frames.
    pub outbound_queue_length: usize,
    /// Bytes of frames that other tasks may queue for one connection. Past it the connection is
    /// closed with 4400 as a slow consumer, and what was queued for it is released. Default
    /// 67108864 (64 MiB): a healthy subscriber rides out a burst of large publications (the
    /// frames of a publication are shared by all its subscribers), and one that stops reading
    /// holds at most this much until `write_stall_timeout_ms` lets it go.
    pub outbound_queue_bytes: usize,
    /// Bytes of encoded replies a connection may have waiting to be written before Sockyard
    /// stops reading its requests (backpressure on a client that does not read). Default
    /// 262144 (256 KiB).
    pub write_buffer_bytes: usize,
    /// Bytes of received messages waiting to be processed (behind a slow handler or the message
    /// budget) before Sockyard stops reading from that socket. Default 1048576 (1 MiB).
    pub inbound_queue_bytes: usize,
    /// Milliseconds a client has to send its handshake after connecting; then 4005. Default
    /// 10000.
    pub handshake_timeout_ms: u64,
    /// Milliseconds a new TCP connection has for the TLS handshake (when TLS is on) and again
    /// for complete HTTP request headers; then it is dropped. Default 10000.
    pub http_header_timeout_ms: u64,
    /// Milliseconds to wait for the client's close frame after sending ours; then the socket is
    /// dropped, whatever is still unwritten. Default 2000.
    pub close_timeout_ms: u64,
    /// Milliseconds a write may make no progress (the client stopped reading) before the
    /// connection is closed with 4400 "Client stopped reading" and, `close_timeout_ms` later,
    /// dropped. Default 5000.
    pub write_stall_timeout_ms: u64,
    /// Largest encoded reply in bytes. A larger result is answered instead with an error named
    /// `ReplyTooLarge` (the call's caller learns why; nothing that large is queued). Default
    /// 16777216 (16 MiB).
    pub max_reply_bytes: usize,
    /// Open WebSocket connections the server accepts in total; beyond it, upgrades get HTTP
    /// 503. Default 100000.
    pub max_connections: usize,
    /// Open WebSocket connections accepted from one IP address; beyond it, HTTP 503. Default
    /// 10000.
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_messages_per_second: 10_000,
            outbound_queue_length: 65_536,
            outbound_queue_bytes: 64 << 20,
            write_buffer_bytes: 256 << 10,
            inbound_queue_bytes: 1 << 20,
            handshake_timeout_ms: 10_000,
            http_header_timeout_ms: 10_000,
            close_timeout_ms: 2000,
            write_stall_timeout_ms: 5000,
            max_reply_bytes: 16 << 20,
            max_connections: 100_000,
            max_connections_per_ip: 10_000,
        }
    }
}

impl Limits {
    /// What other tasks may queue for one connection.
    pub(crate) fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            frames: self.outbound_queue_length,
            bytes: self.outbound_queue_bytes,
        }
    }

    /// `http_header_timeout_ms` as a duration.
    pub fn http_header_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_timeout_ms)
    }
}
