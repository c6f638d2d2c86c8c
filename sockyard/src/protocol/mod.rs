//! Wire dialects: each turns frames into the one internal [`Packet`] model and back, with no IO.
//!
//! Everything above this module (services, router, exchange, rooms) sees only packets and
//! [`Outgoing`] messages, so the same route serves every dialect and a CTProto client can share a
//! channel with a SocketCluster one. Each dialect is one file implementing [`DialectSession`];
//! the `dialects!` list below names them once, which gives both the configuration's
//! [`Dialect`] and the per-connection [`Session`].

pub mod ctproto;
pub mod raw;
mod session;
pub mod socketcluster;

use std::borrow::Cow;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::codec::{CodecError, Encoding, FrameKind};
use crate::error::ApiError;
use crate::ws::frame::{self, OpCode};

pub use session::{DialectSession, SessionOptions};
pub use socketcluster::ProtocolVersion;

/// A call id (`cid` / `rid` in SocketCluster): a positive number chosen by the caller.
pub type CallId = u64;

/// One inbound message, as the layers above the dialect see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// The client's opening move (SocketCluster's `#handshake`, CTProto's `authorize`).
    Open {
        /// Call id to answer.
        id: CallId,
        /// What the client presents.
        credentials: Credentials,
    },
    /// A procedure call. `id: None` is a transmit, which is never answered.
    Call {
        /// Call id for an invoke; `None` for a transmit.
        id: Option<CallId>,
        /// The route (event or procedure) name.
        route: String,
        /// The payload, `None` when the client left it out.
        data: Option<Value>,
    },
    /// A socketcluster-api call (`{resource, method, dataType, buffer}`) on an endpoint whose
    /// protobuf types register it; routed by method and path.
    Api {
        /// Call id for an invoke; `None` for a transmit.
        id: Option<CallId>,
        /// The name the client called it by (access rules are checked against it).
        route: String,
        /// The request object.
        data: Option<Value>,
    },
    /// A subscription request. Only the invoke form (`id` set) subscribes, as in the official
    /// SocketCluster server.
    Subscribe {
        /// Call id of an invoke; `None` for a transmit.
        id: Option<CallId>,
        /// The channel.
        channel: String,
        /// Data sent along with the subscription (seen by the subscribe stage).
        data: Option<Value>,
    },
    /// Leaving a channel.
    Unsubscribe {
        /// Call id of an invoke; `None` for a transmit (what the official clients send).
        id: Option<CallId>,
        /// The channel.
        channel: String,
    },
    /// A publication: from a client to the server, or (in a client) delivered by the server.
    Publish {
        /// Call id of an invoke; `None` for a transmit or a delivery.
        id: Option<CallId>,
        /// The channel.
        channel: String,
        /// The published data.
        data: Option<Value>,
    },
    /// Authenticating an open connection with a signed token.
    Authenticate {
        /// Call id to answer.
        id: CallId,
        /// The token, if the data was a string.
        token: Option<String>,
    },
    /// The sender drops its auth token.
    Deauthenticate,
    /// A reserved message with malformed data: answered with `error` when it has a call id.
    Invalid {
        /// Call id of an invoke.
        id: Option<CallId>,
        /// What to answer.
        error: ApiError,
    },
    /// A reply to a call the server made.
    Reply {
        /// The id of the server's call.
        id: CallId,
        /// Success data or the peer's error.
        result: Result<Option<Value>, ApiError>,
    },
    /// The client announces that it is about to close.
    Disconnect {
        /// The close code it announced.
        code: Option<u16>,
        /// The reason it gave.
        reason: Option<Value>,
    },
    /// A message that is not a packet (e.g. non-JSON text); never answered.
    Raw(String),
}

/// What a client presents when it opens a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// A signed token, optional: the connection opens without one, unauthenticated
    /// (SocketCluster's handshake).
    Token(Option<String>),
    /// A payload that must authorize the connection, e.g. `{token}` (CTProto's `authorize`).
    Authorize(Value),
}

/// What one inbound item means to the connection, in the order the frame carried them.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A packet for the layers above.
    Packet(Packet),
    /// A pong (the client is alive).
    Pong,
    /// The client broke the protocol; close with this code and reason.
    Close(u16, Cow<'static, str>),
}

