//! A Rust client for CTProto endpoints: authorize on connect, `send(type, payload)` answered
//! by the response with the same `messageId`, and a stream of the server's pushes.
//!
//! ```no_run
//! # async fn run() -> Result<(), sockyard::client::ClientError> {
//! use sockyard::client::ctproto::CtClient;
//!
//! let (client, mut updates) =
//!     CtClient::connect("ws://127.0.0.1:8000/ctproto", serde_json::json!({"username": "ann"})).await?;
//! println!("auth data: {:?}", client.auth_data());
//! let reply = client.send("echo", serde_json::json!({"hello": "world"})).await?;
//! while let Some(update) = updates.next().await {
//!     println!("{}: {:?}", update.kind, update.payload);
//! }
//! # Ok(())
//! # }
//! ```

mod wire;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::pending::PendingReplies;
use super::socket::{self, Received, Stream};
use super::{lock, ClientError};
use wire::Message;

/// A message the server sent on its own (`{type, payload, messageId}` with no pending request
/// of that id): an update, a delivered publication (`type` `#publish`) or an error that answers
/// no request.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The message type.
    pub kind: String,
    /// The payload.
    pub payload: Option<Value>,
}

/// Where the driver leaves the close code and reason once the connection has closed.
type ClosedSlot = Arc<Mutex<Option<(u16, String)>>>;

/// The stream of [`Update`]s; it ends when the connection closes.
#[derive(Debug)]
pub struct Updates {
    receiver: mpsc::UnboundedReceiver<Update>,
    closed: ClosedSlot,
}

impl Updates {
    /// The next update, or `None` once the connection has closed.
    pub async fn next(&mut self) -> Option<Update> {
        self.receiver.recv().await
    }

    /// The close code and reason, once the connection has closed.
    pub fn closed(&self) -> Option<(u16, String)> {
        lock(&self.closed).clone()
    }
}

/// A connection to a CTProto endpoint; cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sockyard::CtClient;
///
/// let authorize = serde_json::json!({"username": "ann"});
/// let (client, mut updates) = CtClient::connect("ws://127.0.0.1:8000/ctproto", authorize).await?;
/// let sum = client.send("echo", serde_json::json!({"a": 1})).await?;
/// client.subscribe("news").await?;
/// while let Some(update) = updates.next().await {
///     println!("{update:?} (echo said {sum:?})");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CtClient {
    outgoing: mpsc::UnboundedSender<String>,
    waiting: PendingReplies<String>,
    auth_data: Option<Value>,
    timeout: Duration,
}

impl CtClient {
    /// Connects, sends `authorize` with `payload` and waits for the auth data. A refused
    /// authorization ends with the server's close reason.
    pub async fn connect(
        url: &str,
        payload: impl Serialize,
    ) -> Result<(Self, Updates), ClientError> {
        socket::check_url(url)?;
        let payload = to_payload(payload)?;
        let mut stream = socket::open(url).await?;
        let id = wire::new_id();
        let authorize = wire::request(wire::AUTHORIZE, &payload, &id);
        socket::send_opening(&mut stream, WsMessage::text(authorize)).await?;
        let timeout = Duration::from_secs(10);
        let auth_data = loop {
            let next = tokio::time::timeout(timeout, stream.next())
                .await
                .map_err(|_| ClientError::Handshake("no reply to authorize".to_owned()))?;
            match socket::received(next) {
                Received::Text(text) => {
                    if let Some(auth_data) = wire::authorize_reply(text.as_str(), &id) {
                        break auth_data;
                    }
                }
                Received::Binary(_) | Received::Control => {}
                Received::End(ending) => {
                    return Err(ending.opening_error(|code, reason| format!("{code}: {reason}")));
                }
            }
        };
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let (updates_tx, receiver) = mpsc::unbounded_channel();
        let waiting = PendingReplies::default();
        let closed = ClosedSlot::default();
        tokio::spawn(drive(
            stream,
            outgoing_rx,
            updates_tx,
            waiting.clone(),
            closed.clone(),
        ));
        let client = Self {
            outgoing,
            waiting,
            auth_data,
            timeout,
        };
        Ok((client, Updates { receiver, closed }))
    }

    /// The auth data the server answered `authorize` with.
    pub fn auth_data(&self) -> Option<&Value> {
        self.auth_data.as_ref()
    }

    /// Sets how long `send` waits for a response (default 10 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends a request and waits for its response payload. An error envelope answering it comes
    /// back as `ClientError::Remote` (`name` and the envelope's `error` text as the message).
    pub async fn send(
        &self,
        kind: &str,
        payload: impl Serialize,
    ) -> Result<Option<Value>, ClientError> {
        let payload = to_payload(payload)?;
        let id = wire::new_id();
        let message = wire::request(kind, &payload, &id);
        let send = || self.outgoing.send(message).is_ok();
        self.waiting.call(id, kind, self.timeout, send).await
    }

