//! The dialect a connection speaks, behind one interface for the connection: decoding frames,
//! encoding replies and pushes, pings, and how the opening (handshake or authorize) works.

use serde_json::Value;

use crate::codec::{CodecError, Encoding, FrameKind};
use crate::config::Dialect;
use crate::error::ApiError;
use crate::protocol::socketcluster::{self, ProtocolVersion};
use crate::protocol::{ctproto, CallId, Inbound};
use crate::ws::frame::{self, OpCode};

/// One connection's dialect state.
#[derive(Debug)]
pub(crate) enum Session {
    /// SocketCluster v1/v2.
    SocketCluster(socketcluster::Session),
    /// CTProto.
    CtProto(ctproto::Session),
}

impl Session {
    pub(crate) fn new(dialect: Dialect, version: ProtocolVersion) -> Self {
        match dialect {
            Dialect::SocketCluster => Self::SocketCluster(socketcluster::Session::new(version)),
            Dialect::CtProto => Self::CtProto(ctproto::Session::new()),
        }
    }

    /// Whether the opening exchange (handshake or authorize) has succeeded.
    pub(crate) fn is_open(&self) -> bool {
        match self {
            Self::SocketCluster(session) => session.is_handshaken(),
            Self::CtProto(session) => session.is_authorized(),
        }
    }

    /// Records that the opening exchange succeeded.
    pub(crate) fn open(&mut self) {
        match self {
            Self::SocketCluster(session) => session.set_handshaken(),
            Self::CtProto(session) => session.set_authorized(),
        }
    }

    pub(crate) fn decode(
        &mut self,
        encoding: &Encoding,
        payload: &[u8],
        binary: bool,
        out: &mut Vec<Inbound>,
    ) {
        match self {
            Self::SocketCluster(session) => session.decode(encoding, payload, binary, out),
            Self::CtProto(session) => session.decode(payload, binary, out),
        }
    }

    /// Encodes the reply to call `id`; `None` when there is nothing to send.
    pub(crate) fn encode_reply(
        &mut self,
        encoding: &Encoding,
        id: CallId,
        result: Result<Option<&Value>, &ApiError>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, CodecError> {
        match self {
            Self::SocketCluster(session) => {
                session.encode_reply(encoding, id, result, out).map(Some)
            }
            Self::CtProto(session) => Ok(session
                .encode_reply(id, result, out)
                .then_some(FrameKind::Text)),
        }
    }

    /// Encodes an error that answers no request: CTProto sends an error envelope with a fresh
    /// id; SocketCluster has no such message.
    pub(crate) fn encode_unanswered_error(
        &self,
        error: &ApiError,
        out: &mut Vec<u8>,
    ) -> Option<FrameKind> {
        match self {
            Self::SocketCluster(_) => None,
            Self::CtProto(_) => {
                ctproto::encode_error(error, &ctproto::new_message_id(), out);
                Some(FrameKind::Text)
            }
        }
    }

    /// Appends the ping frames for one interval; returns how many data frames that was.
    ///
    /// SocketCluster pings are text frames (`''` and/or `#1`); CTProto has no heartbeat of its
    /// own, so its connections get WebSocket ping frames, which every client answers.
    pub(crate) fn write_pings(&self, encoding: &Encoding, out: &mut Vec<u8>) -> u64 {
        match self {
            Self::SocketCluster(session) => {
                let version = session.version();
                if version != ProtocolVersion::V1 {
                    frame::write_frame(out, OpCode::Text, b"");
                }
                if version != ProtocolVersion::V2 {
                    let (kind, ping) = encoding.v1_ping();
                    let opcode = match kind {
                        FrameKind::Text => OpCode::Text,
                        FrameKind::Binary => OpCode::Binary,
                    };
                    frame::write_frame(out, opcode, &ping);
                }
                if version == ProtocolVersion::Both {
                    2
                } else {
                    1
                }
            }
            Self::CtProto(_) => {
                frame::write_frame(out, OpCode::Ping, b"");
                0
            }
        }
    }

    /// The close code and reason when the opening exchange does not happen in time.
    pub(crate) fn opening_timeout(&self) -> (u16, &'static str) {
        match self {
            Self::SocketCluster(_) => (
                socketcluster::CLOSE_HANDSHAKE_TIMEOUT,
                "Did not receive #handshake from client before timeout",
            ),
            Self::CtProto(_) => (
                ctproto::CLOSE_AUTHORIZATION_REQUIRED,
                "Authorization required",
            ),
        }
    }

    /// How a refused opening ends: the close code and reason, and whether the refusal is also
    /// sent as an error reply first (SocketCluster) or only as the close reason (CTProto).
    pub(crate) fn opening_refused(&self, error: &ApiError) -> (u16, String, bool) {
        match self {
            Self::SocketCluster(_) => {
                let code = error
                    .extra
                    .get("statusCode")
                    .and_then(Value::as_u64)
                    .and_then(|code| u16::try_from(code).ok())
                    .unwrap_or(crate::stages::CLOSE_HANDSHAKE_REJECTED);
                (code, error.message.clone(), true)
            }
            Self::CtProto(_) => (
                ctproto::CLOSE_UNAUTHORIZED,
                format!("Authorization failed: {}", error.message),
                false,
            ),
        }
    }
}
