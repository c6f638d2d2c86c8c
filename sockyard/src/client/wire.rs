//! SocketCluster frames as the client writes and reads them; the one place where the
//! SocketCluster client uses the protocol and codec layers.

use std::time::Duration;

use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::ClientError;
use crate::codec::{CodecState, Decoded, FrameKind};
use crate::error::ApiError;
use crate::protocol::socketcluster::{self, Session};
use crate::protocol::{Inbound, Packet};

pub(super) use crate::codec::Encoding;
pub(super) use crate::protocol::socketcluster::ProtocolVersion;
pub(super) use crate::protocol::CallId;

/// Something the server sent, in the terms the client acts on.
#[derive(Debug, PartialEq)]
pub(super) enum FromServer {
    /// The reply to the client's call `id`.
    Reply {
        /// The call answered.
        id: CallId,
        /// The reply's data or error.
        result: Result<Option<Value>, ApiError>,
    },
    /// The server invoked a procedure and waits for the answer to call `id`.
    Invoke {
        /// The call to answer.
        id: CallId,
        /// Procedure name.
        event: String,
        /// Call data.
        data: Option<Value>,
    },
    /// The server transmitted an event.
    Transmit {
        /// Event name.
        event: String,
        /// Event data.
        data: Option<Value>,
    },
    /// A publication on a channel.
    Publication {
        /// The channel.
        channel: String,
        /// The published data.
        data: Option<Value>,
    },
    /// The server dropped the client's auth token (`#removeAuthToken`).
    Deauthenticate,
}

/// What one data frame from the server was.
#[derive(Debug, PartialEq)]
pub(super) enum Frame {
    /// A ping; send this pong back.
    Ping(WsMessage),
    /// Messages, in order (none for a frame the client has no use for).
    Messages(Vec<FromServer>),
}

/// What the server's handshake reply says.
#[derive(Debug, PartialEq)]
pub(super) struct HandshakeReply {
    /// The socket id the server assigned.
    pub(super) id: String,
    /// Whether the server accepted the auth token.
    pub(super) is_authenticated: bool,
    /// The server's `pingTimeout`, if it named one.
    pub(super) ping_timeout: Option<Duration>,
}

/// The client's side of the protocol, kept across reconnections.
#[derive(Debug)]
pub(super) struct Wire {
    session: Session,
    version: ProtocolVersion,
    encoding: Encoding,
}

impl Wire {
    /// The protocol state for `version` over `encoding`. The session counts as handshaken from
    /// the start: handshake replies are read apart, by [`Wire::handshake_reply`].
    pub(super) fn new(version: ProtocolVersion, encoding: Encoding) -> Self {
        let mut session = Session::new(version);
        session.set_handshaken();
        Self {
            session,
            version,
            encoding,
        }
    }

    /// The `#handshake` call `cid`, offering `token`.
    pub(super) fn handshake(
        &self,
        cid: CallId,
        token: Option<String>,
    ) -> Result<WsMessage, ClientError> {
        let data = serde_json::json!({ "authToken": token });
        self.event("#handshake", Some(&data), Some(cid))
    }

