//! The SocketCluster dialect (protocol v1 and v2): classifies decoded frames into packets, knows
//! the ping strings and the handshake rules, and encodes replies, events and the handshake reply.
//!
//! Facts followed here, all verified against the official clients: `cid`/`rid` must be JSON
//! numbers (a string `cid` makes the message a transmit); `#handshake` must be an invoke (else
//! close 4008) and must come first (else close 4009, even for a pong); v1 pings are `#1`/`#2` and
//! v2 pings are empty text frames; both can be served on one endpoint by sending both pings.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    CallId, Credentials, DialectSession, EncodeError, Inbound, Opened, Outgoing, Packet, Refusal,
    SessionOptions,
};
use crate::codec::{CodecError, CodecState, Decoded, Encoding, Envelope, FrameKind};
use crate::error::ApiError;
use crate::ws::frame::{self, OpCode};

/// Close code: no `#handshake` within the handshake timeout.
pub const CLOSE_HANDSHAKE_TIMEOUT: u16 = 4005;
/// Close code: no message (pong or otherwise) from the client within `pingTimeout`.
pub const CLOSE_PONG_TIMEOUT: u16 = 4001;
/// Close code: the `#handshake` (or `#authenticate`) was not an invoke with a numeric `cid`.
pub const CLOSE_MALFORMED_HANDSHAKE: u16 = 4008;
/// Close code: a message arrived before the handshake.
pub const CLOSE_BEFORE_HANDSHAKE: u16 = 4009;

/// Close code after the handshake stage refused a handshake without naming a code of its own.
pub const CLOSE_HANDSHAKE_REJECTED: u16 = 4008;

/// Error name for malformed reserved events and refused actions (as sc-errors).
pub const INVALID_ACTION: &str = ApiError::INVALID_ACTION;
/// The error name for a message that could not be read (nested too deeply, or not valid in the
/// endpoint's codec).
pub const INVALID_MESSAGE: &str = "InvalidMessageError";
/// Error name for failed subscribe and unsubscribe operations (as sc-errors).
pub const BROKER_ERROR: &str = ApiError::BROKER_ERROR;

/// The event of socketcluster-api's calls on protobuf endpoints that register it.
const API_EVENT: &str = "#api";

/// Which SocketCluster protocol version an endpoint speaks. There is no negotiation on the wire;
/// `Both` serves v1 (client ≤ 14) and v2 (client ≥ 15) on one endpoint by sending both pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolVersion {
    /// Protocol v1: ping `#1`, pong `#2`, `#disconnect` honoured.
    #[serde(rename = "1")]
    V1,
    /// Protocol v2: ping and pong are empty text frames.
    #[serde(rename = "2")]
    V2,
    /// Serve both: send `''` and `#1` at each ping, accept `''` or `#2` as a pong.
    #[default]
    Both,
}

impl ProtocolVersion {
    /// The text frames to send at each ping interval.
    pub fn ping_frames(self) -> &'static [&'static str] {
        match self {
            Self::V1 => &["#1"],
            Self::V2 => &[""],
            Self::Both => &["", "#1"],
        }
    }

    fn is_pong(self, text: &[u8]) -> bool {
        match text {
            b"" => self != Self::V1,
            b"#2" => self != Self::V2,
            _ => false,
        }
    }
}

/// Per-connection dialect state.
#[derive(Debug)]
pub struct Session {
    version: ProtocolVersion,
    handshaken: bool,
    codec: CodecState,
    /// Replies larger than this are answered with an error instead.
    max_reply_bytes: usize,
}

impl Session {
    /// A session that has not seen its handshake yet.
    pub fn new(version: ProtocolVersion) -> Self {
        Self {
            version,
            handshaken: false,
            codec: CodecState::default(),
            max_reply_bytes: usize::MAX,
        }
    }

    /// The protocol version this session speaks.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Whether the handshake has been answered.
    pub fn is_handshaken(&self) -> bool {
        self.handshaken
    }

    /// Marks the handshake as answered; later packets are accepted.
    pub fn set_handshaken(&mut self) {
        self.handshaken = true;
    }

    /// Decodes one data frame and appends what it means to `out`. Processing of a frame stops at
    /// the first [`Inbound::Close`].
    pub fn decode(
        &mut self,
        encoding: &Encoding,
        payload: &[u8],
        binary: bool,
        out: &mut Vec<Inbound>,
    ) {
        if !binary && self.version.is_pong(payload) {
            out.push(self.pong());
            return;
        }
        match encoding.decode(payload, binary, &mut self.codec) {
            // Protocol v1 through a binary codec: the pong is `#2` encoded by the codec.
            Decoded::Raw(text) if binary && text == "#2" && self.version != ProtocolVersion::V2 => {
                out.push(self.pong());
            }
            decoded => {
                let api = matches!(encoding, Encoding::Protobuf(schema) if schema.has_api());
                // Only the first packet of a batch can be the handshake; later ones are
                // classified as if it had been answered, which the connection does in order.
                let mut handshaken = self.handshaken;
                push_decoded(decoded, &mut handshaken, self.version, api, out);
            }
        }
    }

