//! The CTProto dialect: `{messageId, type, payload}` requests, `{messageId, payload}` responses,
//! `{type:"error", payload:{error}, messageId}` error envelopes, and authorization by a first
//! `authorize` message. Pure: no IO, literal-frame tests.
//!
//! Close codes and reasons are those of the original server: 1013 "Authorization required",
//! 1008 "Unauthorized", 1008 `"Authorization failed: <message>"`, 1003 "Unsupported data" for
//! binary frames and 1003 with the parser's message for invalid JSON. Deliberate differences:
//! a failed request is answered with an error envelope carrying the request's `messageId` (and a
//! stable `name` beside the original's `error` text), so no request is left hanging; an unknown
//! `type` gets an error reply; messages that arrive while authorization is pending wait for it;
//! a message that is not a JSON object is "message should be a JSON object"; a second
//! `authorize` gets an `InvalidActionError` envelope (the original ignores it); a lone surrogate
//! escape in a string reads as U+FFFD (the original keeps it, as JavaScript strings can).

use std::collections::HashMap;

use rand::Rng as _;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::codec::json::{self, Wire};

use super::{
    CallId, Credentials, DialectSession, EncodeError, Inbound, Outgoing, Packet, Refusal,
    SessionOptions,
};
use crate::codec::{Encoding, FrameKind};
use crate::error::ApiError;

/// Close code when no message arrives before the authorization deadline.
pub const CLOSE_AUTHORIZATION_REQUIRED: u16 = 1013;
/// Close code for a first message that is not `authorize`, and for a failed authorization.
pub const CLOSE_UNAUTHORIZED: u16 = 1008;
/// Close code for binary frames and invalid JSON.
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
/// The type of the first message.
pub const AUTHORIZE: &str = "authorize";
/// The type of error envelopes.
pub const ERROR_TYPE: &str = "error";
/// The message of the error that answers an `authorize` on an authorized connection.
pub const ALREADY_AUTHORIZED: &str = "The connection is already authorized";
/// The name of errors for requests that break the message format.
pub const FORMAT_ERROR: &str = "MessageFormatError";
/// Reserved request types for channels (the same names as SocketCluster's events).
pub const SUBSCRIBE: &str = "#subscribe";
/// See [`SUBSCRIBE`].
pub const UNSUBSCRIBE: &str = "#unsubscribe";
/// See [`SUBSCRIBE`]; also the type of delivered publications.
pub const PUBLISH: &str = "#publish";

/// Length of a message id.
const ID_LENGTH: usize = 10;
/// The alphabet message ids are drawn from.
const ID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// A fresh message id: 10 random characters of `[A-Za-z0-9_-]`.
pub fn new_message_id() -> String {
    let mut rng = rand::rng();
    (0..ID_LENGTH)
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect()
}

fn is_message_id(id: &str) -> bool {
    id.len() == ID_LENGTH && id.bytes().all(|b| ID_ALPHABET.contains(&b))
}

/// Per-connection dialect state: whether the connection is authorized, and the message ids of
/// requests waiting for their response (the layers above use numeric call ids).
#[derive(Debug)]
pub struct Session {
    authorized: bool,
    pending: HashMap<CallId, String>,
    next: CallId,
    /// Replies larger than this are answered with an error instead.
    max_reply_bytes: usize,
}

impl Session {
    /// A session that has not been authorized yet, with no limit on replies.
    pub fn new() -> Self {
        Self {
            authorized: false,
            pending: HashMap::new(),
            next: 0,
            max_reply_bytes: usize::MAX,
        }
    }

    /// Whether `authorize` succeeded.
    pub fn is_authorized(&self) -> bool {
        self.authorized
    }

    /// Marks the session authorized; later requests are dispatched.
    pub fn set_authorized(&mut self) {
        self.authorized = true;
    }

    fn register(&mut self, message_id: String) -> CallId {
        self.next += 1;
        self.pending.insert(self.next, message_id);
        self.next
    }

