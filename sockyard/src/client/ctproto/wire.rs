//! CTProto messages as the client writes and reads them; the one place where the CTProto client
//! uses the protocol layer.

use serde_json::Value;

use crate::error::ApiError;
use crate::protocol::ctproto::{self, ERROR_TYPE};

pub(super) use crate::protocol::ctproto::{AUTHORIZE, PUBLISH, SUBSCRIBE, UNSUBSCRIBE};

/// A fresh `messageId`.
pub(super) fn new_id() -> String {
    ctproto::new_message_id()
}

/// The request `{type, payload, messageId}`.
pub(super) fn request(kind: &str, payload: &Value, id: &str) -> String {
    serde_json::json!({"type": kind, "payload": payload, "messageId": id}).to_string()
}

/// The auth data, if `text` is the answer to the `authorize` request `id` (the message with
/// that `messageId` and no `type`).
pub(super) fn authorize_reply(text: &str, id: &str) -> Option<Option<Value>> {
    let reply = serde_json::from_str::<Value>(text).ok()?;
    let answers = reply.get("messageId").and_then(Value::as_str) == Some(id);
    (answers && reply.get("type").is_none()).then(|| reply.get("payload").cloned())
}

/// A message from the server, once the client's `authorize` is answered.
#[derive(Debug, PartialEq)]
pub(super) struct Message {
    /// The `messageId`, if it is a string.
    pub(super) id: Option<String>,
    /// The `type`, if it is a string (responses have none).
    pub(super) kind: Option<String>,
    /// The payload.
    pub(super) payload: Option<Value>,
}

impl Message {
    /// Reads a text frame; `None` unless it is a JSON object.
    pub(super) fn parse(text: &str) -> Option<Self> {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let id = match message.remove("messageId") {
            Some(Value::String(id)) => Some(id),
            _ => None,
        };
        let kind = match message.remove("type") {
            Some(Value::String(kind)) => Some(kind),
            _ => None,
        };
        let payload = message.remove("payload");
        Some(Self { id, kind, payload })
    }

    /// Whether this is an error envelope.
    pub(super) fn is_error(&self) -> bool {
        self.kind.as_deref() == Some(ERROR_TYPE)
    }

    /// The error an error envelope carries: its payload's `name` (default `Error`) and `error`
    /// text.
    pub(super) fn error(self) -> ApiError {
        let payload = self.payload.unwrap_or(Value::Null);
        let text = |field: &str| {
            payload
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let name = text("name").unwrap_or_else(|| "Error".to_owned());
        ApiError::new(name, text("error").unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_type_payload_and_id_in_order() {
        let text = request("echo", &serde_json::json!({"a": 1}), "m1");
        assert_eq!(
            text,
            r#"{"type":"echo","payload":{"a":1},"messageId":"m1"}"#
        );
    }

    #[test]
    fn the_authorize_answer_has_the_id_and_no_type() {
        let reply = |text: &str| authorize_reply(text, "m1");
        let data = serde_json::json!({"user": "ann"});
        assert_eq!(
            reply(r#"{"messageId": "m1", "payload": {"user": "ann"}}"#),
            Some(Some(data))
        );
        assert_eq!(reply(r#"{"messageId": "m1"}"#), Some(None));
        assert_eq!(reply(r#"{"messageId": "m2", "payload": 1}"#), None);
        assert_eq!(reply(r#"{"messageId": "m1", "type": "news"}"#), None);
        assert_eq!(reply(r#"{"messageId": "m1", "type": null}"#), None);
        assert_eq!(reply("[1]"), None);
        assert_eq!(reply("not json"), None);
    }

    #[test]
    fn messages_keep_string_ids_and_types_only() {
        assert_eq!(
            Message::parse(r#"{"messageId": "m1", "type": "news", "payload": 2}"#),
            Some(Message {
                id: Some("m1".to_owned()),
                kind: Some("news".to_owned()),
                payload: Some(Value::from(2)),
            })
        );
        assert_eq!(
            Message::parse(r#"{"messageId": 5, "type": null}"#),
            Some(Message {
                id: None,
                kind: None,
                payload: None,
            })
        );
        assert_eq!(Message::parse("[]"), None);
        assert_eq!(Message::parse("{"), None);
    }

    #[test]
    fn error_envelopes_carry_a_name_and_text() {
        let error = Message::parse(
            r#"{"type": "error", "messageId": "m1", "payload": {"name": "Denied", "error": "no"}}"#,
        );
        assert!(error.as_ref().is_some_and(Message::is_error));
        assert_eq!(
            error.map(Message::error),
            Some(ApiError::new("Denied", "no"))
        );
        let bare = Message::parse(r#"{"type": "error"}"#);
        assert_eq!(bare.map(Message::error), Some(ApiError::new("Error", "")));
        let update = Message::parse(r#"{"type": "news"}"#);
        assert!(!update.is_some_and(|m| m.is_error()));
    }
}
