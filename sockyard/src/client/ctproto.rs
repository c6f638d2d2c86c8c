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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{lock, ClientError};
use crate::error::ApiError;
use crate::protocol::ctproto::{
    new_message_id, AUTHORIZE, ERROR_TYPE, PUBLISH, SUBSCRIBE, UNSUBSCRIBE,
};

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

/// The stream of [`Update`]s; it ends when the connection closes.
#[derive(Debug)]
pub struct Updates {
    receiver: mpsc::UnboundedReceiver<Update>,
    closed: Arc<Mutex<Option<(u16, String)>>>,
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

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Option<Value>, ApiError>>>>>;

/// A connection to a CTProto endpoint; cheap to clone.
#[derive(Debug, Clone)]
pub struct CtClient {
    outgoing: mpsc::UnboundedSender<String>,
    waiting: Waiting,
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
        if !url.starts_with("ws://") && !url.starts_with("wss://") {
            return Err(ClientError::Url(format!(
                "{url} (expected ws:// or wss://)"
            )));
        }
        let payload =
            serde_json::to_value(payload).map_err(|e| ClientError::Encode(e.to_string()))?;
        let (mut stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let id = new_message_id();
        let authorize = serde_json::json!({"type": AUTHORIZE, "payload": payload, "messageId": id});
        stream
            .send(WsMessage::text(authorize.to_string()))
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let timeout = Duration::from_secs(10);
        let auth_data = loop {
            let message = tokio::time::timeout(timeout, stream.next())
                .await
                .map_err(|_| ClientError::Handshake("no reply to authorize".to_owned()))?;
            match message {
                Some(Ok(WsMessage::Text(text))) => {
                    let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if reply.get("messageId").and_then(Value::as_str) == Some(id.as_str())
                        && reply.get("type").is_none()
                    {
                        break reply.get("payload").cloned();
                    }
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    let reason = frame.map_or_else(
                        || "closed".to_owned(),
                        |f| format!("{}: {}", u16::from(f.code), f.reason),
                    );
                    return Err(ClientError::Handshake(reason));
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(ClientError::Handshake(err.to_string())),
                None => return Err(ClientError::Handshake("connection closed".to_owned())),
            }
        };
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let (updates_tx, receiver) = mpsc::unbounded_channel();
        let waiting = Waiting::default();
        let closed = Arc::new(Mutex::new(None));
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
        let payload =
            serde_json::to_value(payload).map_err(|e| ClientError::Encode(e.to_string()))?;
        let id = new_message_id();
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id.clone(), tx);
        let message = serde_json::json!({"type": kind, "payload": payload, "messageId": id});
        if self.outgoing.send(message.to_string()).is_err() {
            lock(&self.waiting).remove(&id);
            return Err(ClientError::Closed);
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(data))) => Ok(data),
            Ok(Ok(Err(err))) => Err(ClientError::Remote(err)),
            Ok(Err(_)) => Err(ClientError::BadConnection),
            Err(_) => {
                lock(&self.waiting).remove(&id);
                Err(ClientError::Timeout(kind.to_owned()))
            }
        }
    }

    /// Subscribes to a channel; publications arrive as updates of type `#publish`.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.send(SUBSCRIBE, serde_json::json!({"channel": channel}))
            .await
            .map(|_| ())
    }

    /// Leaves a channel.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.send(UNSUBSCRIBE, serde_json::json!({"channel": channel}))
            .await
            .map(|_| ())
    }

    /// Publishes on a channel.
    pub async fn publish(&self, channel: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = serde_json::to_value(data).map_err(|e| ClientError::Encode(e.to_string()))?;
        self.send(
            PUBLISH,
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

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Owns the socket: writes requests, routes responses to their callers and pushes to updates.
async fn drive(
    mut stream: Stream,
    mut outgoing: mpsc::UnboundedReceiver<String>,
    updates: mpsc::UnboundedSender<Update>,
    waiting: Waiting,
    closed: Arc<Mutex<Option<(u16, String)>>>,
) {
    let ending = loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(WsMessage::Text(text))) => route(text.as_str(), &waiting, &updates),
                Some(Ok(WsMessage::Close(frame))) => {
                    break frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => break (1006, err.to_string()),
                None => break (1006, "connection lost".to_owned()),
            },
            text = outgoing.recv() => match text {
                Some(text) if !text.is_empty() => {
                    if stream.send(WsMessage::text(text)).await.is_err() {
                        break (1006, "send failed".to_owned());
                    }
                }
                _ => {
                    let _ = stream.close(None).await;
                    break (1000, String::new());
                }
            },
        }
    };
    *lock(&closed) = Some(ending);
    lock(&waiting).clear();
}

fn route(text: &str, waiting: &Waiting, updates: &mpsc::UnboundedSender<Update>) {
    let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let id = message
        .get("messageId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let sender = id.and_then(|id| lock(waiting).remove(&id));
    let kind = match message.remove("type") {
        Some(Value::String(kind)) => Some(kind),
        _ => None,
    };
    let payload = message.remove("payload");
    match (sender, kind) {
        (Some(sender), Some(kind)) if kind == ERROR_TYPE => {
            let payload = payload.unwrap_or(Value::Null);
            let name = payload
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("Error")
                .to_owned();
            let text = payload
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let _ = sender.send(Err(ApiError::new(name, text)));
        }
        (Some(sender), None) => {
            let _ = sender.send(Ok(payload));
        }
        (_, Some(kind)) => {
            let _ = updates.send(Update { kind, payload });
        }
        (None, None) => {}
    }
}