    /// Decodes one frame and appends what it means to `out`.
    pub fn decode(&mut self, payload: &[u8], binary: bool, out: &mut Vec<Inbound>) {
        if binary {
            out.push(Inbound::Close(
                CLOSE_UNSUPPORTED_DATA,
                "Unsupported data".into(),
            ));
            return;
        }
        let value = match json::parse(payload) {
            Ok(value) => value,
            Err(err) if json::is_too_deep(&err) => {
                let id = match json::top_level_scalar(payload, "messageId") {
                    Some(Value::String(id)) if is_message_id(&id) => Some(self.register(id)),
                    _ => None,
                };
                out.push(Inbound::Packet(Packet::Invalid {
                    id,
                    error: ApiError::new(
                        FORMAT_ERROR,
                        format!(
                            "Message Format Error: nested more than {} levels deep",
                            json::MAX_DEPTH
                        ),
                    ),
                }));
                return;
            }
            Err(err) => {
                out.push(Inbound::Close(
                    CLOSE_UNSUPPORTED_DATA,
                    err.to_string().into(),
                ));
                return;
            }
        };
        let (message_id, kind, payload) = match validate(value) {
            Ok(parts) => parts,
            Err((id, message)) => {
                let id = id.map(|id| self.register(id));
                out.push(Inbound::Packet(Packet::Invalid {
                    id,
                    error: ApiError::new(FORMAT_ERROR, format!("Message Format Error: {message}")),
                }));
                return;
            }
        };
        if !self.authorized {
            if kind != AUTHORIZE {
                out.push(Inbound::Close(CLOSE_UNAUTHORIZED, "Unauthorized".into()));
                return;
            }
            let id = self.register(message_id);
            out.push(Inbound::Packet(Packet::Open {
                id,
                credentials: Credentials::Authorize(payload),
            }));
            return;
        }
        let packet = match kind.as_str() {
            // The original ignores a second `authorize`; it is answered here, so that the
            // client's request does not hang, with an error: a connection is authorized once.
            AUTHORIZE => Packet::Invalid {
                id: Some(self.register(message_id)),
                error: ApiError::new(ApiError::INVALID_ACTION, ALREADY_AUTHORIZED),
            },
            SUBSCRIBE | UNSUBSCRIBE | PUBLISH => {
                let id = self.register(message_id);
                channel_packet(&kind, id, payload)
            }
            _ => Packet::Call {
                id: Some(self.register(message_id)),
                route: kind,
                data: Some(payload),
            },
        };
        out.push(Inbound::Packet(packet));
    }