/// How an opening went, as its reply tells the client.
#[derive(Debug, Clone, Copy)]
pub struct Opened<'a> {
    /// The connection's id (SocketCluster's socket id).
    pub socket_id: &'a str,
    /// Milliseconds the client may go without hearing from the server.
    pub ping_timeout_ms: u64,
    /// The claims the connection is authenticated with, if any.
    pub claims: Option<&'a Map<String, Value>>,
    /// Why the token the client offered was refused (the connection opened without it).
    pub auth_error: Option<&'a ApiError>,
}

/// One message the server sends, whatever the dialect.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing<'a> {
    /// The answer to call `id`: data (left out when `None`) or an error.
    Reply {
        /// The call answered.
        id: CallId,
        /// The result.
        result: Result<Option<&'a Value>, &'a ApiError>,
    },
    /// The answer to the opening call `id`.
    Opened {
        /// The opening call.
        id: CallId,
        /// How it went.
        opened: Opened<'a>,
    },
    /// An event the server sends: answered by the client when `cid` is set (an invoke).
    Event {
        /// The event (procedure) name.
        name: &'a str,
        /// Its data.
        data: Option<&'a Value>,
        /// Call id of a server-initiated invoke.
        cid: Option<CallId>,
    },
    /// A publication delivered to a subscriber.
    Publication {
        /// The channel.
        channel: &'a str,
        /// The published data.
        data: Option<&'a Value>,
    },
    /// A new auth token for the client to keep.
    TokenSet {
        /// The signed token.
        token: &'a str,
    },
    /// The client must drop its auth token.
    TokenRemoved,
    /// The connection was removed from a channel.
    KickOut {
        /// The channel.
        channel: &'a str,
        /// Why.
        message: &'a str,
    },
    /// An error that answers no request (a malformed message without an id).
    Error(&'a ApiError),
}

/// How a refused opening ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The close code.
    pub code: u16,
    /// The close reason.
    pub reason: String,
    /// Whether the refusal is also sent as the opening call's error reply first.
    pub reply: bool,
}

/// Why a message could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The codec could not encode it.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The dialect has no such message (CTProto cannot carry a server-initiated invoke).
    #[error("the connection's protocol does not support this message")]
    Unsupported,
    /// The message answers a request, so only the connection's own session can encode it.
    #[error("a reply must be encoded by the connection's session")]
    NeedsSession,
}