    fn pong(&self) -> Inbound {
        if self.handshaken {
            Inbound::Pong
        } else {
            before_handshake()
        }
    }

    /// Encodes the reply to call `rid` (the codec may need what it saw of the request).
    pub fn encode_reply(
        &mut self,
        encoding: &Encoding,
        rid: CallId,
        result: Result<Option<&Value>, &ApiError>,
        out: &mut Vec<u8>,
    ) -> Result<FrameKind, CodecError> {
        encoding.encode(&Envelope::Reply { rid, result }, &mut self.codec, out)
    }
}

impl DialectSession for Session {
    fn start(options: &SessionOptions) -> Self {
        Self {
            max_reply_bytes: options.max_reply_bytes,
            ..Self::new(options.version)
        }
    }

    fn is_open(&self) -> bool {
        self.handshaken
    }

    fn open(&mut self) {
        self.handshaken = true;
    }

    fn decode(
        &mut self,
        encoding: &Encoding,
        payload: &[u8],
        binary: bool,
        out: &mut Vec<Inbound>,
    ) {
        Self::decode(self, encoding, payload, binary, out);
    }

    fn encode(
        &mut self,
        encoding: &Encoding,
        message: &Outgoing<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError> {
        let kind = match *message {
            Outgoing::Reply { id, result } => {
                let start = out.len();
                let kind = self.encode_reply(encoding, id, result, out)?;
                let size = out.len() - start;
                if size <= self.max_reply_bytes {
                    kind
                } else {
                    out.truncate(start);
                    let error = super::reply_too_large(size, self.max_reply_bytes);
                    self.encode_reply(encoding, id, Err(&error), out)?
                }
            }
            Outgoing::Opened { id, opened } => {
                let reply = HandshakeReply::of(&opened);
                let data =
                    serde_json::to_value(reply).map_err(|e| CodecError::Encode(e.to_string()))?;
                self.encode_reply(encoding, id, Ok(Some(&data)), out)?
            }
            _ => return Self::encode_push(encoding, message, out),
        };
        Ok(Some(kind))
    }

    fn encode_push(
        encoding: &Encoding,
        message: &Outgoing<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError> {
        let mut event =
            |name: &str, data: Option<&Value>| encode_event(encoding, name, data, None, out);
        let kind = match *message {
            Outgoing::Reply { .. } | Outgoing::Opened { .. } => {
                return Err(EncodeError::NeedsSession)
            }
            Outgoing::Event { name, data, cid } => encode_event(encoding, name, data, cid, out)?,
            Outgoing::Publication { channel, data } => {
                encode_publication(encoding, channel, data, out)?
            }
            Outgoing::TokenSet { token } => event(
                "#setAuthToken",
                Some(&serde_json::json!({ "token": token })),
            )?,
            Outgoing::TokenRemoved => event("#removeAuthToken", None)?,
            Outgoing::KickOut { channel, message } => event(
                "#kickOut",
                Some(&serde_json::json!({ "channel": channel, "message": message })),
            )?,
            // SocketCluster has no message for an error that answers no request.
            Outgoing::Error(_) => return Ok(None),
        };
        Ok(Some(kind))
    }

    /// SocketCluster pings are text frames: `''` (v2) and/or `#1` (v1, through the codec for the
    /// binary ones).
    fn write_pings(&self, encoding: &Encoding, out: &mut Vec<u8>) -> u64 {
        if self.version != ProtocolVersion::V1 {
            frame::write_frame(out, OpCode::Text, b"");
        }
        if self.version != ProtocolVersion::V2 {
            let (kind, ping) = encoding.v1_ping();
            super::write_data_frame(out, kind, &ping);
        }
        if self.version == ProtocolVersion::Both {
            2
        } else {
            1
        }
    }

    fn opening_timeout(&self) -> (u16, &'static str) {
        (
            CLOSE_HANDSHAKE_TIMEOUT,
            "Did not receive #handshake from client before timeout",
        )
    }

    fn pong_timeout(&self) -> (u16, &'static str) {
        (CLOSE_PONG_TIMEOUT, "Client pong timed out")
    }

    /// The refusal goes out as the handshake's error reply, then the socket closes with the
    /// error's `statusCode` (the handshake stage's close code).
    fn opening_refused(&self, error: &ApiError) -> Refusal {
        let code = error
            .extra
            .get("statusCode")
            .and_then(Value::as_u64)
            .and_then(|code| u16::try_from(code).ok())
            .unwrap_or(CLOSE_HANDSHAKE_REJECTED);
        Refusal {
            code,
            reason: error.message.clone(),
            reply: true,
        }
    }
}

/// Appends what a decoded frame means, packet by packet, and says whether to go on: processing
/// of a frame stops at its first [`Inbound::Close`]. `handshaken` is updated as the handshake
/// goes by; `api` says whether the endpoint's types register socketcluster-api's `#api`.
fn push_decoded(
    decoded: Decoded,
    handshaken: &mut bool,
    version: ProtocolVersion,
    api: bool,
    out: &mut Vec<Inbound>,
) -> bool {
    let packet = match decoded {
        Decoded::Packets(values) => {
            for value in values {
                let item = classify(value, *handshaken, version, api);
                *handshaken |= matches!(item, Inbound::Packet(Packet::Open { .. }));
                if !push(item, out) {
                    return false;
                }
            }
            return true;
        }
        Decoded::Batch(parts) => {
            return parts
                .into_iter()
                .all(|part| push_decoded(part, handshaken, version, api, out));
        }
        _ if !*handshaken => return push(before_handshake(), out),
        Decoded::Raw(text) => Packet::Raw(text),
        Decoded::TooDeep { cid } => too_deep(cid),
        Decoded::Malformed { cid, reason } => Packet::Invalid {
            id: Some(cid),
            error: ApiError::new(
                INVALID_MESSAGE,
                format!("The message could not be decoded: {reason}"),
            ),
        },
    };
    push(Inbound::Packet(packet), out)
}

/// Appends `item`; false when it closes the connection.
fn push(item: Inbound, out: &mut Vec<Inbound>) -> bool {
    let goes_on = !matches!(item, Inbound::Close(..));
    out.push(item);
    goes_on
}

fn before_handshake() -> Inbound {
    Inbound::Close(
        CLOSE_BEFORE_HANDSHAKE,
        "Message received before handshake".into(),
    )
}

/// Classifies one decoded packet, following `_processInboundPacket` of the official server;
/// `api` says whether the endpoint's types register socketcluster-api's `#api`.
fn classify(value: Value, handshaken: bool, version: ProtocolVersion, api: bool) -> Inbound {
    let Value::Object(mut map) = value else {
        return if handshaken {
            Inbound::Packet(Packet::Raw(value.to_string()))
        } else {
            before_handshake()
        };
    };
    let cid = map.get("cid").and_then(Value::as_u64);
    match map.remove("event") {
        Some(Value::String(event)) => {
            let data = map.remove("data");
            if event == "#handshake" {
                let Some(id) = cid else {
                    return Inbound::Close(
                        CLOSE_MALFORMED_HANDSHAKE,
                        "Handshake request was malformatted".into(),
                    );
                };
                return Inbound::Packet(Packet::Open {
                    id,
                    credentials: Credentials::Token(auth_token(data.as_ref())),
                });
            }
            if !handshaken {
                return before_handshake();
            }
            Inbound::Packet(match event.as_str() {
                "#disconnect" if version != ProtocolVersion::V2 => disconnect(data),
                "#subscribe" => subscribe(cid, data),
                "#unsubscribe" => match data {
                    Some(Value::String(channel)) => Packet::Unsubscribe { id: cid, channel },
                    _ => invalid(cid, "Unsubscribe channel name was malformatted"),
                },
                "#publish" => publish(cid, data),
                "#authenticate" => {
                    let Some(id) = cid else {
                        return Inbound::Close(
                            CLOSE_MALFORMED_HANDSHAKE,
                            "Authenticate request was malformatted".into(),
                        );
                    };
                    let token = match data {
                        Some(Value::String(token)) => Some(token),
                        _ => None,
                    };
                    Packet::Authenticate { id, token }
                }
                "#removeAuthToken" => Packet::Deauthenticate,
                API_EVENT if api => Packet::Api {
                    id: cid,
                    route: event,
                    data,
                },
                _ => Packet::Call {
                    id: cid,
                    route: event,
                    data,
                },
            })
        }
        event => {
            if !handshaken {
                return before_handshake();
            }
            match map.get("rid").and_then(Value::as_u64) {
                Some(id) => Inbound::Packet(Packet::Reply {
                    id,
                    result: reply_result(&mut map),
                }),
                None => {
                    if let Some(event) = event {
                        map.insert("event".to_owned(), event);
                    }
                    Inbound::Packet(Packet::Raw(Value::Object(map).to_string()))
                }
            }
        }
    }
}

/// `#subscribe` data is `{channel, data?, waitForAuth?}`; protocol v1 clients may send the bare
/// channel name.
fn subscribe(id: Option<CallId>, data: Option<Value>) -> Packet {
    match data {
        Some(Value::Object(mut fields)) => match fields.remove("channel") {
            Some(Value::String(channel)) => Packet::Subscribe {
                id,
                channel,
                data: fields.remove("data"),
            },
            _ => invalid(id, "Subscribe channel name was malformatted"),
        },
        Some(Value::String(channel)) => Packet::Subscribe {
            id,
            channel,
            data: None,
        },
        _ => invalid(id, "Subscribe channel name was malformatted"),
    }
}

/// `#publish` data is `{channel, data?}`.
fn publish(id: Option<CallId>, data: Option<Value>) -> Packet {
    match data {
        Some(Value::Object(mut fields)) => match fields.remove("channel") {
            Some(Value::String(channel)) => Packet::Publish {
                id,
                channel,
                data: fields.remove("data"),
            },
            _ => invalid(id, "Publish channel name was malformatted"),
        },
        _ => invalid(id, "Publish channel name was malformatted"),
    }
}

/// A packet nested too deeply to read: answered with `InvalidMessageError` when it has a call id.
fn too_deep(id: Option<CallId>) -> Packet {
    Packet::Invalid {
        id,
        error: ApiError::new(
            INVALID_MESSAGE,
            format!(
                "The message nests arrays or objects more than {} levels deep",
                crate::codec::json::MAX_DEPTH
            ),
        ),
    }
}

fn invalid(id: Option<CallId>, message: &str) -> Packet {
    Packet::Invalid {
        id,
        error: ApiError::new(INVALID_ACTION, message),
    }
}

fn auth_token(data: Option<&Value>) -> Option<String> {
    data?.get("authToken")?.as_str().map(str::to_owned)
}

fn disconnect(data: Option<Value>) -> Packet {
    let mut data = match data {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    Packet::Disconnect {
        code: data
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok()),
        reason: data.remove("data"),
    }
}

fn reply_result(map: &mut Map<String, Value>) -> Result<Option<Value>, ApiError> {
    match map.remove("error") {
        Some(Value::Null) | None => Ok(map.remove("data")),
        Some(error) => Err(ApiError::from_value(error)),
    }
}

/// The data of a handshake reply: `{id, pingTimeout, [authError], isAuthenticated}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandshakeReply<'a> {
    /// The socket id (20 URL-safe base64 characters).
    pub id: &'a str,
    /// Milliseconds the client may go without a ping before it gives up (the client's watchdog).
    pub ping_timeout: u64,
    /// Present only when a token was offered and failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_error: Option<&'a ApiError>,
    /// Whether the offered token was accepted.
    pub is_authenticated: bool,
}

impl<'a> HandshakeReply<'a> {
    /// The reply that tells the client how its opening went.
    pub fn of(opened: &Opened<'a>) -> Self {
        Self {
            id: opened.socket_id,
            ping_timeout: opened.ping_timeout_ms,
            auth_error: opened.auth_error,
            is_authenticated: opened.claims.is_some(),
        }
    }
}

/// Encodes a reply to call `rid` outside a session (for codecs that need no memory of the
/// request, and for tests).
pub fn encode_reply(
    encoding: &Encoding,
    rid: CallId,
    result: Result<Option<&Value>, &ApiError>,
    out: &mut Vec<u8>,
) -> Result<FrameKind, CodecError> {
    encoding.encode(
        &Envelope::Reply { rid, result },
        &mut CodecState::default(),
        out,
    )
}

/// Encodes a transmit (`cid: None`) or an invoke.
pub fn encode_event(
    encoding: &Encoding,
    event: &str,
    data: Option<&Value>,
    cid: Option<CallId>,
    out: &mut Vec<u8>,
) -> Result<FrameKind, CodecError> {
    encoding.encode(
        &Envelope::Event { event, data, cid },
        &mut CodecState::default(),
        out,
    )
}

/// Encodes a publication delivered to a subscriber:
/// `{"event":"#publish","data":{"channel":…,"data":…}}`.
pub fn encode_publication(
    encoding: &Encoding,
    channel: &str,
    data: Option<&Value>,
    out: &mut Vec<u8>,
) -> Result<FrameKind, CodecError> {
    let mut body = serde_json::Map::with_capacity(2);
    body.insert("channel".to_owned(), Value::String(channel.to_owned()));
    if let Some(data) = data {
        body.insert("data".to_owned(), data.clone());
    }
    let body = Value::Object(body);
    encode_event(encoding, "#publish", Some(&body), None, out)
}

/// Encodes the reply to `#handshake`.
pub fn encode_handshake_reply(
    encoding: &Encoding,
    rid: CallId,
    reply: &HandshakeReply<'_>,
    out: &mut Vec<u8>,
) -> Result<FrameKind, CodecError> {
    let data = serde_json::to_value(reply).map_err(|e| CodecError::Encode(e.to_string()))?;
    encode_reply(encoding, rid, Ok(Some(&data)), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(session: &mut Session, frame: &str) -> Vec<Inbound> {
        let mut out = Vec::new();
        session.decode(&Encoding::Json, frame.as_bytes(), false, &mut out);
        out
    }

    fn ready(version: ProtocolVersion) -> Session {
        let mut session = Session::new(version);
        session.set_handshaken();
        session
    }

    #[test]
    fn too_deep_packets_are_answered_by_cid() {
        let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
        let mut session = ready(ProtocolVersion::Both);
        let frame = format!(r#"{{"event":"echo","data":{deep},"cid":4}}"#);
        assert_eq!(
            decode(&mut session, &frame),
            [Inbound::Packet(Packet::Invalid {
                id: Some(4),
                error: ApiError::new(
                    "InvalidMessageError",
                    "The message nests arrays or objects more than 128 levels deep"
                )
            })]
        );
        let mut session = Session::new(ProtocolVersion::Both);
        assert_eq!(
            decode(&mut session, &frame),
            [Inbound::Close(
                4009,
                "Message received before handshake".into()
            )]
        );
    }

    fn invalid_message(id: CallId, message: &str) -> Inbound {
        Inbound::Packet(Packet::Invalid {
            id: Some(id),
            error: ApiError::new("InvalidMessageError", message),
        })
    }

    fn echo_call(id: CallId, data: Value) -> Inbound {
        Inbound::Packet(Packet::Call {
            id: Some(id),
            route: "echo".into(),
            data: Some(data),
        })
    }

    #[test]
    fn a_too_deep_call_in_a_batch_is_answered_alone() {
        let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
        let frame = format!(
            r#"[{{"event":"echo","data":1,"cid":2}},{{"event":"echo","data":{deep},"cid":3}},{{"event":"echo","data":4,"cid":4}}]"#
        );
        assert_eq!(
            decode(&mut ready(ProtocolVersion::Both), &frame),
            [
                echo_call(2, json!(1)),
                invalid_message(
                    3,
                    "The message nests arrays or objects more than 128 levels deep"
                ),
                echo_call(4, json!(4)),
            ]
        );
        // A batch that opens with the handshake: the deep call after it is answered too.
        let frame = format!(
            r##"[{{"event":"#handshake","cid":1}},{{"event":"echo","data":{deep},"cid":2}}]"##
        );
        let out = decode(&mut Session::new(ProtocolVersion::Both), &frame);
        assert!(
            matches!(
                &out[..],
                [
                    Inbound::Packet(Packet::Open { id: 1, .. }),
                    Inbound::Packet(Packet::Invalid { id: Some(2), .. })
                ]
            ),
            "{out:?}"
        );
        // Before the handshake it closes, like any other message.
        let frame =
            format!(r#"[{{"event":"echo","data":{deep},"cid":2}},{{"event":"echo","cid":3}}]"#);
        assert_eq!(
            decode(&mut Session::new(ProtocolVersion::Both), &frame),
            [Inbound::Close(
                4009,
                "Message received before handshake".into()
            )]
        );
    }

    #[test]
    fn lone_surrogates_in_an_invoke_are_read_as_replacement_characters() {
        assert_eq!(
            decode(
                &mut ready(ProtocolVersion::Both),
                r#"{"event":"echo","data":"a\ud800","cid":2}"#
            ),
            [echo_call(2, json!("a\u{fffd}"))]
        );
    }

    #[test]
    fn malformed_binary_packets_are_answered_by_cid() {
        let binary = |session: &mut Session, frame: &[u8]| {
            let mut out = Vec::new();
            session.decode(&Encoding::Msgpack, frame, true, &mut out);
            out
        };
        let mut session = ready(ProtocolVersion::V2);
        // {e:["echo", <fixext1>, 5]}
        let frame = [
            0x81, 0xa1, b'e', 0x93, 0xa4, b'e', b'c', b'h', b'o', 0xd4, 1, 2, 5,
        ];
        assert_eq!(
            binary(&mut session, &frame),
            [invalid_message(
                5,
                "The message could not be decoded: invalid MessagePack: extension types are not supported"
            )]
        );
        // In a batch, beside a valid invoke: [{e:["echo", 1, 6]}, that one].
        let mut batch = vec![
            0x92, 0x81, 0xa1, b'e', 0x93, 0xa4, b'e', b'c', b'h', b'o', 1, 6,
        ];
        batch.extend_from_slice(&frame);
        let out = binary(&mut session, &batch);
        assert!(
            matches!(&out[..], [first, Inbound::Packet(Packet::Invalid { id: Some(5), .. })] if *first == echo_call(6, json!(1))),
            "{out:?}"
        );
        // Without a readable cid: raw, as before; before the handshake: 4009.
        assert_eq!(
            binary(&mut session, &frame[..9]),
            [Inbound::Packet(Packet::Raw(
                String::from_utf8_lossy(&frame[..9]).into_owned()
            ))]
        );
        assert_eq!(
            binary(&mut Session::new(ProtocolVersion::V2), &frame),
            [Inbound::Close(
                4009,
                "Message received before handshake".into()
            )]
        );
    }

    fn text(frame: Result<FrameKind, CodecError>, out: Vec<u8>) -> String {
        assert_eq!(frame.unwrap(), FrameKind::Text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn accepts_the_official_handshake() {
        let mut session = Session::new(ProtocolVersion::Both);
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##
            ),
            [Inbound::Packet(Packet::Open {
                id: 1,
                credentials: Credentials::Token(None),
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#handshake","data":{"authToken":"abc.def.ghi"},"cid":11}"##
            ),
            [Inbound::Packet(Packet::Open {
                id: 11,
                credentials: Credentials::Token(Some("abc.def.ghi".into())),
            })]
        );
        // `data` left out is treated like `{}`.
        assert_eq!(
            decode(&mut session, r##"{"event":"#handshake","cid":3}"##),
            [Inbound::Packet(Packet::Open {
                id: 3,
                credentials: Credentials::Token(None),
            })]
        );
    }

    #[test]
    fn handshake_without_numeric_cid_closes_4008() {
        let mut session = Session::new(ProtocolVersion::Both);
        for frame in [
            r##"{"event":"#handshake","data":{}}"##,
            r##"{"event":"#handshake","cid":"1"}"##,
        ] {
            assert_eq!(
                decode(&mut session, frame),
                [Inbound::Close(
                    4008,
                    "Handshake request was malformatted".into()
                )]
            );
        }
    }

    #[test]
    fn anything_before_the_handshake_closes_4009() {
        let mut session = Session::new(ProtocolVersion::Both);
        for frame in [
            r#"{"event":"echo","data":1,"cid":1}"#,
            r#"{"rid":1}"#,
            "hello",
            "",
            "#2",
            "[1]",
            "{}",
        ] {
            assert_eq!(
                decode(&mut session, frame),
                [Inbound::Close(
                    4009,
                    "Message received before handshake".into()
                )],
                "frame {frame:?}"
            );
        }
    }

    #[test]
    fn classifies_invokes_transmits_and_replies() {
        let mut session = ready(ProtocolVersion::V2);
        assert_eq!(
            decode(
                &mut session,
                r#"{"event":"add","data":{"a":1,"b":2},"cid":2}"#
            ),
            [Inbound::Packet(Packet::Call {
                id: Some(2),
                route: "add".into(),
                data: Some(json!({"a":1,"b":2}))
            })]
        );
        assert_eq!(
            decode(&mut session, r#"{"event":"hello","data":{"w":"world"}}"#),
            [Inbound::Packet(Packet::Call {
                id: None,
                route: "hello".into(),
                data: Some(json!({"w":"world"}))
            })]
        );
        assert_eq!(
            decode(&mut session, r#"{"event":"callme"}"#),
            [Inbound::Packet(Packet::Call {
                id: None,
                route: "callme".into(),
                data: None
            })]
        );
        // A string cid makes it a transmit, as in the official server.
        assert_eq!(
            decode(&mut session, r#"{"event":"x","cid":"5"}"#),
            [Inbound::Packet(Packet::Call {
                id: None,
                route: "x".into(),
                data: None
            })]
        );
        assert_eq!(
            decode(&mut session, r#"{"rid":1,"data":{"answer":2}}"#),
            [Inbound::Packet(Packet::Reply {
                id: 1,
                result: Ok(Some(json!({"answer":2})))
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r#"{"rid":4,"error":{"name":"Nope","message":"no"}}"#
            ),
            [Inbound::Packet(Packet::Reply {
                id: 4,
                result: Err(ApiError::new("Nope", "no"))
            })]
        );
        assert_eq!(
            decode(&mut session, r#"{"rid":4,"error":null,"data":7}"#),
            [Inbound::Packet(Packet::Reply {
                id: 4,
                result: Ok(Some(json!(7)))
            })]
        );
    }

    #[test]
    fn unknown_shapes_are_raw_after_the_handshake() {
        let mut session = ready(ProtocolVersion::Both);
        assert_eq!(
            decode(&mut session, "hello"),
            [Inbound::Packet(Packet::Raw("hello".into()))]
        );
        assert_eq!(
            decode(&mut session, r#"{"x":1}"#),
            [Inbound::Packet(Packet::Raw(r#"{"x":1}"#.into()))]
        );
        assert_eq!(
            decode(&mut session, "[5]"),
            [Inbound::Packet(Packet::Raw("5".into()))]
        );
    }

    #[test]
    fn batches_are_processed_in_order() {
        let mut session = ready(ProtocolVersion::Both);
        let out = decode(
            &mut session,
            r#"[{"event":"hello","data":1},{"event":"hello","data":2}]"#,
        );
        assert_eq!(
            out,
            [
                Inbound::Packet(Packet::Call {
                    id: None,
                    route: "hello".into(),
                    data: Some(json!(1))
                }),
                Inbound::Packet(Packet::Call {
                    id: None,
                    route: "hello".into(),
                    data: Some(json!(2))
                }),
            ]
        );
        // A batch may open with the handshake.
        let mut fresh = Session::new(ProtocolVersion::Both);
        let out = decode(
            &mut fresh,
            r##"[{"event":"#handshake","cid":1},{"event":"echo","cid":2}]"##,
        );
        assert_eq!(out.len(), 2);
        assert!(matches!(
            out[1],
            Inbound::Packet(Packet::Call { id: Some(2), .. })
        ));
    }

    #[test]
    fn pongs_by_version() {
        assert_eq!(decode(&mut ready(ProtocolVersion::V2), ""), [Inbound::Pong]);
        assert_eq!(
            decode(&mut ready(ProtocolVersion::Both), ""),
            [Inbound::Pong]
        );
        assert_eq!(
            decode(&mut ready(ProtocolVersion::Both), "#2"),
            [Inbound::Pong]
        );
        assert_eq!(
            decode(&mut ready(ProtocolVersion::V1), "#2"),
            [Inbound::Pong]
        );
        // A v1 endpoint treats an empty frame as raw text; a v2 one does so with "#2".
        assert_eq!(
            decode(&mut ready(ProtocolVersion::V1), ""),
            [Inbound::Packet(Packet::Raw(String::new()))]
        );
        assert_eq!(
            decode(&mut ready(ProtocolVersion::V2), "#2"),
            [Inbound::Packet(Packet::Raw("#2".into()))]
        );
        assert_eq!(ProtocolVersion::Both.ping_frames(), ["", "#1"]);
    }

    #[test]
    fn v1_disconnect_is_honoured_except_on_v2_endpoints() {
        let frame = r##"{"event":"#disconnect","data":{"code":4100,"data":"done"}}"##;
        assert_eq!(
            decode(&mut ready(ProtocolVersion::Both), frame),
            [Inbound::Packet(Packet::Disconnect {
                code: Some(4100),
                reason: Some(json!("done"))
            })]
        );
        assert_eq!(
            decode(&mut ready(ProtocolVersion::V2), frame),
            [Inbound::Packet(Packet::Call {
                id: None,
                route: "#disconnect".into(),
                data: Some(json!({"code":4100,"data":"done"}))
            })]
        );
    }

    #[test]
    fn classifies_pubsub_and_auth_events() {
        let mut session = ready(ProtocolVersion::Both);
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#subscribe","data":{"channel":"ch1","data":{"hi":1}},"cid":5}"##
            ),
            [Inbound::Packet(Packet::Subscribe {
                id: Some(5),
                channel: "ch1".into(),
                data: Some(json!({"hi":1}))
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#subscribe","data":{"channel":"ch1","waitForAuth":true},"cid":6}"##
            ),
            [Inbound::Packet(Packet::Subscribe {
                id: Some(6),
                channel: "ch1".into(),
                data: None
            })]
        );
        // Protocol v1 clients may subscribe with the bare name.
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#subscribe","data":"ch2","cid":7}"##
            ),
            [Inbound::Packet(Packet::Subscribe {
                id: Some(7),
                channel: "ch2".into(),
                data: None
            })]
        );
        for frame in [
            r##"{"event":"#subscribe","data":{"channel":5},"cid":8}"##,
            r##"{"event":"#subscribe","data":[],"cid":8}"##,
            r##"{"event":"#subscribe","cid":8}"##,
        ] {
            assert_eq!(
                decode(&mut session, frame),
                [Inbound::Packet(Packet::Invalid {
                    id: Some(8),
                    error: ApiError::new(
                        "InvalidActionError",
                        "Subscribe channel name was malformatted"
                    )
                })],
                "{frame}"
            );
        }
        assert_eq!(
            decode(&mut session, r##"{"event":"#unsubscribe","data":"ch2"}"##),
            [Inbound::Packet(Packet::Unsubscribe {
                id: None,
                channel: "ch2".into()
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#unsubscribe","data":{"channel":"ch2"},"cid":9}"##
            ),
            [Inbound::Packet(Packet::Invalid {
                id: Some(9),
                error: ApiError::new(
                    "InvalidActionError",
                    "Unsubscribe channel name was malformatted"
                )
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#publish","data":{"channel":"ch1","data":{"x":1}},"cid":6}"##
            ),
            [Inbound::Packet(Packet::Publish {
                id: Some(6),
                channel: "ch1".into(),
                data: Some(json!({"x":1}))
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#publish","data":{"channel":"ch1"}}"##
            ),
            [Inbound::Packet(Packet::Publish {
                id: None,
                channel: "ch1".into(),
                data: None
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#publish","data":{"channel":null,"data":1},"cid":3}"##
            ),
            [Inbound::Packet(Packet::Invalid {
                id: Some(3),
                error: ApiError::new(
                    "InvalidActionError",
                    "Publish channel name was malformatted"
                )
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#authenticate","data":"a.b.c","cid":9}"##
            ),
            [Inbound::Packet(Packet::Authenticate {
                id: 9,
                token: Some("a.b.c".into())
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"event":"#authenticate","data":"a.b.c"}"##
            ),
            [Inbound::Close(
                4008,
                "Authenticate request was malformatted".into()
            )]
        );
        assert_eq!(
            decode(&mut session, r##"{"event":"#removeAuthToken"}"##),
            [Inbound::Packet(Packet::Deauthenticate)]
        );
        // Other names starting with `#` are ordinary procedures (as `#api`).
        assert_eq!(
            decode(&mut session, r##"{"event":"#api","data":1,"cid":2}"##),
            [Inbound::Packet(Packet::Call {
                id: Some(2),
                route: "#api".into(),
                data: Some(json!(1))
            })]
        );
    }

    #[test]
    fn encodes_publications() {
        let mut out = Vec::new();
        let kind = encode_publication(&Encoding::Json, "ch1", Some(&json!({"x":1})), &mut out);
        assert_eq!(
            text(kind, out),
            r##"{"event":"#publish","data":{"channel":"ch1","data":{"x":1}}}"##
        );
    }

    #[test]
    fn encodes_replies_events_and_the_handshake_reply() {
        let mut out = Vec::new();
        let reply = HandshakeReply {
            id: "7iEcwRObVus0_M9bAAAA",
            ping_timeout: 5000,
            auth_error: None,
            is_authenticated: false,
        };
        let kind = encode_handshake_reply(&Encoding::Json, 1, &reply, &mut out);
        assert_eq!(
            text(kind, out),
            r#"{"rid":1,"data":{"id":"7iEcwRObVus0_M9bAAAA","pingTimeout":5000,"isAuthenticated":false}}"#
        );

        let mut out = Vec::new();
        let err =
            ApiError::new("AuthTokenInvalidError", "invalid signature").with("isBadToken", true);
        let reply = HandshakeReply {
            id: "x",
            ping_timeout: 30000,
            auth_error: Some(&err),
            is_authenticated: false,
        };
        let kind = encode_handshake_reply(&Encoding::Json, 1, &reply, &mut out);
        assert_eq!(
            text(kind, out),
            r#"{"rid":1,"data":{"id":"x","pingTimeout":30000,"authError":{"name":"AuthTokenInvalidError","message":"invalid signature","isBadToken":true},"isAuthenticated":false}}"#
        );

        let mut out = Vec::new();
        let data = json!({"q":1});
        let kind = encode_event(
            &Encoding::Json,
            "clientProc",
            Some(&data),
            Some(1),
            &mut out,
        );
        assert_eq!(
            text(kind, out),
            r#"{"event":"clientProc","data":{"q":1},"cid":1}"#
        );

        let mut out = Vec::new();
        let kind = encode_event(&Encoding::Json, "#removeAuthToken", None, None, &mut out);
        assert_eq!(text(kind, out), r##"{"event":"#removeAuthToken"}"##);

        let mut out = Vec::new();
        let err = ApiError::not_found("Unknown procedure 'nope'");
        let kind = encode_reply(&Encoding::Json, 7, Err(&err), &mut out);
        assert_eq!(
            text(kind, out),
            r#"{"rid":7,"error":{"name":"NotFound","message":"Unknown procedure 'nope'"}}"#
        );
    }
}