    /// Subscribes to a channel; publications arrive as updates of type `#publish`.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.send(wire::SUBSCRIBE, serde_json::json!({"channel": channel}))
            .await
            .map(|_| ())
    }

    /// Leaves a channel.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.send(wire::UNSUBSCRIBE, serde_json::json!({"channel": channel}))
            .await
            .map(|_| ())
    }

    /// Publishes on a channel.
    pub async fn publish(&self, channel: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = to_payload(data)?;
        self.send(
            wire::PUBLISH,
            serde_json::json!({"channel": channel, "data": data}),
        )
        .await
        .map(|_| ())
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.outgoing.send(String::new());
    }
}

fn to_payload(payload: impl Serialize) -> Result<Value, ClientError> {
    serde_json::to_value(payload).map_err(|e| ClientError::Encode(e.to_string()))
}

/// Owns the socket: writes requests, routes responses to their callers and pushes to updates.
async fn drive(
    mut stream: Stream,
    mut outgoing: mpsc::UnboundedReceiver<String>,
    updates: mpsc::UnboundedSender<Update>,
    waiting: PendingReplies<String>,
    closed: ClosedSlot,
) {
    let ending = loop {
        tokio::select! {
            message = stream.next() => match socket::received(message) {
                Received::Text(text) => route(text.as_str(), &waiting, &updates),
                Received::Binary(_) | Received::Control => {}
                Received::End(ending) => break ending.code_and_reason(),
            },
            text = outgoing.recv() => match text {
                Some(text) if !text.is_empty() => {
                    if stream.send(WsMessage::text(text)).await.is_err() {
                        break socket::send_failed();
                    }
                }
                _ => break socket::close(&mut stream).await,
            },
        }
    };
    *lock(&closed) = Some(ending);
    waiting.fail_all();
}

/// Hands a response to the request waiting for it; anything else with a `type` is an update.
/// A request answered by a typed message other than an error fails with `BadConnection`.
fn route(text: &str, waiting: &PendingReplies<String>, updates: &mpsc::UnboundedSender<Update>) {
    let Some(message) = Message::parse(text) else {
        return;
    };
    let waiter = message.id.as_ref().and_then(|id| waiting.take(id));
    match waiter {
        Some(waiter) if message.is_error() => {
            let _ = waiter.send(Err(message.error()));
        }
        Some(waiter) if message.kind.is_none() => {
            let _ = waiter.send(Ok(message.payload));
        }
        _ => {
            if let Some(kind) = message.kind {
                let _ = updates.send(Update {
                    kind,
                    payload: message.payload,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    fn routed(text: &str, waiting: &PendingReplies<String>) -> Vec<Update> {
        let (updates, mut received) = mpsc::unbounded_channel();
        route(text, waiting, &updates);
        drop(updates);
        std::iter::from_fn(|| received.try_recv().ok()).collect()
    }

    fn update(kind: &str, payload: Option<Value>) -> Update {
        Update {
            kind: kind.to_owned(),
            payload,
        }
    }

    #[test]
    fn a_response_answers_the_request_with_its_id() {
        let waiting = PendingReplies::default();
        let mut reply = waiting.register("m1".to_owned());
        let pushed = routed(r#"{"messageId": "m1", "payload": {"ok": 1}}"#, &waiting);
        assert_eq!(pushed, []);
        assert_eq!(reply.try_recv(), Ok(Ok(Some(serde_json::json!({"ok": 1})))));
    }

    #[test]
    fn an_error_envelope_fails_the_request() {
        let waiting = PendingReplies::default();
        let mut reply = waiting.register("m1".to_owned());
        let error =
            r#"{"type": "error", "messageId": "m1", "payload": {"name": "Nope", "error": "no"}}"#;
        assert_eq!(routed(error, &waiting), []);
        assert_eq!(reply.try_recv(), Ok(Err(ApiError::new("Nope", "no"))));
    }

    #[test]
    fn typed_messages_for_no_request_are_updates() {
        let waiting = PendingReplies::default();
        let news = r#"{"type": "news", "messageId": "x", "payload": 3}"#;
        assert_eq!(
            routed(news, &waiting),
            [update("news", Some(Value::from(3)))]
        );
        let error = r#"{"type": "error", "payload": {"error": "stray"}}"#;
        let stray = serde_json::json!({"error": "stray"});
        assert_eq!(routed(error, &waiting), [update("error", Some(stray))]);
    }

    #[test]
    fn a_typed_message_with_a_waiting_id_is_an_update_and_fails_the_request() {
        let waiting = PendingReplies::default();
        let mut reply = waiting.register("m1".to_owned());
        let pushed = routed(r#"{"type": "news", "messageId": "m1"}"#, &waiting);
        assert_eq!(pushed, [update("news", None)]);
        assert!(reply.try_recv().is_err());
        assert!(waiting.take(&"m1".to_owned()).is_none());
    }

    #[test]
    fn untyped_messages_for_no_request_and_non_objects_are_ignored() {
        let waiting = PendingReplies::default();
        let mut reply = waiting.register("m1".to_owned());
        assert_eq!(routed(r#"{"messageId": "m2", "payload": 1}"#, &waiting), []);
        assert_eq!(routed(r#"["m1"]"#, &waiting), []);
        assert_eq!(routed("not json", &waiting), []);
        assert!(reply.try_recv().is_err());
        assert!(waiting.take(&"m1".to_owned()).is_some());
    }
}
