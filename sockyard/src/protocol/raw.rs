//! The raw dialect: plain WebSocket messages with no envelope, for devices and scripts that speak
//! bare WebSocket. Pure: no IO, literal-frame tests.
//!
//! - Every text or binary message is a call of the endpoint's `route`, with the message as its
//!   data: text as a JSON string, binary as `{"$binary":"<base64>"}` ([`BINARY_KEY`]).
//! - A reply goes back as one message, in the frame type its data calls for: a string as a text
//!   frame of that string, `{"$binary":…}` as a binary frame of those bytes, any other JSON value
//!   as a text frame of its JSON; so an echo answers text with text and binary with binary,
//!   unchanged. A result without data sends nothing. An error reply is a text frame of the
//!   error's JSON (`{"name","message",…}`).
//! - Pushes (server events) and publications are sent the same way as a reply's data; token
//!   changes and kick-outs have no raw form and are not sent; an event that expects an answer
//!   cannot be carried.
//! - There is no opening exchange: the session is open from the start, and the connection pings
//!   with WebSocket pings.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{
    CallId, DialectSession, EncodeError, Inbound, Outgoing, Packet, Refusal, SessionOptions,
};
use crate::codec::json::{binary_text, BINARY_KEY};
use crate::codec::{CodecError, Encoding, FrameKind};
use crate::error::ApiError;

/// Close code for a message that cannot be served: the endpoint has no route to call.
pub const CLOSE_NO_ROUTE: u16 = 1011;
/// Close code for a text message that is not UTF-8.
pub const CLOSE_INVALID_TEXT: u16 = 1007;
/// Close code for a refused opening; a raw session never has one.
pub const CLOSE_POLICY: u16 = 1008;

/// Per-connection dialect state: the route every message calls, the id of the last call and
/// the largest reply.
#[derive(Debug)]
pub struct Session {
    route: Option<String>,
    last: CallId,
    max_reply_bytes: usize,
}

impl Session {
    /// A session whose messages call `route` (`None`: every message closes the connection
    /// with [`CLOSE_NO_ROUTE`]), with no limit on replies.
    pub fn new(route: Option<String>) -> Self {
        Self {
            route,
            last: 0,
            max_reply_bytes: usize::MAX,
        }
    }

    /// Encodes a reply; one over the size limit is replaced by the `ReplyTooLarge` error.
    fn encode_reply(
        &self,
        result: Result<Option<&Value>, &ApiError>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError> {
        let start = out.len();
        let kind = write_result(result, out)?;
        let size = out.len() - start;
        if size <= self.max_reply_bytes {
            return Ok(kind);
        }
        out.truncate(start);
        let error = super::reply_too_large(size, self.max_reply_bytes);
        write_result(Err(&error), out)
    }
}

/// The data a message stands for: text as a JSON string, binary as `{"$binary":"<base64>"}`;
/// `None` for text that is not UTF-8.
pub fn message_data(payload: &[u8], binary: bool) -> Option<Value> {
    if binary {
        let text = base64::engine::general_purpose::STANDARD.encode(payload);
        let mut map = Map::with_capacity(1);
        map.insert(BINARY_KEY.to_owned(), Value::String(text));
        return Some(Value::Object(map));
    }
    String::from_utf8(payload.to_vec()).ok().map(Value::String)
}

/// Writes `data` as one message's payload and says which frame carries it: a string as its
/// text, `{"$binary":…}` as its bytes (binary), anything else as JSON text.
pub fn write_message(data: &Value, out: &mut Vec<u8>) -> Result<FrameKind, EncodeError> {
    match data {
        Value::String(text) => {
            out.extend_from_slice(text.as_bytes());
            Ok(FrameKind::Text)
        }
        Value::Object(map) => match binary_text(map) {
            Some(text) => {
                base64::engine::general_purpose::STANDARD
                    .decode_vec(text, out)
                    .map_err(|err| {
                        CodecError::Encode(format!("invalid {BINARY_KEY} data: {err}"))
                    })?;
                Ok(FrameKind::Binary)
            }
            None => write_json(data, out),
        },
        other => write_json(other, out),
    }
}

fn write_json<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<FrameKind, EncodeError> {
    serde_json::to_writer(out, value).map_err(|err| CodecError::Encode(err.to_string()))?;
    Ok(FrameKind::Text)
}

/// A result: its data as a message (nothing without data), or the error's JSON as text.
fn write_result(
    result: Result<Option<&Value>, &ApiError>,
    out: &mut Vec<u8>,
) -> Result<Option<FrameKind>, EncodeError> {
    match result {
        Ok(Some(data)) => write_message(data, out).map(Some),
        Ok(None) => Ok(None),
        Err(error) => write_json(error, out).map(Some),
    }
}

impl DialectSession for Session {
    fn start(options: &SessionOptions) -> Self {
        Self {
            max_reply_bytes: options.max_reply_bytes,
            ..Self::new(options.route.clone())
        }
    }