/// Generates [`Dialect`] (how configuration names a dialect) and [`Session`] (one connection's
/// dialect state) from one list: adding a dialect is a file implementing [`DialectSession`] and
/// one line here.
macro_rules! dialects {
    ($($(#[$doc:meta])* $name:ident => $session:ty,)+) => {
        /// The wire dialect of an endpoint.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
        )]
        #[serde(rename_all = "lowercase")]
        #[non_exhaustive]
        pub enum Dialect {
            #[default]
            $($(#[$doc])* $name,)+
        }

        /// One connection's dialect state.
        #[derive(Debug)]
        pub enum Session {
            $($(#[$doc])* $name($session),)+
        }

        impl Session {
            /// A session for `dialect`, not open yet unless the dialect has no opening
            /// exchange.
            pub fn new(dialect: Dialect, options: &SessionOptions) -> Self {
                match dialect {
                    $(Dialect::$name => Self::$name(<$session>::start(options)),)+
                }
            }

            fn as_dyn(&self) -> &dyn DialectSession {
                match self {
                    $(Self::$name(session) => session,)+
                }
            }

            fn as_dyn_mut(&mut self) -> &mut dyn DialectSession {
                match self {
                    $(Self::$name(session) => session,)+
                }
            }
        }

        impl Dialect {
            /// Encodes a message that needs no session (everything but replies), as this dialect
            /// writes it; `Ok(None)` when the dialect has no such message.
            pub fn encode(
                self,
                encoding: &Encoding,
                message: &Outgoing<'_>,
                out: &mut Vec<u8>,
            ) -> Result<Option<FrameKind>, EncodeError> {
                match self {
                    $(Self::$name => <$session>::encode_push(encoding, message, out),)+
                }
            }
        }
    };
}

dialects! {
    /// SocketCluster protocol v1/v2.
    SocketCluster => socketcluster::Session,
    /// CTProto: `{messageId, type, payload}` with an `authorize` first message.
    CtProto => ctproto::Session,
    /// Plain WebSocket messages, no envelope: each one calls the endpoint's `route`.
    Raw => raw::Session,
}

impl Session {
    /// Whether the opening exchange (handshake or authorize) has succeeded.
    pub fn is_open(&self) -> bool {
        self.as_dyn().is_open()
    }

    /// Records that the opening exchange succeeded.
    pub fn open(&mut self) {
        self.as_dyn_mut().open();
    }

    /// Decodes one data frame and appends what it means to `out`.
    pub fn decode(
        &mut self,
        encoding: &Encoding,
        payload: &[u8],
        binary: bool,
        out: &mut Vec<Inbound>,
    ) {
        self.as_dyn_mut().decode(encoding, payload, binary, out);
    }

    /// Encodes any message, replies included; `Ok(None)` when there is nothing to send.
    pub fn encode(
        &mut self,
        encoding: &Encoding,
        message: &Outgoing<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError> {
        self.as_dyn_mut().encode(encoding, message, out)
    }

    /// Appends the ping frames for one interval; returns how many data frames that was.
    pub fn write_pings(&self, encoding: &Encoding, out: &mut Vec<u8>) -> u64 {
        self.as_dyn().write_pings(encoding, out)
    }

    /// The close code and reason when the opening exchange does not happen in time.
    pub fn opening_timeout(&self) -> (u16, &'static str) {
        self.as_dyn().opening_timeout()
    }

    /// The close code and reason when the client has been silent for its ping timeout.
    pub fn pong_timeout(&self) -> (u16, &'static str) {
        self.as_dyn().pong_timeout()
    }

    /// How a refused opening ends.
    pub fn opening_refused(&self, error: &ApiError) -> Refusal {
        self.as_dyn().opening_refused(error)
    }
}

/// How a connection's messages look on the wire: its dialect and its codec.
#[derive(Debug, Clone)]
pub struct Format {
    /// The dialect.
    pub dialect: Dialect,
    /// The codec, with its types for protobuf.
    pub encoding: Encoding,
}

/// Identifies a [`Format`]: publications are encoded once per key and shared by every
/// subscriber with that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FormatKey {
    dialect: Dialect,
    codec: crate::codec::Codec,
    schema: u64,
}

impl Format {
    /// The key that groups connections whose frames are byte-for-byte the same.
    pub fn key(&self) -> FormatKey {
        FormatKey {
            dialect: self.dialect,
            codec: self.encoding.codec(),
            schema: self.encoding.schema_id(),
        }
    }

    /// Encodes a message that needs no session as one complete WebSocket frame; `Ok(None)` when
    /// the dialect has no such message.
    pub fn encode_frame(
        &self,
        message: &Outgoing<'_>,
    ) -> Result<Option<bytes::Bytes>, EncodeError> {
        let mut payload = Vec::new();
        let Some(kind) = self.dialect.encode(&self.encoding, message, &mut payload)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(payload.len() + 10);
        write_data_frame(&mut out, kind, &payload);
        Ok(Some(out.into()))
    }
}

/// The name of the error that answers a call whose reply is over the size limit.
pub const REPLY_TOO_LARGE: &str = "ReplyTooLarge";

/// The error that answers a call whose encoded reply (`size` bytes) is over `limit`.
pub fn reply_too_large(size: usize, limit: usize) -> ApiError {
    ApiError::new(
        REPLY_TOO_LARGE,
        format!("The reply is {size} bytes, over the limit of {limit}"),
    )
    .with("limit", limit)
}

/// Appends a server-to-client data frame of `kind` carrying `payload`.
pub fn write_data_frame(out: &mut Vec<u8>, kind: FrameKind, payload: &[u8]) {
    let opcode = match kind {
        FrameKind::Text => OpCode::Text,
        FrameKind::Binary => OpCode::Binary,
    };
    frame::write_frame(out, opcode, payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(frame: Option<bytes::Bytes>) -> String {
        let frame = frame.expect("a frame");
        // Server frames of short payloads: two header bytes.
        String::from_utf8(frame[2..].to_vec()).unwrap()
    }

    #[test]
    fn every_dialect_encodes_the_neutral_messages() {
        let sc = Format {
            dialect: Dialect::SocketCluster,
            encoding: Encoding::Json,
        };
        let ct = Format {
            dialect: Dialect::CtProto,
            encoding: Encoding::Json,
        };
        assert_eq!(
            text(sc.encode_frame(&Outgoing::TokenRemoved).unwrap()),
            r##"{"event":"#removeAuthToken"}"##
        );
        assert_eq!(
            text(sc.encode_frame(&Outgoing::TokenSet { token: "t" }).unwrap()),
            r##"{"event":"#setAuthToken","data":{"token":"t"}}"##
        );
        assert_eq!(
            text(
                sc.encode_frame(&Outgoing::KickOut {
                    channel: "c",
                    message: "m"
                })
                .unwrap()
            ),
            r##"{"event":"#kickOut","data":{"channel":"c","message":"m"}}"##
        );
        let kicked = text(
            ct.encode_frame(&Outgoing::KickOut {
                channel: "c",
                message: "m",
            })
            .unwrap(),
        );
        assert!(
            kicked.starts_with(
                r##"{"type":"#kickOut","payload":{"channel":"c","message":"m"},"messageId":""##
            ),
            "{kicked}"
        );
        let data = json!(1);
        let invoke = Outgoing::Event {
            name: "q",
            data: Some(&data),
            cid: Some(1),
        };
        assert!(matches!(
            ct.encode_frame(&invoke),
            Err(EncodeError::Unsupported)
        ));
        let error = ApiError::new("E", "m");
        assert!(sc.encode_frame(&Outgoing::Error(&error)).unwrap().is_none());
        assert!(ct.encode_frame(&Outgoing::Error(&error)).unwrap().is_some());
        let reply = Outgoing::Reply {
            id: 1,
            result: Ok(None),
        };
        assert!(matches!(
            sc.encode_frame(&reply),
            Err(EncodeError::NeedsSession)
        ));
    }

    #[test]
    fn replies_over_the_limit_become_errors_with_the_same_correlation() {
        let options = SessionOptions {
            max_reply_bytes: 60,
            ..SessionOptions::default()
        };
        let big = Value::String("x".repeat(100));
        let small = Value::String("ok".to_owned());
        for dialect in [Dialect::SocketCluster, Dialect::CtProto] {
            let mut session = Session::new(dialect, &options);
            let mut calls = Vec::new();
            let frame: &[u8] = match dialect {
                Dialect::CtProto => {
                    br#"{"type":"authorize","payload":{},"messageId":"abcdeABCDE"}"#
                }
                _ => br##"{"event":"#handshake","cid":1}"##,
            };
            session.decode(&Encoding::Json, frame, false, &mut calls);
            session.open();
            let frame: &[u8] = match dialect {
                Dialect::CtProto => br#"{"type":"get","payload":{},"messageId":"fghijFGHIJ"}"#,
                _ => br#"{"event":"get","cid":2}"#,
            };
            session.decode(&Encoding::Json, frame, false, &mut calls);
            let id = match &calls[1] {
                Inbound::Packet(Packet::Call { id: Some(id), .. }) => *id,
                other => panic!("{other:?}"),
            };
            let mut out = Vec::new();
            let reply = Outgoing::Reply {
                id,
                result: Ok(Some(&big)),
            };
            session.encode(&Encoding::Json, &reply, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("ReplyTooLarge"), "{dialect:?}: {text}");
            assert!(
                text.contains("\"rid\":2") || text.contains("fghijFGHIJ"),
                "{dialect:?} answers the same call: {text}"
            );
            let mut out = Vec::new();
            let id = match &calls[0] {
                Inbound::Packet(Packet::Open { id, .. }) => *id,
                other => panic!("{other:?}"),
            };
            let reply = Outgoing::Reply {
                id,
                result: Ok(Some(&small)),
            };
            session.encode(&Encoding::Json, &reply, &mut out).unwrap();
            assert!(!String::from_utf8(out).unwrap().contains("ReplyTooLarge"));
        }
    }

    #[test]
    fn format_keys_tell_dialects_and_codecs_apart() {
        let key = |dialect, encoding| Format { dialect, encoding }.key();
        assert_eq!(
            key(Dialect::SocketCluster, Encoding::Json),
            key(Dialect::SocketCluster, Encoding::Json)
        );
        assert_ne!(
            key(Dialect::SocketCluster, Encoding::Json),
            key(Dialect::CtProto, Encoding::Json)
        );
        assert_ne!(
            key(Dialect::SocketCluster, Encoding::Json),
            key(Dialect::SocketCluster, Encoding::Msgpack)
        );
    }
}
