//! What every dialect provides: the per-connection half of a wire protocol, implemented once per
//! dialect file and dispatched by [`super::Session`].

use crate::codec::{Encoding, FrameKind};
use crate::error::ApiError;

use super::socketcluster::CLOSE_PONG_TIMEOUT;
use super::{EncodeError, Inbound, Outgoing, ProtocolVersion, Refusal};
use crate::ws::frame::{self, OpCode};

/// Settings a dialect session may need when it starts.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The SocketCluster protocol version served (other dialects ignore it).
    pub version: ProtocolVersion,
    /// The largest encoded reply; a larger one is answered with [`super::reply_too_large`]
    /// instead.
    pub max_reply_bytes: usize,
    /// The route every message of a raw session calls (other dialects ignore it).
    pub route: Option<String>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            version: ProtocolVersion::default(),
            max_reply_bytes: usize::MAX,
            route: None,
        }
    }
}

/// One dialect's per-connection state and rules. Pure: no IO, no clocks.
pub trait DialectSession: std::fmt::Debug + Send {
    /// A new connection's session: not open yet, unless the dialect has no opening exchange.
    fn start(options: &SessionOptions) -> Self
    where
        Self: Sized;

    /// Whether the opening exchange has succeeded.
    fn is_open(&self) -> bool;

    /// Records that the opening exchange succeeded; later packets are accepted.
    fn open(&mut self);

    /// Decodes one data frame and appends what it means to `out`, stopping at the first
    /// [`Inbound::Close`].
    fn decode(&mut self, encoding: &Encoding, payload: &[u8], binary: bool, out: &mut Vec<Inbound>);

    /// Encodes any message, with what the session remembers of the requests it answers;
    /// `Ok(None)` when there is nothing to send (e.g. a request already answered).
    fn encode(
        &mut self,
        encoding: &Encoding,
        message: &Outgoing<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError>;

    /// Encodes a message that answers no request (an event, a publication, a token change, a
    /// kick-out, an unanswered error) without a session: what other tasks push to a connection.
    /// Replies fail with [`EncodeError::NeedsSession`].
    fn encode_push(
        encoding: &Encoding,
        message: &Outgoing<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError>
    where
        Self: Sized;

    /// Appends the frames of one ping interval (complete WebSocket frames); returns how many of
    /// them are data frames. By default one WebSocket ping, which every client answers.
    fn write_pings(&self, _encoding: &Encoding, out: &mut Vec<u8>) -> u64 {
        frame::write_frame(out, OpCode::Ping, b"");
        0
    }

    /// The close code and reason when the opening exchange does not happen in time.
    fn opening_timeout(&self) -> (u16, &'static str);

    /// The close code and reason when the client has been silent for its ping timeout. By
    /// default SocketCluster's: 4001 "Client pong timed out".
    fn pong_timeout(&self) -> (u16, &'static str) {
        (CLOSE_PONG_TIMEOUT, "Client pong timed out")
    }

    /// How a refused opening ends.
    fn opening_refused(&self, error: &ApiError) -> Refusal;
}