    /// Always: a raw session has no opening exchange.
    fn is_open(&self) -> bool {
        true
    }

    fn open(&mut self) {}

    /// Each message is a call of the route.
    fn decode(
        &mut self,
        _encoding: &Encoding,
        payload: &[u8],
        binary: bool,
        out: &mut Vec<Inbound>,
    ) {
        let Some(route) = &self.route else {
            out.push(Inbound::Close(
                CLOSE_NO_ROUTE,
                "the endpoint has no route".into(),
            ));
            return;
        };
        let Some(data) = message_data(payload, binary) else {
            out.push(Inbound::Close(
                CLOSE_INVALID_TEXT,
                "text message is not valid UTF-8".into(),
            ));
            return;
        };
        self.last += 1;
        out.push(Inbound::Packet(Packet::Call {
            id: Some(self.last),
            route: route.clone(),
            data: Some(data),
        }));
    }

    fn encode(
        &mut self,
        encoding: &Encoding,
        message: &Outgoing<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError> {
        match *message {
            // Calls are answered one at a time, in order: the reply needs no id on the wire.
            Outgoing::Reply { result, .. } => self.encode_reply(result, out),
            // Never asked for: there is no opening exchange.
            Outgoing::Opened { .. } => Ok(None),
            _ => Self::encode_push(encoding, message, out),
        }
    }

    fn encode_push(
        _encoding: &Encoding,
        message: &Outgoing<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, EncodeError> {
        match *message {
            Outgoing::Reply { .. } | Outgoing::Opened { .. } => Err(EncodeError::NeedsSession),
            // A raw client has no way to answer the server's invokes.
            Outgoing::Event { cid: Some(_), .. } => Err(EncodeError::Unsupported),
            Outgoing::Event { data, .. } | Outgoing::Publication { data, .. } => {
                write_result(Ok(data), out)
            }
            Outgoing::TokenSet { .. } | Outgoing::TokenRemoved | Outgoing::KickOut { .. } => {
                Ok(None)
            }
            Outgoing::Error(error) => write_result(Err(error), out),
        }
    }

    // Pings and the pong timeout are the defaults: WebSocket pings, 4001 after silence.

    /// Never used: the connection arms no opening deadline for a session open from the start.
    fn opening_timeout(&self) -> (u16, &'static str) {
        (CLOSE_POLICY, "Opening timed out")
    }

    /// Never used: a raw session has no opening to refuse.
    fn opening_refused(&self, error: &ApiError) -> Refusal {
        Refusal {
            code: CLOSE_POLICY,
            reason: error.message.clone(),
            reply: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Dialect, Format};
    use serde_json::json;

    fn echo_session() -> Session {
        Session::start(&SessionOptions {
            route: Some("echo".to_owned()),
            ..SessionOptions::default()
        })
    }

    fn decode(session: &mut Session, payload: &[u8], binary: bool) -> Vec<Inbound> {
        let mut out = Vec::new();
        DialectSession::decode(session, &Encoding::Json, payload, binary, &mut out);
        out
    }

    fn call(id: CallId, data: Value) -> Inbound {
        Inbound::Packet(Packet::Call {
            id: Some(id),
            route: "echo".to_owned(),
            data: Some(data),
        })
    }

    /// The reply to call 1 as one complete server frame.
    fn reply_frame(result: Result<Option<&Value>, &ApiError>) -> Vec<u8> {
        let mut session = echo_session();
        let mut payload = Vec::new();
        let message = Outgoing::Reply { id: 1, result };
        let Some(kind) = session
            .encode(&Encoding::Json, &message, &mut payload)
            .unwrap()
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        crate::protocol::write_data_frame(&mut out, kind, &payload);
        out
    }

    #[test]
    fn every_message_calls_the_route_with_text_as_a_string_and_binary_as_base64() {
        let mut session = echo_session();
        assert!(session.is_open());
        assert_eq!(
            decode(&mut session, b"hello", false),
            [call(1, json!("hello"))]
        );
        assert_eq!(
            decode(&mut session, b"{\"not\":\"parsed\"}", false),
            [call(2, json!("{\"not\":\"parsed\"}"))]
        );
        assert_eq!(
            decode(&mut session, &[0, 1, 0xFF], true),
            [call(3, json!({"$binary": "AAH/"}))]
        );
        assert_eq!(decode(&mut session, b"", false), [call(4, json!(""))]);
        assert_eq!(
            decode(&mut session, b"", true),
            [call(5, json!({"$binary": ""}))]
        );
    }

    #[test]
    fn text_that_is_not_utf8_and_a_missing_route_close() {
        let mut session = echo_session();
        assert_eq!(
            decode(&mut session, &[0xC3, 0x28], false),
            [Inbound::Close(
                1007,
                "text message is not valid UTF-8".into()
            )]
        );
        let mut session = Session::start(&SessionOptions::default());
        assert_eq!(
            decode(&mut session, b"hi", false),
            [Inbound::Close(1011, "the endpoint has no route".into())]
        );
    }

    #[test]
    fn replies_go_back_in_the_frame_type_their_data_calls_for() {
        // A string: a text frame of the string itself.
        assert_eq!(reply_frame(Ok(Some(&json!("hi")))), b"\x81\x02hi");
        assert_eq!(reply_frame(Ok(Some(&json!("")))), b"\x81\x00");
        // `$binary`: a binary frame of the bytes.
        assert_eq!(
            reply_frame(Ok(Some(&json!({"$binary": "AAH/"})))),
            b"\x82\x03\x00\x01\xFF"
        );
        assert_eq!(reply_frame(Ok(Some(&json!({"$binary": ""})))), b"\x82\x00");
        // Any other JSON: text of its JSON.
        assert_eq!(
            reply_frame(Ok(Some(&json!({"a": [1, null]})))),
            b"\x81\x0e{\"a\":[1,null]}"
        );
        assert_eq!(reply_frame(Ok(Some(&json!(42)))), b"\x81\x0242");
        // No data: nothing.
        assert_eq!(reply_frame(Ok(None)), b"");
        // An error: text of the error's JSON.
        let error = ApiError::new("NotFound", "gone");
        assert_eq!(
            reply_frame(Err(&error)),
            b"\x81\x24{\"name\":\"NotFound\",\"message\":\"gone\"}"
        );
    }

    #[test]
    fn an_echo_sends_back_exactly_what_came() {
        let mut session = echo_session();
        let large: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        for (payload, binary) in [
            (&b"caf\xC3\xA9"[..], false),
            (&large[..], true),
            (&[][..], true),
        ] {
            let [Inbound::Packet(Packet::Call { id, data, .. })] =
                &decode(&mut session, payload, binary)[..]
            else {
                panic!("one call expected");
            };
            let mut out = Vec::new();
            let message = Outgoing::Reply {
                id: id.expect("an invoke"),
                result: Ok(data.as_ref()),
            };
            let kind = session.encode(&Encoding::Json, &message, &mut out).unwrap();
            let expected = if binary {
                FrameKind::Binary
            } else {
                FrameKind::Text
            };
            assert_eq!(kind, Some(expected));
            assert_eq!(out, payload);
        }
    }

    #[test]
    fn a_reply_over_the_size_limit_is_the_reply_too_large_error() {
        let mut session = Session::start(&SessionOptions {
            route: Some("echo".to_owned()),
            max_reply_bytes: 4,
            ..SessionOptions::default()
        });
        let mut encode = |data: Value| {
            let mut out = Vec::new();
            let message = Outgoing::Reply {
                id: 1,
                result: Ok(Some(&data)),
            };
            let kind = session.encode(&Encoding::Json, &message, &mut out).unwrap();
            (kind, String::from_utf8_lossy(&out).into_owned())
        };
        assert_eq!(
            encode(json!("four")),
            (Some(FrameKind::Text), "four".into())
        );
        assert_eq!(
            encode(json!({"$binary": "AAECAwQ="})),
            (
                Some(FrameKind::Text),
                r#"{"name":"ReplyTooLarge","message":"The reply is 5 bytes, over the limit of 4","limit":4}"#
                    .into()
            )
        );
    }

    #[test]
    fn a_binary_reply_that_is_not_base64_is_an_encoding_error() {
        let mut session = echo_session();
        let data = json!({"$binary": "not base64!"});
        let message = Outgoing::Reply {
            id: 1,
            result: Ok(Some(&data)),
        };
        assert!(matches!(
            session.encode(&Encoding::Json, &message, &mut Vec::new()),
            Err(EncodeError::Codec(_))
        ));
    }

    #[test]
    fn pushes_and_publications_are_their_data_and_the_rest_is_not_sent() {
        let raw = Format {
            dialect: Dialect::Raw,
            encoding: Encoding::Json,
        };
        let frame = |message: Outgoing<'_>| raw.encode_frame(&message).unwrap();
        let text = json!("news");
        let bytes = json!({"$binary": "AQI="});
        assert_eq!(
            frame(Outgoing::Publication {
                channel: "c",
                data: Some(&text)
            })
            .as_deref(),
            Some(&b"\x81\x04news"[..])
        );
        assert_eq!(
            frame(Outgoing::Event {
                name: "serverEvent",
                data: Some(&bytes),
                cid: None
            })
            .as_deref(),
            Some(&b"\x82\x02\x01\x02"[..])
        );
        let object = json!({"n": 1});
        assert_eq!(
            frame(Outgoing::Publication {
                channel: "c",
                data: Some(&object)
            })
            .as_deref(),
            Some(&b"\x81\x07{\"n\":1}"[..])
        );
        assert_eq!(
            frame(Outgoing::Publication {
                channel: "c",
                data: None
            }),
            None
        );
        assert_eq!(frame(Outgoing::TokenSet { token: "t" }), None);
        assert_eq!(frame(Outgoing::TokenRemoved), None);
        assert_eq!(
            frame(Outgoing::KickOut {
                channel: "c",
                message: "m"
            }),
            None
        );
        let error = ApiError::new("E", "m");
        assert_eq!(
            frame(Outgoing::Error(&error)).as_deref(),
            Some(&b"\x81\x1a{\"name\":\"E\",\"message\":\"m\"}"[..])
        );
        let invoke = Outgoing::Event {
            name: "q",
            data: None,
            cid: Some(1),
        };
        assert!(matches!(
            raw.encode_frame(&invoke),
            Err(EncodeError::Unsupported)
        ));
        assert!(matches!(
            raw.encode_frame(&Outgoing::Reply {
                id: 1,
                result: Ok(None)
            }),
            Err(EncodeError::NeedsSession)
        ));
    }

    #[test]
    fn pings_are_websocket_pings() {
        let session = echo_session();
        let mut out = Vec::new();
        assert_eq!(session.write_pings(&Encoding::Json, &mut out), 0);
        assert_eq!(out, b"\x89\x00");
        assert_eq!(session.pong_timeout(), (4001, "Client pong timed out"));
    }
}