    /// Encodes the response to request `id`: `{messageId, payload}`, or an error envelope that
    /// echoes the request's `messageId`. An unknown id (already answered) encodes nothing.
    pub fn encode_reply(
        &mut self,
        id: CallId,
        result: Result<Option<&Value>, &ApiError>,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(message_id) = self.pending.remove(&id) else {
            return false;
        };
        let start = out.len();
        match result {
            Ok(payload) => write_json(
                out,
                &Response {
                    message_id: &message_id,
                    payload,
                },
            ),
            Err(error) => encode_error(error, &message_id, out),
        }
        let size = out.len() - start;
        if size > self.max_reply_bytes {
            out.truncate(start);
            let error = super::reply_too_large(size, self.max_reply_bytes);
            encode_error(&error, &message_id, out);
        }
        true
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl DialectSession for Session {
    fn start(options: &SessionOptions) -> Self {
        Self {
            max_reply_bytes: options.max_reply_bytes,
            ..Self::new()
        }
    }

    fn is_open(&self) -> bool {
        self.authorized
    }

    fn open(&mut self) {
        self.authorized = true;
    }

    fn decode(
        &mut self,
        _encoding: &Encoding,
        payload: &[u8],
        binary: bool,
        out: &mut Vec<Inbound>,
    ) {
        Self::decode(self, payload, binary, out);
    }

    fn encode(
        &mut self,
        encoding: &Encoding,
        message: &Outgoing<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError> {
        let written = match *message {
            Outgoing::Reply { id, result } => self.encode_reply(id, result, out),
            // The reply to `authorize` carries the claims the connection is authorized with.
            Outgoing::Opened { id, opened } => {
                let claims = opened.claims.cloned().map(Value::Object);
                self.encode_reply(id, Ok(claims.as_ref()), out)
            }
            _ => return Self::encode_push(encoding, message, out),
        };
        Ok(written.then_some(FrameKind::Text))
    }

    fn encode_push(
        _encoding: &Encoding,
        message: &Outgoing<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError> {
        let id = new_message_id();
        match *message {
            Outgoing::Reply { .. } | Outgoing::Opened { .. } => {
                return Err(EncodeError::NeedsSession)
            }
            // CTProto clients answer no requests of the server's.
            Outgoing::Event { cid: Some(_), .. } => return Err(EncodeError::Unsupported),
            Outgoing::Event {
                name,
                data,
                cid: None,
            } => encode_push(name, data, &id, out),
            Outgoing::Publication { channel, data } => encode_publication(channel, data, &id, out),
            Outgoing::TokenSet { token } => encode_push(
                "#setAuthToken",
                Some(&serde_json::json!({ "token": token })),
                &id,
                out,
            ),
            Outgoing::TokenRemoved => encode_push("#removeAuthToken", None, &id, out),
            Outgoing::KickOut { channel, message } => encode_push(
                "#kickOut",
                Some(&serde_json::json!({ "channel": channel, "message": message })),
                &id,
                out,
            ),
            Outgoing::Error(error) => encode_error(error, &id, out),
        }
        Ok(Some(FrameKind::Text))
    }

    fn opening_timeout(&self) -> (u16, &'static str) {
        (CLOSE_AUTHORIZATION_REQUIRED, "Authorization required")
    }

    // CTProto has no heartbeat of its own: WebSocket pings, and 4001 after silence, are the
    // trait's defaults.

    /// A refused `authorize` is only the close reason; no reply is sent.
    fn opening_refused(&self, error: &ApiError) -> Refusal {
        Refusal {
            code: CLOSE_UNAUTHORIZED,
            reason: format!("Authorization failed: {}", error.message),
            reply: false,
        }
    }
}

/// Checks the envelope as the original validator does, in the same order; on failure returns
/// the request's message id if it has a valid one, and the original's message text.
fn validate(value: Value) -> Result<(String, String, Value), (Option<String>, String)> {
    let Value::Object(mut fields) = value else {
        return Err((None, "message should be a JSON object".to_owned()));
    };
    let valid_id = match fields.get("messageId") {
        Some(Value::String(id)) if is_message_id(id) => Some(id.clone()),
        _ => None,
    };
    let fail = |message: &str| Err((valid_id.clone(), message.to_owned()));
    for name in ["messageId", "type", "payload"] {
        if !fields.contains_key(name) {
            return fail(&format!("'{name}' field missed"));
        }
    }
    let Some(Value::String(message_id)) = fields.remove("messageId") else {
        return fail("'messageId' should be a string");
    };
    let Some(Value::String(kind)) = fields.remove("type") else {
        return fail("'type' should be a string");
    };
    // The original accepts anything `typeof` calls an object: objects, arrays and null.
    let Some(payload @ (Value::Object(_) | Value::Array(_) | Value::Null)) =
        fields.remove("payload")
    else {
        return fail("'payload' should be an object");
    };
    if !is_message_id(&message_id) {
        return Err((None, "Invalid message id".to_owned()));
    }
    Ok((message_id, kind, payload))
}

fn channel_packet(kind: &str, id: CallId, payload: Value) -> Packet {
    let mut fields = match payload {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    let Some(Value::String(channel)) = fields.remove("channel") else {
        let what = match kind {
            SUBSCRIBE => "Subscribe",
            UNSUBSCRIBE => "Unsubscribe",
            _ => "Publish",
        };
        return Packet::Invalid {
            id: Some(id),
            error: ApiError::new(
                ApiError::INVALID_ACTION,
                format!("{what} channel name was malformatted"),
            ),
        };
    };
    let data = fields.remove("data");
    match kind {
        SUBSCRIBE => Packet::Subscribe {
            id: Some(id),
            channel,
            data,
        },
        UNSUBSCRIBE => Packet::Unsubscribe {
            id: Some(id),
            channel,
        },
        _ => Packet::Publish {
            id: Some(id),
            channel,
            data,
        },
    }
}

/// `{messageId, payload}` (the payload left out when there is none).
struct Response<'a> {
    message_id: &'a str,
    payload: Option<&'a Value>,
}

impl Serialize for Response<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("messageId", self.message_id)?;
        if let Some(payload) = self.payload {
            map.serialize_entry("payload", payload)?;
        }
        map.end()
    }
}

/// `{type, payload, messageId}`: a server push or an error envelope.
struct NewMessage<'a, P: Serialize> {
    kind: &'a str,
    payload: Option<&'a P>,
    message_id: &'a str,
}

impl<P: Serialize> Serialize for NewMessage<'_, P> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.kind)?;
        if let Some(payload) = self.payload {
            map.serialize_entry("payload", payload)?;
        }
        map.serialize_entry("messageId", self.message_id)?;
        map.end()
    }
}