    /// The answer to handshake call `cid`, if `payload` is that answer.
    pub(super) fn handshake_reply(
        &self,
        payload: &[u8],
        binary: bool,
        cid: CallId,
    ) -> Option<Result<HandshakeReply, ClientError>> {
        let decoded = self
            .encoding
            .decode(payload, binary, &mut CodecState::default());
        let Decoded::Packets(packets) = decoded else {
            return None;
        };
        let Some(Value::Object(mut reply)) = packets.into_iter().next() else {
            return None;
        };
        if reply.get("rid").and_then(Value::as_u64) != Some(cid) {
            return None;
        }
        if let Some(error) = reply.remove("error").filter(|e| !e.is_null()) {
            let error = ApiError::from_value(error).to_string();
            return Some(Err(ClientError::Handshake(error)));
        }
        let data = reply.remove("data").unwrap_or(Value::Null);
        let id = data
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let is_authenticated = data
            .get("isAuthenticated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let ping_timeout = data
            .get("pingTimeout")
            .and_then(Value::as_u64)
            .map(Duration::from_millis);
        Some(Ok(HandshakeReply {
            id,
            is_authenticated,
            ping_timeout,
        }))
    }

    /// An event: an invoke when `cid` is set, else a transmit.
    pub(super) fn event(
        &self,
        event: &str,
        data: Option<&Value>,
        cid: Option<CallId>,
    ) -> Result<WsMessage, ClientError> {
        let mut out = Vec::new();
        let kind = socketcluster::encode_event(&self.encoding, event, data, cid, &mut out)
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        to_message(kind, out)
    }

    /// The answer to the server's call `rid`.
    pub(super) fn reply(
        &mut self,
        rid: CallId,
        result: &Result<Option<Value>, ApiError>,
    ) -> Result<WsMessage, ClientError> {
        let mut out = Vec::new();
        let result = result.as_ref().map(Option::as_ref);
        let kind = self
            .session
            .encode_reply(&self.encoding, rid, result, &mut out)
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        to_message(kind, out)
    }

    /// Reads one data frame from the server.
    pub(super) fn read(&mut self, payload: &[u8], binary: bool) -> Frame {
        if !binary && payload.is_empty() && self.version != ProtocolVersion::V1 {
            return Frame::Ping(WsMessage::text(""));
        }
        if self.version != ProtocolVersion::V2 {
            let (kind, ping) = self.encoding.v1_ping();
            if payload == ping.as_slice() && binary == (kind == FrameKind::Binary) {
                let (kind, pong) = self.encoding.v1_pong();
                return to_message(kind, pong).map_or(Frame::Messages(Vec::new()), Frame::Ping);
            }
        }
        let mut items = Vec::new();
        self.session
            .decode(&self.encoding, payload, binary, &mut items);
        let messages = items.into_iter().filter_map(|item| match item {
            Inbound::Packet(packet) => from_server(packet),
            Inbound::Pong | Inbound::Close(..) => None,
        });
        Frame::Messages(messages.collect())
    }
}

/// What a decoded packet means to the client, if anything.
fn from_server(packet: Packet) -> Option<FromServer> {
    Some(match packet {
        Packet::Reply { id, result } => FromServer::Reply { id, result },
        Packet::Call {
            id: Some(id),
            route,
            data,
        } => FromServer::Invoke {
            id,
            event: route,
            data,
        },
        Packet::Call {
            id: None,
            route,
            data,
        } => FromServer::Transmit { event: route, data },
        Packet::Publish { channel, data, .. } => FromServer::Publication { channel, data },
        Packet::Deauthenticate => FromServer::Deauthenticate,
        Packet::Open { .. }
        | Packet::Api { .. }
        | Packet::Disconnect { .. }
        | Packet::Raw(_)
        | Packet::Subscribe { .. }
        | Packet::Unsubscribe { .. }
        | Packet::Authenticate { .. }
        | Packet::Invalid { .. } => return None,
    })
}

fn to_message(kind: FrameKind, payload: Vec<u8>) -> Result<WsMessage, ClientError> {
    match kind {
        FrameKind::Binary => Ok(WsMessage::binary(payload)),
        FrameKind::Text => String::from_utf8(payload)
            .map(WsMessage::text)
            .map_err(|e| ClientError::Encode(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_wire(version: ProtocolVersion) -> Wire {
        Wire::new(version, Encoding::Json)
    }

    fn read_text(wire: &mut Wire, text: &str) -> Frame {
        wire.read(text.as_bytes(), false)
    }

    fn text_of(message: &WsMessage) -> &str {
        message.to_text().unwrap_or_default()
    }

    #[test]
    fn pings_of_each_version_get_their_pong() {
        let mut v2 = json_wire(ProtocolVersion::V2);
        assert_eq!(read_text(&mut v2, ""), Frame::Ping(WsMessage::text("")));
        assert_eq!(read_text(&mut v2, "#1"), Frame::Messages(Vec::new()));
        let mut v1 = json_wire(ProtocolVersion::V1);
        assert_eq!(read_text(&mut v1, "#1"), Frame::Ping(WsMessage::text("#2")));
        assert_ne!(read_text(&mut v1, ""), Frame::Ping(WsMessage::text("")));
        let mut both = Wire::new(ProtocolVersion::Both, Encoding::Msgpack);
        let (_, ping) = Encoding::Msgpack.v1_ping();
        let (_, pong) = Encoding::Msgpack.v1_pong();
        assert_eq!(both.read(&ping, true), Frame::Ping(WsMessage::binary(pong)));
        assert_eq!(read_text(&mut both, ""), Frame::Ping(WsMessage::text("")));
    }

    #[test]
    fn server_packets_become_client_messages_in_order() {
        let mut wire = json_wire(ProtocolVersion::V2);
        let batch = r##"[
            {"rid": 3, "data": {"ok": true}},
            {"rid": 4, "error": {"name": "Nope", "message": "refused"}},
            {"event": "ask", "data": 1, "cid": 9},
            {"event": "tell", "data": 2},
            {"event": "#publish", "data": {"channel": "news", "data": "hi"}},
            {"event": "#removeAuthToken"},
            "raw"
        ]"##;
        let expected = vec![
            FromServer::Reply {
                id: 3,
                result: Ok(Some(serde_json::json!({"ok": true}))),
            },
            FromServer::Reply {
                id: 4,
                result: Err(ApiError::new("Nope", "refused")),
            },
            FromServer::Invoke {
                id: 9,
                event: "ask".to_owned(),
                data: Some(Value::from(1)),
            },
            FromServer::Transmit {
                event: "tell".to_owned(),
                data: Some(Value::from(2)),
            },
            FromServer::Publication {
                channel: "news".to_owned(),
                data: Some(Value::from("hi")),
            },
            FromServer::Deauthenticate,
        ];
        assert_eq!(read_text(&mut wire, batch), Frame::Messages(expected));
    }

    #[test]
    fn events_and_replies_are_encoded_as_packets() {
        let mut wire = json_wire(ProtocolVersion::V2);
        let parse = |message: &WsMessage| -> Value {
            serde_json::from_str(text_of(message)).unwrap_or_default()
        };
        let handshake = wire.handshake(1, Some("t".to_owned())).ok();
        assert_eq!(
            handshake.as_ref().map(parse),
            Some(serde_json::json!({"event": "#handshake", "data": {"authToken": "t"}, "cid": 1}))
        );
        let transmit = wire.event("tell", None, None).ok();
        assert_eq!(
            transmit.as_ref().map(parse),
            Some(serde_json::json!({"event": "tell"}))
        );
        let reply = wire.reply(5, &Ok(Some(Value::from(1)))).ok();
        assert_eq!(
            reply.as_ref().map(parse),
            Some(serde_json::json!({"rid": 5, "data": 1}))
        );
        let error = wire.reply(6, &Err(ApiError::new("Bad", "no"))).ok();
        let error = error.as_ref().map(parse).unwrap_or_default();
        assert_eq!(error["rid"], 6);
        assert_eq!(error["error"]["name"], "Bad");
    }

    #[test]
    fn only_the_reply_to_the_handshake_call_counts() {
        let wire = json_wire(ProtocolVersion::V2);
        let reply = |text: &str| wire.handshake_reply(text.as_bytes(), false, 2);
        assert_eq!(reply(r#"{"rid": 1, "data": {"id": "x"}}"#), None);
        assert_eq!(reply(r#"{"event": "hello"}"#), None);
        assert_eq!(reply("not json"), None);
        assert_eq!(
            reply(
                r#"{"rid": 2, "data": {"id": "x", "isAuthenticated": true, "pingTimeout": 1500}}"#
            ),
            Some(Ok(HandshakeReply {
                id: "x".to_owned(),
                is_authenticated: true,
                ping_timeout: Some(Duration::from_millis(1500)),
            }))
        );
        assert_eq!(
            reply(r#"{"rid": 2}"#),
            Some(Ok(HandshakeReply {
                id: String::new(),
                is_authenticated: false,
                ping_timeout: None,
            }))
        );
        let refused = reply(r#"{"rid": 2, "error": {"name": "Denied", "message": "no"}}"#);
        let expected = ApiError::new("Denied", "no").to_string();
        assert_eq!(refused, Some(Err(ClientError::Handshake(expected))));
    }
}