/// The payload of an error envelope: the original's `error` text, then the stable `name` and
/// any extra fields of the error.
struct ErrorPayload<'a>(&'a ApiError);

impl Serialize for ErrorPayload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("error", &self.0.message)?;
        map.serialize_entry("name", &self.0.name)?;
        for (key, value) in &self.0.extra {
            if key != "error" && key != "name" {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    // Serialising these shapes into memory cannot fail: every key is a string.
    let _ = serde_json::to_writer(out, value);
}

/// Encodes an error envelope with the given message id.
pub fn encode_error(error: &ApiError, message_id: &str, out: &mut Vec<u8>) {
    write_json(
        out,
        &NewMessage {
            kind: ERROR_TYPE,
            payload: Some(&ErrorPayload(error)),
            message_id,
        },
    );
}

/// Encodes a server push `{type, payload, messageId}`.
pub fn encode_push(kind: &str, payload: Option<&Value>, message_id: &str, out: &mut Vec<u8>) {
    write_json(
        out,
        &NewMessage {
            kind,
            payload: payload.map(Wire).as_ref(),
            message_id,
        },
    );
}

/// Encodes a delivered publication: `{type:"#publish", payload:{channel, data}, messageId}`.
pub fn encode_publication(
    channel: &str,
    data: Option<&Value>,
    message_id: &str,
    out: &mut Vec<u8>,
) {
    let mut body = Map::with_capacity(2);
    body.insert("channel".to_owned(), Value::String(channel.to_owned()));
    if let Some(data) = data {
        body.insert("data".to_owned(), data.clone());
    }
    encode_push(PUBLISH, Some(&Value::Object(body)), message_id, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(session: &mut Session, frame: &str) -> Vec<Inbound> {
        let mut out = Vec::new();
        session.decode(frame.as_bytes(), false, &mut out);
        out
    }

    fn authorized() -> Session {
        let mut session = Session::new();
        session.set_authorized();
        session
    }

    fn format_error(id: Option<CallId>, message: &str) -> Vec<Inbound> {
        vec![Inbound::Packet(Packet::Invalid {
            id,
            error: ApiError::new(FORMAT_ERROR, format!("Message Format Error: {message}")),
        })]
    }

    #[test]
    fn the_first_message_must_be_authorize() {
        let mut session = Session::new();
        assert_eq!(
            decode(
                &mut session,
                r#"{"type":"authorize","payload":{"token":"t"},"messageId":"abcdeABCDE"}"#
            ),
            [Inbound::Packet(Packet::Open {
                id: 1,
                credentials: Credentials::Authorize(json!({"token": "t"}))
            })]
        );
        let mut session = Session::new();
        assert_eq!(
            decode(
                &mut session,
                r#"{"type":"sum","payload":{},"messageId":"abcdeABCDE"}"#
            ),
            [Inbound::Close(1008, "Unauthorized".into())]
        );
    }

    #[test]
    fn binary_frames_and_invalid_json_close_1003() {
        let mut session = Session::new();
        let mut out = Vec::new();
        session.decode(b"{}", true, &mut out);
        assert_eq!(out, [Inbound::Close(1003, "Unsupported data".into())]);
        let out = decode(&mut session, "not json");
        assert!(matches!(&out[..], [Inbound::Close(1003, reason)] if reason.contains("expected")));
    }

    #[test]
    fn too_deep_payloads_are_format_errors_answered_by_message_id() {
        let mut session = authorized();
        let deep = format!("{}1{}", r#"{"a":"#.repeat(1000), "}".repeat(1000));
        let frame = format!(r#"{{"messageId":"abcdeABCDE","type":"echo","payload":{deep}}}"#);
        let expected = "nested more than 128 levels deep";
        let out = decode(&mut session, &frame);
        assert!(
            matches!(&out[..], [Inbound::Packet(Packet::Invalid { id: Some(_), error })]
                if error.name == FORMAT_ERROR && error.message.ends_with(expected)),
            "{out:?}"
        );
        let frame = format!(r#"{{"type":"echo","payload":{deep},"messageId":"bad"}}"#);
        let out = decode(&mut session, &frame);
        assert!(
            matches!(
                &out[..],
                [Inbound::Packet(Packet::Invalid { id: None, .. })]
            ),
            "{out:?}"
        );
    }

    #[test]
    fn format_errors_follow_the_original_order_and_texts() {
        let mut session = Session::new();
        assert_eq!(
            decode(&mut session, r#"{"type":"a","payload":{}}"#),
            format_error(None, "'messageId' field missed")
        );
        assert_eq!(
            decode(&mut session, r#"{"messageId":"abcdeABCDE","payload":{}}"#),
            format_error(Some(1), "'type' field missed")
        );
        assert_eq!(
            decode(&mut session, r#"{"messageId":"abcdeABCDE","type":"a"}"#),
            format_error(Some(2), "'payload' field missed")
        );
        assert_eq!(
            decode(&mut session, r#"{"messageId":5,"type":"a","payload":{}}"#),
            format_error(None, "'messageId' should be a string")
        );
        assert_eq!(
            decode(
                &mut session,
                r#"{"messageId":"abcdeABCDE","type":7,"payload":{}}"#
            ),
            format_error(Some(3), "'type' should be a string")
        );
        assert_eq!(
            decode(
                &mut session,
                r#"{"messageId":"abcdeABCDE","type":"a","payload":"x"}"#
            ),
            format_error(Some(4), "'payload' should be an object")
        );
        assert_eq!(
            decode(
                &mut session,
                r#"{"messageId":"short","type":"a","payload":{}}"#
            ),
            format_error(None, "Invalid message id")
        );
        assert_eq!(
            decode(
                &mut session,
                r#"{"messageId":"abcde ABCD","type":"a","payload":{}}"#
            ),
            format_error(None, "Invalid message id")
        );
        assert_eq!(
            decode(&mut session, "null"),
            format_error(None, "message should be a JSON object")
        );
        // Format errors do not authorize anything and do not close.
        assert!(!session.is_authorized());
    }

    #[test]
    fn requests_after_authorization_are_calls_or_channel_operations() {
        let mut session = authorized();
        assert_eq!(
            decode(
                &mut session,
                r#"{"type":"sum","payload":{"a":1},"messageId":"abcdeABCDE","extra":1}"#
            ),
            [Inbound::Packet(Packet::Call {
                id: Some(1),
                route: "sum".into(),
                data: Some(json!({"a": 1}))
            })]
        );
        // null and arrays pass as payloads, as in the original.
        assert_eq!(
            decode(
                &mut session,
                r#"{"type":"echo","payload":null,"messageId":"0123456789"}"#
            ),
            [Inbound::Packet(Packet::Call {
                id: Some(2),
                route: "echo".into(),
                data: Some(Value::Null)
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"type":"#subscribe","payload":{"channel":"news"},"messageId":"0123456789"}"##
            ),
            [Inbound::Packet(Packet::Subscribe {
                id: Some(3),
                channel: "news".into(),
                data: None
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"type":"#publish","payload":{"channel":"news","data":[1]},"messageId":"0123456789"}"##
            ),
            [Inbound::Packet(Packet::Publish {
                id: Some(4),
                channel: "news".into(),
                data: Some(json!([1]))
            })]
        );
        assert_eq!(
            decode(
                &mut session,
                r##"{"type":"#unsubscribe","payload":{"channel":"news"},"messageId":"0123456789"}"##
            ),
            [Inbound::Packet(Packet::Unsubscribe {
                id: Some(5),
                channel: "news".into()
            })]
        );
        assert!(matches!(
            &decode(&mut session, r##"{"type":"#subscribe","payload":{},"messageId":"0123456789"}"##)[..],
            [Inbound::Packet(Packet::Invalid { id: Some(6), error })] if error.message == "Subscribe channel name was malformatted"
        ));
    }

    #[test]
    fn a_second_authorize_is_answered_with_an_error() {
        let mut session = authorized();
        let out = decode(
            &mut session,
            r#"{"type":"authorize","payload":{"token":"t"},"messageId":"0123456789"}"#,
        );
        assert_eq!(
            out,
            [Inbound::Packet(Packet::Invalid {
                id: Some(1),
                error: ApiError::new("InvalidActionError", "The connection is already authorized")
            })]
        );
        let mut frame = Vec::new();
        assert!(session.encode_reply(
            1,
            Err(&ApiError::new("InvalidActionError", ALREADY_AUTHORIZED)),
            &mut frame
        ));
        assert_eq!(
            String::from_utf8(frame).unwrap(),
            r#"{"type":"error","payload":{"error":"The connection is already authorized","name":"InvalidActionError"},"messageId":"0123456789"}"#
        );
        assert!(session.is_authorized());
    }

    #[test]
    fn lone_surrogate_escapes_are_read_as_replacement_characters() {
        let mut session = authorized();
        assert_eq!(
            decode(
                &mut session,
                r#"{"type":"echo","payload":{"s":"a\ud800b\udc00"},"messageId":"0123456789"}"#
            ),
            [Inbound::Packet(Packet::Call {
                id: Some(1),
                route: "echo".into(),
                data: Some(json!({"s": "a\u{fffd}b\u{fffd}"}))
            })]
        );
    }

    #[test]
    fn replies_echo_the_request_id() {
        let mut session = authorized();
        decode(
            &mut session,
            r#"{"type":"sum","payload":{"a":1},"messageId":"abcdeABCDE"}"#,
        );
        let mut out = Vec::new();
        assert!(session.encode_reply(1, Ok(Some(&json!({"sum": 3}))), &mut out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"messageId":"abcdeABCDE","payload":{"sum":3}}"#
        );
        // Each id is answered once.
        assert!(!session.encode_reply(1, Ok(None), &mut Vec::new()));

        decode(
            &mut session,
            r#"{"type":"boom","payload":{},"messageId":"zzzzzzzzzz"}"#,
        );
        let mut out = Vec::new();
        let err = ApiError::new("NotFound", "Unknown procedure 'boom'").with("code", 404);
        session.encode_reply(2, Err(&err), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"error","payload":{"error":"Unknown procedure 'boom'","name":"NotFound","code":404},"messageId":"zzzzzzzzzz"}"#
        );
    }

    #[test]
    fn pushes_and_publications_carry_fresh_ids() {
        let mut out = Vec::new();
        encode_push("ws-updated", Some(&json!({"n": 1})), "lFgy3rxrIt", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"ws-updated","payload":{"n":1},"messageId":"lFgy3rxrIt"}"#
        );
        let mut out = Vec::new();
        encode_publication("news", Some(&json!("hi")), "0123456789", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r##"{"type":"#publish","payload":{"channel":"news","data":"hi"},"messageId":"0123456789"}"##
        );
        let id = new_message_id();
        assert!(is_message_id(&id));
        assert_ne!(id, new_message_id());
        let mut out = Vec::new();
        encode_error(
            &ApiError::new(FORMAT_ERROR, "Message Format Error: 'payload' field missed"),
            "0123456789",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"error","payload":{"error":"Message Format Error: 'payload' field missed","name":"MessageFormatError"},"messageId":"0123456789"}"#
        );
    }
}
